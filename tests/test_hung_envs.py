"""An env that hangs inside the learner process (evaluation, serial mode) cannot hold the run: --max-seconds,
SIGTERM and the wait timeout still end it within seconds, with its summary written and nothing left behind."""

import json
import os
import signal
import subprocess
import sys
import time

from conftest import ROOT, our_segments, spawned_pids


def start(tmp_path, *args):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    return subprocess.Popen([sys.executable, "-m", "actorlearner", "train", "--env", "custom_envs:HangInLearner-v0",
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


def test_sigterm_stops_a_run_whose_evaluation_env_hangs(tmp_path):
    before = spawned_pids()
    proc = start(tmp_path, "--max-seconds", "120", "--eval-every-s", "1")
    time.sleep(8)  # start-up, then the first evaluation hangs (for up to the 30 s wait timeout)
    proc.send_signal(signal.SIGTERM)
    code, out, err, took = finish(proc, 30)
    assert code == 143, err
    assert took < 5, took
    assert summary(tmp_path)["status"] == "interrupted"
    assert spawned_pids() - before == set() and our_segments(proc.pid) == set()


def test_hung_env_in_serial_mode_is_a_one_line_error_after_the_wait_timeout(tmp_path):
    t0 = time.monotonic()
    proc = start(tmp_path, "--serial", "--max-seconds", "120", "--wait-timeout-s", "3", "--eval-every-s", "0")
    code, out, err, _ = finish(proc, 60)
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "serial mode" in lines[0] and "hung env" in lines[0], err
    assert summary(tmp_path)["status"] == "error"
    assert time.monotonic() - t0 < 3 + 15  # the wait timeout, start-up and teardown
    assert our_segments(proc.pid) == set()


def test_hung_env_in_serial_mode_stops_at_max_seconds(tmp_path):
    t0 = time.monotonic()
    proc = start(tmp_path, "--serial", "--max-seconds", "6", "--eval-every-s", "0")
    code, out, err, _ = finish(proc, 60)
    assert code == 0, err
    assert summary(tmp_path)["status"] == "max_seconds"
    assert time.monotonic() - t0 < 6 + 10
    assert our_segments(proc.pid) == set()
