import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Ray in the tests (this process and every run it starts) uses the loopback address only, the single-machine
# mode Ray uses on macOS and Windows: no test reaches anything outside this machine. Ray reads it at import.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ROOT = pathlib.Path(__file__).resolve().parent.parent


def our_segments(pid=None) -> set:
    """Our shared-memory segments: every run's, or those of the run whose learner is process `pid`."""
    prefix = "al_" if pid is None else f"al_{pid}_"
    return {n for n in os.listdir("/dev/shm") if n.startswith(prefix)}


@pytest.fixture
def no_leaks():
    """Asserts that the test left no shared-memory segment of ours and no child process behind."""
    import multiprocessing as mp

    before = our_segments(os.getpid())  # this process's runs only: others may run on the machine meanwhile
    yield
    assert not mp.active_children(), f"child processes left: {mp.active_children()}"
    assert our_segments(os.getpid()) - before == set(), "shared-memory segments left in /dev/shm"


def spawned_pids() -> set:
    """PIDs of live multiprocessing-spawned children (actor processes look like this)."""
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if b"spawn_main" in cmd:
            pids.add(int(entry))
    return pids


def ray_pids() -> set:
    """PIDs of Ray's processes on this machine: its servers (gcs_server, raylet, monitors) and its workers."""
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ")
        except OSError:
            continue
        if any(mark in cmd for mark in (b"ray::", b"gcs_server", b"raylet", b"ray/_private/", b"ray/dashboard/")):
            pids.add(int(entry))
    return pids


def ray_actor_pids() -> set:
    """PIDs of our Ray actors (Ray titles a worker's process after the actor class it runs)."""
    out = set()
    for pid in ray_pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"ActorHost" in f.read():
                    out.add(pid)
        except OSError:
            pass
    return out


# The backends a reliability or learning test runs on: local actor processes, and Ray actors where Ray is
# installed (the ray extra; CI installs it). Serial mode has no actor processes to kill or signal.
BACKENDS = ["local", pytest.param("ray", marks=pytest.mark.skipif(
    __import__("importlib").util.find_spec("ray") is None,
    reason="Ray is not installed (the ray extra: pip install -e '.[ray]')"))]
