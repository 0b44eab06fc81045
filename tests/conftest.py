import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
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
