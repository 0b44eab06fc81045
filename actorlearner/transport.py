"""Moving unrolls actor -> learner and weights learner -> actors, in shared memory or in-process.

Unrolls: a pool of preallocated slots, one array per unroll field shaped `[n_slots, ...]`. Only slot
indices and small messages travel, through one duplex channel per actor (a multiprocessing Pipe, or
`LocalChannel` in serial mode): learner -> actor "fill slot i", actor -> learner "slot i is full, these
episodes ended". Big arrays are never pickled.

Weights: one block holding a version counter and the flat float32 parameter vector, guarded by a seqlock
(the counter is odd while a write is in progress; a reader re-checks it after copying and retries), so a
reader can never use a half-written vector.

Every segment's name starts with `al_<pid of the creating process>_<random>_`, unique per run; the
creator unlinks them in `close()`, and `remove_stale_segments` removes those whose creator is dead.

/dev/shm is a tmpfs with a size limit (Docker's default is 64 MB), and the kernel grants a segment of any size:
the first process to touch a page past the limit dies of SIGBUS, with no message and its segments left behind.
So the creator reserves every page at creation (`SharedMemoryFull` names what is needed and what is free), and
the runner checks the run's total against the free space before anything starts (`segments_bytes`).
"""

from __future__ import annotations

import collections
import errno
import os
import secrets
import time
from multiprocessing import shared_memory
from typing import Optional

import numpy as np

SHM_PREFIX = "al_"
SHM_DIR = "/dev/shm"
# Fresh buffers hold these, so data an actor failed to write shows up as garbage at once.
SENTINEL = np.float32(np.nan)


class TransportTimeout(RuntimeError):
    """A wait on the other side took longer than its limit."""


class SharedMemoryFull(RuntimeError):
    """/dev/shm has no room for a run's segments."""


def shared_memory_free() -> Optional[int]:
    """Bytes free in /dev/shm; None where there is none (macOS: Python's segments live elsewhere)."""
    try:
        st = os.statvfs(SHM_DIR)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def full_message(needed: int, free: Optional[int]) -> str:
    """The one-line error for a /dev/shm without room for `needed` bytes."""
    have = "" if free is None else f" and {free / 2**20:.1f} MB are free"
    return (f"shared memory ({SHM_DIR}) is too small: the run's unroll slots and weights need {needed / 2**20:.1f} MB"
            f"{have}; fewer --num-actors or --envs-per-actor, a shorter --unroll-length, or a larger {SHM_DIR} "
            f"(Docker: docker run --shm-size=1g) make it fit")


def segments_bytes(specs: dict[str, tuple[tuple, np.dtype]]) -> int:
    """What segments of these (shape, dtype) specs take in /dev/shm: each rounded up to whole pages."""
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    return sum(-(-_nbytes(shape, dtype) // page) * page for shape, dtype in specs.values())


def _nbytes(shape: tuple, dtype) -> int:
    return max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)


def _reserve(seg: shared_memory.SharedMemory, nbytes: int) -> None:
    """Backs a new segment's pages now (module docstring), so a full /dev/shm is an error here, not a SIGBUS
    later. Where the platform or file system has no fallocate, the pages stay lazily backed, as before."""
    fd = getattr(seg, "_fd", -1)  # CPython's POSIX SharedMemory keeps its descriptor here
    if fd < 0 or not hasattr(os, "posix_fallocate"):
        return
    try:
        os.posix_fallocate(fd, 0, nbytes)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.ENOMEM):
            raise SharedMemoryFull(f"no room for a {nbytes / 2**20:.1f} MB segment in {SHM_DIR}") from None
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENODEV):
            raise


def new_run_token() -> str:
    return f"{SHM_PREFIX}{os.getpid()}_{secrets.token_hex(4)}"


class _Arrays:
    """Named numpy arrays, backed by shared memory segments (token given) or by process memory."""

    def __init__(self, specs: dict[str, tuple[tuple, np.dtype]], token: Optional[str], create: bool):
        self.token = token
        self.create = create
        self._segments: list[shared_memory.SharedMemory] = []
        self.arrays: dict[str, np.ndarray] = {}
        try:
            for name, (shape, dtype) in specs.items():
                nbytes = _nbytes(shape, dtype)
                if token is None:
                    self.arrays[name] = np.zeros(shape, dtype)
                    continue
                seg = shared_memory.SharedMemory(name=f"{token}_{name}", create=create, size=nbytes)
                self._segments.append(seg)
                if create:
                    _reserve(seg, nbytes)
                self.arrays[name] = np.ndarray(shape, dtype, buffer=seg.buf)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Detaches; the creator also unlinks. Safe to call twice."""
        self.arrays = {}
        for seg in self._segments:
            try:
                seg.close()
            except BufferError:  # a view is still alive somewhere; unlinking below still frees the name
                pass
            if self.create:
                try:
                    seg.unlink()
                except FileNotFoundError:
                    pass
        self._segments = []


class WeightStore:
    """One flat float32 parameter vector with a version, safe for one writer and many readers."""

    def __init__(self, size: int, token: Optional[str], create: bool = True, first_version: int = 0):
        """first_version: the version counter to start from (a resumed run continues its versions)."""
        self.size = size
        self.token = token
        self._mem = _Arrays(self.specs(size), token and f"{token}_w", create)
        raw = self._mem.arrays["weights"]
        # int64 header (seqlock counter, the version the store started at) then the float32 vector, in one segment.
        self._seq = raw[:1].view(np.int64)
        self._base = raw[1:2].view(np.int64)
        self._vec = raw[2:].view(np.float32)[:size]
        if create:
            self._seq[0] = 2 * first_version
            self._base[0] = first_version
            self._vec[:] = SENTINEL

    @staticmethod
    def specs(size: int) -> dict[str, tuple[tuple, np.dtype]]:
        """The store's one segment: an int64 header (seqlock counter, start version) and `size` float32s."""
        return {"weights": ((size + 3,), np.float64)}

    def spec(self) -> tuple:
        return (self.size, self.token)

    @property
    def version(self) -> int:
        return int(self._seq[0]) // 2

    def publish(self, flat: np.ndarray) -> int:
        """Writes a new vector; returns its version (1 for the first publish)."""
        seq = int(self._seq[0])
        self._seq[0] = seq + 1  # odd: readers keep off
        self._vec[:] = flat
        self._seq[0] = seq + 2
        return (seq + 2) // 2

    def read_if_newer(self, known_version: int, timeout_s: float = 5.0) -> Optional[tuple[int, np.ndarray]]:
        """(version, copy of the vector) if a version newer than `known_version` exists, else None. A resumed
        run's store starts at its old version with nothing in it yet: only versions past that one are read
        (reading the start version handed actors the NaN placeholder, and the first batch was all NaN)."""
        deadline = time.monotonic() + timeout_s
        base = int(self._base[0])
        while True:
            s1 = int(self._seq[0])
            if s1 // 2 <= max(known_version, base):
                return None
            if s1 % 2 == 0:
                out = self._vec.copy()
                if int(self._seq[0]) == s1:
                    return s1 // 2, out
            if time.monotonic() > deadline:
                raise TransportTimeout("weights stayed mid-write too long: is the learner alive?")

    def close(self) -> None:
        self._seq = self._vec = None
        self._mem.close()



