"""flow.SlotFlow: slots are held back from the actors while the learner has more waiting than it can use or
more are out than the actors have cores; they go back when the learner runs short."""

import json
import os
from typing import NamedTuple

from actorlearner import preflight
from actorlearner.config import Config
from actorlearner.flow import SlotFlow
from test_cli import run_cli


class U(NamedTuple):
    """An unroll as the flow sees it: the actor whose slot it holds, and the slot."""
    actor_id: int
    slot: int


def queued(n: int, actor: int = 99) -> list:
    return [U(actor, i) for i in range(n)]


def test_queued_unrolls_park_the_slots_of_the_next_batches():
    flow = SlotFlow(per_batch=1, total=16, cap=16)
    a, b, c = U(0, 0), U(1, 0), U(2, 0)
    assert flow.after_step([a], waiting=queued(15), step_s=0.002) == []  # two batches or more still wait
    assert flow.after_step([b], waiting=queued(2), step_s=0.002) == []
    # The learner could use more: the slot just taken goes back to its actor (all have one slot to fill).
    assert flow.after_step([c], waiting=queued(1), step_s=0.002) == [c]
    assert flow.parked == [a, b]


def test_no_more_slots_out_than_the_cap():
    flow = SlotFlow(per_batch=2, total=16, cap=4)  # 8 actors of 2 slots, 2 batches a step, 1 core for them
    back = flow.after_step([U(0, 0), U(1, 0)], waiting=[], step_s=0.001)
    assert back == [] and len(flow.parked) == 2  # 16 out, 4 allowed: both parked even with nothing waiting
    for i in range(5):
        flow.after_step([U(2 + i, 0), U(2 + i, 1)], waiting=[], step_s=0.001)
    assert flow.total - len(flow.parked) == 4  # parked down to the cap
    assert len(flow.after_step([U(7, 0), U(7, 1)], waiting=[], step_s=0.001)) == 2  # at the cap: two go back


def test_parked_slots_go_back_when_the_learner_runs_short():
    flow = SlotFlow(per_batch=1, total=16, cap=4)
    for i in range(14):
        flow.after_step([U(i, 0)], waiting=queued(10), step_s=0.01)
    assert len(flow.parked) == 14
    assert flow.while_short(waiting=[], now=100.0) == []  # the wait starts
    assert flow.while_short(waiting=[], now=100.02) == []  # shorter than three steps (0.03 s)
    back = flow.while_short(waiting=[], now=100.04)
    assert back == [U(0, 0), U(1, 0)] and flow.total - len(flow.parked) == 4  # up to the cap, oldest first
    assert flow.while_short(waiting=queued(1), now=200.0) == []  # a batch is there: not short


def test_waits_between_steps_add_up():
    """An actor slower than the learner by less than three steps leaves it short between every two steps; the
    wait used to start again at each step, so parked slots never went back and the run kept half its actors
    idle (two CartPole actors, one with none of its slots)."""
    flow = SlotFlow(per_batch=1, total=8, cap=8)  # 4 actors of 2 slots, 8 cores for them
    for i in range(4):
        flow.after_step([U(i, 0)], waiting=queued(3), step_s=0.01)  # the start-up burst parks one slot each
    assert len(flow.parked) == 4
    now, back = 10.0, []
    for _ in range(3):  # a wait of 1.2 steps before each step: short, never three steps at once
        assert flow.while_short(waiting=[], now=now) == []
        back = flow.while_short(waiting=[], now=now + 0.012)
        if back:
            break
        now += 0.012 + 0.01
        assert len(flow.after_step([U(9, 0)], waiting=[], step_s=0.01, now=now)) == 1
    assert len(back) == 4  # after three steps' worth of waiting, all of them


def test_each_slot_goes_back_to_the_actor_with_the_fewest_to_fill():
    flow = SlotFlow(per_batch=1, total=4, cap=1)  # two actors of 2 slots, one core for them
    # The start-up burst: actor 0 filled both its slots first, so both are parked.
    assert flow.after_step([U(0, 0)], waiting=[U(0, 1), U(1, 0), U(1, 1)], step_s=0.01) == []
    assert flow.after_step([U(0, 1)], waiting=[U(1, 0), U(1, 1)], step_s=0.01) == []
    # Neither actor has a slot to fill (actor 1's are taken and queued): the slot taken goes back to its actor.
    assert flow.after_step([U(1, 0)], waiting=[U(1, 1)], step_s=0.01) == [U(1, 0)]
    # Actor 1 now fills one, actor 0 none: actor 0 gets the next (the taken slot going straight back, as before,
    # left actor 0 with none for good).
    assert flow.after_step([U(1, 1)], waiting=[], step_s=0.01) == [U(0, 0)]
    assert sorted(flow.parked) == [U(0, 1), U(1, 1)]  # one each out


def test_one_actor_or_a_disabled_flow_never_parks():
    one_actor = SlotFlow(per_batch=1, total=2, cap=1)  # cap raised to two batches: the default design
    assert one_actor.after_step([U(0, 0)], waiting=queued(1), step_s=0.002) == [U(0, 0)]
    off = SlotFlow(per_batch=1, total=16, cap=1, enabled=False)
    assert off.after_step([U(0, 0)], waiting=queued(15), step_s=0.002) == [U(0, 0)]


def test_many_actors_keep_the_policy_lag_low_and_learn(tmp_path):
    """8 CartPole actors on the vector backend outrun the learner; with every slot circulating they ran at a
    mean lag of ~10 and 5 seeds of 6 collapsed to a return of 9.4."""
    run = tmp_path / "run"
    proc = run_cli("train", "--env", "CartPole-v1", "--num-actors", "8", "--seed", "2", "--max-seconds", "120",
                   "--run-dir", str(run), "--quiet", timeout=240)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["policy_lag_mean"] < 3.0, summary["policy_lag_mean"]
    assert summary["solved"], summary["mean_return_100"]


def test_actor_processes_many_times_the_cores_are_warned(monkeypatch):
    monkeypatch.setattr(preflight, "usable_cores", lambda: 2)
    assert preflight.crowded_actors(Config(num_actors=8)) is None  # 4 a core: still quiet
    text = preflight.crowded_actors(Config(num_actors=60))
    assert text.startswith("60 actor processes on 2 cores") and "--envs-per-actor" in text
    assert preflight.crowded_actors(Config(num_actors=60, serial=True)) is None  # one process: nothing starts


def test_default_actor_and_thread_counts_follow_the_cpu_affinity(monkeypatch):
    # A container's cpuset or taskset limits the cores while os.cpu_count() still counts the host's.
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert Config().resolved_num_actors() == 4
    assert Config().resolved_num_actors(cheap_envs=True) == 3
    assert Config(num_actors=2).resolved_learner_threads() == 2
    assert preflight.crowded_actors(Config(num_actors=17)) is not None  # 17 > 4 x 4 cores
