"""An env that hangs inside the learner process (evaluation, serial mode) cannot hold the run: --max-seconds,
SIGTERM and the wait timeout still end it within seconds, with its summary written and nothing left behind.
An env that is only slow there is not taken for a hung one, and its evaluations are spaced out."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from actorlearner.stopping import Interrupted, StopSignals, UserCodeStopped
from conftest import ROOT, our_segments, spawned_pids, wait_training


def start(tmp_path, *args, env_id="faulty_envs:HangInLearner-v0"):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    return subprocess.Popen([sys.executable, "-m", "actorlearner", "train", "--env", env_id,
                             "--run-dir", str(tmp_path / "run"), "--no-stop-at-target", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)


def finish(proc, timeout):
    t = time.monotonic()
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err, time.monotonic() - t


def summary(tmp_path):
    return json.loads((tmp_path / "run" / "summary.json").read_text())


def test_hung_evaluation_env_does_not_outlast_max_seconds(tmp_path):
    before = spawned_pids()
    t0 = time.monotonic()
    proc = start(tmp_path, "--max-seconds", "8", "--eval-every-s", "1")
    code, out, err, _ = finish(proc, 60)
    took = time.monotonic() - t0
    assert code == 0, err
    assert summary(tmp_path)["status"] == "max_seconds", out
    assert "evaluation stopped by --max-seconds" in out, out
    assert took < 8 + 5 + 8, took  # the run, the final evaluation's grace, start-up and teardown
    assert spawned_pids() - before == set(), out
    assert our_segments(proc.pid) == set()


def test_user_code_watchdog_stops_a_stall_not_a_slow_block():
    with StopSignals() as signals:
        t = time.monotonic()
        with signals.user_code(None, step_s=0.2) as on_step:
            for _ in range(10):  # 0.5 s in all, 0.05 s between steps: slow, alive
                time.sleep(0.05)
                on_step()
        assert time.monotonic() - t >= 0.5
        with pytest.raises(UserCodeStopped) as stopped:
            with signals.user_code(None, step_s=0.2) as on_step:
                on_step()
                time.sleep(5)  # a hung step
        assert stopped.value.why == "stalled"
        t = time.monotonic()
        with pytest.raises(UserCodeStopped) as stopped:
            with signals.user_code(0.3, step_s=10) as on_step:
                while True:
                    time.sleep(0.01)
                    on_step()
        assert stopped.value.why == "deadline" and 0.29 < time.monotonic() - t < 1.0
        t = time.monotonic()
        with pytest.raises(UserCodeStopped) as stopped:
            with signals.user_code(0.3, step_s=10) as on_step:
                while True:  # steps far under a millisecond apart (a toy-text env steps in ~15 µs)
                    on_step()
        assert stopped.value.why == "deadline" and 0.29 < time.monotonic() - t < 1.0
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_slow_evaluation_env_is_played_in_slices_beside_training(tmp_path):
    """Evaluation episodes of 2 s each (100 steps of 20 ms in the learner process), 4 s in all, over a 3-s
    --wait-timeout-s: the periodic evaluation is played between learner steps, at most 10 % of the run, so in a
    20-s run it never finishes (it needs ~40 s) and the learner keeps stepping; the final one (5 s of grace) is
    played through (the timeout is per env step). 20 s, not 10: beside another test, a 10-s run once played
    1 ms of evaluation (the check below wants 20 ms at least)."""
    proc = start(tmp_path, "--max-seconds", "20", "--eval-every-s", "1", "--eval-episodes", "2",
                 "--wait-timeout-s", "3", env_id="faulty_envs:SlowInLearner-v0")
    code, out, err, _ = finish(proc, 90)
    assert code == 0, err
    assert "evaluation stopped" not in out, out
    evals = [json.loads(line) for line in (tmp_path / "run" / "evals.jsonl").read_text().splitlines()]
    assert [e["return_mean"] for e in evals] == [100.0], out  # the final evaluation's
    s = summary(tmp_path)
    assert 0.02 <= s["evaluation_s"] <= 0.1 * s["wall_s"] + 0.1, s  # played (a 20-ms step at least), within 10 %
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    trained = [r["learner_steps"] for r in rows if r["time_s"] > 3.0]
    assert trained and trained[-1] - trained[0] > 20, rows  # the learner stepped all through the evaluation
    assert our_segments(proc.pid) == set()


def test_hung_evaluation_env_is_stopped_by_the_step_watchdog(tmp_path):
    # A step budget: with a 6-s --max-seconds, a start-up slowed by two busy processes left the final evaluation
    # under 2 s, and --max-seconds stopped it before the watchdog could.
    proc = start(tmp_path, "--max-steps", "20000", "--max-seconds", "90", "--eval-every-s", "1", "--wait-timeout-s",
                 "2")
    code, out, err, _ = finish(proc, 120)
    assert code == 0, err
    assert "evaluation stopped by an env step that took over 2 s (--wait-timeout-s; a hung env?)" in out, out
    assert summary(tmp_path)["status"] == "max_steps"
    assert our_segments(proc.pid) == set()


def test_sigterm_stops_a_run_whose_evaluation_env_hangs(tmp_path):
    before = spawned_pids()
    proc = start(tmp_path, "--max-seconds", "120", "--eval-every-s", "1", "--log-every-s", "0.2")
    # Training (a metrics row every 0.2 s shows it), then the first evaluation, 1 s on, hangs the learner for up to
    # the 30 s wait timeout. A fixed 8-s sleep was not enough beside another test in CI: the signal came before
    # any learning, and the run removed its directory as a run that learned nothing does.
    wait_training(tmp_path / "run")
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    code, out, err, took = finish(proc, 30)
    assert code == 143, err
    assert took < 5, took
    assert summary(tmp_path)["status"] == "interrupted"
    assert "evaluation stopped by a stop signal" in out, out  # it was the hung evaluation that the signal ended
    assert spawned_pids() - before == set() and our_segments(proc.pid) == set()


def test_hung_env_in_serial_mode_is_a_one_line_error_after_the_wait_timeout(tmp_path):
    t0 = time.monotonic()
    proc = start(tmp_path, "--serial", "--max-seconds", "120", "--wait-timeout-s", "3", "--eval-every-s", "0")
    code, out, err, _ = finish(proc, 60)
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "serial mode" in lines[0] and "hung env" in lines[0], err
    assert summary(tmp_path)["status"] == "error"
    assert time.monotonic() - t0 < 3 + 25  # the wait timeout, start-up and teardown (not the 120 s)
    assert our_segments(proc.pid) == set()


def test_hung_env_in_serial_mode_stops_at_max_seconds(tmp_path):
    t0 = time.monotonic()
    proc = start(tmp_path, "--serial", "--max-seconds", "6", "--eval-every-s", "0")
    code, out, err, _ = finish(proc, 60)
    assert code == 0, err
    assert summary(tmp_path)["status"] == "max_seconds"
    assert time.monotonic() - t0 < 6 + 15  # not the 30 s wait timeout on the hung env
    assert our_segments(proc.pid) == set()


def test_a_stop_at_start_up_is_at_once():
    """In `at_once` (the run's start-up: nothing learned yet to save) the first stop signal raises Interrupted
    where the main thread is, as a second Ctrl-C does later; a stop asked for before the block raises at its
    start; after it, a first signal only asks."""
    with StopSignals() as signals:
        with pytest.raises(Interrupted):
            with signals.at_once():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)  # TensorFlow's import, say
        assert signals.requested == "SIGINT"
        with pytest.raises(Interrupted):
            with signals.at_once():
                pass
    with StopSignals() as signals:
        with signals.at_once():
            pass
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert signals.requested == "SIGTERM"  # asked, nothing raised
