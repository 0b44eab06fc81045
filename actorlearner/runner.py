"""All the wiring of a training run: `train(cfg, env_fn=None, model_fn=None)` plans it (`_plan`: input checked
by preflight.py, config settled), says what will run (startup_line.py), and owns its resources from creation to
release (`_run`); the learner's loop itself is in learner_loop.py.

Order matters for start-up time: actors are spawned before the learner imports TensorFlow (they need
only numpy and gymnasium), so their start overlaps the ~2 s TensorFlow import.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import cloudpickle
import numpy as np

from . import checkpoint, reporting
from .actor import ActorArgs
from .actor_pool import ActorPool, SerialActors, SlotSource, exit_if_main_reimported
from .blas import one_blas_thread
from .config import Config, ConfigError, usable_cores
from .config_sources import saved_config
from .env_backends import EnvBatchFactory
from .env_registry import module_homes
from .layout import default_layout, layout_size, model_kind, state_size
from .learner_loop import LearnerLoop, Run, build_model
from .model_fns import actors_run_tensorflow, check_fits, importable_name, model_fn_of, with_model_name
from .precision import learner_precision
from .preflight import (check_is_config, check_shared_memory, clock_stop_warning, crowded_actors, prepare,
                        resume_point, shared_bytes, slots_per_actor, starting_point, unused_settings)
from .presets import is_atari
from .system_info import system_info
from .tf_start import choose_onednn, learner_device, onednn_in_use, start_tensorflow_early
from .reporting import RunStats, fmt_return, say, warn
from .run_files import (CUSTOM_ENV_FILE, ENV_MODULES_FILE, ENV_SPEC_FILE, RunDir, check_fresh, check_same_env,
                        env_summary, named_env_fn, saved_module_homes, trained_on_custom_env)
from .stack_dumps import make_stack_dir, remove_stale_stack_dirs
from .startup_line import startup_line
from .stopping import Interrupted, StopSignals, interrupts_held
from .trajectory import unroll_fields
from .transport import (SharedMemoryFull, SlotPool, WeightStore, full_message, new_run_token,
                        remove_stale_segments, shared_memory_free)


def default_run_dir(cfg: Config) -> str:
    name = cfg.env if isinstance(cfg.env, str) else "custom"
    return os.path.join("runs", f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")


@dataclass
class Plan:
    """Everything a run was planned with, before any resource (shared memory, process) exists."""

    cfg: Config
    env_fn: Callable
    make_batch: EnvBatchFactory
    backend_why: str
    spec: Any
    target: Optional[float]
    ckpt: Optional[checkpoint.Checkpoint]
    run_dir: RunDir
    stats: RunStats
    generation: int
    actor_model_fn: Optional[Callable]  # None: actors run the default MLP in numpy
    blobs: Optional[tuple]  # (make_batch, actor_model_fn or b"") pickled for actor processes; None: serial mode
    model: Any  # the Keras model, built already when the actors run it (custom models)
    n_params: int
    state_size: int  # floats of recurrent state per env (0: feed-forward)
    precision: str  # the learner model's number format (precision.learner_precision)
    precision_why: str
    kernels: str  # the learner's TensorFlow kernels, where the run chose them (precision.onednn_kernels)
    callback: Optional[Callable[[dict], Any]] = None  # train()'s
    init: Optional[checkpoint.Checkpoint] = None  # --init-from's checkpoint (preflight.starting_point)


def train(cfg: Config, env_fn: Optional[Callable] = None, model_fn: Optional[Callable] = None, *,
          callback: Optional[Callable[[dict], Any]] = None) -> dict:
    """Trains until solved or a limit; returns the summary (also written to RUN_DIR/summary.json).

    env_fn: optional callable returning a gymnasium.Env (overrides cfg.env; lambdas work).
    model_fn: optional callable `model_fn(spec: EnvSpec) -> keras.Model` (see model.py's convention).
    callback: optional `callback(row: dict)`, called in this process with each metrics.jsonl row as it is written
    (every --log-every-s: time_s, env_steps, mean_return_100, eval_return, loss_*, ...), the last one at the end.
    A true return stops the run as a limit does (status "callback": final checkpoint, policy.npz, a last
    evaluation); an exception in it stops the run, final checkpoint kept, and train raises it.
    With cfg.resume (see config_sources.resume_config), counters, weights and optimizer state continue from the
    run's newest good checkpoint.

    A stop signal stops the run gracefully (final checkpoint, policy.npz, summary.json with status
    "interrupted"), then goes on as it would have without the run: Ctrl-C raises KeyboardInterrupt, SIGTERM and
    SIGHUP SystemExit(128 + the signal's number). Returning the summary instead let a script that trains in a
    loop (seeds, a sweep) go on to its next run after every Ctrl-C, and past a scheduler's SIGTERM.
    """
    try:
        summary = train_to_summary(cfg, env_fn, model_fn, callback=callback)
    except Interrupted as e:  # a SIGTERM during Ray's start, before the run's own handling (_run)
        raise SystemExit(128 + getattr(signal, str(e), signal.SIGTERM)) from None
    if summary["status"] == "interrupted":
        stop = summary.get("stop_signal", "SIGINT")
        if stop == "SIGINT":
            raise KeyboardInterrupt
        raise SystemExit(128 + getattr(signal, stop, signal.SIGTERM))
    return summary


def train_to_summary(cfg: Config, env_fn: Optional[Callable] = None, model_fn: Optional[Callable] = None, *,
                     start_time: Optional[float] = None, callback: Optional[Callable[[dict], Any]] = None) -> dict:
    """`train`, but an interrupted run returns its summary too (status "interrupted"): the command line's way,
    which turns it into its exit status. start_time: time.monotonic() of the command's start, so times include
    start-up (default: now)."""
    exit_if_main_reimported()
    if callback is not None and not callable(callback):
        raise ConfigError(f"callback must be a function of a metrics row, callback(row: dict); got a value of type "
                          f"{type(callback).__name__}")
    plan = _plan(cfg, env_fn, model_fn, start_time if start_time is not None else time.monotonic(), callback)
    # A stop signal before the run's own handling, Ray's start failing: nothing ran yet.
    with plan.run_dir.dropped_on_failure(fresh=plan.ckpt is None):
        startup_line(plan)
        with one_blas_thread():
            status, summary, error = _run(plan)
    if error is not None:
        raise error
    solved_at = "-" if summary["solved_at_s"] is None else f"{summary['solved_at_s']:.1f} s"
    # A collapse warning may have scrolled far up a long run's progress lines: the last line repeats it.
    collapses = summary.get("policy_collapses") or 0
    health = f", {collapses} policy collapse warning{'s' if collapses > 1 else ''}" if collapses else ""
    if plan.run_dir.discarded:
        say(f"done ({status}) before anything was learned, {summary['wall_s']:.1f} s in: {plan.run_dir.path} "
            f"removed, so the same command can run again")
        return summary
    say(f"done ({status}): {plan.stats.env_steps} env steps in {summary['wall_s']:.1f} s, mean return(100) "
        f"{fmt_return(summary['mean_return_100'])}, solved at {solved_at}{health}; results in {plan.run_dir.path}")
    return summary


def _plan(cfg: Config, env_fn, model_fn, t0: float, callback=None) -> Plan:
    """Checks the input, settles the config and the run directory, and restores a resumed run's counters."""
    check_is_config(cfg)  # before its fields are read
    homes = saved_module_homes(cfg.resume) if cfg.resume else {}
    if env_fn is None and cfg.resume and trained_on_custom_env(cfg.resume):
        env_fn = named_env_fn(cfg.resume, homes)  # None where the run kept no name: resume_point says what to do
    custom_env, own_env_fn = env_fn is not None, env_fn
    model_fn = model_fn_of(cfg, model_fn, homes)
    cfg = with_model_name(cfg, model_fn, _saved_model_fn(cfg.resume) if cfg.resume else None)
    env_fn, make_batch, spec, target, backend_why, blobs = prepare(cfg, env_fn, model_fn, homes)
    ckpt = resume_point(cfg, custom_env) if cfg.resume else None
    if cfg.resume:
        check_same_env(cfg.resume, spec, "resuming it")
    if ckpt is None and cfg.run_dir:
        check_fresh(cfg.run_dir, resumable=bool(checkpoint.list_checkpoints(cfg.run_dir)))
    # The actor count is settled here, once the backend is known, so that every later reader sees one value.
    # Cheap vectorized envs (classic control) outrun the learner, so it gets a core of its own. Atari runs an
    # actor on every core, and the learner's threads take every core too: with its presets' 4 passes a batch the
    # learner is the limit and the actors wait for free slots much of the time (1.14x the steps/s of one learner
    # thread on 2 cores).
    cheap = make_batch.backend == "vector" or (make_batch.backend == "envpool" and not is_atari(cfg.env))
    threads = cfg.learner_threads or (usable_cores() if is_atari(cfg.env) else 0)
    # Where the learner is the limit, actors below its priority give its threads the cores when they are ready
    # (Pong, 2 cores, 60-s runs alternated: all 8 pairs of two sessions 1.04-1.15x the agent steps/s at 10 against
    # 0, start-up 0.3-0.9 s shorter, its TensorFlow import winning too; 19 against 10: 5 of 7 pairs faster, median
    # 1,472 against 1,409, the learner's CPU a step 914 against 950 us, likely as its two threads wait less on
    # one that an actor preempted). Where actors are the limit they only lose by it (Acrobot: ~10 % fewer steps/s).
    nice = cfg.actor_nice if cfg.actor_nice is not None else (19 if is_atari(cfg.env) else 10 if cheap else 0)
    cfg = cfg.replace(run_dir=cfg.run_dir or default_run_dir(cfg), num_actors=cfg.resolved_num_actors(cheap),
                      learner_threads=threads, actor_nice=nice)
    if cfg.reproducible and cfg.slots_per_batch % cfg.num_actors:
        raise ConfigError(f"--reproducible takes the same number of unrolls from every actor: --batch-size "
                          f"({cfg.batch_size}) must be a multiple of the actors ({cfg.num_actors}) x "
                          f"--envs-per-actor ({cfg.envs_per_actor})")
    kind = model_kind(spec, cfg.model)
    for flags, why in unused_settings(cfg, spec.discrete, kind, model_fn is not None):
        warn(f"{flags} not used by this run: {why}")
    for said in (crowded_actors(cfg), clock_stop_warning(cfg)):
        if said:
            warn(said)
    precision, precision_why = learner_precision(cfg, kind, model_fn is not None)
    kernels = choose_onednn(model_fn is not None)
    numpy_actors = not actors_run_tensorflow(cfg, model_fn)
    # What actors (and evaluation) run when not numpy: the user's model or the default one in TensorFlow.
    actor_model_fn = None if numpy_actors else (model_fn or _DefaultModel(cfg))
    if blobs is not None and model_fn is None and actor_model_fn is not None:  # the default model in TensorFlow
        blobs = (blobs[0], cloudpickle.dumps(actor_model_fn))
    model = None
    if numpy_actors:
        layout = default_layout(spec, cfg)
        n_params, state = layout_size(layout), state_size(cfg)
    else:  # the actors run the model itself, so its size is known only once it is built
        from .layout import param_layout

        model = build_model(cfg, spec, model_fn, precision)  # imports TensorFlow, its start-up notices filtered
        layout = param_layout(model)
        if model_fn is not None:
            from .model import check_contract  # imports TensorFlow: only once build_model has

            check_contract(model, spec)
            # A model changed since the run, refused before any process starts (the restore found it after them).
            if ckpt is not None and "policy_layout" in ckpt.meta:
                check_fits(model, ckpt.meta["policy_layout"], cfg, f"--resume {cfg.resume}: its")
        n_params, state = layout_size(layout), sum(getattr(model, "state_sizes", ()))
    # --init-from: another run's weights, checked against this run's before anything starts (a resumed run has
    # its own checkpoint, which wins).
    init = starting_point(cfg, spec, layout) if cfg.init_from and ckpt is None else None
    for stale in remove_stale_segments():  # first: their room counts as free below
        say(f"removed a shared-memory segment left by a killed run: /dev/shm/{stale}")
    remove_stale_stack_dirs()  # a killed run's stack files (empty unless an actor stalled): not worth a line
    if not cfg.serial and cfg.backend != "ray":  # the runs that keep slots and weights in /dev/shm
        check_shared_memory(cfg, spec, n_params, state)
    if cfg.backend == "ray":  # a head that does not answer is one line at once (ray.init retries for a minute)
        from .ray_cluster import check_reachable

        check_reachable(cfg.ray_address)
    run_dir = RunDir(cfg.run_dir)  # once the input is known to be good: a refused run leaves no directory
    with run_dir.dropped_on_failure(fresh=ckpt is None):  # a Ctrl-C here, a full disk
        run_dir.write_json("config.json", cfg.to_json())
        run_dir.write_json(ENV_SPEC_FILE, env_summary(spec))
        env_fn_name = importable_name(own_env_fn) if custom_env else None
        if custom_env:  # with the factory's name where another process can import it: eval, export, --resume use it
            run_dir.write_json(CUSTOM_ENV_FILE, {"env": cfg.env, "env_fn": True, "env_fn_name": env_fn_name})
        named = tuple(name.partition(":")[0] for name in (cfg.model_fn, env_fn_name) if name)
        found = module_homes(cfg.env_modules + named, cfg.env)
        if found:
            run_dir.write_json(ENV_MODULES_FILE, found)
        say(f"config: {cfg.describe_changes()} (all settings: {os.path.join(run_dir.path, 'config.json')})")
        stats = RunStats(t0, target)
        stats.updates_per_step = cfg.epochs * cfg.minibatches
        generation = 0
        if ckpt is not None:
            stats.restore(ckpt.meta["stats"])
            generation = int(ckpt.meta["rng"]["generation"]) + 1
            say(f"resuming from {ckpt.path}: {stats.env_steps} env steps, {stats.learner_steps} learner steps, "
                f"{stats.episodes} episodes, {stats.time_offset:.1f} s trained")
        if init is not None:
            said = init.meta.get("stats")
            what = (f"{said.get('env_steps', '?')} env steps of {init.meta.get('config', {}).get('env', '?')}" if said
                    else f"--init-which {cfg.init_which}")
            say(f"starting from the weights of {init.path} ({what}); optimizer and counters start afresh")
    return Plan(cfg, env_fn, make_batch, backend_why, spec, target, ckpt, run_dir, stats, generation,
                actor_model_fn, blobs, model, n_params, state, precision, precision_why, kernels, callback, init)


def _saved_model_fn(run_dir: str) -> Optional[str]:
    """The model_fn setting in RUN_DIR's config.json; None where it cannot be read (resume_point then says why)."""
    try:
        return saved_config(os.path.join(run_dir, "config.json")).model_fn
    except (OSError, ConfigError):
        return None


def _run(plan: Plan) -> tuple[str, dict, Optional[BaseException]]:
    """The run's resources, from creation to release: shared memory, actors, the learner loop; summary.json
    is written whatever happens. Returns (status, summary, the error that ended the run or None)."""
    cfg, spec, stats, ckpt = plan.cfg, plan.spec, plan.stats, plan.ckpt
    num_actors = cfg.num_actors
    per_actor = slots_per_actor(cfg)
    token = None if cfg.serial else new_run_token()
    fields = unroll_fields(spec, cfg.unroll_length, cfg.envs_per_actor, plan.state_size)
    actor_cfg = _actor_config(cfg, plan.generation)
    status, error = "running", None
    pool = slots = weights = stacks = cluster = None
    repeats = reporting.Repeats()
    reporting.console.quiet = cfg.quiet
    first_version = ckpt.meta["policy_version"] if ckpt else 0
    if cfg.backend == "ray":  # before our signal handlers: ray.init installs a SIGTERM handler of its own
        from .ray_cluster import RayCluster

        # As many CPUs as the actors declare: Ray starts a worker per CPU at once, and more compete with the
        # learner's TensorFlow import for the cores (2 cores, CartPole: start-up +3.6 s with 2, see the README).
        cluster = RayCluster(cfg.ray_address, num_cpus=num_actors * cfg.actor_threads)
        start_tensorflow_early(cfg.resolved_learner_threads(), cfg.reproducible)
        try:
            cluster.start()
        except BaseException as e:  # nothing ran (train_to_summary removes a fresh run's directory)
            with interrupts_held():
                cluster.close()  # a Ctrl-C inside ray.init: what it had started
            if isinstance(e, SystemExit) and e.code == signal.SIGTERM:  # Ray's own SIGTERM handler: sys.exit(15)
                raise Interrupted("SIGTERM") from None  # as the command's handler says it (train(): SystemExit)
            raise
        say(f"{cluster.describe(num_actors, cfg.actor_threads)}; {_ray_traffic(plan, fields)}")
    with StopSignals() as signals:
        try:
            if cluster is not None:
                from .ray_backend import RaySource, RayWeights

                weights = RayWeights(first_version)
                pool = RaySource(_args_for(plan, actor_cfg, (fields, 1, None), None, None), num_actors,
                                 per_actor, weights, cfg.actor_threads, cfg.wait_timeout_s, report=repeats.say)
            else:
                try:
                    slots = SlotPool(fields, per_actor * num_actors, token)
                    weights = WeightStore(plan.n_params, token, first_version=first_version)
                except SharedMemoryFull:  # /dev/shm filled up since check_shared_memory
                    if slots is not None:  # so that the free space said is what the run had
                        slots.close()
                        slots = None
                    raise SharedMemoryFull(full_message(shared_bytes(cfg, spec, plan.n_params, plan.state_size),
                                                        shared_memory_free())) from None
                if cfg.serial:
                    actors = SerialActors(actor_cfg, spec, num_actors, slots, weights, plan.make_batch,
                                          plan.actor_model_fn)
                else:
                    stacks = make_stack_dir()  # removed at the end (if this process is killed: by a later run)
                    actors = ActorPool(_args_for(plan, actor_cfg, slots.spec(), weights.spec(), stacks), num_actors,
                                       cfg.actor_threads, report=repeats.say, startup_s=cfg.wait_timeout_s)
                pool = SlotSource(actors, slots, num_actors, per_actor)
            pool.start()  # before the learner imports TensorFlow: the actors' start overlaps it
            with signals.at_once():  # nothing learned yet: Ctrl-C need not wait for TensorFlow's import
                loop = LearnerLoop(Run(cfg, spec, plan.env_fn, plan.actor_model_fn, plan.model, pool, weights,
                                       stats, plan.run_dir, signals, ckpt, plan.generation, repeats.say,
                                       plan.make_batch.confirm_batches, plan.precision, plan.callback,
                                       plan.init))
            status = loop.run()
        except Interrupted:
            status = "interrupted"
        except Exception as e:
            status, error = "error", e
        finally:
            signals.cleaning = True
            repeats.flush()
            reporting.console.close()  # the last progress report stays on screen
            reporting.console.quiet = False
            if pool is not None:
                pool.stop(timeout_s=0.5 if status == "interrupted" else 3.0)
            for shared in (slots, weights):
                if shared is not None:
                    shared.close()
            if stacks is not None:
                shutil.rmtree(stacks, ignore_errors=True)
            if pool is not None:
                stats.actor_restarts, stats.actor_stalls = pool.restarts, pool.stalls
            summary = stats.summary(cfg.env, cfg.seed, status)
            summary["learner_precision"] = plan.precision  # the learner's format (auto resolves it per machine)
            summary["learner_onednn"] = onednn_in_use()  # its kernels, which TensorFlow too sets per machine
            summary["learner_device"] = learner_device()  # "CPU", or the GPUs TensorFlow saw
            summary["system"] = system_info()  # versions, CPU and cores: at the end, off the start-up path
            if status == "interrupted":
                summary["stop_signal"] = signals.requested or "SIGINT"
            if error is not None:
                summary["error"] = f"{type(error).__name__}: {error}"
            if _nothing_learned(plan, status):
                plan.run_dir.discard()
            else:
                try:
                    plan.run_dir.write_json("summary.json", summary)
                except OSError as e:  # a full disk: the rest of the cleanup still runs
                    warn(f"could not write {os.path.join(plan.run_dir.path, 'summary.json')}: {e.strerror or e}")
                plan.run_dir.close()
            if cluster is not None:
                cluster.close()
    return status, summary, error


def _nothing_learned(plan: Plan, status: str) -> bool:
    """A new run stopped by a signal before its first checkpoint (during TensorFlow's import, say): its directory
    holds only its settings. Kept, it refused the same command's retry ("stopped before its first checkpoint")."""
    return (status == "interrupted" and plan.ckpt is None and plan.stats.learner_steps == 0
            and not checkpoint.list_checkpoints(plan.run_dir.path))


def _ray_traffic(plan: Plan, fields: dict) -> str:
    """What crosses the network with --backend ray: one unroll to the learner, one weight version to each node."""
    unroll = sum(int(np.prod(shape)) * np.dtype(dtype).itemsize for shape, dtype in fields.values())
    return f"{unroll / 1024:.0f} KB per unroll, {plan.n_params * 4 / 1024:.0f} KB per weight version"


def _args_for(plan: Plan, actor_cfg: Config, slot_spec: tuple, weight_spec: Optional[tuple],
              stacks: Optional[str]) -> Callable[[int, int], ActorArgs]:
    """args_for(actor, incarnation): what an actor process (or Ray actor: its own one-slot pool, weights
    brought by each call, no stack file) is started with; callables pickled once, in planning."""
    batch_blob, model_blob = plan.blobs

    def args_for(i: int, incarnation: int) -> ActorArgs:
        return ActorArgs(i, incarnation, actor_cfg, plan.spec, batch_blob, model_blob, slot_spec, weight_spec,
                         os.getpid(), os.path.join(stacks, f"actor-{i}.txt") if stacks else "")

    return args_for


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
