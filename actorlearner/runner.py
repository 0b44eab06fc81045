"""All the wiring of a training run in one function: `train(cfg, env_fn=None, model_fn=None)`.

Order matters for start-up time: actors are spawned before the learner imports TensorFlow (they need
only numpy and gymnasium), so their start overlaps the ~2 s TensorFlow import.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import cloudpickle
import numpy as np

from . import checkpoint, reporting
from .actor import MSG_ENV_ERROR, MSG_FATAL, MSG_UNROLL, ActorArgs, make_policy, unroll_spec
from .actor_pool import ActorPool, SerialActors
from .config import RESUME_FIXED, Config, ConfigError, config_from_dict, validate
from .envs import check_env_id, inspect_env, make_env_fn
from .evaluation import run_episodes
from .policies import default_layout, layout_size
from .reporting import RunDir, RunStats, progress_line, say
from .stopping import Interrupted, StopSignals
from .tf_start import start_tensorflow_quietly
from .trajectory import learner_inputs
from .transport import SlotPool, TransportTimeout, WeightStore, new_run_token, remove_stale_segments


# In skip mode, this many non-finite batches in a row stop the run anyway: the data itself is broken.
MAX_NONFINITE_IN_A_ROW = 20


def prepare(cfg: Config, env_fn: Optional[Callable] = None, model_fn: Optional[Callable] = None):
    """Validates everything a run needs, before any process starts. Raises ConfigError."""
    validate(cfg)
    if env_fn is None:
        check_env_id(cfg.env)
        env_fn = make_env_fn(cfg.env)
    elif not callable(env_fn):
        raise ConfigError("env_fn must be a callable that returns a gymnasium.Env")
    spec = inspect_env(env_fn)
    if model_fn is not None and cfg.normalize_obs:
        raise ConfigError("--normalize-obs works on the default model; a custom model can normalize inside itself")
    if model_fn is not None and cfg.actor_inference == "numpy":
        raise ConfigError("--actor-inference numpy runs only the default MLP; a custom model needs "
                          "tensorflow (or auto)")
    target = cfg.target_return if cfg.target_return is not None else spec.reward_threshold
    return env_fn, spec, target


def default_run_dir(cfg: Config) -> str:
    name = cfg.env if isinstance(cfg.env, str) else "custom"
    return os.path.join("runs", f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")


@dataclass
class _Run:
    """What the learner loop works with, gathered once by `train`."""

    cfg: Config
    spec: Any
    env_fn: Callable
    actor_model_fn: Optional[Callable]  # None: actors run the default MLP in numpy
    model: Any  # the Keras model if already built (custom models are built before the actors start)
    pool: Any
    num_actors: int
    slots_per_actor: int
    slots: SlotPool
    weights: WeightStore
    stats: RunStats
    run_dir: RunDir
    signals: StopSignals
    ckpt: Optional[checkpoint.Checkpoint]  # the checkpoint this run resumes from
    generation: int  # 0 for a fresh run, +1 for each resume


def train(cfg: Config, env_fn: Optional[Callable] = None, model_fn: Optional[Callable] = None, *,
          start_time: Optional[float] = None) -> dict:
    """Trains until solved or a limit; returns the summary (also written to RUN_DIR/summary.json).

    env_fn: optional callable returning a gymnasium.Env (overrides cfg.env; lambdas work).
    model_fn: optional callable `model_fn(spec: EnvSpec) -> keras.Model` (see model.py's convention).
    start_time: time.monotonic() of the command's start, so times include start-up (default: now).
    With cfg.resume (see config.resume_config), counters, weights and optimizer state continue from the
    run's newest good checkpoint.
    """
    t0 = start_time if start_time is not None else time.monotonic()
    env_fn, spec, target = prepare(cfg, env_fn, model_fn)
    ckpt = _resume_point(cfg) if cfg.resume else None
    run_dir = RunDir(cfg.run_dir or default_run_dir(cfg))
    cfg = cfg.replace(run_dir=run_dir.path)
    run_dir.write_json("config.json", cfg.to_json())
    say(f"config: {cfg.describe_changes()} (all settings: {os.path.join(run_dir.path, 'config.json')})")
    stats = RunStats(t0, target)
    generation = 0
    if ckpt is not None:
        stats.restore(ckpt.meta["stats"])
        generation = int(ckpt.meta["rng"]["generation"]) + 1
        say(f"resuming from {ckpt.path}: {stats.env_steps} env steps, {stats.learner_steps} learner steps, "
            f"{stats.episodes} episodes, {stats.time_offset:.1f} s trained")
    num_actors = cfg.resolved_num_actors()
    numpy_actors = model_fn is None and cfg.actor_inference != "tensorflow"
    # What actors (and evaluation) run when not numpy: the user's model or the default one in TensorFlow.
    actor_model_fn = None if numpy_actors else (model_fn or _DefaultModel(cfg))
    for stale in remove_stale_segments():
        say(f"removed a shared-memory segment left by a killed run: /dev/shm/{stale}")
    where = " (serial mode, in this process)" if cfg.serial else " (processes)"
    preset = f" (preset {cfg.preset})" if cfg.preset not in (None, "none") else ""
    say(f"actorlearner: {cfg.env}{preset} | {num_actors} actor{'s' if num_actors > 1 else ''}{where} x "
        f"{cfg.envs_per_actor} envs, "
        f"unroll {cfg.unroll_length}, batch {cfg.batch_size}, learner threads {cfg.resolved_learner_threads()} | "
        f"actors run the policy in "
        f"{'numpy (default MLP, no TensorFlow in actors)' if numpy_actors else 'TensorFlow'} | "
        f"target return {target} | run dir {run_dir.path}")

    model = None
    if numpy_actors:
        n_params = layout_size(default_layout(spec, cfg.hidden_sizes, cfg.normalize_obs))
    else:  # the actors run the model itself, so its size is known only once it is built
        from .model import param_layout

        model = _build_model(cfg, spec, model_fn)
        n_params = layout_size(param_layout(model))

    slots_per_actor = max(2, math.ceil(cfg.slots_per_batch / num_actors) + 1)
    token = None if cfg.serial else new_run_token()
    fields = unroll_spec(cfg, spec)
    actor_cfg = _actor_config(cfg, generation)
    status, error = "running", None
    pool = slots = weights = None
    reporting.console.quiet = cfg.quiet
    with StopSignals() as signals:
        try:
            slots = SlotPool(fields, slots_per_actor * num_actors, token)
            weights = WeightStore(n_params, token, first_version=ckpt.meta["policy_version"] if ckpt else 0)
            env_blob = cloudpickle.dumps(env_fn)
            model_blob = b"" if numpy_actors else cloudpickle.dumps(actor_model_fn)

            def args_for(i: int, incarnation: int) -> ActorArgs:
                return ActorArgs(i, incarnation, actor_cfg, spec, env_blob, model_blob, slots.spec(),
                                 weights.spec(), os.getpid())

            if cfg.serial:
                pool = SerialActors(args_for, num_actors, slots, weights, env_fn, actor_model_fn)
            else:
                pool = ActorPool(args_for, num_actors, cfg.actor_threads)
            pool.start()
            status = _learn(_Run(cfg, spec, env_fn, actor_model_fn, model, pool, num_actors, slots_per_actor,
                                 slots, weights, stats, run_dir, signals, ckpt, generation))
        except Interrupted:
            status = "interrupted"
        except Exception as e:
            status, error = "error", e
        finally:
            signals.cleaning = True
            reporting.console.close()  # the last progress report stays on screen
            reporting.console.quiet = False
            if pool is not None:
                pool.stop(timeout_s=0.5 if status == "interrupted" else 3.0)
            for shared in (slots, weights):
                if shared is not None:
                    shared.close()
            if pool is not None:
                stats.actor_restarts = pool.restarts
            summary = stats.summary(cfg.env, cfg.seed, status)
            if status == "interrupted":
                summary["stop_signal"] = signals.requested or "SIGINT"
            if error is not None:
                summary["error"] = f"{type(error).__name__}: {error}"
            run_dir.write_json("summary.json", summary)
            run_dir.close()
    if error is not None:
        raise error
    solved_at = "-" if summary["solved_at_s"] is None else f"{summary['solved_at_s']:.1f} s"
    say(f"done ({status}): {stats.env_steps} env steps in {summary['wall_s']:.1f} s, mean return(100) "
        f"{summary['mean_return_100']}, solved at {solved_at}; results in {run_dir.path}")
    return summary


def _resume_point(cfg: Config) -> checkpoint.Checkpoint:
    """The checkpoint to resume from, checked against cfg before any process starts."""
    if cfg.run_dir not in (None, cfg.resume):
        raise ConfigError("--resume continues in its own directory; drop --run-dir")
    ckpt = checkpoint.load_latest(cfg.resume, warn=lambda m: print(f"actorlearner: warning: {m}", file=sys.stderr))
    try:
        saved = config_from_dict(ckpt.meta["config"])
    except (ConfigError, TypeError) as e:
        raise checkpoint.CheckpointError(f"checkpoint {ckpt.path} holds an unusable config ({e})") from None
    for name in RESUME_FIXED:
        if getattr(saved, name) != getattr(cfg, name):
            raise ConfigError(f"--resume: the run's {name} is {getattr(saved, name)!r}, this config has "
                              f"{getattr(cfg, name)!r} (use config.resume_config to start from the run's)")
    return ckpt


def _actor_config(cfg: Config, generation: int) -> Config:
    """The config actors get. A resumed run's actors (generation > 0) get a seed derived from the run's seed
    and the generation: reusing the first start's seeds would replay its first episodes after every resume."""
    if generation == 0:
        return cfg
    return cfg.replace(seed=int(np.random.SeedSequence([cfg.seed, generation]).generate_state(1)[0] % 2**31))


class _DefaultModel:
    """Picklable factory of the default model, for actors that run it in TensorFlow."""

    def __init__(self, cfg: Config):
        self.cfg = cfg

    def __call__(self, spec):
        from .model import build_default_model

        return build_default_model(spec, self.cfg)


def _build_model(cfg: Config, spec, model_fn):
    start_tensorflow_quietly(cfg.resolved_learner_threads())
    if model_fn is None:
        from .model import build_default_model

        return build_default_model(spec, cfg)
    return model_fn(spec)


def _learn(run: _Run) -> str:
    """The learner loop; returns why it stopped. Finished work is checkpointed every cfg.checkpoint_every
    seconds and at the end, also when the loop fails (unless the failure is in the numbers)."""
    cfg, stats, pool, slots, weights = run.cfg, run.stats, run.pool, run.slots, run.weights
    numpy_actors = run.actor_model_fn is None
    model = run.model if run.model is not None else _build_model(cfg, run.spec, None)
    from .learner import Learner, NumericalFault
    from .model import model_layout

    layout = model_layout(model, run.spec, cfg, default=numpy_actors)
    learner = Learner(cfg, run.spec, model, layout)
    if run.ckpt is not None:
        learner.restore(run.ckpt)
    weights.publish(learner.flat_weights())
    for i in range(run.num_actors):
        for s in range(run.slots_per_actor):
            pool.give(i, i * run.slots_per_actor + s)
    learner.trace()  # overlaps the first trace with the actors' first unrolls

    def save_checkpoint() -> None:
        meta = {"config": json.loads(cfg.to_json()), "stats": stats.state(), "policy_version": weights.version,
                "rng": {"seed": cfg.seed, "generation": run.generation}}
        checkpoint.save(run.run_dir.path, stats.learner_steps, meta, *learner.state(), keep=cfg.keep_checkpoints,
                        policy=(learner.flat_weights(), layout))

    eval_policy = make_policy(cfg, run.spec, run.actor_model_fn)

    def save_best(flat) -> None:
        run.run_dir.save_weights(flat, layout, "best.npz")
    ready: list[tuple[int, int]] = []
    last_data = time.monotonic()
    next_log = stats.now() + cfg.log_every_s
    next_eval = stats.now() + cfg.eval_every_s if cfg.eval_every_s > 0 else math.inf
    next_ckpt = stats.now() + cfg.checkpoint_every if cfg.checkpoint_every > 0 else math.inf
    last_log_steps, last_log_learner_steps, last_log_t = stats.env_steps, stats.learner_steps, stats.now()
    from .tensorboard import Board

    board = Board(run.run_dir.path)
    steps_per_unroll = cfg.unroll_length * cfg.envs_per_actor
    latest = None
    nonfinite_in_a_row = 0
    try:
        while True:
            # -- stop conditions
            if run.signals.requested:
                status = "interrupted"
                break
            if stats.check_solved() and cfg.stop_at_target:
                status = "solved"
                break
            if cfg.max_steps and stats.env_steps >= cfg.max_steps:
                status = "max_steps"
                break
            if cfg.max_seconds and stats.now() >= cfg.max_seconds:
                status = "max_seconds"
                break
            # -- collect messages
            for msg in pool.wait(0.05 if not ready else 0.01):
                if msg[0] == MSG_UNROLL:
                    _, actor_id, slot, returns, lengths = msg
                    ready.append((actor_id, slot))
                    stats.add_episodes(returns, lengths)
                    last_data = time.monotonic()
                elif msg[0] == MSG_ENV_ERROR:
                    stats.env_errors += 1
                    say(msg[3])
                elif msg[0] == MSG_FATAL:
                    say(f"actor {msg[1]} failed:\n{msg[2].rstrip()}")
            stats.actor_restarts = pool.restarts
            if time.monotonic() - last_data > cfg.wait_timeout_s:
                raise TransportTimeout(f"no unroll from any actor in {cfg.wait_timeout_s:.0f} s "
                                       f"({pool.alive()} of {run.num_actors} actors alive)")
            # -- learn on every whole batch
            if cfg.max_policy_lag and ready:
                ready = _drop_stale(ready, slots, weights.version, cfg.max_policy_lag, pool, stats)
            while len(ready) >= cfg.slots_per_batch:
                batch_slots, ready = ready[:cfg.slots_per_batch], ready[cfg.slots_per_batch:]
                idx = [s for _, s in batch_slots]
                versions = slots.meta[idx, slots.META_VERSION].copy()
                batch = slots.gather(idx)
                for actor_id, s in batch_slots:  # copied out: the actors can refill them while we learn
                    pool.give(actor_id, s)
                learner.observe(batch["obs"])  # --normalize-obs: the statistics the step will use
                inputs = learner_inputs(batch, gamma=cfg.gamma, reward_scale=cfg.reward_scale,
                                        reward_clip=cfg.reward_clip)
                try:
                    losses, latest = learner.step(inputs, progress=stats.env_steps / cfg.max_steps
                                                  if cfg.max_steps else 0.0)
                except NumericalFault as e:
                    nonfinite_in_a_row += 1
                    if cfg.on_nonfinite == "stop" or e.weights_damaged or nonfinite_in_a_row >= MAX_NONFINITE_IN_A_ROW:
                        raise
                    stats.nonfinite_skips += 1
                    say(f"skipped a batch: {e} ({stats.nonfinite_skips} skipped so far)")
                    continue
                nonfinite_in_a_row = 0
                lags = (weights.version - versions).tolist()
                weights.publish(latest)
                stats.add_learner_step(steps_per_unroll * len(idx), lags, losses)
            # -- report
            now = stats.now()
            if now >= next_eval and latest is not None:
                _evaluate(cfg, run.spec, run.env_fn, eval_policy, latest, stats, save_best)
                next_eval = stats.now() + cfg.eval_every_s
            if now >= next_log:
                dt = max(1e-9, now - last_log_t)
                rate = (stats.env_steps - last_log_steps) / dt
                learner_rate = (stats.learner_steps - last_log_learner_steps) / dt
                last_log_steps, last_log_learner_steps, last_log_t = stats.env_steps, stats.learner_steps, now
                reporting.console.progress(progress_line(stats, rate, max_steps=cfg.max_steps,
                                                         max_seconds=cfg.max_seconds, verbose=cfg.verbose))
                run.run_dir.log_metrics(stats.record())
                board.write(stats.env_steps, _board_values(stats, rate, learner_rate, learner,
                                                           len(ready) / slots.n_slots))
                next_log = now + cfg.log_every_s
            if now >= next_ckpt:
                save_checkpoint()
                next_ckpt = stats.now() + cfg.checkpoint_every
    except (NumericalFault, Interrupted):
        board.close()
        raise  # bad numbers are not worth keeping; a second Ctrl-C wants out at once
    except Exception:
        board.close()
        _try(save_checkpoint, "a final checkpoint")  # keep the finished work, then report the failure
        raise
    save_checkpoint()
    latest = learner.flat_weights()
    run.run_dir.save_weights(latest, layout)
    if status != "interrupted":  # an interrupted user wants out now, not five more episodes
        _evaluate(cfg, run.spec, run.env_fn, eval_policy, latest, stats, save_best)
    run.run_dir.log_metrics(stats.record())
    board.write(stats.env_steps, {"eval/return": stats.last_eval})
    board.close()
    return status


def _board_values(stats: RunStats, env_rate: float, learner_rate: float, learner, queue_fill: float) -> dict:
    """The TensorBoard scalars of one progress line (tensorboard.TAGS)."""
    losses = stats.last_losses
    lengths = stats.recent_lengths
    return {"episode/return_mean_100": stats.mean_return_100(),
            "episode/length_mean_100": sum(lengths) / len(lengths) if lengths else None,
            "eval/return": stats.last_eval, "loss/total": losses.get("total"), "loss/policy": losses.get("policy"),
            "loss/baseline": losses.get("baseline"), "loss/entropy": losses.get("entropy"),
            "loss/grad_norm": losses.get("grad_norm"),
            "train/learning_rate": float(learner.optimizer.learning_rate.numpy()),
            "speed/env_steps_per_s": env_rate, "speed/learner_steps_per_s": learner_rate,
            "train/policy_lag_mean": stats.policy_lag_mean(), "train/queue_fill": queue_fill}


def _drop_stale(ready: list, slots: SlotPool, version: int, max_lag: int, pool, stats: RunStats) -> list:
    """Gives back, unused, the ready unrolls whose policy trails the learner by more than max_lag steps."""
    lags = version - slots.meta[[s for _, s in ready], slots.META_VERSION]
    keep = []
    for (actor_id, slot), lag in zip(ready, lags):
        if lag > max_lag:
            stats.stale_dropped += 1
            pool.give(actor_id, slot)
        else:
            keep.append((actor_id, slot))
    return keep


def _try(action: Callable[[], None], what: str) -> None:
    try:
        action()
    except Exception as e:  # noqa: BLE001 - the failure being handled matters more than this one
        print(f"actorlearner: could not write {what}: {type(e).__name__}: {e}", file=sys.stderr)


def _evaluate(cfg, spec, env_fn, policy, flat, stats, on_best: Callable) -> None:
    policy.load(flat)
    returns, lengths = run_episodes(policy, env_fn, spec, episodes=cfg.eval_episodes, seed=cfg.seed + 10_000)
    if not returns:
        return
    stats.last_eval = float(np.mean(returns))
    if stats.best_eval is None or stats.last_eval > stats.best_eval:
        stats.best_eval = stats.last_eval
        on_best(flat)  # best.npz: what `actorlearner eval --which best` plays
    reporting.console.detail(f"[{stats.now():7.1f}s] eval over {len(returns)} episodes: return {stats.last_eval:.1f} "
        f"± {float(np.std(returns)):.1f}, length {float(np.mean(lengths)):.0f}")
