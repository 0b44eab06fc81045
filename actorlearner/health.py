"""Watching a run's health beyond its numbers being finite: the collapse of a policy into one that gives every
observation the same action distribution, or (discrete actions) into one that no longer explores; Box actions
sampled outside their bounds; a learner whose policy has left the actors' behind (StaleWatch).

Seen on Pong (seed 2 at learning rate 7.5e-4 with Adam epsilon 1e-7): after ~0.65 M steps almost every
torso unit stopped firing on Pong frames, the logits became the same for every frame (their spread 0.0000),
and the run sat at a return of -20 for the next 2 M steps with finite, quiet losses. Nothing said so. The
learner reports `policy_spread` (losses.policy_spread) with every step; CollapseWatch turns a long stretch of
it near zero, after it had been well above, into one warning.

The spread misses a policy whose logits saturate: CartPole at --learning-rate 0.05 sat at a return of 9.3 with
a mean entropy of 3e-18 nats (the same action everywhere, at probability 1) while its centred logits still
differed by 0.43 across observations; so did 5 of 6 seeds with 8 actors before flow.py, and an Acrobot seed
now and then (entropy 2e-5, return -500). EntropyWatch turns a long stretch of near-zero entropy into one
warning. Healthy runs stay far above it: CartPole keeps 0.5-0.57 of its 0.69 nats after solving.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Optional

import numpy as np

# A collapse: the spread stays below both of these for COLLAPSE_STEPS learner steps in a row...
COLLAPSE_FRACTION = 0.01  # ...this share of the highest spread the run has had,
COLLAPSE_FLOOR = 1e-3  # ...and this absolute level (Pong's collapsed policy had 0.0000);
COLLAPSE_STEPS = 100
# ...and only once the run has had a spread of at least this (it once told observations apart): a fresh Pong
# CNN starts at 0.0004-0.007, below the floor, and reaches 0.03-0.08 before it learns, 1.4-2.1 while it does.
MIN_PEAK = 0.05
# After a warning, the watch re-arms when the spread is back above this share of the peak.
RECOVERED_FRACTION = 0.1


class _Stretch:
    """Counts learner steps in a row that are low; True at the step that completes COLLAPSE_STEPS of them, once,
    until a recovered step re-arms it. What the watches of a stretch share (StaleWatch counts within a window)."""

    def __init__(self):
        self.low_steps = 0
        self.armed = True

    def step(self, low: bool, recovered: bool) -> bool:
        if recovered:
            self.armed = True
        self.low_steps = self.low_steps + 1 if low else 0
        if self.armed and self.low_steps >= COLLAPSE_STEPS:
            self.armed = False
            return True
        return False


class CollapseWatch:
    """Feeds on each learner step's policy_spread; `update` returns True at the step that completes a
    collapse (once, until the spread recovers). RunStats owns one and keeps its `peak` in checkpoints."""

    def __init__(self, peak: float = 0.0):
        self.peak = peak
        self.stretch = _Stretch()

    def update(self, spread: Optional[float]) -> bool:
        if spread is None:
            return False
        self.peak = max(self.peak, spread)
        low = self.peak >= MIN_PEAK and spread < min(COLLAPSE_FLOOR, COLLAPSE_FRACTION * self.peak)
        return self.stretch.step(low, recovered=spread >= RECOVERED_FRACTION * self.peak)


def collapse_warning(spread: float, peak: float, learner_step: int) -> str:
    """The one-line warning for a collapse found at `learner_step`."""
    return (f"learner step {learner_step}: the policy has given every observation the same action distribution "
            f"for the last {COLLAPSE_STEPS} steps (output spread {spread:.2g}, up to {peak:.2g} earlier): it no "
            f"longer reads its input and rarely recovers. Unless the best action truly does not depend on the "
            f"observation, restart from an earlier checkpoint or with a lower --learning-rate (a larger "
            f"--adam-epsilon and a --max-grad-norm like the Atari presets' 1e-5 and 0.5 also help)")


# A discrete policy stopped exploring: its mean entropy stays below this share of a uniform choice's, log(A),
# for COLLAPSE_STEPS learner steps in a row (every collapse seen had 1e-5 of it or less, healthy runs 0.7);
# the watch re-arms once it is back above RECOVERED_FRACTION of log(A).
DETERMINISTIC_FRACTION = 1e-3


class EntropyWatch:
    """Feeds on each learner step's mean policy entropy (nats); `update` returns True at the step that completes
    a stretch of COLLAPSE_STEPS below DETERMINISTIC_FRACTION * log(num_actions) (once, until it recovers).
    Discrete actions only: a Gaussian's entropy has no floor to measure against (None: the watch is off).
    masked (--action-masks): each step brings its own yardstick instead, the mean entropy and the uniform
    choice's over the samples whose masks left a choice (losses.choice_entropy)."""

    def __init__(self, num_actions: Optional[int], masked: bool = False):
        self.masked = masked
        self.uniform = math.log(num_actions) if not masked and num_actions and num_actions > 1 else 0.0
        self.stretch = _Stretch()

    def update(self, entropy: Optional[float], solved: bool = False, uniform: Optional[float] = None) -> bool:
        """solved: the run has solved its task, where a deterministic policy is an answer, not a trap (FrozenLake's
        solved policy kept 9e-4 of log(4) when training went on); the watch is off from then on. Not the mean
        return against the target now: FrozenLake's window of 100 episodes falls below it by chance.
        uniform: a masked run's yardstick at this step (0: no sample had a choice)."""
        if self.masked:
            self.uniform = uniform or 0.0
        if entropy is None or self.uniform == 0.0 or solved:
            return self.stretch.step(False, recovered=False)  # not a low step: the stretch starts again
        return self.stretch.step(entropy < DETERMINISTIC_FRACTION * self.uniform,
                                 recovered=entropy >= RECOVERED_FRACTION * self.uniform)


