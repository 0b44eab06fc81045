"""Stops before a run's own signal handling is in place, or before it has learned anything: the input's checks,
the launcher's first look at the env, the run directory's writing, Ray's start, TensorFlow's import. The command
ends at once with the signal's status, and leaves no run directory that would refuse the same command's retry,
and no process. Stops in a running run: test_reliability.py."""

import os
import signal
import subprocess
import sys
import time

import pytest

from actorlearner import Config, train
from actorlearner.ray_cluster import own_sessions, ray_temp_root
from conftest import ROOT, interrupt, needs_ray, our_segments, ray_pids, spawned_pids, start_cli, wait_for


@pytest.mark.parametrize("sig, says", [("SIGINT", "interrupted before training started"),
                                       ("SIGTERM", "stopped by SIGTERM before training started")])
def test_a_stop_signal_while_the_launcher_looks_at_the_env_stops_it(tmp_path, sig, says):
    """A stop signal before the run's own signal handling is in place (here: the launcher's first look at an env
    whose reset hangs) ends the command at once with the signal's status: Ctrl-C was taken for a late one after a
    run and ignored (the command waited for --wait-timeout-s and failed with the env's error, or, an env that was
    only slow, trained), and SIGTERM killed the process on the spot."""
    proc = subprocess.Popen([sys.executable, "-m", "actorlearner", "train", "--run-dir", str(tmp_path / "run"),
                             "--env", "faulty_envs:HangsAtFirstReset-v0"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "tests"),
                                 "RESET_MARKER": str(tmp_path / "reset")})
    try:
        # The signal goes once the launcher is in the env's reset (which sleeps for an hour), not after a fixed
        # time: on a busy machine 3 s could end inside Python's imports, before the command's handlers exist.
        assert wait_for(lambda: (tmp_path / "reset").exists() or proc.poll() is not None, 60)
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        proc.send_signal(getattr(signal, sig))
        out, _ = proc.communicate(timeout=5)
    finally:
        proc.kill()
    assert proc.returncode == 128 + getattr(signal, sig), out[-3000:]
    assert out.strip().splitlines()[-1] == f"actorlearner: {says}", out[-3000:]
    assert not (tmp_path / "run").exists()


def test_a_run_stopped_before_it_learned_anything_leaves_no_directory(tmp_path):
    """Ctrl-C just after the start-up line (the run directory made; the actors starting, the learner importing
    TensorFlow): the directory held only the run's settings (and an "interrupted" summary), and the same command
    was then refused ("holds a run that stopped before its first checkpoint"). Now it is removed, and nothing
    else is left either."""
    before = spawned_pids()
    proc = start_cli(tmp_path / "run", "--max-seconds", "60")
    try:
        deadline = time.monotonic() + 60
        while not proc.stdout.readline().startswith("actorlearner: CartPole-v1"):  # the start-up line
            assert time.monotonic() < deadline and proc.poll() is None
        out, _ = interrupt(proc, 1)  # the learner imports TensorFlow for 2 s or more after that line
    finally:
        proc.kill()
    assert proc.returncode == 130, out
    last = out.strip().splitlines()[-1]  # the signal came in the run (the first) or just before its start
    assert (last.endswith(f"{tmp_path / 'run'} removed, so the same command can run again")
            or last == "actorlearner: interrupted before training started"), out
    assert not (tmp_path / "run").exists()
    assert wait_for(lambda: not spawned_pids() - before, 5) and our_segments(proc.pid) == set()


def test_a_stop_while_the_run_directory_is_written_leaves_none(tmp_path, monkeypatch):
    """A Ctrl-C (or a full disk) just after config.json is written, before the start-up line: the directory held
    config.json and blocked the same command's retry. Now it goes, as for a stop later in start-up."""
    from actorlearner.run_files import RunDir

    write_json = RunDir.write_json

    def stopped_after_config(self, name, obj):
        write_json(self, name, obj)
        if name == "config.json":
            raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "write_json", stopped_after_config)
    with pytest.raises(KeyboardInterrupt):
        train(Config(serial=True, num_actors=1, max_steps=1_280, run_dir=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()


@needs_ray
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_stop_signal_while_ray_starts_stops_the_run_and_its_ray_instance(tmp_path, sig):
    """Two Ctrl-Cs while the run's Ray instance starts (ray.init, 2-4 s): both were ignored and the run trained on;
    a second one inside Ray's shutdown crashed the process at exit (status -11). A SIGTERM there went through
    Ray's own handler (status 15). Now the start stops with the signal's status, Ray's processes go (the two node
    agents lived on when ray.init was stopped midway) and no run directory is left."""
    before = ray_pids()
    proc = start_cli(tmp_path / "run", "--max-seconds", "120", "--no-stop-at-target", backend="ray")
    try:  # Ray's servers are up (ray.init has not returned yet, most often)
        assert wait_for(lambda: ray_pids() - before or proc.poll() is not None, 30), "Ray did not start"
    except BaseException:
        proc.kill()
        raise
    if sig == "SIGINT":
        out, took = interrupt(proc, times=2)
    else:
        try:
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=10)
        finally:
            proc.kill()
        took = 0
    assert proc.returncode == 128 + getattr(signal, sig) and took < 10, out[-3000:]
    assert wait_for(lambda: not ray_pids() - before, 10), f"Ray processes outlived the run: {ray_pids() - before}"
    # Nor its session directory (gcs_server's logs and sockets), which ray.init names after the run's PID.
    assert own_sessions(ray_temp_root(), proc.pid) == []
    if "before training started" in out:  # else ray.init had returned: the run stopped as a run does
        assert not (tmp_path / "run").exists()
