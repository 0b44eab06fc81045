"""--backend ray: the actors run as Ray actors spread over a Ray cluster's nodes; the learner stays here.

Only whole unrolls and weight versions travel, never steps (a CartPole step costs 5-7 µs; one Ray round
trip ~1.2 ms): each actor's fill call brings the newest weights (small ones inside the call; large ones put
in the object store once per version and fetched by an actor only when newer than the one it has) and
returns one unroll's arrays, which the learner reads from the object store without a copy until the batch
is joined.

Inside each Ray actor runs the same `Actor` and env-batch code as in an actor process (`actor.build_actor`),
writing into a one-slot pool of its own. `RaySource` is the learner's `protocol.UnrollSource` over them, with
the local backend's guarantees: a dead actor (its process killed, its node gone) is reported and replaced,
on any node with a free CPU, within the same crash-loop cap (`actor_pool.RestartBudget`); a stalled one is
killed and replaced; `stop()` kills every actor the run started. `ray_cluster.RayCluster` starts a Ray
instance for the run (and shuts it down) or joins a running cluster (and leaves it running, with nothing of
ours in it).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Callable, Sequence

import numpy as np

from .actor import ActorArgs, build_actor
from .actor_pool import RestartBudget, StallClock
from .protocol import ActorFailed, UnrollReady
from .reporting import say
from .transport import attach_slots, local_channel_pair


# Weight vectors up to this size travel inside each fill call instead of through the object store: measured
# on 2 cores with the default CartPole MLP (36 KB), a put cost the learner ~1 ms and each actor's get ~0.7 ms
# per version, more than the unroll's own transport. (Ray inlines call arguments up to 100 KB.)
INLINE_WEIGHTS_BYTES = 64 * 1024


class RayWeights:
    """The learner's weight store on Ray, with transport.WeightStore's `publish`/`version`. A large version is
    put in the object store once and fill calls carry a reference to it; a small one rides in the calls."""

    def __init__(self, first_version: int = 0):
        self._version = first_version
        self.payload = None  # what a fill call carries: the vector itself, or [ObjectRef]; None before publishing

    @property
    def version(self) -> int:
        return self._version

    def publish(self, flat: np.ndarray) -> int:
        flat = np.ascontiguousarray(flat, np.float32)
        if flat.nbytes <= INLINE_WEIGHTS_BYTES:
            self.payload = flat
        else:
            import ray

            # In a list, so that Ray hands the actor the reference, not the fetched vector: an actor fetches a
            # version only if it is newer than the one it runs.
            self.payload = [ray.put(flat)]
        self._version += 1
        return self._version

    def close(self) -> None:
        self.payload = None


class _Delivered:
    """The weights the current fill call brought (RayWeights.payload), behind the actor's weight-store call
    (read_if_newer): a version in the object store is fetched only when it is newer than the one the actor runs."""

    def __init__(self):
        self.version, self.payload = 0, None

    def offer(self, version: int, payload) -> None:
        if version > self.version:
            self.version, self.payload = version, payload

    def read_if_newer(self, known_version: int, timeout_s: float = 5.0):
        if self.version <= known_version or self.payload is None:
            return None
        flat = self.payload
        if isinstance(flat, list):
            import ray

            flat = ray.get(flat[0], timeout=timeout_s)  # read-only, and zero-copy on the object's node
        self.payload = None
        return self.version, flat


class ActorHost:
    """One actor in a Ray actor process. Each `fill` is one unroll: (messages for the learner, the unroll's
    arrays, the policy version that acted it)."""

    def __init__(self, args: ActorArgs):
        # The learner owns shutdown: Ctrl-C in a terminal must not break an actor mid-unroll.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.slots = attach_slots(args.slot_spec)  # one slot in this process's memory (token None)
        self._inbox, theirs = local_channel_pair()
        self._weights = _Delivered()
        self.actor = build_actor(args, self.slots, theirs, self._weights)

    def where(self) -> tuple[str, int]:
        import ray

        return ray.get_runtime_context().get_node_id(), os.getpid()

    def fill(self, version: int, weights) -> tuple[list, dict, int]:
        """weights: RayWeights.payload of `version`."""
        self._weights.offer(version, weights)
        self.actor.produce(0)
        messages = []
        while self._inbox.poll():
            messages.append(self._inbox.recv())
        # Ray serializes the return value before this actor runs again, so the slot can be reused.
        return messages, {k: a[0] for k, a in self.slots.arrays.items()}, int(self.slots.meta[0, 0])


class RaySource:
    """The learner's `protocol.UnrollSource` over Ray actors. Each actor keeps `slots_per_actor` fill calls
    in flight (its queue; Ray runs them in order), so it never waits for the learner to ask."""

    def __init__(self, args_for: Callable[[int, int], ActorArgs], num_actors: int, slots_per_actor: int,
                 weights: RayWeights, cpus_per_actor: int, timeout_s: float, report: Callable[[str], None] = say,
                 max_restarts: int = 5, restart_window_s: float = 60.0):
        """timeout_s: the limit of a wait on Ray (Config.wait_timeout_s)."""
        self._args_for, self._weights, self._report = args_for, weights, report
        self._timeout_s = timeout_s
        self.num_actors, self.slots_per_actor = num_actors, slots_per_actor
        self._cpus = cpus_per_actor
        self.hosts: list = [None] * num_actors
        self._remote = None  # ActorHost as a Ray actor class
        self.incarnation = [0] * num_actors
        self.nodes: list[str] = [""] * num_actors  # node id of each actor, once it has said
        self._where: dict = {}  # where() call -> (actor, incarnation)
        self._pending: dict = {}  # fill call -> (actor, incarnation)
        self._owed = [0] * num_actors  # fill calls to submit once weights exist (or the actor is replaced)
        self._ready: dict[int, tuple] = {}  # handle -> (arrays, version) of unrolls the learner holds
        self._next_handle = 0
        self._budget = RestartBudget(num_actors, max_restarts, restart_window_s)
        self.restarts = self.stalls = 0
        self.clock = StallClock(num_actors, timeout_s)
        self.stopping = False
        self._told_nodes = False

    # --- actors -------------------------------------------------------------------------------
    def start(self) -> None:
        for i in range(self.num_actors):
            self._start(i)
            self._owed[i] = self.slots_per_actor

    def _start(self, i: int) -> None:
        import ray

        if self._remote is None:  # we restart actors ourselves (reported, capped): Ray must not (max_restarts 0)
            self._remote = ray.remote(num_cpus=self._cpus, max_restarts=0)(ActorHost)
        # SPREAD: one actor per node before any node gets two, so a lost node costs as few actors as can be.
        host = self._remote.options(scheduling_strategy="SPREAD").remote(self._args_for(i, self.incarnation[i]))
        self.hosts[i] = host
        self.nodes[i] = ""
        self._where[host.where.remote()] = (i, self.incarnation[i])
        self.clock.started(i)

    def _submit(self) -> None:
        """Submits the fill calls owed, with the newest weights (none before the learner's first publish)."""
        payload = self._weights.payload
        if payload is None or self.stopping:
            return
        busy = self._busy() if any(self._owed) else set()
        for i in range(self.num_actors):
            if self._owed[i] > 0 and i not in busy:
                self.clock.resumed(i)  # an actor without a call was waiting on us, not silent (ActorPool.give)
            while self._owed[i] > 0:
                self._owed[i] -= 1
                self._pending[self.hosts[i].fill.remote(self._weights.version, payload)] = (i, self.incarnation[i])

    def _died(self, i: int, how: str) -> None:
        """Actor i is gone (or killed by us): counted against the crash-loop cap, replaced, its work re-owed."""
        import ray

        self._budget.died(i, how)
        lost = sum(1 for (j, inc) in self._pending.values() if j == i and inc == self.incarnation[i])
        self._pending = {r: (j, inc) for r, (j, inc) in self._pending.items() if j != i}
        try:
            ray.kill(self.hosts[i], no_restart=True)
        except Exception:  # noqa: BLE001 - it may be gone with its node already
            pass
        self.incarnation[i] += 1
        self.restarts += 1
        self._report(f"actor {i} died ({how}); starting a replacement (restart {self.restarts})")
        self._start(i)
        self._owed[i] += lost

    # --- the UnrollSource calls ----------------------------------------------------------------
    def wait(self, timeout: float) -> list:
        import ray

        self._submit()
        out: list = []
        refs = list(self._pending) + list(self._where)
        if not refs:
            time.sleep(timeout)
            return out
        done, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if done:  # and whatever else is ready by now
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in done:
            if ref in self._where:
                self._placed(ref)
            elif ref in self._pending:
                out.extend(self._collect(ref))
        if not self.stopping:
            self._kill_stalled()
        self._submit()
        return out

    def _placed(self, ref) -> None:
        import ray

        i, inc = self._where.pop(ref)
        try:
            node, _ = ray.get(ref, timeout=self._timeout_s)
        except ray.exceptions.RayError:
            return  # died before it said: its fill calls tell
        if inc != self.incarnation[i]:
            return
        self.nodes[i] = node
        if not self._told_nodes and all(self.nodes):
            self._told_nodes = True
            n, nodes = self.num_actors, len(set(self.nodes))
            say(f"ray: {n} actor{'s' if n > 1 else ''} on {nodes} node{'s' if nodes > 1 else ''}")
        elif self._told_nodes:
            say(f"ray: actor {i} now runs on node {node[:8]}")

    def _collect(self, ref) -> list:
        import ray

        i, inc = self._pending.pop(ref)
        try:
            messages, arrays, version = ray.get(ref, timeout=self._timeout_s)  # ready: the timeout is a backstop
        except ray.exceptions.RayTaskError as e:  # the actor's code raised: as an actor process would report it
            if inc != self.incarnation[i] or self.stopping:
                return []
            text = str(e)
            self._owed[i] += 1
            self._died(i, text.strip().splitlines()[-1])
            return [ActorFailed(i, text)]
        except ray.exceptions.RayError as e:  # the actor is gone: killed, out of memory, its node lost
            if inc == self.incarnation[i] and not self.stopping:
                self._owed[i] += 1
                self._died(i, _why_gone(e, self.nodes[i]))
            elif not self.stopping:
                self._owed[i] += 1  # a call of a predecessor: its successor fills it
            return []
        if inc != self.incarnation[i]:
            self._owed[i] += 1
            return []
        self.clock.delivered(i)
        out = []
        for msg in messages:
            if isinstance(msg, UnrollReady):
                handle = self._next_handle
                self._next_handle += 1
                self._ready[handle] = (arrays, version)
                msg = msg._replace(slot=handle)
            out.append(msg)
        return out

    def watch_stalls(self, stall_s: float) -> None:
        self.clock.watch(stall_s)

    def patience_s(self) -> float:
        return self.clock.patience_s()

    def _busy(self) -> set:
        """The actors with a fill call of their current incarnation in flight."""
        return {i for (i, inc) in self._pending.values() if inc == self.incarnation[i]}

    def _kill_stalled(self) -> None:
        for i in self._busy():
            quiet = self.clock.quiet_past_limit(i)
            if quiet is not None:
                self.stalls += 1
                placed = "a hung env?" if self.nodes[i] else "never placed: no node with a free CPU for it?"
                self._report(f"actor {i} delivered nothing for {quiet:.0f} s ({placed}); killing it")
                self.clock.killed(i, quiet)  # before its replacement starts (and counts as starting)
                self._died(i, "killed for stalling")

    def versions(self, ready: Sequence[UnrollReady]) -> np.ndarray:
        return np.array([self._ready[r.slot][1] for r in ready], np.int64)

    def batch(self, ready: Sequence[UnrollReady]) -> dict:
        parts = [self._ready[r.slot][0] for r in ready]
        return {k: np.concatenate([p[k] for p in parts], axis=1) for k in parts[0]}

    def give_back(self, ready: Sequence[UnrollReady]) -> None:
        """The calls are submitted at the next wait(), after the learner has published the weights of the batch
        these unrolls go into: they then carry the newer version (the actor has another call queued meanwhile)."""
        for r in ready:
            del self._ready[r.slot]  # the object store may free it now
            self._owed[r.actor_id] += 1

    def fill_fraction(self, n_ready: int) -> float:
        return n_ready / (self.num_actors * self.slots_per_actor)

    def alive(self) -> int:
        return sum(h is not None for h in self.hosts)

    def stop(self, timeout_s: float = 3.0) -> None:
        """Kills every actor this run started. Safe to call twice."""
        import ray

        self.stopping = True
        for i, host in enumerate(self.hosts):
            if host is not None:
                try:
                    ray.kill(host, no_restart=True)
                except Exception:  # noqa: BLE001 - gone already
                    pass
            self.hosts[i] = None
        self._pending, self._where, self._ready = {}, {}, {}


def _why_gone(e: Exception, node: str) -> str:
    """One line on why a Ray actor on `node` is gone: its node lost, or its process dead (with Ray's detail)."""
    import re

    import ray

    text = " ".join(str(e).split())
    try:
        alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
    except Exception:  # noqa: BLE001 - the answer only colours the message
        alive = None
    if (node and alive is not None and node not in alive) or "node has died" in text.lower():
        return "its node is gone"
    detail = re.search(r"[Ee]xit detail: (.*?)(?:\. |$)", text)
    return "its process died" + (f": {detail.group(1)}" if detail else f" ({text[:160]})")
