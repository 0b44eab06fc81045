"""The learner's side of a run: take unrolls from the actors, learn on every whole batch, publish the
weights, report, evaluate and confirm (policy_checks.py) and checkpoint, until a stop condition;
`LearnerLoop(run).run()` says why it stopped.

TensorFlow is imported only when the loop is built, after the actors have been started (see runner.py).
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from . import checkpoint, reporting
from .config import Config, usable_cores
from .flow import SlotFlow
from .health import (ClipWatch, EntropyWatch, StaleWatch, clipped_warning, collapse_warning, deterministic_warning,
                     endless_warning, stale_warning)
from .model_fns import built_by, custom_model_name
from .policy_checks import PolicyChecks
from .preflight import slots_per_actor
from .protocol import ActorFailed, EnvError, UnrollReady, UnrollSource
from .reporting import RunStats, progress_line, say, warn
from .run_files import RunDir
from .stopping import Interrupted, StopSignals, UserCodeStopped
from .tensorboard import progress_scalars
from .tf_start import learner_device, start_tensorflow_quietly
from .trajectory import learner_inputs
from .transport import TransportTimeout, WeightStore

# In skip mode, this many non-finite batches in a row stop the run anyway: the data itself is broken.
MAX_NONFINITE_IN_A_ROW = 20
# --reproducible: a metrics row every this many learner steps (instead of every --log-every-s seconds).
RECORD_EVERY_STEPS = 10
# The final evaluation may run this long past --max-seconds before it is cut.
FINAL_EVAL_GRACE_S = 5.0


@dataclass
class Run:
    """What the learner loop works with, gathered once by `runner.train`."""

    cfg: Config
    spec: Any
    env_fn: Callable
    actor_model_fn: Optional[Callable]  # None: actors run the default MLP in numpy
    model: Any  # the Keras model if already built (custom models are built before the actors start)
    source: UnrollSource  # where filled unrolls come from (actor_pool.SlotSource)
    weights: WeightStore
    stats: RunStats
    run_dir: RunDir
    signals: StopSignals
    ckpt: Optional[checkpoint.Checkpoint]  # the checkpoint this run resumes from
    generation: int  # 0 for a fresh run, +1 for each resume
    report: Callable[[str], None]  # console lines that may repeat (reporting.Repeats.say)
    # (num_envs, seed) -> an EnvBatch of the run's vector backend for confirmations; None: single envs
    confirm_batch: Optional[Callable] = None
    precision: str = "float32"  # the default model's number format in the learner (precision.py)
    callback: Optional[Callable[[dict], Any]] = None  # train()'s: each metrics row; a true return stops the run
    init: Optional[checkpoint.Checkpoint] = None  # --init-from's: the model weights a new run starts from


def build_model(cfg: Config, spec, model_fn: Optional[Callable], precision: str = "float32"):
    """The learner's Keras model: model_fn(spec), or the default one in `precision` (the learner's, see
    precision.py; float32 for export). Starts TensorFlow."""
    start_tensorflow_quietly(cfg.resolved_learner_threads(), cfg.reproducible)
    if model_fn is None:
        from .model import build_default_model

        return build_default_model(spec, cfg, precision)
    return built_by(model_fn, spec, custom_model_name(cfg))


class NonFiniteData(RuntimeError):
    """An actor delivered a NaN or Inf observation or reward, with --on-nonfinite stop."""


class LearnerLoop:
    """The learner loop. Finished work is checkpointed every cfg.checkpoint_every seconds and at the end,
    also when the loop fails (unless the failure is in the numbers)."""

    def __init__(self, run: Run):
        self.ctx, self.cfg, self.stats = run, run.cfg, run.stats
        cfg = self.cfg
        # First: build_model imports TensorFlow with its start-up noise filtered (tf_start.py); the imports
        # below would import it unfiltered.
        model = run.model if run.model is not None else build_model(cfg, run.spec, None, run.precision)
        from .learner import Learner
        from .layout import published_layout
        from .tensorboard import Board

        self.layout = published_layout(model, run.spec, cfg, numpy_actors=run.actor_model_fn is None)
        self.learner = Learner(cfg, run.spec, model, self.layout)
        device = learner_device()
        if device not in ("CPU", None):
            run.report(f"the learner runs on {device}")
        if run.ckpt is not None:
            self.learner.restore(run.ckpt)
        elif run.init is not None:
            self.learner.start_from(run.init)
        run.weights.publish(self.learner.flat_weights())  # the actors' first unrolls wait for this
        # The actors have their first weights: silence from now on, past each one's start-up allowance, is a stall.
        # Watched from the learner's first step instead, a single actor frozen before its first unroll was never
        # replaced: the run ended on --wait-timeout-s with "no unroll from any actor".
        run.source.watch_stalls(cfg.actor_stall_s)
        self.learner.trace()  # overlaps the first trace with the actors' first unrolls
        self.checks = PolicyChecks(run, self.layout)
        self.board = Board(run.run_dir.path)
        self.ready: list[UnrollReady] = []  # filled unrolls not learned on yet
        self.flow = _slot_flow(cfg, run.source.num_actors)
        self.flow_said = False
        self.endless_said = False
        self.entropy_watch = EntropyWatch(run.spec.joint_actions or None, masked=run.spec.action_masks)
        self.clip_watch = None if run.spec.discrete else ClipWatch(run.spec.action_low, run.spec.action_high)
        self.stale_watch = StaleWatch()
        self.latest = None  # the newest published weights
        self.nonfinite_in_a_row = 0
        self.logged_failure = False
        self.next_record_step = RECORD_EVERY_STEPS
        self.last_data = time.monotonic()
        self.restarts_seen = 0
        now = self.stats.now()
        self.next_log = now + cfg.log_every_s
        self.next_eval = now + cfg.eval_every_s if cfg.eval_every_s > 0 else math.inf
        self.next_ckpt = now + cfg.checkpoint_every if cfg.checkpoint_every > 0 else math.inf
        self.last_log = (self.stats.env_steps, self.stats.learner_steps, now)
        self.callback_stop = False

    def run(self) -> str:
        """Loops until a stop condition; returns it ("solved", "max_steps", "max_seconds", "interrupted",
        "callback")."""
        from .learner import NumericalFault

        try:
            while (status := self._stop_reason()) is None:
                self._collect()
                self._learn_ready()
                self._report()
        except (NumericalFault, Interrupted):
            self.board.close()
            raise  # bad numbers are not worth keeping; a second Ctrl-C wants out at once
        except Exception:
            self.board.close()
            _try(self.save_checkpoint, "a final checkpoint")  # keep the finished work, then report the failure
            raise
        finally:
            self.checks.close()  # a periodic evaluation under way is dropped
        self.stats.train_end_s = self.stats.now()
        self._finish(status)
        return status

    def save_checkpoint(self) -> None:
        ctx, cfg = self.ctx, self.cfg
        meta = {"config": json.loads(cfg.to_json()), "stats": self.stats.state(),
                "policy_version": ctx.weights.version, "rng": {"seed": cfg.seed, "generation": ctx.generation}}
        checkpoint.save(ctx.run_dir.path, self.stats.learner_steps, meta, *self.learner.state(),
                        keep=cfg.keep_checkpoints, policy=(self.learner.flat_weights(), self.layout))

    def _stop_reason(self) -> Optional[str]:
        cfg, stats = self.cfg, self.stats
        if self.ctx.signals.requested:
            return "interrupted"
        if self.checks.solved(self.latest) and cfg.stop_at_target:
            return "solved"
        if cfg.max_steps and stats.env_steps >= cfg.max_steps:
            return "max_steps"
        if cfg.max_seconds and stats.now() >= cfg.max_seconds:
            return "max_seconds"
        if self.callback_stop:
            return "callback"
        return None

    def _log_row(self, final: bool = False) -> None:
        """One metrics.jsonl row, also handed to train()'s callback (whose true return stops the run; the final
        row's return is not asked for). An exception in the callback ends the run as any failure does: the
        final checkpoint is written, and train() raises it."""
        row = self.stats.record()
        self.ctx.run_dir.log_metrics(row)
        if self.ctx.callback is not None and self.ctx.callback(dict(row)) and not final:
            self.callback_stop = True

    def _wait_for_messages(self, timeout: float) -> list:
        """The source's messages. In serial mode the actors step their envs inside this call, here: a hung
        env is stopped by a stop signal or by the deadline (then the run fails, unless --max-seconds is up)."""
        if not self.cfg.serial:
            return self.ctx.source.wait(timeout)
        deadline = self.checks.deadline()
        try:
            with self.ctx.signals.user_code(deadline):
                return self.ctx.source.wait(timeout)
        except UserCodeStopped as e:
            if e.why == "deadline" and deadline >= self.cfg.wait_timeout_s:
                raise TransportTimeout(f"serial mode: an actor's env stepped for over {self.cfg.wait_timeout_s:.0f} s "
                                       "without finishing an unroll (a hung env?)") from None
            return []  # a stop signal or --max-seconds: the loop's next check stops the run

    def _collect(self) -> None:
        """Takes the actors' messages; raises TransportTimeout when none has sent data for too long."""
        ctx, stats = self.ctx, self.stats
        for msg in self._wait_for_messages(0.05 if not self.ready else 0.01):
            if isinstance(msg, UnrollReady) and msg.nonfinite:
                self._drop_nonfinite(msg)
            elif isinstance(msg, UnrollReady):
                self.ready.append(msg)
                if not self.cfg.reproducible:  # else counted in a fixed order, when its batch is formed
                    stats.add_episodes(msg.returns, msg.lengths)
                self.last_data = time.monotonic()
            elif isinstance(msg, EnvError):
                stats.env_errors += 1
                ctx.report(msg.text)
            elif isinstance(msg, ActorFailed):  # the pool reports the death, with the error's last line
                path = ctx.run_dir.log_actor_failure(msg.actor_id, msg.traceback)
                if not self.logged_failure:
                    say(f"tracebacks of failed actors go to {path}")
                    self.logged_failure = True
        if ctx.source.restarts != self.restarts_seen:  # a replacement started: the wait for data starts again
            self.restarts_seen = ctx.source.restarts
            self.last_data = time.monotonic()
        stats.actor_restarts = ctx.source.restarts
        stats.actor_stalls = ctx.source.stalls
        # Gives up on the actors only after their supervision could have replaced a silent one (patience_s).
        limit = max(self.cfg.wait_timeout_s, ctx.source.patience_s() + 1.0)
        if time.monotonic() - self.last_data > limit:
            raise TransportTimeout(f"no unroll from any actor in {limit:.0f} s "
                                   f"({ctx.source.alive()} of {ctx.source.num_actors} actors alive)")

    def _drop_nonfinite(self, msg: UnrollReady) -> None:
        """An unroll with a NaN/Inf observation or reward never reaches the normalizer or the learner: the
        run stops (--on-nonfinite stop) or the unroll is given back unused and counted."""
        self.stats.nonfinite_unrolls += 1
        if self.cfg.on_nonfinite == "stop":
            raise NonFiniteData(f"{msg.nonfinite}; --on-nonfinite skip drops such unrolls instead")
        self.ctx.source.give_back([msg])
        self.ctx.report(f"{msg.nonfinite}: unroll dropped ({self.stats.nonfinite_unrolls} so far)")

    def _learn_ready(self) -> None:
        """One learner step per whole batch of ready unrolls; publishes the weights after each."""
        from .learner import NumericalFault

        ctx, cfg, stats, source = self.ctx, self.cfg, self.stats, self.ctx.source
        if cfg.max_policy_lag and self.ready:
            self.ready = _drop_stale(self.ready, source, ctx.weights.version, cfg.max_policy_lag, stats)
        while len(self.ready) >= cfg.slots_per_batch:
            if cfg.reproducible:
                taken = _in_actor_order(self.ready, source.num_actors, cfg.slots_per_batch // source.num_actors)
                if taken is None:
                    break
                self.ready = [r for r in self.ready if r not in taken]
                for r in taken:
                    stats.add_episodes(r.returns, r.lengths)
            else:
                taken, self.ready = self.ready[:cfg.slots_per_batch], self.ready[cfg.slots_per_batch:]
            t_step = time.monotonic()
            versions = source.versions(taken)
            batch = source.batch(taken)  # copied out: the slots go back once the new weights are published
            self.learner.observe(batch["obs"])  # --normalize-obs: the statistics the step will use
            inputs = learner_inputs(batch, gamma=cfg.gamma, reward_scale=cfg.reward_scale,
                                    reward_clip=cfg.reward_clip)
            try:
                losses, self.latest = self.learner.step(
                    inputs, progress=stats.env_steps / cfg.max_steps if cfg.max_steps else 0.0,
                    # Once solved (a resumed solved run too), training goes on at a lower rate.
                    lr_scale=cfg.solved_lr_scale if stats.solved_at_s is not None else 1.0)
            except NumericalFault as e:
                self.nonfinite_in_a_row += 1
                if (cfg.on_nonfinite == "stop" or e.weights_damaged
                        or self.nonfinite_in_a_row >= MAX_NONFINITE_IN_A_ROW):
                    raise
                stats.nonfinite_skips += 1
                say(f"skipped a batch: {e} ({stats.nonfinite_skips} skipped so far)")
                source.give_back(taken)
                continue
            self.nonfinite_in_a_row = 0
            lags = (ctx.weights.version - versions).tolist()
            ctx.weights.publish(self.latest)
            # Given back after the publish, so each refill acts with these weights. Given back before the step,
            # an actor faster than the learner refilled them with the previous ones: a policy lag of ~2 steps,
            # at which CartPole's default policy collapsed (a return of 9) in ~15 % of seeds. Held back while two
            # batches still wait or more unrolls are out than the actors have cores (flow.py).
            now = time.monotonic()
            source.give_back(self.flow.after_step(taken, self.ready, now - t_step, now))
            if self.flow.parked and not self.flow_said:
                self.flow_said = True
                say(f"the actors fill unrolls faster than the learner uses them: their slots are held back (at most "
                    f"{self.flow.cap} unrolls filled or filling at once) to keep the policy lag low")
            stats.add_learner_step(cfg.unroll_length * cfg.envs_per_actor * len(taken), lags, losses)
            self._watch_health(losses, batch["actions"])
        source.give_back(self.flow.while_short(self.ready, time.monotonic()))

    def _watch_health(self, losses: dict, actions: np.ndarray) -> None:
        """One warning (and a count in the summary) when the policy stops reading its input, stops exploring,
        samples Box actions outside their bounds, or leaves the actors' behind (health.py)."""
        stats = self.stats
        spread, entropy = losses.get("policy_spread"), losses.get("choice_entropy", losses.get("entropy"))
        if self.stale_watch.update(losses.get("rho_mean")):
            stats.policy_collapses += 1
            warn(stale_warning(losses["rho_mean"], stats.learner_steps, self.cfg.target_kl))
        solved = stats.solved_at_s is not None
        outside = self.clip_watch.update(actions, solved) if self.clip_watch is not None else None
        if outside is not None:
            stats.policy_collapses += 1
            warn(clipped_warning(outside, stats.learner_steps, self.cfg.loss == "appo"))
        if stats.collapse.update(spread):
            stats.policy_collapses += 1
            warn(collapse_warning(spread, stats.collapse.peak, stats.learner_steps))
        if self.entropy_watch.update(entropy, solved=solved, uniform=losses.get("choice_uniform")):
            stats.policy_collapses += 1
            warn(deterministic_warning(entropy, self.entropy_watch.uniform, stats.learner_steps,
                                       self.entropy_watch.masked))

    def _report(self) -> None:
        """Evaluation, the progress line, metrics and TensorBoard, checkpoints: each when it is due."""
        ctx, cfg, stats = self.ctx, self.cfg, self.stats
        now = stats.now()
        if self.checks.periodic is not None or (now >= self.next_eval and self.latest is not None):
            if self.checks.evaluate_slice(self.latest):  # played in slices between learner steps
                self.next_eval = stats.now() + cfg.eval_every_s
        if cfg.reproducible and stats.learner_steps >= self.next_record_step:
            # Metrics rows at fixed learner steps, so two runs' rows pair up (the console stays on the clock).
            self._log_row()
            self.next_record_step = (stats.learner_steps // RECORD_EVERY_STEPS + 1) * RECORD_EVERY_STEPS
        if now >= self.next_log:
            steps, learner_steps, t = self.last_log
            dt = max(1e-9, now - t)
            rate, learner_rate = (stats.env_steps - steps) / dt, (stats.learner_steps - learner_steps) / dt
            self.last_log = (stats.env_steps, stats.learner_steps, now)
            reporting.console.progress(progress_line(stats, rate, max_steps=cfg.max_steps,
                                                     max_seconds=cfg.max_seconds, verbose=cfg.verbose))
            if not cfg.reproducible:
                self._log_row()
            self.board.write(stats.env_steps, progress_scalars(
                stats, rate, learner_rate, float(self.learner.optimizer.learning_rate.numpy()),
                ctx.source.fill_fraction(len(self.ready))))
            self.next_log = now + cfg.log_every_s
            if not self.endless_said:
                said = endless_warning(stats.env_steps, stats.episodes, cfg.num_actors * cfg.envs_per_actor)
                if said:
                    self.endless_said = True
                    warn(said)
        if now >= self.next_ckpt:
            self.save_checkpoint()
            self.next_ckpt = stats.now() + cfg.checkpoint_every

    def _finish(self, status: str) -> None:
        """The final checkpoint, policy.npz and (unless interrupted) a last evaluation."""
        ctx, stats = self.ctx, self.stats
        self.save_checkpoint()
        latest = self.learner.flat_weights()
        if status == "solved" and self.checks.confirmed is not None:
            latest = self.checks.confirmed  # the weights that passed (the learner has not stepped since)
        ctx.run_dir.save_weights(latest, self.layout)
        if status != "interrupted":  # an interrupted user wants out now, not five more episodes
            self.checks.evaluate(latest, grace_s=FINAL_EVAL_GRACE_S)
        self.board.write(stats.env_steps, {"eval/return": stats.last_eval})
        self.board.close()
        self._log_row(final=True)  # last: a callback that raises here has lost the run nothing


def _slot_flow(cfg: Config, num_actors: int) -> SlotFlow:
    """flow.SlotFlow for the run: its cap is the cores the actor processes have (the learner keeps one); Ray's
    actors have their own nodes, so there only queued unrolls are parked. Serial and reproducible runs form
    their batches in a fixed order: they park nothing."""
    total = slots_per_actor(cfg) * num_actors
    cap = total if cfg.backend == "ray" else max(1, usable_cores() - 1)
    return SlotFlow(cfg.slots_per_batch, total, cap, enabled=not (cfg.serial or cfg.reproducible))


def _in_actor_order(ready: list, num_actors: int, per_actor: int) -> Optional[list]:
    """--reproducible: the next batch, the first `per_actor` unrolls of actor 0, then of actor 1, ... (each
    actor's in the order it filled them); None until every actor has sent that many."""
    by_actor: list[list] = [[] for _ in range(num_actors)]
    for r in ready:
        if len(by_actor[r.actor_id]) < per_actor:
            by_actor[r.actor_id].append(r)
    if any(len(b) < per_actor for b in by_actor):
        return None
    return [r for b in by_actor for r in b]


def _drop_stale(ready: list, source: UnrollSource, version: int, max_lag: int, stats: RunStats) -> list:
    """Gives back, unused, the ready unrolls whose policy trails the learner by more than max_lag steps."""
    lags = version - source.versions(ready)
    stale = [r for r, lag in zip(ready, lags) if lag > max_lag]
    stats.stale_dropped += len(stale)
    source.give_back(stale)
    return [r for r, lag in zip(ready, lags) if lag <= max_lag]


def _try(action: Callable[[], None], what: str) -> None:
    try:
        action()
    except Exception as e:  # noqa: BLE001 - the failure being handled matters more than this one
        print(f"actorlearner: could not write {what}: {type(e).__name__}: {e}", file=sys.stderr)
