"""What a training run needs, checked before anything starts (no process, shared memory or run directory yet):
the input (`prepare`), the run to resume (`resume_point`) or to start from (`starting_point`), settings the run
would not read (`unused_settings`), and room in /dev/shm for its slots and weights (`check_shared_memory`). Every
refusal is a one-line ConfigError.
"""

from __future__ import annotations

import math
import os
from typing import Callable, Optional

import gymnasium as gym
import numpy as np

from . import checkpoint, litert_cnn
from .atari import PREPROCESSING_KWARGS
from .config import Config, ConfigError, usable_cores
from .config_checks import validate
from .config_sources import RESUME_FIXED, config_from_dict
from .env_backends import EnvBatchFactory, resolve_backend
from .env_registry import check_env_id, import_env_modules, registered_id
from .envs import env_time_limit, make_env_fn
from .layout import default_layout, layout_size, model_kind, unflatten
from .model_fns import actors_run_tensorflow
from .presets import PRESETS, is_atari
from .reporting import warn
from .run_files import (check_not_in_use, custom_env_error, env_differences, saved_module_homes,
                        trained_on_custom_env)
from .trajectory import unroll_fields
from .transport import SHM_DIR, SlotPool, WeightStore, full_message, segments_bytes, shared_memory_free


def check_is_config(cfg) -> None:
    if not isinstance(cfg, Config):  # train("CartPole-v1") or a dict was an AttributeError from deep inside
        raise ConfigError(f"train() takes a Config, e.g. actorlearner.Config(env='CartPole-v1'), not a "
                          f"{type(cfg).__name__}")


