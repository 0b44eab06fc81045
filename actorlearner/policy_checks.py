"""The learner's weights played in the learner process: the confirmation of a solve (the weights that pass
are the run's final policy) and the periodic and final evaluations, each under a deadline and the stop
signals (`StopSignals.user_code`), since they run user env code."""

from __future__ import annotations

from typing import Optional

import numpy as np

from .evaluation import confirmation_passes, run_episodes, run_episodes_together, run_first_episodes
from .policies import make_policy
from .reporting import console, say
from .stopping import UserCodeStopped

# After a failed confirmation, the next one waits this many learner steps.
CONFIRM_EVERY = 5


class PolicyChecks:
    """Confirmation and evaluation of a run's weights (learner_loop.Run `run`, layout.published_layout)."""

    def __init__(self, run, layout):
        self.run, self.cfg, self.stats, self.layout = run, run.cfg, run.stats, layout
        self.policy = make_policy(run.cfg, run.spec, run.actor_model_fn)
        self.next_confirm_step = 0
        self.confirmed = None  # the weights that passed the confirmation

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
        if latest is None or stats.learner_steps < self.next_confirm_step:
            return False
        returns = self._confirm(latest)
        if returns is None:  # stopped by a signal or its deadline
            return False
        passed, mean, se = confirmation_passes(returns, stats.target, cfg.confirm_margin_se)
        if passed:
            stats.mark_solved(mean)
            self.confirmed = latest
            return True
        stats.confirmations_failed += 1
        self.next_confirm_step = stats.learner_steps + CONFIRM_EVERY
        short = (f"{mean:.1f}" if mean < stats.target else
                 f"{mean:.1f} - {cfg.confirm_margin_se:g} s.e. ({se:.1f}) = {mean - cfg.confirm_margin_se * se:.1f}")
        say(f"[{stats.now():7.1f}s] window {stats.mean_return_100():.1f} ≥ {stats.target:g}, confirmation "
            f"{short} < {stats.target:g}: training on")
        return False

    def _confirm(self, flat) -> Optional[list]:
        """The returns of the weights `flat` over --confirm-episodes fresh episodes, played together in this
        process with sampled actions; None if a stop signal or the deadline cut it."""
        cfg = self.cfg
        self.policy.load(flat)
        seed = cfg.seed + 20_000 + 1_000 * self.stats.confirmations_failed  # fresh episodes at every attempt
        try:
            with self.run.signals.user_code(self.deadline()):
                if self.run.confirm_batch is None:
                    returns, _ = run_episodes_together(self.policy, self.run.env_fn, self.run.spec,
                                                       episodes=cfg.confirm_episodes, seed=seed)
                else:
                    batch = self.run.confirm_batch(cfg.confirm_episodes, seed)
                    try:
                        returns, _ = run_first_episodes(self.policy, batch, self.run.spec, seed=seed)
                    finally:
                        batch.close()
        except UserCodeStopped:
            return None
        return list(returns) if returns else None

    def deadline(self, grace_s: float = 0.0) -> float:
        """Seconds that user code run in this process (evaluation, serial stepping) may take: up to
        --wait-timeout-s, and not past --max-seconds (+ grace_s, for the final evaluation)."""
        cfg = self.cfg
        if not cfg.max_seconds:
            return cfg.wait_timeout_s
        return max(0.0, min(cfg.wait_timeout_s, cfg.max_seconds - self.stats.now() + grace_s))

    def evaluate(self, flat, grace_s: float = 0.0) -> None:
        """Evaluation episodes in this process, stopped by a stop signal or the deadline (a hung env)."""
        cfg, stats = self.cfg, self.stats
        self.policy.load(flat)
        deadline = self.deadline(grace_s)
        try:
            with self.run.signals.user_code(deadline):
                returns, lengths = run_episodes(self.policy, self.run.env_fn, self.run.spec,
                                                episodes=cfg.eval_episodes, seed=cfg.seed + 10_000,
                                                greedy=cfg.eval_greedy)
        except UserCodeStopped as e:
            if e.why != "deadline":
                why = "a stop signal"
            elif deadline < cfg.wait_timeout_s:  # cut by --max-seconds (plus the final evaluation's grace)
                why = f"--max-seconds ({deadline:.1f} s were left; `actorlearner eval` plays the saved policy)"
            else:
                why = f"its deadline ({deadline:.1f} s; a hung env?)"
            say(f"evaluation stopped by {why}; no evaluation figure this time")
            return
        if not returns:
            return
        stats.last_eval = float(np.mean(returns))
        self.run.run_dir.log_eval({"time_s": round(stats.now(), 3), "env_steps": stats.env_steps,
                                   "return_mean": stats.last_eval, "return_std": float(np.std(returns)),
                                   "episodes": len(returns)})
        if stats.best_eval is None or stats.last_eval > stats.best_eval:
            stats.best_eval = stats.last_eval
            self.run.run_dir.save_weights(flat, self.layout, "best.npz")  # what `eval --which best` plays
        console.detail(f"[{stats.now():7.1f}s] eval over {len(returns)} episodes: return "
                       f"{stats.last_eval:.1f} ± {float(np.std(returns)):.1f}, length {float(np.mean(lengths)):.0f}")
