"""A stuck actor is noticed: one whose env hangs in step, or whose process is frozen (SIGSTOP), is reported,
killed and replaced while the others go on; counted in summary.json."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, our_segments, spawned_pids, wait_for


def popen(tmp_path, *args, extra_env=None):
    """A run that would go on for 90 s: each test stops it (stopped_once_replaced) once the stall is dealt with."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests"), **(extra_env or {})}
    return subprocess.Popen([sys.executable, "-m", "actorlearner", "train", "--run-dir", str(tmp_path / "run"),
                             "--no-stop-at-target", "--eval-every-s", "0", "--num-actors", "2", "--max-seconds", "90",
                             "--log-every-s", "0.5", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)


def last_row(metrics) -> dict:
    """The newest metrics.jsonl row ({} before there is one)."""
    try:
        return json.loads(metrics.read_text().splitlines()[-1])
    except (OSError, IndexError, ValueError):  # not there yet, empty, or its last line half written
        return {}


def stopped_once_replaced(tmp_path, proc, before) -> dict:
    """Waits until the run has counted a stall and trained on after it, stops it with a Ctrl-C, and checks what
    it left; returns its summary, with its output under "stdout"."""
    metrics, steps = tmp_path / "run" / "metrics.jsonl", []

    def trained_on() -> bool:
        row = last_row(metrics)
        if row.get("actor_stalls", 0) >= 1:
            steps.append(row["env_steps"])
        return (len(steps) > 1 and steps[-1] > steps[0]) or proc.poll() is not None

    try:
        assert wait_for(trained_on, 60), "no stall counted, or no training after it, within 60 s"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    lines = "\n".join(line for line in out.splitlines() if "actor" in line)  # what it reported, if this fails
    assert summary["actor_stalls"] == 1 and summary["actor_restarts"] >= 1, lines
    assert summary["env_steps"] > 0 and "delivered nothing for" in out
    assert spawned_pids() - before == set() and our_segments(proc.pid) == set()
    summary["stdout"] = out
    return summary


def test_actor_with_a_hung_env_is_killed_and_replaced(tmp_path):
    before = spawned_pids()
    proc = popen(tmp_path, "--env", "faulty_envs:HangOnceInActor-v0", "--env-backend", "gymnasium",
                 "--actor-stall-s", "3", extra_env={"HANG_MARKER": str(tmp_path / "hung")})
    summary = stopped_once_replaced(tmp_path, proc, before)
    assert (tmp_path / "hung").exists()
    assert "(it was in faulty_envs.py:" in summary["stdout"] and " in step); killing it" in summary["stdout"]


def test_frozen_actor_process_is_killed_and_replaced(tmp_path):
    before = spawned_pids()
    proc = popen(tmp_path, "--actor-stall-s", "3", "--env-backend", "gymnasium")
    assert wait_for(lambda: last_row(tmp_path / "run" / "metrics.jsonl") or proc.poll() is not None, 60)
    kids = sorted(spawned_pids() - before)
    assert kids
    os.kill(kids[-1], signal.SIGSTOP)  # frozen: alive, silent
    summary = stopped_once_replaced(tmp_path, proc, before)
    assert "(a frozen process, or a hung env?); killing it" in summary["stdout"]  # it cannot answer


def test_an_actor_waiting_for_a_slot_is_not_stalled(monkeypatch):
    """The learner gives slots back after its step: an actor that delivered and then held no slot for longer
    than the stall limit starts its clock when it gets one, and is killed only if it then stays silent."""
    from actorlearner import actor_pool, stack_dumps

    class Proc:
        exitcode, pid, killed = None, 0, False

        def kill(self):
            self.killed = True

        def join(self, timeout=None):
            pass

    class Conn:
        def send(self, slot):
            pass

    monkeypatch.setattr(stack_dumps, "where_stuck", lambda pid, path: "")
    pool = actor_pool.ActorPool(None, num_actors=1, actor_threads=1, report=lambda text: None)
    pool.procs, pool.conns = [Proc()], [Conn()]
    pool.clock.watch(1.0)
    pool.clock.delivered(0)
    pool.clock._last_seen[0] = time.monotonic() - 5.0  # its last delivery, 5 s ago; no slot since
    pool.give(0, 0)
    pool._kill_stalled()
    assert not pool.procs[0].killed and pool.stalls == 0
    pool.clock._last_seen[0] = time.monotonic() - 5.0  # now holding the slot and silent past the limit
    pool._kill_stalled()
    assert pool.procs[0].killed and pool.stalls == 1


def test_a_starting_actor_gets_time_to_start():
    """A replacement imports its libraries and makes its envs before its first unroll: silence then counts
    against stall_s plus the start-up allowance; after its first delivery, against stall_s alone."""
    from actorlearner.actor_pool import StallClock

    clock = StallClock(1, startup_s=30.0)
    clock.watch(3.0)
    clock.started(0)
    clock._last_seen[0] = time.monotonic() - 10.0
    assert clock.quiet_past_limit(0) is None  # 10 s into its start: within 3 + 30
    clock._last_seen[0] = time.monotonic() - 34.0
    assert clock.quiet_past_limit(0) > 33  # a start that hangs is still caught
    clock.delivered(0)
    clock._last_seen[0] = time.monotonic() - 4.0
    assert clock.quiet_past_limit(0) > 3  # started: the plain limit
    clock.resumed(0)  # given work after waiting for it: not a restart, no allowance
    clock._last_seen[0] = time.monotonic() - 4.0
    assert clock.quiet_past_limit(0) > 3


def test_an_actor_frozen_before_its_first_unroll_is_replaced(tmp_path):
    """CartPole's default is one actor: frozen while it starts (before the learner's first step), it ended the
    run on --wait-timeout-s with "no unroll from any actor" instead of being replaced. Its allowance is
    --wait-timeout-s; the learner waits at least that long plus --actor-stall-s before it gives up."""
    before, t0 = spawned_pids(), time.monotonic()
    proc = popen(tmp_path, "--num-actors", "1", "--actor-stall-s", "2", "--wait-timeout-s", "6")
    while not (kids := spawned_pids() - before):
        assert time.monotonic() - t0 < 30 and proc.poll() is None
        time.sleep(0.02)
    os.kill(min(kids), signal.SIGSTOP)  # while it imports: long before the learner's first weights
    summary = stopped_once_replaced(tmp_path, proc, before)
    assert summary["actor_restarts"] == 1


def test_the_learner_waits_for_the_stall_watch_and_a_second_silent_start_ends_the_run():
    from actorlearner.actor_pool import ActorCrashLoop, StallClock

    clock = StallClock(2, startup_s=6.0)
    assert clock.patience_s() == 0.0  # not watching yet: the learner's own --wait-timeout-s alone
    clock.watch(2.0)
    assert clock.patience_s() == 8.0  # neither has delivered: stall_s plus the start-up allowance
    clock.delivered(0)
    clock.delivered(1)
    assert clock.patience_s() == 2.0
    clock.started(1)  # a replacement
    assert clock.patience_s() == 8.0
    clock.killed(1, 9.0)  # its start hung: it is started once more
    clock.started(1)
    with pytest.raises(ActorCrashLoop, match=r"actor 1 delivered nothing in 2 starts in a row \(9 s the last"):
        clock.killed(1, 9.0)
    clock.killed(0, 3.0)  # a stall after its first unroll: not a silent start
    clock.started(0)
    clock.delivered(0)  # its replacement delivered: the count starts again
    clock.started(0)
    clock.killed(0, 9.0)


def test_a_stall_after_the_first_unroll_is_not_a_silent_start_on_the_ray_backend(monkeypatch):
    """RaySource kills a stalled actor by replacing it: the kill is counted against the killed actor, not against
    its replacement (which counts as starting), or one stall after training began ended the run the second time."""
    from actorlearner.actor_pool import ActorCrashLoop
    from actorlearner.ray_backend import RaySource

    source = RaySource(None, num_actors=1, slots_per_actor=1, weights=None, cpus_per_actor=1, timeout_s=5.0,
                       report=lambda text: None)
    monkeypatch.setattr(source, "_busy", lambda: {0})
    monkeypatch.setattr(source, "_died", lambda i, how: source.clock.started(i))  # what _start does to the clock
    source.clock.watch(1.0)
    source.clock.delivered(0)
    source.clock._last_seen[0] = time.monotonic() - 5.0
    source._kill_stalled()  # stalled in training: replaced
    source.clock._last_seen[0] = time.monotonic() - 10.0
    source._kill_stalled()  # its replacement's start hung once: replaced again
    assert source.stalls == 2
    source.clock._last_seen[0] = time.monotonic() - 10.0
    with pytest.raises(ActorCrashLoop, match="2 starts in a row"):
        source._kill_stalled()
