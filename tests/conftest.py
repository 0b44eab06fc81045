import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

from actorlearner.blas import one_blas_thread

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Ray in the tests (this process and every run it starts) uses the loopback address only, the single-machine
# mode Ray uses on macOS and Windows: no test reaches anything outside this machine. Ray reads it at import.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ROOT = pathlib.Path(__file__).resolve().parent.parent


# Under pytest-xdist (the README's `-n 2`) every process a worker starts (and each of theirs: runs, actors, Ray's
# servers and workers) inherits its PYTEST_XDIST_WORKER, so the leak checks below count this worker's processes and
# segments only, not those of the test running beside it. Without xdist they count all.
_WORKER_MARK = (f"\0PYTEST_XDIST_WORKER={os.environ['PYTEST_XDIST_WORKER']}\0".encode()
                if "PYTEST_XDIST_WORKER" in os.environ else None)
if _WORKER_MARK is not None and hasattr(os, "setsid"):
    # Each worker leads its own session, so Linux's scheduler autogroups (sched_autogroup_enabled, on by default)
    # give the two workers' process trees equal shares of the CPU, and a run's niceness counts only inside its own
    # tree, as it does alone. In one session, a run's actors at nice +10 (CartPole) got ~1/10 of a core beside the
    # other worker's nice-0 processes (a Ray run: 5-10 K env steps/s beside an Acrobot run, 120-160 K alone).
    try:
        os.setsid()
    except OSError:  # already a session or group leader: it keeps the session it has
        pass
# Tests step Atari envs in this process too (env batches): numpy's BLAS at one thread here, as in a run's learner
# and in eval (actorlearner/blas.py). Beside the other worker, OpenBLAS's spinning threads made 1,400 Breakout steps
# take 48 s in one CI run (7 s alone). Set here, not through OPENBLAS_NUM_THREADS, which the runs a test starts
# would inherit: they must show the product's own setting.
one_blas_thread()


def pytest_keyboard_interrupt(excinfo):
    """Under xdist, in the controlling process: a Ctrl-C in the terminal reaches only its process group now that
    each worker leads its own session (above). It is passed on to each worker's group (the worker, the runs its test
    started, their actors), as the terminal did before: they stop as on a Ctrl-C, and nothing lingers."""
    if _WORKER_MARK is not None:
        return
    for pid in child_pids(os.getpid()):  # the workers are the children that lead their own group
        try:
            if os.getpgid(pid) == pid != os.getpgid(0):
                os.killpg(pid, signal.SIGINT)
        except OSError:  # gone already
            pass


def _this_workers(pid) -> bool:
    """Whether live process `pid` was started under this xdist worker (always, without xdist); False if it is gone."""
    if _WORKER_MARK is None:
        return True
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return _WORKER_MARK in b"\0" + f.read()
    except OSError:
        return False


def our_segments(pid=None) -> set:
    """Our shared-memory segments: every run's, or those of the run whose learner is process `pid`. Under xdist,
    "every run's" leaves out those whose learner is alive under the other worker (a dead learner's are counted)."""
    prefix = "al_" if pid is None else f"al_{pid}_"
    names = {n for n in os.listdir("/dev/shm") if n.startswith(prefix)}
    if pid is None and _WORKER_MARK is not None:
        owner = {n: n.split("_")[1] for n in names}
        names = {n for n in names if not os.path.exists(f"/proc/{owner[n]}") or _this_workers(owner[n])}
    return names


@pytest.fixture
def no_leaks():
    """Asserts that the test left no shared-memory segment of ours and no child process behind."""
    import multiprocessing as mp

    before = our_segments(os.getpid())  # this process's runs only: others may run on the machine meanwhile
    yield
    assert not mp.active_children(), f"child processes left: {mp.active_children()}"
    assert our_segments(os.getpid()) - before == set(), "shared-memory segments left in /dev/shm"


def _pids_whose_cmdline(has) -> set:
    """PIDs of live processes whose command line (arguments joined by NULs) passes `has` (this xdist worker's)."""
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if has(cmd) and _this_workers(entry):
            pids.add(int(entry))
    return pids


