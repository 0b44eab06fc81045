"""Actor processes: start, hand out slots, watch, restart, stop. The only module that creates processes.

`ActorPool` runs each actor in a spawned process; `SerialActors` runs the same `Actor` code in this
process (debugging, tests). Both take the same calls: `start()`, `give(actor, slot)`,
`wait(timeout) -> messages`, `alive()`, `stop()`. `SlotSource` puts either behind the learner's
`protocol.UnrollSource`, so slot indices stay in this module and transport.py.
"""

from __future__ import annotations

import collections
import multiprocessing as mp
import os
import signal
import time
from multiprocessing.connection import wait as wait_ready
from typing import Callable, Optional, Sequence

import numpy as np

from . import stack_dumps
from .actor import Actor, ActorArgs, actor_process_main
from .policies import make_policy
from .protocol import ActorFailed, UnrollReady
from .reporting import say
from .transport import SlotPool, local_channel_pair

# Numeric libraries read these at import: set them for the child before it starts, so each actor's
# BLAS/OpenMP uses `actor_threads` threads instead of one per core each (oversubscription).
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                "TF_NUM_INTEROP_THREADS")


class ActorCrashLoop(RuntimeError):
    """An actor died too often in a short time; restarting it again would only loop."""


class ScriptNotGuarded(ActorCrashLoop):
    """The user's script started a run from its top level, without a `__main__` guard (MAIN_GUARD)."""


# The exit status of an actor process that found itself running the user's script's train() call: spawn imports
# the main module in every process it starts, and a script without a `__main__` guard calls train() again there.
# Each replacement would do the same, so the first such exit stops the run with MAIN_GUARD.
MAIN_REIMPORTED = 78
MAIN_GUARD = ("the actor processes ran your script's call to train() again: they are started with spawn, which "
              "imports the main module in each of them; call train() under `if __name__ == \"__main__\":`")


def exit_if_main_reimported() -> None:
    """Called at train()'s start. In a process that spawn is still starting (importing the main script, which
    multiprocessing's own check tells by the same flag), exits with MAIN_REIMPORTED at once. The call went on to
    find the run directory locked by the real run: every actor died with that traceback, five restarts each."""
    if getattr(mp.current_process(), "_inheriting", False):
        os._exit(MAIN_REIMPORTED)


class RestartBudget:
    """Each actor's deaths within a sliding window: one too many means a crash loop, and restarting again
    would only loop (shared by the process pool and the Ray backend)."""

    def __init__(self, num_actors: int, max_restarts: int = 5, window_s: float = 60.0):
        self._deaths = [collections.deque() for _ in range(num_actors)]
        self._max, self._window = max_restarts, window_s

    def died(self, i: int, how: str) -> None:
        """Counts a death of actor i; raises ActorCrashLoop when it is the max_restarts-th within the window."""
        now = time.monotonic()
        deaths = self._deaths[i]
        deaths.append(now)
        while deaths and now - deaths[0] > self._window:
            deaths.popleft()
        if len(deaths) >= self._max:
            raise ActorCrashLoop(f"actor {i} died {len(deaths)} times within {self._window:.0f} s "
                                 f"(last: {how}); stopping instead of restarting it again")