def deterministic_warning(entropy: float, uniform: float, learner_step: int, masked: bool = False) -> str:
    """The one-line warning for a policy found deterministic at `learner_step`."""
    where = " where the masks left a choice" if masked else ""
    among = " among the allowed actions" if masked else ""
    return (f"learner step {learner_step}: the policy has been deterministic for the last {COLLAPSE_STEPS} steps "
            f"(mean entropy {entropy:.2g} nats{where}, {uniform:.2g} for a uniform choice{among}): the actions it "
            f"does not take are never tried, so it no longer learns about them and rarely recovers. Unless its "
            f"return is where you want it, restart from an earlier checkpoint or with a lower --learning-rate or a "
            f"higher --entropy-cost")


# Box actions: the share of sampled action components outside the env's bounds (clipped when the env is stepped).
# A Gaussian policy whose mean has left the bounds gets the same clipped action from nearly every sample, so the
# samples carry no gradient to bring it back. Seen (2 cores, 2026-12-04) with bounds [-1, 1], a best action of 0.3
# in each of 2 dims (reward -10 * sum((a - 0.3)^2), 20 steps) and the IMPALA defaults: with actor processes (a policy
# lag of ~0.5 steps) the mean ran off to +25-40 in 300 learner steps (return -196, every action at the bound),
# while serial and --reproducible runs (no lag), IMPALA with unclipped importance weights, and APPO all learned
# ~0.4 towards 0.3 (return -85 to -88). The same task on bounds [-1000, 1000] learned 0.30. At the bounds
# legitimately: LunarLanderContinuous under APPO had 97 % outside while learning (return 118 at 60 s), and
# MountainCarContinuous's solved bang-bang policy 97 %: hence 99 %, and the watch is off once the task is solved.
CLIPPED_FRACTION = 0.99
CLIP_RECOVERED_FRACTION = 0.5


class ClipWatch:
    """Feeds on each learner step's batch of sampled (unclipped) Box actions; `update` returns the share outside
    the bounds at the step that completes COLLAPSE_STEPS of them at or above CLIPPED_FRACTION (once, until it
    falls below CLIP_RECOVERED_FRACTION), else None."""

    def __init__(self, low: np.ndarray, high: np.ndarray):
        self.low, self.high = np.asarray(low, np.float32), np.asarray(high, np.float32)
        self.stretch = _Stretch()

    def update(self, actions: np.ndarray, solved: bool = False) -> Optional[float]:
        """actions [T, B, D]; solved: the run has solved its task (bang-bang control is an answer then)."""
        if solved:
            self.stretch.step(False, recovered=False)
            return None
        outside = float(np.mean((actions < self.low) | (actions > self.high)))
        fired = self.stretch.step(outside >= CLIPPED_FRACTION, recovered=outside < CLIP_RECOVERED_FRACTION)
        return outside if fired else None