def spawned_pids() -> set:
    """PIDs of live multiprocessing-spawned children (actor processes look like this)."""
    return _pids_whose_cmdline(lambda cmd: b"spawn_main" in cmd)


def ray_pids() -> set:
    """PIDs of Ray's processes on this machine: its servers (gcs_server, raylet, monitors) and its workers."""
    marks = (b"ray::", b"gcs_server", b"raylet", b"ray/_private/", b"ray/dashboard/")
    return _pids_whose_cmdline(lambda cmd: any(mark in cmd for mark in marks))


def ray_sessions_of(pid: int) -> list:
    """The Ray session directories (under Ray's default temp root) that the run with learner `pid` started."""
    from actorlearner.ray_cluster import ray_sessions, ray_temp_root

    return [path for path, owner in ray_sessions(ray_temp_root()).items() if owner == pid]


def ray_actor_pids() -> set:
    """PIDs of our Ray actors (Ray titles a worker's process after the actor class it runs)."""
    return _pids_whose_cmdline(lambda cmd: cmd.startswith(b"ray::ActorHost"))


def wait_for(predicate, timeout, step=0.05) -> bool:
    """Polls predicate() until it is true (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def wait_training(run_dir, timeout=90) -> None:
    """Waits until a CLI run in run_dir has learned on env steps: a metrics row with some. Its first row comes a
    second after start-up, training or not: a Ray run whose actor was killed at that row, with a second test
    running beside, had not delivered an unroll yet, and its 15 s ended before Ray had told of the death."""
    metrics = run_dir / "metrics.jsonl"

    def trained() -> bool:
        if not metrics.exists():
            return False
        rows = [line for line in metrics.read_text().splitlines() if line.endswith("}")]  # not one half-written
        return bool(rows) and json.loads(rows[-1])["env_steps"] > 0

    assert wait_for(trained, timeout), "training never started"


# The backends a reliability or learning test runs on: local actor processes, and Ray actors where Ray is
# installed (the ray extra; CI installs it). Serial mode has no actor processes to kill or signal.
needs_ray = pytest.mark.skipif(__import__("importlib").util.find_spec("ray") is None,
                               reason="Ray is not installed (the ray extra: pip install -e '.[ray]')")
BACKENDS = ["local", pytest.param("ray", marks=needs_ray)]


def with_small_tmpfs(size: str, mount_point: str, argv: list, options: str = "",
                     **kwargs) -> subprocess.CompletedProcess:
    """Runs `python argv...` with a tmpfs of `size` (`64m`, `300k`; `options` more mount options, as `,ro`) mounted at
    `mount_point` in a mount namespace of its own (the machine's file systems are not touched): /dev/shm as Docker
    sizes it, a full disk. Skips where making one needs rights the test lacks."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode:
        pytest.skip("a private mount namespace (unshare -m) needs root or CAP_SYS_ADMIN here")
    script = f'mkdir -p {mount_point} && mount -t tmpfs -o size={size}{options} tmpfs {mount_point} && exec "$@"'
    return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", sys.executable, *argv], capture_output=True,
                          text=True, cwd=ROOT, **{"timeout": 180, **kwargs})


def start_cli(run_dir, *flags, backend="local"):
    """`actorlearner train` in a subprocess (from the repository root), its stderr in its stdout."""
    return subprocess.Popen([sys.executable, "-m", "actorlearner", "train", "--run-dir", str(run_dir),
                             "--backend", backend, *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)


def interrupt(proc, times: int):
    """Sends SIGINT `times` times (50 ms apart); returns (output, seconds until the process exited)."""
    try:
        t = time.monotonic()
        for i in range(times):
            if i:
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
        return out, time.monotonic() - t
    finally:
        proc.kill()


def child_pids(pid) -> set:
    """The PIDs whose parent is `pid`, from /proc."""
    out = set()
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                if entry.isdigit() and int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    out.add(int(entry))
        except OSError:
            pass
    return out
