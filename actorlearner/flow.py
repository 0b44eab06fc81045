"""How many unrolls are out with the actors or waiting for the learner: a bound on the policy lag.

The policy lag of an unroll is about the number of unrolls in circulation (being filled, or filled and waiting)
over the unrolls a batch takes. Each actor owns twice its share of a batch in unroll slots, so one actor (the
default for vectorized envs) fills its next share while the learner steps on this one: a lag of ~1 learner
step. With more actors than a batch needs, each still owns two slots, and all of them circulate:
- 8 CartPole actors (vectorized, faster than the learner; 1 slot a batch, 16 in all) queued every slot: a mean
  lag of ~10 steps, and 5 seeds of 6 collapsed to a policy that always pushes one way (return 9.4);
- 8 Acrobot actors (single envs, slower than the learner; 2 slots a batch, 16 in all) share 2 cores, so each
  unroll took as long as ~8 learner steps: a lag of ~4.7, and 3 seeds of 3 ended at -500.
So a slot coming back from a batch is parked (kept from its actor) while
- two batches or more still wait: the learner has more than it can use, and the idle actors' CPU goes to it;
- or more than `cap` slots would be out: max(two batches, the cores the actors have); more unrolls in the
  making than cores only makes each one older when it arrives.
When the learner cannot form its next batch and its waits since a slot was last parked or given back add up to
three of its steps, parked slots go back to their actors until `cap` are out (the start-up burst and long
evaluations park slots while the learner is busy; the actors may be the limit afterwards). Each slot goes back
to the actor with the fewest left to fill (its own actor on a tie), so every actor fills one before any fills
two. With one actor, or where the slots make at most two batches, nothing is ever parked. Serial and
--reproducible runs do not park: their batches follow a fixed order.
"""

from __future__ import annotations

from collections import Counter
from typing import Optional, Sequence

PATIENCE_STEPS = 3  # learner steps of waiting for data before parked slots go back
MIN_PATIENCE_S = 0.005


class SlotFlow:
    """The parking rule above for a learner whose batches take `per_batch` unrolls, of `total` slots, at most
    `cap` out at once. The learner loop calls `after_step` with the unrolls of each batch it has learned on and
    `while_short` each time it cannot form a batch; both return the unrolls whose slots go back now. Unrolls
    carry the `actor_id` of the actor whose slot they hold."""

    def __init__(self, per_batch: int, total: int, cap: int, enabled: bool = True):
        self.per_batch, self.total = per_batch, total
        self.depth = 2 * per_batch  # unrolls that may wait: the next batch and the one after
        self.cap = max(cap, self.depth)
        self.enabled = enabled
        self.parked: list = []
        self._short_since: Optional[float] = None
        self._idle_s = 0.0  # the learner's waits for data since a slot was last parked or given back
        self._step_s = 0.0  # a recent learner step's duration (exponential average)

    def after_step(self, taken: Sequence, waiting: Sequence, step_s: float, now: Optional[float] = None) -> list:
        """taken: the unrolls just learned on; waiting: the unrolls still queued; step_s: that step's seconds,
        which ended at `now` (monotonic seconds; None: the wait before the step is not counted)."""
        self._step_s = step_s if self._step_s == 0.0 else 0.8 * self._step_s + 0.2 * step_s
        if self._short_since is not None and now is not None:
            # Waits add up across steps: an actor that is the limit by less than PATIENCE_STEPS still starves
            # the learner, and resetting the wait at every step kept its parked slots from it for good.
            self._idle_s += max(0.0, now - step_s - self._short_since)
        self._short_since = None
        if not self.enabled:
            return list(taken)
        # All of them while two batches wait, else those that would put more than `cap` out.
        over_cap = self.total - len(self.parked) - self.cap
        n_park = len(taken) if len(waiting) >= self.depth else min(len(taken), max(0, over_cap))
        if n_park:
            self._idle_s = 0.0
        return self._hand_out(list(taken) + self.parked, len(taken) - n_park, waiting)

    def while_short(self, waiting: Sequence, now: float) -> list:
        """Called when the `waiting` unrolls do not make a batch; returns parked unrolls to give back, if any."""
        if not self.parked or len(waiting) >= self.per_batch:
            self._short_since = None
            return []
        if self._short_since is None:
            self._short_since = now
        if self._idle_s + now - self._short_since < max(MIN_PATIENCE_S, PATIENCE_STEPS * self._step_s):
            return []
        self._short_since, self._idle_s = now, 0.0
        n = max(0, self.cap - (self.total - len(self.parked)))
        return self._hand_out(self.parked, n, waiting)

    def _hand_out(self, pool: list, n: int, waiting: Sequence) -> list:
        """Gives back n of `pool` (unrolls whose slots the learner holds: just taken, then parked oldest first) and
        parks the rest. Each goes to the actor with the fewest slots to fill at that moment (the most of its slots
        queued, taken or parked), the earliest in `pool` among equals, so no actor fills two while another has none,
        and a slot just taken goes back to its own actor unless another has fewer to fill. Before, a taken slot
        always went straight back and parked ones stayed parked: traced with --num-actors 2, one actor held none
        of its slots for a whole run. 8 actors on 2 cores, 5 seeds alternated with the rule before: CartPole
        solved in a median 7.2 against 7.0 s, Acrobot 7.1 against 6.5 (the same runs of the rule before varied by
        0.7 s between benchmark runs); ties handed to another actor instead, 8.9 against 7.3 and 6.9 against 7.4;
        slots kept on the actors that fill already, 7.2 against 6.6 and 7.3 against 6.7."""
        if n >= len(pool):  # all go back (one actor, the default, always): nothing to choose
            self.parked = []
            return list(pool)
        held = Counter(r.actor_id for r in (*pool, *waiting))
        back, rest = [], list(pool)
        for _ in range(n):
            r = rest.pop(max(range(len(rest)), key=lambda j: (held[rest[j].actor_id], -j)))
            held[r.actor_id] -= 1
            back.append(r)
        kept = [r for r in self.parked if r in rest]  # the parked stay in the order they were parked
        self.parked = kept + [r for r in rest if r not in kept]
        return back
