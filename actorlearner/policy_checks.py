"""The learner's weights played in the learner process: the confirmation of a solve (the weights that pass
are the run's final policy) and the periodic and final evaluations, each under a deadline and the stop
signals (`StopSignals.user_code`), since they run user env code.

A confirmation blocks the learner while it plays, so confirmations are spaced to take at most CONFIRM_SHARE
of the run. A periodic evaluation is played in slices between learner steps, at most EVAL_SHARE of the time
and MAX_SLICE_S at once: CartPole's (0.02-0.1 s) and MuJoCo's (~0.5 s) fit in one slice, while a CarRacing
one (5 episodes of 1,000 steps at 7 ms, ~35 s) held the learner for all of it when it was played in one go,
the run's first ~35 s on its first evaluation."""

from __future__ import annotations

import time
from typing import Optional

import numpy as np

from .evaluation import (SlicedEvaluation, confirmation_passes, run_episodes, run_episodes_together,
                         run_first_episodes)
from .policies import make_policy
from .reporting import console, fmt_return, say
from .stopping import UserCodeStopped

# After a failed confirmation, the next one waits this many learner steps.
CONFIRM_EVERY = 5
# The most of the run's time that the periodic evaluations and the confirmations may take (see above).
EVAL_SHARE = 0.1
CONFIRM_SHARE = 0.5
# The longest slice of a periodic evaluation; credit for more (EVAL_SHARE of the time trained) is not kept,
# so that an --eval-every-s of minutes does not save up a long stop of the learner.
MAX_SLICE_S = 1.0


def spacing(took_s: float, share: float) -> float:
    """Seconds to wait after a check that took `took_s` so that checks take at most `share` of the time."""
    return took_s * (1.0 - share) / share