class StallClock:
    """When each actor last delivered (or was started) and its slowest gap between deliveries. Not watching
    until `watch(stall_s)` (the learner's first publish: before it, actors wait for their first weights); from
    then on `quiet_past_limit(i)` says how long actor i has been silent past its limit (stall_s, or 0: 10 s or 5x
    its slowest gap, whichever is longer). An actor started and not yet delivered gets `startup_s` more (the
    run's --wait-timeout-s, which also bounds the launcher's first look at the env): it imports its libraries
    and makes its envs before its first unroll (an actor running TensorFlow takes 4 s or more to import it),
    which a short --actor-stall-s would count as a stall and restart in a loop. Shared by the process pool and
    the Ray backend."""

    def __init__(self, num_actors: int, startup_s: float = 30.0):
        self.stall_s: Optional[float] = None  # None: not watching
        self.startup_s = startup_s
        self._last_seen = [0.0] * num_actors
        self._slowest = [0.0] * num_actors
        self._starting = [True] * num_actors  # started, nothing delivered since
        self._silent_starts = [0] * num_actors  # starts in a row killed before their first delivery

    def started(self, i: int) -> None:
        """Actor i's process (or Ray actor) was just started."""
        self._last_seen[i] = time.monotonic()
        self._starting[i] = True

    def resumed(self, i: int) -> None:
        """Actor i was given work after holding none: waiting on us was not silence, so its clock starts now."""
        self._last_seen[i] = time.monotonic()

    def delivered(self, i: int) -> None:
        now = time.monotonic()
        if self.stall_s is not None and not self._starting[i]:  # not the first unrolls (weights, start-up)
            self._slowest[i] = max(self._slowest[i], now - self._last_seen[i])
        self._last_seen[i] = now
        self._starting[i] = False
        self._silent_starts[i] = 0

    def watch(self, stall_s: float) -> None:
        """Starts watching; calls after the first change nothing."""
        if self.stall_s is None:
            now = time.monotonic()
            self._last_seen = [max(t, now) for t in self._last_seen]
            self.stall_s = stall_s

    def _limit(self, i: int) -> float:
        return (self.stall_s or max(10.0, 5 * self._slowest[i])) + (self.startup_s if self._starting[i] else 0.0)

    def quiet_past_limit(self, i: int) -> Optional[float]:
        """Seconds actor i has delivered nothing, if that is past its limit; else None (also when not watching)."""
        if self.stall_s is None:
            return None
        quiet = time.monotonic() - self._last_seen[i]
        return quiet if quiet > self._limit(i) else None

    def patience_s(self) -> float:
        """The longest silence an actor is now allowed before it is killed (0 when not watching). The learner
        waits at least this long for data before it gives up on its actors, so that a silent one is replaced
        first: a single actor frozen at start-up ended the run on --wait-timeout-s before its 30 s allowance."""
        if self.stall_s is None:
            return 0.0
        return max(self._limit(i) for i in range(len(self._starting)))

    def killed(self, i: int, quiet: float) -> None:
        """Actor i was killed for its silence. Raises ActorCrashLoop at the second start in a row that delivered
        nothing: its env or its imports hang at every start, and starting it again would only loop (a stall
        every minute or so never reaches RestartBudget's count)."""
        if not self._starting[i]:
            return
        self._silent_starts[i] += 1
        if self._silent_starts[i] >= 2:
            raise ActorCrashLoop(f"actor {i} delivered nothing in {self._silent_starts[i]} starts in a row "
                                 f"({quiet:.0f} s the last time): does its env hang when made or reset? A slow "
                                 f"start gets longer with --wait-timeout-s")


