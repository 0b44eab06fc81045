"""Supervision and shutdown: killed actors are replaced, env errors are survived, Ctrl-C and a killed
learner leave nothing behind (Ray's session directories included). Stops before the run's own handling:
test_early_stops.py; non-finite numbers: test_nonfinite.py."""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from actorlearner import Config, checkpoint, train
from actorlearner.stack_dumps import STACKS_PREFIX, remove_stale_stack_dirs
from actorlearner.transport import remove_stale_segments
from conftest import (BACKENDS, ROOT, child_pids, interrupt, our_segments, ray_actor_pids, ray_pids, ray_sessions_of,
                      spawned_pids, start_cli, wait_for, wait_training)
from envs import CartPoleFailingOnce


def children_of(pid):
    """The actor processes (spawned) whose parent is `pid`."""
    return child_pids(pid) & spawned_pids()


def actors_of(proc, backend):
    """The PIDs of a CLI run's actors: its spawned children, or (Ray) the worker processes of our Ray actors."""
    return children_of(proc.pid) if backend == "local" else ray_actor_pids()


class LongRun:
    """A CLI run that would go on for two minutes, once it is training: the process, its actors' PIDs, and the
    Ray processes that were there before it (a Ray run must leave none of its own)."""

    def __init__(self, run_dir, backend):
        self.backend = backend
        self.ray_before = ray_pids() if backend == "ray" else set()
        self.proc = start_cli(run_dir, "--max-seconds", "120", "--no-stop-at-target", backend=backend)
        try:
            wait_training(run_dir)
            self.actors = actors_of(self.proc, backend)
            assert self.actors
        except BaseException:
            self.proc.kill()
            raise

    def assert_nothing_left(self):
        gone = wait_for(lambda: not any(os.path.exists(f"/proc/{p}") for p in self.actors), 5)
        assert gone, "actor processes remain"
        assert not [s for s in our_segments() if s.startswith(f"al_{self.proc.pid}_")], "segments left in /dev/shm"
        assert not glob.glob(os.path.join(tempfile.gettempdir(), f"{STACKS_PREFIX}{self.proc.pid}-*"))
        if self.backend == "ray":  # the Ray instance the run started is shut down, all its processes, its files
            assert wait_for(lambda: not ray_pids() - self.ray_before, 10), "Ray processes outlived the run"
            assert not ray_sessions_of(self.proc.pid), "the run's Ray session directory was left behind"


def _cmdline(pid) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b"ray::"  # gone