class PolicyChecks:
    """Confirmation and evaluation of a run's weights (learner_loop.Run `run`, layout.published_layout)."""

    def __init__(self, run, layout):
        self.run, self.cfg, self.stats, self.layout = run, run.cfg, run.stats, layout
        self.policy = make_policy(run.cfg, run.spec, run.actor_model_fn)
        self.next_confirm_step = 0
        self.next_confirm_s = 0.0  # and not before this run time (CONFIRM_SHARE)
        self.confirmed = None  # the weights that passed the confirmation
        # The episodes of every evaluation, periodic and final: the same seeds, so their figures compare.
        self.eval_episodes = dict(episodes=run.cfg.eval_episodes, seed=run.cfg.seed + 10_000,
                                  greedy=run.cfg.eval_greedy)
        self.periodic: Optional[SlicedEvaluation] = None  # the periodic evaluation under way
        self.periodic_flat = None  # its weights, a copy: it plays them to its end
        self.periodic_at = (0.0, 0)  # the run time and env steps of those weights
        self._periodic_policy = None  # its own policy: a confirmation between slices loads other weights
        self._slice_credit = 0.0  # seconds of evaluation that EVAL_SHARE allows now (MAX_SLICE_S at most)
        self._slice_end = time.monotonic()

    def solved(self, latest) -> bool:
        """Solved: the training window reached the target and, with --confirm-episodes, so did the current
        weights on fresh episodes (then they are the final policy). A failed confirmation is said and counted;
        the next waits CONFIRM_EVERY learner steps."""
        cfg, stats = self.cfg, self.stats
        if stats.solved_at_s is not None:
            return True
        if not stats.window_reached():
            return False
        if cfg.confirm_episodes == 0:
            stats.mark_solved(None)
            return True
        if latest is None or stats.learner_steps < self.next_confirm_step or stats.now() < self.next_confirm_s:
            return False
        t = time.monotonic()
        returns = self._confirm(latest)
        self.next_confirm_s = stats.now() + spacing(time.monotonic() - t, CONFIRM_SHARE)
        if returns is None:  # stopped by a signal, --max-seconds or a hung env
            return False
        passed, mean, se = confirmation_passes(returns, stats.target, cfg.confirm_margin_se)
        if passed:
            stats.mark_solved(mean)
            self.confirmed = latest
            return True
        stats.confirmations_failed += 1
        self.next_confirm_step = stats.learner_steps + CONFIRM_EVERY
        short = (fmt_return(mean) if mean < stats.target else f"{fmt_return(mean)} - {cfg.confirm_margin_se:g} s.e. "
                 f"({fmt_return(se)}) = {fmt_return(mean - cfg.confirm_margin_se * se)}")
        say(f"[{stats.now():7.1f}s] window {fmt_return(stats.mean_return_100())} ≥ {stats.target:g}, confirmation "
            f"{short} < {stats.target:g}: training on")
        return False

    def _confirm(self, flat) -> Optional[list]:
        """The returns of the weights `flat` over --confirm-episodes fresh episodes, played together in this
        process with sampled actions; None if a stop signal, --max-seconds or a hung env cut it."""
        cfg = self.cfg
        self.policy.load(flat)
        seed = cfg.seed + 20_000 + 1_000 * self.stats.confirmations_failed  # fresh episodes at every attempt
        try:
            with self.run.signals.user_code(*self.limits()) as on_step:
                if self.run.confirm_batch is None:
                    returns, _ = run_episodes_together(self.policy, self.run.env_fn, self.run.spec,
                                                       episodes=cfg.confirm_episodes, seed=seed, on_step=on_step)
                else:
                    batch = self.run.confirm_batch(cfg.confirm_episodes, seed)
                    try:
                        returns, _ = run_first_episodes(self.policy, batch, self.run.spec, seed=seed,
                                                        on_step=on_step)
                    finally:
                        batch.close()
        except UserCodeStopped as e:
            if e.why == "stalled":
                say(f"confirmation stopped by {self._stalled()}")
            return None
        return list(returns) if returns else None

    def deadline(self) -> float:
        """Seconds that a serial-mode wait (the actors' env steps, in this process) may take: up to
        --wait-timeout-s, and not past --max-seconds."""
        cfg = self.cfg
        if not cfg.max_seconds:
            return cfg.wait_timeout_s
        return max(0.0, min(cfg.wait_timeout_s, cfg.max_seconds - self.stats.now()))

    def limits(self, grace_s: float = 0.0) -> tuple[Optional[float], float]:
        """(deadline, step_s) for StopSignals.user_code around episodes played here: the whole not past
        --max-seconds (+ grace_s, for the final evaluation; None without it), and no env step longer than
        --wait-timeout-s (a hung env). Episodes are not cut for being long."""
        cfg = self.cfg
        deadline = max(0.0, cfg.max_seconds - self.stats.now() + grace_s) if cfg.max_seconds else None
        return deadline, cfg.wait_timeout_s

    def _stalled(self) -> str:
        return f"an env step that took over {self.cfg.wait_timeout_s:g} s (--wait-timeout-s; a hung env?)"

    def evaluate(self, flat, grace_s: float = 0.0) -> None:
        """Evaluation episodes played through in this process (the final evaluation), stopped by a stop signal,
        --max-seconds (+ grace_s) or a hung env."""
        self.policy.load(flat)
        deadline, _ = limits = self.limits(grace_s)
        try:
            with self.run.signals.user_code(*limits) as on_step:
                returns, lengths = run_episodes(self.policy, self.run.env_fn, self.run.spec, **self.eval_episodes,
                                                on_step=on_step)
        except UserCodeStopped as e:
            self._say_stopped(e, deadline)
            return
        if returns:
            self._record(flat, returns, lengths, (self.stats.now(), self.stats.env_steps))

    def evaluate_slice(self, flat) -> bool:
        """Plays the periodic evaluation on for as long as EVAL_SHARE allows (at least one env step when any
        time is due, at most MAX_SLICE_S), first starting one with the weights `flat` if none is under way.
        True once it has ended: played through and recorded, or stopped (said)."""
        t = time.monotonic()
        self._slice_credit = min(MAX_SLICE_S, self._slice_credit
                                 + (t - self._slice_end) * EVAL_SHARE / (1.0 - EVAL_SHARE))
        self._slice_end = t
        if self._slice_credit <= 0.0:
            return False
        if self.periodic is None:
            if self._periodic_policy is None:
                self._periodic_policy = make_policy(self.cfg, self.run.spec, self.run.actor_model_fn)
            self.periodic_flat, self.periodic_at = np.array(flat), (self.stats.now(), self.stats.env_steps)
            self._periodic_policy.load(self.periodic_flat)
            self.periodic = SlicedEvaluation(self._periodic_policy, self.run.env_fn, self.run.spec,
                                             **self.eval_episodes)
        deadline, _ = limits = self.limits()
        stopped = False
        try:
            with self.run.signals.user_code(*limits) as on_step:
                done = self.periodic.play(self._slice_credit, on_step)
        except UserCodeStopped as e:
            if e.why != "deadline":  # at --max-seconds the run ends, and its final evaluation is said
                self._say_stopped(e, deadline)
            done = stopped = True
        finally:
            self._slice_end = time.monotonic()
            self._slice_credit -= self._slice_end - t
            self.stats.evaluation_s += self._slice_end - t
        if done:
            if not stopped and self.periodic.returns:
                self._record(self.periodic_flat, self.periodic.returns, self.periodic.lengths,
                             self.periodic_at)
            self.close()
        return done

    def close(self) -> None:
        """Ends a periodic evaluation under way (its env closed)."""
        periodic, self.periodic = self.periodic, None
        if periodic is not None:
            try:
                periodic.close()
            except Exception as e:  # noqa: BLE001 - a user env's close may fail; the run goes on or ends anyway
                say(f"closing the evaluation env raised {type(e).__name__}: {e}")

    def _say_stopped(self, e: UserCodeStopped, deadline: Optional[float]) -> None:
        if e.why == "stalled":
            why = self._stalled()
        elif e.why == "deadline":
            why = f"--max-seconds (it had {deadline:.1f} s; `actorlearner eval` plays the saved policy)"
        else:
            why = "a stop signal"
        say(f"evaluation stopped by {why}; no evaluation figure this time")

    def _record(self, flat, returns: list, lengths: list, at: tuple[float, int]) -> None:
        """An evaluation's figures: evals.jsonl (at the run time and env steps `at` of its weights), best.npz
        when it is the best yet, and the console."""
        stats = self.stats
        stats.last_eval = float(np.mean(returns))
        self.run.run_dir.log_eval({"time_s": round(at[0], 3), "env_steps": at[1],
                                   "return_mean": stats.last_eval, "return_std": float(np.std(returns)),
                                   "episodes": len(returns)})
        if stats.best_eval is None or stats.last_eval > stats.best_eval:
            stats.best_eval = stats.last_eval
            self.run.run_dir.save_weights(flat, self.layout, "best.npz")  # what `eval --which best` plays
        console.detail(f"[{stats.now():7.1f}s] eval over {len(returns)} episodes: return {fmt_return(stats.last_eval)} "
                       f"± {fmt_return(float(np.std(returns)))}, length {float(np.mean(lengths)):.0f}")