class ActorPool:
    def __init__(self, args_for: Callable[[int, int], ActorArgs], num_actors: int, actor_threads: int,
                 max_restarts: int = 5, restart_window_s: float = 60.0, report: Callable[[str], None] = say,
                 startup_s: float = 30.0):
        """report: where the restart lines go (a reporting.Repeats, so a crash loop does not flood); startup_s: an
        actor's allowance for its first unroll (StallClock)."""
        self._args_for = args_for
        self._report = report
        self._ctx = mp.get_context("spawn")
        self._threads = actor_threads
        self.procs: list[Optional[mp.Process]] = [None] * num_actors
        self.conns: list = [None] * num_actors
        self.incarnation = [0] * num_actors
        self.holding: list[set] = [set() for _ in range(num_actors)]  # slots given, not yet returned
        self._budget = RestartBudget(num_actors, max_restarts, restart_window_s)
        self._last_error: list[str] = [""] * num_actors
        self.restarts = 0
        self.stopping = False
        self.clock = StallClock(num_actors, startup_s)
        self.stalls = 0
        self._stack_paths = [""] * num_actors

    def start(self) -> None:
        for i in range(len(self.procs)):
            self._start(i)

    def _start(self, i: int) -> None:
        ours, theirs = self._ctx.Pipe(duplex=True)
        args = self._args_for(i, self.incarnation[i])
        self._stack_paths[i] = args.stack_path
        proc = self._ctx.Process(target=actor_process_main, args=(args, theirs), name=f"actorlearner-actor-{i}",
                                 daemon=True)
        saved = {k: os.environ.get(k) for k in _THREAD_VARS}
        os.environ.update({k: str(self._threads) for k in _THREAD_VARS})
        try:
            proc.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        theirs.close()  # so that the actor's death shows as end-of-file on our end
        self.procs[i], self.conns[i] = proc, ours
        self.clock.started(i)

    def give(self, i: int, slot: int) -> None:
        if not self.holding[i]:
            # It held no slot (the learner gives them back only after publishing): waiting for one is not
            # silence, so its clock starts now, not at its last delivery a learner step ago.
            self.clock.resumed(i)
        self.holding[i].add(slot)
        try:
            self.conns[i].send(slot)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass  # it died; wait() notices through its sentinel and gives the slot to its successor

    def wait(self, timeout: float) -> list[tuple]:
        """Messages that arrived within `timeout`; also notices dead actors and replaces them."""
        conns = {c: i for i, c in enumerate(self.conns)}
        sentinels = {p.sentinel: i for i, p in enumerate(self.procs)}
        out = []
        for ready in wait_ready(list(conns) + list(sentinels), timeout):
            if ready in conns:
                out.extend(self._drain(conns[ready]))
        if not self.stopping:
            self._kill_stalled()
        for i, proc in enumerate(self.procs):
            if proc.exitcode is not None and not self.stopping:
                out.extend(self._drain(i))
                self._replace(i)
        return out

    def watch_stalls(self, stall_s: float) -> None:
        """From now on an actor that holds slots and delivers nothing for too long is killed and replaced."""
        self.clock.watch(stall_s)

    def patience_s(self) -> float:
        return self.clock.patience_s()

    def _kill_stalled(self) -> None:
        for i, proc in enumerate(self.procs):
            quiet = self.clock.quiet_past_limit(i)
            if self.holding[i] and proc.exitcode is None and quiet is not None:
                self.stalls += 1
                where = stack_dumps.where_stuck(proc.pid, self._stack_paths[i])
                self._report(f"actor {i} delivered nothing for {quiet:.0f} s "
                             f"({'it was in ' + where if where else 'a frozen process, or a hung env?'}); killing it")
                proc.kill()
                proc.join(timeout=1.0)
                self.clock.killed(i, quiet)

    def _drain(self, i: int) -> list[tuple]:
        out = []
        conn = self.conns[i]
        try:
            while conn.poll(0):
                msg = conn.recv()
                if isinstance(msg, UnrollReady):
                    self.holding[i].discard(msg.slot)
                    self.clock.delivered(i)
                elif isinstance(msg, ActorFailed):
                    self._last_error[i] = msg.traceback.strip().splitlines()[-1]
                out.append(msg)
        except (EOFError, OSError):
            pass
        return out

    def _replace(self, i: int) -> None:
        proc = self.procs[i]
        proc.join(timeout=1.0)
        code = proc.exitcode
        if code == MAIN_REIMPORTED:
            raise ScriptNotGuarded(MAIN_GUARD)
        how = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit status {code}"
        error = f": {self._last_error[i]}" if self._last_error[i] else ""
        self._budget.died(i, how + error)
        self.conns[i].close()
        self.incarnation[i] += 1
        self.restarts += 1
        self._last_error[i] = ""
        self._report(f"actor {i} died ({how}{error}); starting a replacement (restart {self.restarts})")
        self._start(i)
        lost, self.holding[i] = sorted(self.holding[i]), set()
        for slot in lost:  # what the dead actor held is lost: its successor refills those slots
            self.give(i, slot)

    def alive(self) -> int:
        return sum(p is not None and p.exitcode is None for p in self.procs)

    def stop(self, timeout_s: float = 3.0) -> None:
        """Asks every actor to stop, then escalates to SIGTERM and SIGKILL. Safe to call twice."""
        self.stopping = True
        for conn in self.conns:
            try:
                conn.send(None)
            except (OSError, AttributeError):
                pass
        deadline = time.monotonic() + timeout_s
        for proc in self.procs:
            if proc is not None:
                proc.join(timeout=max(0.0, deadline - time.monotonic()))
        for proc in self.procs:
            if proc is not None and proc.exitcode is None:
                proc.terminate()
                proc.join(timeout=1.0)
            if proc is not None and proc.exitcode is None:
                proc.kill()
                proc.join(timeout=1.0)
        for conn in self.conns:
            if conn is not None:
                conn.close()
        self.conns = [None] * len(self.conns)