def prepare(cfg: Config, env_fn: Optional[Callable] = None, model_fn: Optional[Callable] = None,
            homes: Optional[dict] = None):
    """Validates everything a run needs, before any process starts. Raises ConfigError. homes: where a resumed
    run found its modules (run_files.saved_module_homes), read here when not given.

    Returns (single-env factory for evaluation, env-batch factory for actors, EnvSpec, target return,
    why that backend, (env-batch factory, model_fn or b"") pickled for actor processes or None in serial mode)."""
    check_is_config(cfg)
    validate(cfg)
    custom = env_fn is not None
    if homes is None:  # a resumed run finds its modules where it did
        homes = saved_module_homes(cfg.resume) if cfg.resume else {}
    kwargs = cfg.env_kwargs_dict
    if not custom:
        check_env_id(cfg.env, cfg.env_modules, homes)
        if cfg.frame_stack > 1 and is_atari(cfg.env):
            raise ConfigError("--frame-stack: ALE games are stacked 4 frames by their preprocessing already")
        env_fn = make_env_fn(cfg.env, modules=cfg.env_modules, kwargs=kwargs, frame_stack=cfg.frame_stack,
                             action_masks=cfg.action_masks)
    elif cfg.frame_stack > 1:
        raise ConfigError("--frame-stack is for an env id; an env_fn stacks its own observations: "
                          "actorlearner.env_wrappers.FoldedStack(gymnasium.wrappers.FrameStackObservation(env, n))")
    elif kwargs:
        raise ConfigError("--env-kwargs are for an env id (gym.make's keyword arguments); an env_fn passes its "
                          "env's own")
    elif not callable(env_fn):
        got = "an env itself" if hasattr(env_fn, "step") else f"a value of type {type(env_fn).__name__}"
        raise ConfigError(f"env_fn must be a callable that returns a gymnasium.Env, e.g. lambda: gym.make(...); got "
                          f"{got} (each actor makes its own envs with it; an env id goes in Config(env=...))")
    else:
        import_env_modules(cfg.env_modules, homes=homes)
    if model_fn is not None and (not callable(model_fn) or hasattr(model_fn, "layers")):  # a Keras model is callable
        got = "a model itself" if hasattr(model_fn, "layers") else f"a value of type {type(model_fn).__name__}"
        raise ConfigError(f"model_fn must be a function that builds the model, model_fn(spec) -> keras.Model; got "
                          f"{got} (each process builds its own model with it)")
    backend, why = resolve_backend(cfg.env_backend, cfg.env, custom, kwargs, cfg.frame_stack, cfg.action_masks)
    bad = sorted(set(kwargs) & set(PREPROCESSING_KWARGS)) if is_atari(cfg.env) else []
    if bad:
        raise ConfigError(f"--env-kwargs {', '.join(bad)}: set by the Atari preprocessing (frameskip 4, sticky actions "
                          f"0.25, grey frames, 108 K frames an episode), not changeable")
    if cfg.episodic_life and (custom or not is_atari(cfg.env)):
        if _from_preset(cfg, "episodic_life"):  # not asked for by name: say where it came from
            raise ConfigError(f"--preset {cfg.preset} is tuned for Atari games (ALE/ ids), not {cfg.env}: it sets "
                              f"--episodic-life, and the game must report lives")
        raise ConfigError(f"--episodic-life needs a game that reports lives (an ALE/ id), not {cfg.env}")
    make_batch = EnvBatchFactory(backend, cfg.envs_per_actor, env_fn=env_fn, env_id=cfg.env, modules=cfg.env_modules,
                                 episodic_life=cfg.episodic_life, env_kwargs=kwargs, action_masks=cfg.action_masks)
    try:  # made, reset and stepped once here: an env that hangs would hang us
        with env_time_limit(cfg.env, cfg.wait_timeout_s, "made, reset and stepped once"):
            spec = make_batch.spec()
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure to build the env is a user-input error here
        raise ConfigError(f"could not create the env {cfg.env} ({backend} backend): {type(e).__name__}: {e}") from None
    if cfg.preset == "continuous" and spec.discrete:
        raise ConfigError(f"--preset continuous is for envs with Box actions; {cfg.env}'s are discrete")
    # What actor processes get, pickled once, here: a factory that cannot be pickled is refused before anything
    # starts (it failed after the run had started, as a bare TypeError). Serial mode sends nothing.
    blobs = None
    if not cfg.serial:
        blobs = (_pickled("env_fn", make_batch), _pickled("model_fn", model_fn) if model_fn is not None else b"")
    if model_fn is not None and cfg.normalize_obs:
        raise ConfigError(f"{_said(cfg, 'normalize_obs', '--normalize-obs')} works on the default model; a custom "
                          f"model can normalize inside itself: --no-normalize-obs")
    if model_fn is not None and cfg.core != "none":
        raise ConfigError(f"{_said(cfg, 'core', '--core')} adds a recurrent core to the default models; a custom "
                          f"model is recurrent through its own state_sizes (model.py's contract): --core none")
    if model_fn is not None and cfg.actor_inference in ("numpy", "litert"):
        raise ConfigError(f"--actor-inference {cfg.actor_inference} runs only the default models; a custom model "
                          f"needs tensorflow (or auto)")
    if model_fn is None:
        try:  # the default model fits the observations (a CNN wants images, large enough)
            default_layout(spec, cfg)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    if model_fn is None and cfg.actor_inference == "litert":
        if model_kind(spec, cfg.model) == "mlp":
            raise ConfigError("--actor-inference litert runs the default CNNs; the MLP is fastest in numpy "
                              "(--actor-inference numpy or auto)")
        if not litert_cnn.available():
            raise ConfigError("--actor-inference litert needs ai-edge-litert: pip install -e '.[atari]' "
                              "(or pip install ai-edge-litert)")
    # The Atari presets ask for auto, which never stops a run: without LiteRT or VNNI it is float32.
    if cfg.actor_precision == "int8":
        said = "--actor-precision int8"
        in_tf = actors_run_tensorflow(cfg, model_fn)
        if in_tf or model_kind(spec, cfg.model) == "mlp":
            raise ConfigError(f"{said} quantizes the default CNNs' kernels under LiteRT; this run's actors run "
                              f"{'TensorFlow' if in_tf else 'an MLP in numpy'} (--actor-precision float32)")
        if not litert_cnn.int8_for(cfg, model_kind(spec, cfg.model)):
            raise ConfigError(f"{said} runs under LiteRT: " + ("not with --actor-inference numpy" if
                              cfg.actor_inference == "numpy" else "pip install -e '.[atari]' (or pip install "
                              "ai-edge-litert)"))
    if model_fn is None and cfg.normalize_obs and model_kind(spec, cfg.model) != "mlp":
        raise ConfigError(f"{_said(cfg, 'normalize_obs', '--normalize-obs')} works on the MLP only (the CNNs scale "
                          f"uint8 images to [0, 1]): --no-normalize-obs")
    target = cfg.target_return if cfg.target_return is not None else spec.reward_threshold
    said = changed_time_limit(cfg, target)
    if said:
        warn(said)
    return env_fn, make_batch, spec, target, why, blobs