class SlotPool:
    """Preallocated unroll slots: `arrays[name][slot]` is one unroll's field; `meta[slot, 0]` holds the
    policy version that filled it."""

    META_VERSION = 0

    def __init__(self, fields: dict[str, tuple[tuple, np.dtype]], n_slots: int, token: Optional[str],
                 create: bool = True):
        self.fields = fields
        self.n_slots = n_slots
        self.token = token
        self._mem = _Arrays(self.specs(fields, n_slots), token and f"{token}_s", create)
        self.arrays = {k: v for k, v in self._mem.arrays.items() if k != "meta"}
        self.meta = self._mem.arrays["meta"]
        if create:
            for arr in self.arrays.values():
                arr.fill(SENTINEL if arr.dtype.kind == "f" else np.iinfo(arr.dtype).max)  # junk until written
            self.meta[:] = 0

    @staticmethod
    def specs(fields: dict[str, tuple[tuple, np.dtype]], n_slots: int) -> dict[str, tuple[tuple, np.dtype]]:
        """One segment a field, `[n_slots, *shape]`, and `meta` [n_slots, 1] int64."""
        specs = {k: ((n_slots, *shape), dtype) for k, (shape, dtype) in fields.items()}
        specs["meta"] = ((n_slots, 1), np.int64)
        return specs

    def spec(self) -> tuple:
        return (self.fields, self.n_slots, self.token)

    def set_version(self, slot: int, version: int) -> None:
        """Records the policy version that fills `slot`."""
        self.meta[slot, self.META_VERSION] = version

    def versions(self, slots: list[int]) -> np.ndarray:
        return self.meta[slots, self.META_VERSION].copy()

    def gather(self, slots: list[int]) -> dict[str, np.ndarray]:
        """Copies the given slots out, joined along the env axis: [T(+1), len(slots) * K, ...]."""
        return {k: np.concatenate([a[s] for s in slots], axis=1) for k, a in self.arrays.items()}

    def close(self) -> None:
        self.arrays, self.meta = {}, None
        self._mem.close()


def attach_weights(spec: tuple) -> WeightStore:
    size, token = spec
    return WeightStore(size, token, create=False)


def attach_slots(spec: tuple) -> SlotPool:
    fields, n_slots, token = spec
    return SlotPool(fields, n_slots, token, create=False)


class LocalChannel:
    """One end of an in-process duplex channel with a Pipe's send/poll/recv, for serial mode."""

    def __init__(self, inbox: collections.deque, outbox: collections.deque):
        self._inbox, self._outbox = inbox, outbox

    def send(self, obj) -> None:
        self._outbox.append(obj)

    def poll(self, timeout: float = 0.0) -> bool:
        return bool(self._inbox)

    def recv(self):
        if not self._inbox:
            raise EOFError("nothing to receive")
        return self._inbox.popleft()

    def close(self) -> None:
        pass


def local_channel_pair() -> tuple[LocalChannel, LocalChannel]:
    a, b = collections.deque(), collections.deque()
    return LocalChannel(a, b), LocalChannel(b, a)


def remove_stale_segments() -> list[str]:
    """Unlinks /dev/shm segments of ours whose creating process is gone (a run killed by SIGKILL).

    Returns the names removed. Segments of live runs are left alone."""
    removed = []
    for name in left_by_dead_processes(SHM_DIR, SHM_PREFIX, "_"):
        try:
            os.unlink(os.path.join(SHM_DIR, name))
            removed.append(name)
        except OSError:
            pass
    return removed


def left_by_dead_processes(directory: str, prefix: str, sep: str) -> list[str]:
    """Names in `directory` of the form PREFIX + PID + SEP + ... whose process PID is gone: what a run killed by
    SIGKILL left (its cleanup never ran). A name whose process lives, or that does not parse, is left out."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    dead = []
    for name in names:
        if not name.startswith(prefix):
            continue
        try:
            pid = int(name[len(prefix):].split(sep, 1)[0])
        except ValueError:
            continue
        if not pid_alive(pid):
            dead.append(name)
    return dead


def pid_alive(pid: int) -> bool:
    """Whether a process of this PID exists (someone else's too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
