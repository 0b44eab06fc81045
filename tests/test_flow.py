"""flow.SlotFlow: slots are held back from the actors while the learner has more waiting than it can use or
more are out than the actors have cores; they go back when the learner runs short."""

import json
import os

from actorlearner import preflight
from actorlearner.config import Config
from actorlearner.flow import SlotFlow
from test_cli import run_cli


def test_queued_unrolls_park_the_slots_of_the_next_batches():
    flow = SlotFlow(per_batch=1, total=16, cap=16)
    assert flow.after_step(["a"], waiting=15, step_s=0.002) == []  # two batches or more still wait
    assert flow.after_step(["b"], waiting=2, step_s=0.002) == []
    assert flow.after_step(["c"], waiting=1, step_s=0.002) == ["c"]  # the learner could use more
    assert flow.parked == ["a", "b"]


def test_no_more_slots_out_than_the_cap():
    flow = SlotFlow(per_batch=2, total=16, cap=4)  # 8 actors of 2 slots, 2 batches a step, 1 core for them
    back = flow.after_step(["a", "b"], waiting=0, step_s=0.001)
    assert back == [] and len(flow.parked) == 2  # 16 out, 4 allowed: both parked even with nothing waiting
    for i in range(5):
        flow.after_step([f"x{i}", f"y{i}"], waiting=0, step_s=0.001)
    assert flow.total - len(flow.parked) == 4  # parked down to the cap
    assert flow.after_step(["p", "q"], waiting=0, step_s=0.001) == ["p", "q"]  # at the cap: straight back


def test_parked_slots_go_back_when_the_learner_runs_short():
    flow = SlotFlow(per_batch=1, total=16, cap=4)
    for i in range(14):
        flow.after_step([i], waiting=10, step_s=0.01)
    assert len(flow.parked) == 14
    assert flow.while_short(waiting=0, now=100.0) == []  # the wait starts
    assert flow.while_short(waiting=0, now=100.02) == []  # shorter than three steps (0.03 s)
    back = flow.while_short(waiting=0, now=100.04)
    assert back == [0, 1] and flow.total - len(flow.parked) == 4  # up to the cap, oldest first
    assert flow.while_short(waiting=1, now=200.0) == []  # a batch is there: not short


def test_one_actor_or_a_disabled_flow_never_parks():
    one_actor = SlotFlow(per_batch=1, total=2, cap=1)  # cap raised to two batches: the default design
    assert one_actor.after_step(["a"], waiting=1, step_s=0.002) == ["a"]
    off = SlotFlow(per_batch=1, total=16, cap=1, enabled=False)
    assert off.after_step(["a"], waiting=15, step_s=0.002) == ["a"]


def test_many_actors_keep_the_policy_lag_low_and_learn(tmp_path):
    """8 CartPole actors on the vector backend outrun the learner; with every slot circulating they ran at a
    mean lag of ~10 and 5 seeds of 6 collapsed to a return of 9.4."""
    run = tmp_path / "run"
    proc = run_cli("train", "--env", "CartPole-v1", "--num-actors", "8", "--seed", "2", "--max-seconds", "60",
                   "--run-dir", str(run), "--quiet", timeout=150)
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
