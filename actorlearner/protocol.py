"""The actor <-> learner protocol: the messages actors send, and the learner's view of where unrolls come from.

Actors send three kinds of message (named tuples, so both ends match on type, not on position):
`UnrollReady` (an unroll is filled), `EnvError` (an env raised and was recreated: report it) and
`ActorFailed` (the actor is going down; its traceback). The learner sends an actor only "fill this slot"
(an int) or None (stop).

The learner loop talks to an `UnrollSource`: start it, wait for messages, read the policy versions and the
arrays of the ready unrolls, give them back to be refilled, stop it. Slot indices and pipes stay inside the
source (`actor_pool.SlotSource` for processes and the serial twin); a remote backend implements the same
calls by copying whole unrolls into local slots.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, Sequence

import numpy as np


class UnrollReady(NamedTuple):
    actor_id: int
    slot: int  # opaque to the learner loop: a handle it gives back to the source
    returns: list  # returns of the episodes that ended in this unroll
    lengths: list
    nonfinite: str = ""  # where the unroll holds a NaN/Inf observation or reward: the first, in one line


class EnvError(NamedTuple):
    actor_id: int
    text: str  # one line naming the env and the error; the env was recreated


class ActorFailed(NamedTuple):
    actor_id: int
    traceback: str


Message = UnrollReady | EnvError | ActorFailed


class UnrollSource(Protocol):
    num_actors: int
    restarts: int  # actors replaced so far
    stalls: int  # actors killed for delivering nothing for too long

    def start(self) -> None:
        """Starts the actors and hands each of them its share of the unroll slots."""

    def wait(self, timeout: float) -> list[Message]:
        """Messages that arrived within `timeout` (dead actors noticed and replaced on the way)."""

    def versions(self, ready: Sequence[UnrollReady]) -> np.ndarray:
        """The policy version that filled each ready unroll."""

    def batch(self, ready: Sequence[UnrollReady]) -> dict[str, np.ndarray]:
        """The unrolls' arrays, copied out and joined along the env axis: [T(+1), B, ...]."""

    def give_back(self, ready: Sequence[UnrollReady]) -> None:
        """Returns the unrolls' slots to their actors, to be refilled."""

    def fill_fraction(self, n_ready: int) -> float:
        """n_ready as a fraction of all slots (the queue-fill figure)."""

    def alive(self) -> int:
        ...

    def watch_stalls(self, stall_s: float) -> None:
        """From now on, an actor that holds work and delivers nothing for stall_s (0: automatic) is reported,
        killed and replaced; `stalls` counts them."""

    def patience_s(self) -> float:
        """The longest silence an actor is now allowed before it is replaced (0: no actor is watched)."""

    def stop(self, timeout_s: float = 3.0) -> None:
        """Stops every actor; safe to call twice."""
