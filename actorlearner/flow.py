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
When the learner cannot form its next batch and has waited three of its recent steps, parked slots go back to
their actors until `cap` are out (the start-up burst and long evaluations park slots while the learner is busy;
the actors may be the limit afterwards). With one actor, or where the slots make at most two batches, nothing is
ever parked. Serial and --reproducible runs do not park: their batches follow a fixed order.
"""

from __future__ import annotations

from typing import Optional, Sequence

PATIENCE_STEPS = 3  # learner steps of waiting for data before parked slots go back
MIN_PATIENCE_S = 0.005


class SlotFlow:
    """The parking rule above for a learner whose batches take `per_batch` unrolls, of `total` slots, at most
    `cap` out at once. The learner loop calls `after_step` with the unrolls of each batch it has learned on and
    `while_short` each time it cannot form a batch; both return the unrolls whose slots go back now."""

    def __init__(self, per_batch: int, total: int, cap: int, enabled: bool = True):
        self.per_batch, self.total = per_batch, total
        self.depth = 2 * per_batch  # unrolls that may wait: the next batch and the one after
        self.cap = max(cap, self.depth)
        self.enabled = enabled
        self.parked: list = []
        self._short_since: Optional[float] = None
        self._step_s = 0.0  # a recent learner step's duration (exponential average)

    def after_step(self, taken: Sequence, waiting: int, step_s: float) -> list:
        """taken: the unrolls just learned on; waiting: unrolls still queued; step_s: that step's seconds."""
        self._step_s = step_s if self._step_s == 0.0 else 0.8 * self._step_s + 0.2 * step_s
        self._short_since = None
        if not self.enabled:
            return list(taken)
        back = []
        for r in taken:
            if waiting >= self.depth or self.total - len(self.parked) > self.cap:
                self.parked.append(r)
            else:
                back.append(r)
        return back

    def while_short(self, waiting: int, now: float) -> list:
        """Called when `waiting` unrolls do not make a batch; returns parked unrolls to give back, if any."""
        if not self.parked or waiting >= self.per_batch:
            self._short_since = None
            return []
        if self._short_since is None:
            self._short_since = now
            return []
        if now - self._short_since < max(MIN_PATIENCE_S, PATIENCE_STEPS * self._step_s):
            return []
        self._short_since = None
        n = max(0, self.cap - (self.total - len(self.parked)))
        out, self.parked = self.parked[:n], self.parked[n:]
        return out