@pytest.mark.parametrize("backend", BACKENDS)
def test_killed_actor_is_replaced_and_training_finishes(tmp_path, backend):
    run_dir = tmp_path / "run"
    # Ray learns of a death seconds later than a process exit is seen (its health checks), so its run is longer:
    # at 10 s a CI run saw only 2 metrics lines after the restart. A step budget, not a time one: with another test
    # running beside, Ray's start-up took most of 15 s. Actors at the learner's priority: at nice +10 (CartPole's
    # default) beside another test's processes they got ~1/10 of a core, and a Ray run made 5-10 K steps/s.
    proc = start_cli(run_dir, "--max-steps", "1000000", "--max-seconds", "150", "--no-stop-at-target",
                     "--eval-every-s", "0", "--actor-nice", "0", backend=backend)
    try:
        wait_training(run_dir)
        victim = sorted(actors_of(proc, backend))[0]
        os.kill(victim, signal.SIGKILL)
        out, _ = proc.communicate(timeout=170)
    finally:
        proc.kill()
    assert proc.returncode == 0, out[-3000:]
    # An actor process's exit status is known; a Ray actor's death is known from Ray, which names no signal.
    died = "killed by SIGKILL" if backend == "local" else "its process died"
    assert f"actor 0 died ({died}" in out and "starting a replacement (restart 1)" in out, out[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["actor_restarts"] == 1 and summary["status"] == "max_steps", summary
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    after = [m for m in metrics if m["actor_restarts"] == 1]
    assert len(after) >= 3 and after[-1]["env_steps"] > after[0]["env_steps"]  # training went on


def test_env_error_is_reported_and_run_continues(tmp_path, capsys, no_leaks):
    summary = train(Config(env="cartpole-failing-once", num_actors=2, max_seconds=120, seed=1,
                           run_dir=str(tmp_path / "run")), env_fn=CartPoleFailingOnce)
    out = capsys.readouterr().out
    assert "raised while stepping: RuntimeError: simulated env failure at step 50; recreating it" in out
    assert summary["env_errors"] == 2  # once in each actor process (evaluation skips its failed episode uncounted)
    assert summary["actor_restarts"] == 0
    assert summary["solved"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigint_stops_cleanly_with_status_130(tmp_path, backend):
    run_dir = tmp_path / "run"
    run = LongRun(run_dir, backend)
    proc = run.proc
    out, took = interrupt(proc, times=1)
    assert proc.returncode == 130, out[-3000:]
    assert took < 10
    assert (run_dir / "policy.npz").exists() and (run_dir / "summary.json").exists()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    final = checkpoint.load(checkpoint.list_checkpoints(str(run_dir))[-1])
    assert final.meta["stats"]["learner_steps"] == summary["learner_steps"]  # written at the stop
    run.assert_nothing_left()


def test_second_sigint_exits_at_once_still_cleaning_up(tmp_path):
    run_dir = tmp_path / "run"
    run = LongRun(run_dir, "local")
    out, took = interrupt(run.proc, times=2)
    assert run.proc.returncode == 130, out[-3000:]
    assert took < 5
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"
    run.assert_nothing_left()


def test_ctrl_c_held_down_still_exits_130_and_cleans_up(tmp_path):
    """SIGINT every 20 ms until the process is gone: whichever phase of the stop and of the interpreter's
    teardown one lands in, the exit status stays 130 (a late one once killed the process: status -2)."""
    run_dir = tmp_path / "run"
    run = LongRun(run_dir, "local")
    proc = run.proc
    try:
        t = time.monotonic()
        while proc.poll() is None and time.monotonic() - t < 10:
            proc.send_signal(signal.SIGINT)
            time.sleep(0.02)
        out, _ = proc.communicate(timeout=5)
    finally:
        proc.kill()
    assert proc.returncode == 130, out[-3000:]
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"
    run.assert_nothing_left()


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigterm_stops_cleanly_with_status_143(tmp_path, backend):
    run_dir = tmp_path / "run"
    run = LongRun(run_dir, backend)
    proc = run.proc
    try:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 143, out[-3000:]
    assert "SIGTERM: stopping (Ctrl-C or a SIGINT to stop at once)" in out, out[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["stop_signal"] == "SIGTERM"
    assert checkpoint.list_checkpoints(str(run_dir))
    run.assert_nothing_left()


def test_a_closed_output_pipe_does_not_end_the_run(tmp_path):
    """`actorlearner train ... | head -2`, or a `tee` that dies: writes to the pipe fail (EPIPE). The run goes on
    to its limit with its output silenced, where it used to stop with a BrokenPipeError (status 1)."""
    run_dir = tmp_path / "run"
    # A step budget: a time one (6 s) ended in start-up, before any learner step, with another test running beside.
    proc = subprocess.Popen([sys.executable, "-m", "actorlearner", "train", "--run-dir", str(run_dir), "--max-steps",
                             "20000", "--max-seconds", "60", "--no-stop-at-target", "--eval-every-s", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    try:
        assert proc.stdout.readline().startswith("config:")
        proc.stdout.close()  # the reader goes away
        assert proc.wait(60) == 0
    finally:
        proc.kill()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "max_steps" and summary["learner_steps"] > 0, summary


def _terminal_child(fcntl, termios) -> None:
    """In the child, before the run starts: the pty becomes its controlling terminal, and SIGHUP gets its default
    disposition back, as in a run started from a shell. Under `nohup pytest` the run would inherit SIGHUP ignored
    and rightly keep it so (stopping.py), and this test would fail for the wrong reason."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_terminal_hangup_stops_cleanly_with_status_129(tmp_path):
    """An ssh connection that drops: the run's terminal hangs up, every write to it fails from then on (EIO), and
    SIGHUP reaches the run and (from the shell that started it) its whole process group. The run stops as on
    SIGTERM (final checkpoint, policy, summary; status 128 + 1) instead of dying on the spot with its shared
    memory left behind. Its actors ignore SIGHUP and end with it: killed by the shell's signal, one was restarted
    during the stop in 1 of 13 runs of this test (actor_restarts 1)."""
    import fcntl
    import pty
    import select
    import termios

    run_dir = tmp_path / "run"
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "actorlearner", "train", "--run-dir", str(run_dir), "--max-seconds",
                             "120", "--no-stop-at-target"], stdin=slave, stdout=slave, stderr=slave, cwd=ROOT,
                            start_new_session=True,  # the run leads a session whose terminal is the pty:
                            preexec_fn=lambda: _terminal_child(fcntl, termios))
    os.close(slave)
    try:
        metrics, deadline = run_dir / "metrics.jsonl", time.monotonic() + 90
        while not (metrics.exists() and metrics.stat().st_size > 0):  # reading the terminal, as a shell does
            assert time.monotonic() < deadline and proc.poll() is None, "training never started"
            if select.select([master], [], [], 0.2)[0]:
                os.read(master, 65536)  # EIO here: the run ended before training
        actors = children_of(proc.pid)
        assert actors
        os.close(master)  # the terminal goes away: the kernel sends SIGHUP to the run, its session's leader
        master = None
        os.killpg(proc.pid, signal.SIGHUP)  # as a shell does to its jobs when its own terminal hangs up
        assert proc.wait(15) == 129
    finally:
        proc.kill()
        if master is not None:
            os.close(master)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["stop_signal"] == "SIGHUP", summary
    assert summary["actor_restarts"] == 0, summary
    assert (run_dir / "policy.npz").exists() and checkpoint.list_checkpoints(str(run_dir))
    assert wait_for(lambda: not any(os.path.exists(f"/proc/{p}") for p in actors), 5), "actor processes remain"
    assert not [s for s in our_segments() if s.startswith(f"al_{proc.pid}_")], "segments left in /dev/shm"


@pytest.mark.parametrize("backend", BACKENDS)
def test_killed_learner_takes_its_actors_with_it(tmp_path, backend, monkeypatch):
    # The run gets a temporary directory of its own (short: Ray's socket paths live there): a run that starts in
    # the other pytest worker meanwhile would remove this killed run's leftovers from the shared one (CI did).
    private_tmp = tempfile.mkdtemp(prefix="al-kill-")
    monkeypatch.setenv("TMPDIR", private_tmp)
    monkeypatch.setattr(tempfile, "tempdir", private_tmp)
    try:
        _kill_learner_and_check_leftovers(tmp_path, backend)
    finally:
        shutil.rmtree(private_tmp, ignore_errors=True)


def _kill_learner_and_check_leftovers(tmp_path, backend):
    run = LongRun(tmp_path / "run", backend)
    proc = run.proc
    try:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        gone = wait_for(lambda: not any(os.path.exists(f"/proc/{p}") for p in run.actors), timeout=5)
        if backend == "ray":
            # Ray's servers go with the learner; its two node agents live on, reparented, until the next run
            # that starts Ray removes them (as it removes a killed run's shared memory).
            from actorlearner.ray_cluster import remove_orphaned_ray_agents

            servers_gone = wait_for(lambda: all(b"ray::" in _cmdline(p) for p in ray_pids() - run.ray_before), 10)
            assert servers_gone, "the run's Ray servers outlived their learner"
            remove_orphaned_ray_agents()
            gone = gone and wait_for(lambda: not ray_pids() - run.ray_before, timeout=5)
            # So do its session files (no cleanup ran), until the next run that starts Ray removes them.
            from actorlearner.ray_cluster import remove_stale_ray_sessions

            sessions = ray_sessions_of(proc.pid)
            assert len(sessions) == 1, sessions
            assert sessions == remove_stale_ray_sessions(os.path.dirname(sessions[0]))
            assert not os.path.exists(sessions[0])
    finally:
        proc.kill()
    assert gone, "actors (or the run's Ray instance) outlived their learner"
    # Whatever segments (and actors' stack-file directory) the killed run left are removed by the next start.
    remove_stale_segments()
    assert not [s for s in our_segments() if s.startswith(f"al_{proc.pid}_")]
    stack_dirs = glob.glob(os.path.join(tempfile.gettempdir(), f"{STACKS_PREFIX}{proc.pid}-*"))
    assert len(stack_dirs) == (1 if backend == "local" else 0), stack_dirs  # no cleanup ran: it was killed
    assert set(stack_dirs) <= set(remove_stale_stack_dirs())
    assert not any(os.path.exists(d) for d in stack_dirs)


def test_only_ray_sessions_of_our_killed_runs_are_removed(tmp_path):
    """A Ray session directory goes when it is marked as a run's and that learner is gone; a live run's, and
    any a Ray user started (unmarked), stay. Ray's session_latest link goes with the directory it points to."""
    from actorlearner.ray_cluster import SESSION_MARK, ray_sessions, remove_stale_ray_sessions

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for name, pid in (("session_dead", dead.pid), ("session_live", os.getpid()), ("session_users", None)):
        (tmp_path / name / "logs").mkdir(parents=True)
        if pid is not None:
            (tmp_path / name / SESSION_MARK).write_text(str(pid))
    os.symlink(tmp_path / "session_dead", tmp_path / "session_latest")
    assert ray_sessions(str(tmp_path)) == {str(tmp_path / "session_dead"): dead.pid,
                                          str(tmp_path / "session_live"): os.getpid()}
    assert remove_stale_ray_sessions(str(tmp_path)) == [str(tmp_path / "session_dead")]
    assert sorted(os.listdir(tmp_path)) == ["session_live", "session_users"]
    assert remove_stale_ray_sessions(str(tmp_path / "absent")) == []


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_stop_signal_stops_a_script_that_trains_in_a_loop(tmp_path, sig):
    """train() stops its run gracefully, then passes the signal on (KeyboardInterrupt; SystemExit(143) for
    SIGTERM): it returned the summary, and a script looping over seeds went on to its next run each time.
    CartPole (gymnasium's own, no Box2D in CI), trained on past its target so that only the signal stops it."""
    from conftest import our_segments, spawned_pids

    script = tmp_path / "sweep.py"
    script.write_text(
        "from actorlearner import Config, train\n"
        "if __name__ == '__main__':\n"
        "    try:\n"
        "        for seed in (1, 2):\n"
        f"            train(Config(seed=seed, max_seconds=60, stop_at_target=False, eval_every_s=0, quiet=True,\n"
        f"                         run_dir={str(tmp_path)!r} + f'/run{{seed}}'))\n"
        "    except KeyboardInterrupt:\n"
        "        raise SystemExit(7)\n")
    before, segments = spawned_pids(), our_segments()
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=tmp_path)
    deadline, metrics = time.monotonic() + 60, tmp_path / "run1" / "metrics.jsonl"
    while not metrics.exists() or not metrics.stat().st_size:  # training, past start-up
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()[0]
        time.sleep(0.2)
    proc.send_signal(getattr(signal, sig))
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == (7 if sig == "SIGINT" else 143), out[-3000:]
    summary = json.loads((tmp_path / "run1" / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["stop_signal"] == sig
    assert (tmp_path / "run1" / "policy.npz").exists()  # the graceful stop's work, before the signal went on
    assert not (tmp_path / "run2").exists()  # the loop stopped with it
    assert spawned_pids() - before == set() and our_segments() - segments == set()


def test_orphaned_ray_agents_are_found_by_title_or_by_script():
    """A run killed inside ray.init can leave Ray's node agents before they set their process titles (they read
    `python -u .../ray/dashboard/agent.py ...` for ~1 s): those are removed too. An agent whose parent is a raylet
    (a cluster that is up) stays."""
    from actorlearner.ray_cluster import remove_orphaned_ray_agents

    sleep = "import sys, time; time.sleep(60)"
    orphan = subprocess.Popen([sys.executable, "-c", sleep, "/venv/ray/dashboard/agent.py", "--node-ip-address"])
    # A "raylet" whose child is an agent script: the cluster is up, its agent is left alone.
    raylet = subprocess.Popen([sys.executable, "-c", "import subprocess, sys; subprocess.Popen([sys.executable, "
                               f"'-c', {sleep!r}, '/venv/ray/_private/runtime_env/agent/main.py']).wait()",
                               "/venv/ray/core/src/ray/raylet/raylet"])
    # A raylet whose parent is no raylet (a run's own instance: the learner; `ray start`'s: init) names both agent
    # scripts in its arguments. It was taken for an orphaned agent: a run that started beside another Ray instance
    # killed that instance's raylet ("The current node timed out during startup", or a run that never trained).
    named = subprocess.Popen([sys.executable, "-c", sleep, "/venv/ray/core/src/ray/raylet/raylet",
                              "--dashboard_agent_command=python -u /venv/ray/dashboard/agent.py --node-id=1",
                              "--runtime_env_agent_command=python -u /venv/ray/_private/runtime_env/agent/main.py"])
    try:
        assert wait_for(lambda: child_pids(raylet.pid), 10)
        kept = child_pids(raylet.pid)
        removed = remove_orphaned_ray_agents()
        assert orphan.pid in removed and named.pid not in removed
        assert orphan.wait(5) == -signal.SIGKILL
        assert all(os.path.exists(f"/proc/{p}") for p in kept) and named.poll() is None
    finally:
        for p in child_pids(raylet.pid):
            os.kill(p, signal.SIGKILL)  # its "raylet" waits for it, then ends (no zombie left to this container)
        raylet.wait(10)
        for proc in (orphan, named):
            proc.kill()
            proc.wait(5)