def clipped_warning(outside: float, learner_step: int, appo: bool) -> str:
    """The one-line warning for a policy found sampling outside its action bounds at `learner_step`; appo: the
    run has the continuous recipe's loss already."""
    fix = ("a lower --reward-scale or --init-log-std, or --normalize-obs" if appo else
           "--preset continuous (APPO, 4 passes of 4 minibatches, normalized advantages and observations), as the "
           "presets for continuous tasks have it")
    return (f"learner step {learner_step}: {outside:.0%} of the sampled actions have fallen outside the action "
            f"bounds for the last {COLLAPSE_STEPS} steps and are clipped to them: the policy's mean has left the "
            f"action space, where every sample gives the same clipped action and no gradient brings it back. Unless "
            f"the best actions truly sit at the bounds (bang-bang control), restart with {fix}")


# The learner's policy has moved so far from the ones the actors acted with that their samples carry almost no
# weight: the batch's mean importance weight pi/mu (1 when the policies agree) below STALE_RHO in STALE_STEPS of the
# last STALE_WINDOW learner steps; the watch re-arms after a whole window without one. Seen (2 cores, 2026-12-04)
# under APPO with no entropy bonus on a task with one best action (1-D Box, reward -(a - 3)^2): the Gaussian's std
# shrank to ~0.02, the gradient norm grew to ~100, and each update moved the mean so many stds that the batches
# from the actor a version behind had weights of 1e-36 to 1e-3 (clip fraction 1.0, no gradient), in runs of 4-9
# steps between the ~1 of the other actor's: 45 of steps 335-420, while the return fell from -0.01 to -112.
# Healthy runs have none: that run's first 334 steps had no weight below 0.5. A window, not a run of steps in a
# row, for that interleaving.
STALE_RHO = 0.05
STALE_WINDOW = 50
STALE_STEPS = 20


class StaleWatch:
    """Feeds on each learner step's rho_mean; `update` returns True at the step that completes STALE_STEPS below
    STALE_RHO within the last STALE_WINDOW (once, until a whole window has none)."""

    def __init__(self):
        self.recent: deque = deque(maxlen=STALE_WINDOW)
        self.armed = True

    def update(self, rho_mean: Optional[float]) -> bool:
        self.recent.append(rho_mean is not None and math.isfinite(rho_mean) and rho_mean < STALE_RHO)
        low = sum(self.recent)
        if low == 0:
            self.armed = True
        if self.armed and low >= STALE_STEPS:
            self.armed = False
            return True
        return False


def stale_warning(rho_mean: float, learner_step: int, target_kl: float = 0.0) -> str:
    """The one-line warning for samples found to carry no weight at `learner_step`; target_kl: the run's (0: off),
    so that the first remedy named is one it does not have already."""
    kl = f"a --target-kl below {target_kl:g}" if target_kl else "--target-kl 0.02 (appo)"
    return (f"learner step {learner_step}: the actors' samples carried almost no weight in {STALE_STEPS} of the last "
            f"{STALE_WINDOW} steps (mean importance weight {rho_mean:.2g}; 1 when the learner's policy is the one "
            f"they acted with): each update moves the policy further than the actors can follow, and it learns "
            f"nothing from their samples. Seen with a continuous policy whose std had shrunk: restart with "
            f"{kl}, a lower --learning-rate, --max-grad-norm 0.5, or an --entropy-cost")


# No episode has ended after this many env steps per env: an env with no time limit that never ends one (a custom
# env registered without max_episode_steps). The longest episodes of the envs here are Atari's 27 K agent steps at
# 108 K frames, which an untrained agent never plays; classic control's limits are 200-1,000.
ENDLESS_STEPS_PER_ENV = 10_000


def endless_warning(env_steps: int, episodes: int, num_envs: int) -> Optional[str]:
    """The one-line warning for a run none of whose `num_envs` envs has ended an episode in `env_steps`; None
    while that is not (yet) so."""
    if episodes > 0 or env_steps < ENDLESS_STEPS_PER_ENV * num_envs:
        return None
    return (f"no episode has ended in {env_steps} env steps ({env_steps // num_envs} per env): the env may never "
            f"end one (no terminal state, no time limit). Without ended episodes there is no return to report, to "
            f"solve on or to evaluate: register it with max_episode_steps or wrap it in gymnasium's TimeLimit")