def changed_time_limit(cfg: Config, target: Optional[float]) -> Optional[str]:
    """A warning where --env-kwargs give gym.make another max_episode_steps than the id registers while the target
    is the id's own threshold or its preset's: a threshold is set for episodes of the registered length, so it can
    be out of reach (CartPole-v1 cut at 200 steps returned 200 on every episode and never reached 475) or too
    easy. None otherwise."""
    limit = cfg.env_kwargs_dict.get("max_episode_steps")
    if limit is None or target is None or (cfg.target_return is not None and not _from_preset(cfg, "target_return")):
        return None
    registered = getattr(gym.envs.registry.get(registered_id(cfg.env)), "max_episode_steps", None)
    if limit == registered:
        return None
    length = f"of up to {registered} steps" if registered else "without a step limit"
    return (f"target return {target:g} is set for {cfg.env}'s episodes {length}; --env-kwargs max_episode_steps="
            f"{limit} changes their length, so it may be out of reach or too easy: give --target-return")


def _from_preset(cfg: Config, name: str) -> bool:
    """Whether cfg's preset sets field `name` to the value cfg has (so an error about it can say where it came
    from)."""
    preset = PRESETS.get(cfg.preset or "", {})
    return name in preset and preset[name] == getattr(cfg, name)


def _said(cfg: Config, name: str, flag: str) -> str:
    """How an error names the setting `name`: the flag, or the preset that set it (a user who never gave the flag
    would not know where it came from)."""
    return f"--preset {cfg.preset} sets {flag}, which" if _from_preset(cfg, name) else flag


def _pickled(name: str, obj) -> bytes:
    """`obj` pickled for actor processes (cloudpickle: lambdas and closures can be; what they hold must pickle
    too); ConfigError naming `name`, the user's callable in it, where it cannot be."""
    import cloudpickle

    try:
        return cloudpickle.dumps(obj)
    except Exception as e:  # noqa: BLE001 - the pickler raises TypeError, PicklingError, AttributeError...
        raise ConfigError(f"{name} cannot be sent to the actor processes ({type(e).__name__}: {e}): it and what it "
                          f"refers to (globals of __main__ too) must pickle; make locks, files and connections "
                          f"inside it, or use serial=True") from None


def resume_point(cfg: Config, custom_env: bool = False) -> checkpoint.Checkpoint:
    """The checkpoint to resume from, checked against cfg before any process starts. custom_env: this call has an
    env factory (env_fn)."""
    if cfg.run_dir not in (None, cfg.resume):
        raise ConfigError("--resume continues in its own directory; drop --run-dir")
    if not custom_env and trained_on_custom_env(cfg.resume):
        raise custom_env_error(cfg.resume, cfg.env, "resuming it")
    check_not_in_use(cfg.resume)
    if not checkpoint.list_checkpoints(cfg.resume):  # stopped (or killed) before its first checkpoint
        raise ConfigError(f"--resume {cfg.resume}: the run stopped before its first checkpoint, so there is nothing "
                          f"to resume: start a new run (another --run-dir, or this one deleted)")
    ckpt = checkpoint.load_latest(cfg.resume, warn=warn)
    try:
        saved = config_from_dict(ckpt.meta["config"])
    except (ConfigError, TypeError) as e:
        raise checkpoint.CheckpointError(f"checkpoint {ckpt.path} holds an unusable config ({e})") from None
    for name in RESUME_FIXED:
        if getattr(saved, name) != getattr(cfg, name):
            raise ConfigError(f"--resume: the run's {name} is {getattr(saved, name)!r}, this config has "
                              f"{getattr(cfg, name)!r} (use actorlearner.resume_config to start from the run's)")
    done = stopped_already(cfg, ckpt.meta["stats"])
    if done:
        raise ConfigError(f"--resume {cfg.resume}: {done}")
    return ckpt