class SerialActors:
    """The same actors, run in this process one unroll at a time when the learner waits."""

    def __init__(self, cfg, spec, num_actors: int, slots, weights, make_batch: Callable,
                 model_fn: Optional[Callable]):
        self.actors, self._ours = [], []
        self.restarts = self.stalls = 0
        for i in range(num_actors):
            ours, theirs = local_channel_pair()
            policy = make_policy(cfg, spec, model_fn, acting=True)
            envs = make_batch(i, 0, cfg.seed, spec)
            self.actors.append(Actor(i, cfg, spec, envs, policy, slots, theirs, weights))
            self._ours.append(ours)

    def start(self) -> None:
        pass

    def watch_stalls(self, stall_s: float) -> None:
        """Nothing to watch: serial actors step inside the learner's own deadline (learner_loop)."""

    def patience_s(self) -> float:
        return 0.0

    def give(self, i: int, slot: int) -> None:
        self._ours[i].send(slot)

    def wait(self, timeout: float) -> list[tuple]:
        out = []
        for actor, ours in zip(self.actors, self._ours):
            if actor.channel.poll():
                actor.produce(actor.channel.recv())
            while ours.poll():
                out.append(ours.recv())
        return out

    def alive(self) -> int:
        return len(self.actors)

    def stop(self, timeout_s: float = 0.0) -> None:
        for actor in self.actors:
            actor.close()
        self.actors = []


class SlotSource:
    """The learner's `protocol.UnrollSource` over an actor pool (processes or serial) and its slots: each
    actor owns `slots_per_actor` consecutive slots, handed out at start and given back after learning."""

    def __init__(self, actors, slots: SlotPool, num_actors: int, slots_per_actor: int):
        self.actors, self.slots = actors, slots
        self.num_actors, self.slots_per_actor = num_actors, slots_per_actor

    @property
    def stalls(self) -> int:
        return self.actors.stalls

    def watch_stalls(self, stall_s: float) -> None:
        self.actors.watch_stalls(stall_s)

    def patience_s(self) -> float:
        return self.actors.patience_s()

    @property
    def restarts(self) -> int:
        return self.actors.restarts

    def start(self) -> None:
        self.actors.start()
        for i in range(self.num_actors):
            for s in range(self.slots_per_actor):
                self.actors.give(i, i * self.slots_per_actor + s)

    def wait(self, timeout: float) -> list:
        return self.actors.wait(timeout)

    def versions(self, ready: Sequence[UnrollReady]) -> np.ndarray:
        return self.slots.versions([r.slot for r in ready])

    def batch(self, ready: Sequence[UnrollReady]) -> dict:
        return self.slots.gather([r.slot for r in ready])

    def give_back(self, ready: Sequence[UnrollReady]) -> None:
        for r in ready:
            self.actors.give(r.actor_id, r.slot)

    def fill_fraction(self, n_ready: int) -> float:
        return n_ready / self.slots.n_slots

    def alive(self) -> int:
        return self.actors.alive()

    def stop(self, timeout_s: float = 3.0) -> None:
        self.actors.stop(timeout_s=timeout_s)
