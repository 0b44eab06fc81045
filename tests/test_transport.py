"""The weight store never yields a torn vector; slots hold sentinels until written; names are unique."""

import multiprocessing as mp
import time

import numpy as np

from actorlearner.transport import SlotPool, WeightStore, new_run_token, remove_stale_segments
from conftest import with_small_tmpfs

SIZE = 1_000_000  # big enough that a copy takes long compared with a publish


READS = 20  # each reader's consistent reads of distinct versions while the writer publishes
GAP_S = 0.001  # the writer's pause between publishes: a learner step (>= 1.5 ms on CartPole) comes between two


def _writer(spec, ready, stop):
    from actorlearner.transport import attach_weights

    store = attach_weights(spec)
    ready.wait(30)
    vec = np.empty(spec[0], np.float32)
    v, deadline = 1, time.monotonic() + 60
    while not stop.is_set() and time.monotonic() < deadline:
        v += 1
        vec.fill(v)
        store.publish(vec)
        # Without a pause a reader's 4-MB copy fits only where the writer happens to be descheduled: on 2
        # cores, with 3 processes, a reader once found none in read_if_newer's 5 s and timed out. Copies
        # still overlap writes in most attempts, which is what the seqlock must survive.
        time.sleep(GAP_S)
    store.close()


def _reader(spec, result, ready):
    from actorlearner.transport import attach_weights

    store = attach_weights(spec)
    ready.wait(30)
    reads, torn, known = 0, 0, 0
    deadline = time.monotonic() + 30
    # Until READS reads, not for a fixed time: a reader copying 4 MB succeeds only in the short gaps of a
    # writer that never pauses (far from the learner's pace), so a fixed time gave a flaky count.
    while reads < READS and time.monotonic() < deadline:
        got = store.read_if_newer(known)
        if got is None:
            continue
        version, vec = got
        known = version
        reads += 1
        if not (vec[0] == vec[-1] == vec[SIZE // 2] and np.all(vec == vec[0]) and int(vec[0]) == version):
            torn += 1
    store.close()
    result.put((reads, torn))


def test_weight_store_never_torn_under_concurrent_readers(no_leaks):
    ctx = mp.get_context("spawn")
    store = WeightStore(SIZE, new_run_token())
    store.publish(np.ones(SIZE, np.float32))
    ready, stop, result = ctx.Event(), ctx.Event(), ctx.Queue()
    readers = [ctx.Process(target=_reader, args=(store.spec(), result, ready)) for _ in range(2)]
    writer = ctx.Process(target=_writer, args=(store.spec(), ready, stop))
    try:
        for p in readers + [writer]:
            p.start()
        ready.set()
        outcomes = [result.get(timeout=60) for _ in readers]
        writer_alive = writer.is_alive()  # it was still publishing when the readers finished
        stop.set()
        for p in readers + [writer]:
            p.join(30)
            assert p.exitcode == 0
    finally:
        for p in readers + [writer]:
            if p.is_alive():
                p.kill()
        store.close()
    assert all(torn == 0 for _, torn in outcomes), outcomes
    assert all(reads == READS for reads, _ in outcomes), outcomes  # each read a newer version: they raced
    assert writer_alive


def test_read_if_newer_only_returns_new_versions():
    store = WeightStore(8, None)
    assert store.read_if_newer(0) is None  # nothing published yet
    assert store.publish(np.arange(8, dtype=np.float32)) == 1
    version, vec = store.read_if_newer(0)
    assert version == 1 and vec.tolist() == list(range(8))
    assert store.read_if_newer(1) is None
    store.publish(np.zeros(8, np.float32))
    assert store.read_if_newer(1)[0] == 2
    store.close()


def test_a_resumed_store_hands_out_nothing_before_its_first_publish(no_leaks):
    """A resumed run's store starts at the checkpoint's version; until the learner publishes the restored
    weights an actor has nothing to read (actors once read the NaN placeholder and poisoned the first batch)."""
    store = WeightStore(3, new_run_token(), first_version=7)
    reader = WeightStore(3, store.token, create=False)  # as an actor process attaches it
    try:
        assert reader.version == 7 and reader.read_if_newer(0) is None
        store.publish(np.arange(3, dtype=np.float32))
        version, flat = reader.read_if_newer(0)
        assert version == 8 and flat.tolist() == [0.0, 1.0, 2.0]
    finally:
        reader.close()
        store.close()


def test_fresh_slots_hold_sentinels_and_gather_joins_envs():
    fields = {"x": ((3, 2), np.float32), "a": ((2, 2), np.int32)}
    pool = SlotPool(fields, 2, None)
    assert np.isnan(pool.arrays["x"]).all()
    assert (pool.arrays["a"] == np.iinfo(np.int32).max).all()
    pool.arrays["x"][0] = 1.0
    pool.arrays["x"][1] = 2.0
    batch = pool.gather([1, 0])
    assert batch["x"].shape == (3, 4)
    assert batch["x"][:, :2].tolist() == [[2.0, 2.0]] * 3 and batch["x"][:, 2:].tolist() == [[1.0, 1.0]] * 3
    pool.close()


def test_segment_names_unique_and_stale_ones_removed(no_leaks):
    assert new_run_token() != new_run_token()
    from multiprocessing import shared_memory

    # A segment named as if created by a process that no longer exists (pid 2**22 + 7 is above pid_max
    # on this kernel's default, so no live process can own it).
    dead = shared_memory.SharedMemory(name=f"al_{2**22 + 7}_deadbeef_w_weights", create=True, size=16)
    dead.close()
    from multiprocessing import resource_tracker

    resource_tracker.unregister(dead._name, "shared_memory")  # we test our own cleanup, not Python's
    live = WeightStore(4, new_run_token())
    removed = remove_stale_segments()
    assert f"al_{2**22 + 7}_deadbeef_w_weights" in removed
    assert live.token.split("_", 2)[1] not in "".join(removed)
    live.close()


def test_a_full_dev_shm_is_an_error_at_creation_not_a_sigbus_later():
    """The kernel grants a tmpfs segment of any size and kills the first process that touches a page past the
    limit with SIGBUS. Created segments have their pages reserved, so a pool that does not fit raises
    SharedMemoryFull, leaves no segment behind, and what fits takes the room segments_bytes says."""
    code = """
import os
import numpy as np
from actorlearner.transport import (SharedMemoryFull, SlotPool, WeightStore, new_run_token, segments_bytes,
                                    shared_memory_free)
fields = {"obs": ((33, 16, 84, 84, 4), np.uint8), "rewards": ((32, 16), np.float32)}
free = shared_memory_free()
pool = SlotPool(fields, 2, new_run_token())  # ~24 MB: fits in 32 MB
assert free - shared_memory_free() == segments_bytes(SlotPool.specs(fields, 2)), (free, shared_memory_free())
try:
    SlotPool(fields, 2, new_run_token())  # a second one does not
except SharedMemoryFull as e:
    print("full:", e)
pool.close()
assert os.listdir("/dev/shm") == [], os.listdir("/dev/shm")
store = WeightStore(1000, new_run_token())
assert segments_bytes(WeightStore.specs(1000)) == 8192
store.close()
print("ok")
"""
    proc = with_small_tmpfs("32m", "/dev/shm", ["-c", code])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "full: no room for a" in proc.stdout and proc.stdout.strip().endswith("ok"), proc.stdout


def test_a_run_that_does_not_fit_in_dev_shm_is_refused_in_one_line(tmp_path):
    """Before any process starts or the run directory is made: what is needed, what is free, and what helps."""
    run = tmp_path / "run"
    proc = with_small_tmpfs("64k", "/dev/shm", ["-m", "actorlearner", "train", "--env", "CartPole-v1", "--run-dir",
                                                str(run)])
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
    assert "shared memory (/dev/shm) is too small" in lines[0] and "--shm-size" in lines[0], lines[0]
    assert "MB are free" in lines[0]
    assert not run.exists()


def test_a_read_only_dev_shm_is_one_line_before_anything_starts(tmp_path):
    """It was `could not write /al_<pid>_<token>_s_obs: Read-only file system`, after the start-up lines."""
    run = tmp_path / "run"
    proc = with_small_tmpfs("1m", "/dev/shm", ["-m", "actorlearner", "train", "--env", "CartPole-v1", "--run-dir",
                                               str(run)], options=",ro")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
    assert "shared memory (/dev/shm) is not writable here" in lines[0] and "--serial" in lines[0], lines[0]
    assert not run.exists()