def starting_point(cfg: Config, spec, layout: list) -> checkpoint.Checkpoint:
    """--init-from RUN: RUN's weights (--init-which: its newest good checkpoint, best.npz or policy.npz), checked
    before any process starts against this run's env (spec) and the layout of the weights it will publish ((path,
    shape) pairs, compared by shape). For best.npz and policy.npz, which hold only the published vector, the result
    has no `model` list: its `policy_flat` is put in this run's published order, for the learner to assign."""
    where, which = cfg.init_from, cfg.init_which
    if not os.path.isdir(where):
        raise ConfigError(f"--init-from {where}: no such directory (a run directory, which holds checkpoints/)")
    if which == "latest" and not checkpoint.list_checkpoints(where):
        raise ConfigError(f"--init-from {where}: no checkpoint in {checkpoint.checkpoint_dir(where)} (is it a run "
                          f"directory? a run writes its first checkpoint after --checkpoint-every seconds, and one "
                          f"at its end)")
    if cfg.run_dir and os.path.abspath(cfg.run_dir) == os.path.abspath(where):
        raise ConfigError(f"--init-from {where} is this run's own directory: --resume {where} continues it")
    differ = env_differences(where, spec, "there", "here")
    if differ:
        raise ConfigError(f"--init-from {where}: that run's env has other observations or actions than this one's "
                          f"({differ}): its weights fit an env with the same spaces")
    if which == "latest":
        ckpt = checkpoint.load_latest(where, warn=warn)
    else:
        from .loading import saved_weights

        try:
            flat, saved_layout, path = saved_weights(where, which)
        except ConfigError as e:
            raise ConfigError(f"--init-from {where} --init-which {which}: {e}") from None
        ckpt = checkpoint.Checkpoint(path, {"policy_layout": saved_layout}, model=[], optim=[], policy_flat=flat)
    # Shapes compared as a multiset: a run whose actors ran the model in TensorFlow publishes the same weights in
    # the model's order, not the default layout's. The learner's restore checks them in the model's order again.
    saved = [tuple(s) for _, s in ckpt.meta.get("policy_layout", [])]
    if sorted(saved) != sorted(tuple(s) for _, s in layout):
        size = sum(int(np.prod(s)) for s in saved)
        raise ConfigError(f"--init-from {where}: its model has other weights than this run's ({size:,} weights in "
                          f"{len(saved)} arrays against {layout_size(layout):,} in {len(layout)}): it needs the same "
                          f"--model or --model-fn, --hidden-sizes, --activation, --core, --core-size and "
                          f"--normalize-obs")
    if not ckpt.model:
        ckpt.policy_flat = _in_order(ckpt.policy_flat, ckpt.meta["policy_layout"], layout)
        if ckpt.policy_flat is None:
            raise ConfigError(f"--init-from {where} --init-which {which}: {os.path.basename(ckpt.path)} names its "
                              f"weights otherwise than this run's model, in another order: --init-which latest reads "
                              f"its checkpoint, which does not depend on that")
        if not _by_name(ckpt.meta["policy_layout"], layout):  # two arrays of one shape could have changed places
            other = next(f"{a!r} there, {b!r} here" for (a, _), (b, _) in zip(ckpt.meta["policy_layout"], layout)
                         if a != b)
            warn(f"--init-from {where} --init-which {which}: its weights are named otherwise ({other}); they were "
                 f"taken in order, matched by shape alone")
    return ckpt


def _in_order(flat: np.ndarray, saved: list, layout: list) -> Optional[np.ndarray]:
    """flat, laid out as `saved` says, in `layout`'s order: matched by path where the paths are the same (a run
    whose actors ran the default model in TensorFlow publishes its weights in the model's order, one whose actors
    ran it in numpy in the default layout's), else by position where the shapes line up; None if neither fits."""
    if _by_name(saved, layout):
        parts = dict(zip([p for p, _ in saved], unflatten(flat, saved)))
        return np.concatenate([parts[p].ravel() for p, _ in layout])
    if [tuple(s) for _, s in saved] == [tuple(s) for _, s in layout]:
        return flat
    return None


def _by_name(saved: list, layout: list) -> bool:
    """Whether the (path, shape) pairs `saved` and `layout` hold the same paths with the same shapes (in any
    order): _in_order then matches by path, not by position."""
    shapes = {p: tuple(s) for p, s in saved}
    return set(shapes) == {p for p, _ in layout} and all(shapes[p] == tuple(s) for p, s in layout)


def stopped_already(cfg: Config, stats: dict) -> Optional[str]:
    """Why a run resumed with cfg from a checkpoint's counters (`RunStats.state()`) would stop at once, its limits
    counting from the run's start; None if it would train. Such a resume started every process, trained nothing
    and said 'done'."""
    if cfg.stop_at_target and stats.get("solved_at_s") is not None:
        return (f"the run solved its task already (at {stats['solved_at_s']:.1f} s, {stats['solved_at_steps']} env "
                f"steps): --no-stop-at-target trains on")
    if cfg.max_steps and stats["env_steps"] >= cfg.max_steps:
        return (f"the run has {stats['env_steps']} env steps already, and --max-steps ({cfg.max_steps}) counts from "
                f"its start: raise it (or 0: no limit) to train on")
    if cfg.max_seconds and stats["elapsed_s"] >= cfg.max_seconds:
        return (f"the run has trained {stats['elapsed_s']:.1f} s already, and --max-seconds ({cfg.max_seconds:g}) "
                f"counts from its start: raise it (or 0: no limit) to train on")
    return None


def unused_settings(cfg: Config, discrete: bool, kind: str, custom_model: bool) -> list[tuple[str, str]]:
    """[(flags, why)] for settings moved from their defaults that this run does not read, said at start-up so an
    experiment does not run for hours on a setting it never applied (`--hidden-sizes` with a CNN)."""
    groups = []
    if custom_model or kind != "mlp":
        groups.append((("hidden_sizes", "activation"), "a custom model builds its own layers" if custom_model
                       else f"they shape the default MLP, and this run's model is {kind}"))
    if custom_model or cfg.core == "none":
        groups.append((("core_size",), "it sizes the default model's --core lstm"))
    if custom_model or discrete:
        groups.append((("init_log_std",), "a custom model's policy has its own spread" if custom_model
                       else "it starts the Gaussian policy of Box actions, and these actions are discrete"))
    # Against the run's preset, not the bare defaults: a value the preset set is not the user's to be told about
    # (the cue-memory preset's --core-size 32 was reported as unused under the user's --core none).
    base, out = Config(), []
    if cfg.preset in PRESETS:
        base = base.replace(**PRESETS[cfg.preset])
    for names, why in groups:
        moved = [f"--{n.replace('_', '-')}" for n in names if getattr(cfg, n) != getattr(base, n)]
        if moved:
            out.append((" and ".join(moved), why))
    return out


def slot_bytes(cfg: Config, spec, state: int) -> int:
    """What the unroll slots of all the run's actors take in /dev/shm."""
    fields = unroll_fields(spec, cfg.unroll_length, cfg.envs_per_actor, state)
    return segments_bytes(SlotPool.specs(fields, slots_per_actor(cfg) * cfg.num_actors))


def shared_bytes(cfg: Config, spec, n_params: int, state: int) -> int:
    """What the run's unroll slots and weights take in /dev/shm."""
    return slot_bytes(cfg, spec, state) + segments_bytes(WeightStore.specs(n_params))


def check_shared_memory(cfg: Config, spec, n_params: int, state: int) -> None:
    """ConfigError where /dev/shm cannot hold the run's segments (transport.py: past its limit the first
    process to touch a page dies of SIGBUS)."""
    free = shared_memory_free()
    if free is not None and not os.access(SHM_DIR, os.W_OK):  # read-only, or not ours: a cryptic error later
        raise ConfigError(f"shared memory ({SHM_DIR}) is not writable here, and actor processes exchange unrolls "
                          f"and weights through it: --serial runs in one process without it")
    needed = shared_bytes(cfg, spec, n_params, state)
    if free is not None and needed > free:
        raise ConfigError(full_message(needed, free))


def slots_per_actor(cfg: Config) -> int:
    """Unroll slots each actor gets: twice its share of a batch, so it fills a whole next share while the
    learner steps on this one (the learner gives slots back only after publishing the step's weights)."""
    return 2 * math.ceil(cfg.slots_per_batch / cfg.num_actors)


def clock_stop_warning(cfg: Config) -> Optional[str]:
    """A warning where a --reproducible run may stop at --max-seconds: the step it stops at depends on the clock,
    so two runs end with different weights and metrics, the promise --reproducible makes. None otherwise."""
    if not (cfg.reproducible and cfg.max_seconds):
        return None
    return (f"--reproducible with --max-seconds {cfg.max_seconds:g}: a stop at a time comes at a different step in "
            f"each run, so two runs end with different weights; --max-steps stops them at the same one")


CROWDED = 4  # actor processes per core past which a run is warned


def crowded_actors(cfg: Config) -> Optional[str]:
    """A warning where the actor processes outnumber the cores many times over: each starts its own Python,
    numpy and envs, so start-up grows with them (60 CartPole actors on 2 cores: 12 s before a 3-second run
    stopped, no env step learned on), and each gets a sliver of a core. None otherwise."""
    cores = usable_cores()
    if cfg.backend != "local" or cfg.serial or cfg.num_actors <= CROWDED * cores:
        return None
    return (f"{cfg.num_actors} actor processes on {cores} core{'s' if cores > 1 else ''}: each starts its own "
            f"Python and envs, and gets 1/{cfg.num_actors / cores:.0f} of a core; fewer actors with more "
            f"--envs-per-actor step as many envs with less start-up")
