"""Env backends: which `EnvBatch` serves an env id (`resolve_backend`, for --env-backend) and the picklable
recipe an actor builds its batch from (`EnvBatchFactory`): K single gymnasium envs, the id's gymnasium vector
entry point, ale-py's AtariVectorEnv (Atari preprocessing built in) or an envpool pool."""

from __future__ import annotations

from typing import Optional

import gymnasium as gym
import numpy as np

from . import atari
from .atari import MAX_FRAMES, STICKY_ACTIONS, ChannelsLastVector
from .config import ConfigError
from .env_batch import EnvBatch, GymEnvBatch, VectorEnvBatch, _close_quietly, env_seed
from .env_registry import import_env_modules, registered_id
from .envs import inspect_env, spec_from_spaces

class SampledActions(gym.spaces.MultiDiscrete):
    """A vector env's batched Discrete action space whose `contains` checks the batch's shape and integer dtype
    only. An actor steps its envs with actions its sampler drew, in range by construction
    (distributions.np_sample_discrete); gymnasium's full check, an assert in every CartPoleVectorEnv.step, cost
    ~17 µs of a ~110 µs step of 64 envs here."""

    def contains(self, x) -> bool:
        return isinstance(x, np.ndarray) and x.shape == self.shape and x.dtype.kind in "iu"


class EnvBatchFactory:
    """Picklable recipe for an actor's env batch: `factory(actor_id, incarnation, seed)` -> EnvBatch.

    backend: "gymnasium" (env_fn, K single envs), "vector" (gymnasium.make_vec of env_id with its vector
    entry point) or "ale" (ale-py's AtariVectorEnv for an `ALE/Game-v5` id, preprocessed as atari.py says)."""

    def __init__(self, backend: str, num_envs: int, env_fn=None, env_id: Optional[str] = None,
                 modules: tuple = (), episodic_life: bool = False, env_kwargs: Optional[dict] = None,
                 action_masks: bool = False):
        """env_kwargs: --env-kwargs, for the vector backend's entry point (env_fn has them for single envs).
        action_masks: --action-masks (the gymnasium backend)."""
        self.backend, self.num_envs, self.env_fn, self.env_id, self.modules = backend, num_envs, env_fn, env_id, modules
        self.episodic_life, self.env_kwargs, self.action_masks = episodic_life, dict(env_kwargs or {}), action_masks

    def __call__(self, actor_id: int, incarnation: int, seed: int, spec) -> EnvBatch:
        label = str(actor_id)
        if self.backend == "gymnasium":
            return GymEnvBatch(self.env_fn, self.num_envs, lambda n: env_seed(seed, actor_id, n, incarnation),
                               spec.obs_shape, spec.obs_dtype, spec.action_shape == (), label,
                               self.env_id if isinstance(self.env_id, str) else "custom env", self.episodic_life,
                               spec if spec.action_masks else None)
        first_seed = env_seed(seed, actor_id, 0, incarnation)
        return VectorEnvBatch(lambda s: self.make_vec(self.num_envs, s), self.num_envs, first_seed,
                              self.backend, label, spec.obs_shape, spec.obs_dtype, self.episodic_life)

    @property
    def confirm_batches(self):
        """vector_batch where solve confirmations can play on this backend (gymnasium's own vector entry
        points), else None (single envs then): ALE's episodic life would end an episode at a lost life."""
        return self.vector_batch if self.backend == "vector" else None

    def vector_batch(self, num_envs: int, seed: int) -> VectorEnvBatch:
        """num_envs envs of this (vector) backend in one batch, reset with `seed`: evaluation's, not an actor's."""
        return VectorEnvBatch(lambda s: self.make_vec(num_envs, s), num_envs, seed, self.backend, "evaluation")

    def make_vec(self, num_envs: int, seed: int = 0):
        """The vector env of this backend (seed: envpool seeds its envs when it builds them)."""
        import_env_modules(self.modules, self.env_id)
        rid = registered_id(self.env_id)
        if self.backend == "vector":
            env = gym.make_vec(rid, num_envs=num_envs, vectorization_mode="vector_entry_point", **self.env_kwargs)
            if type(env.action_space) is gym.spaces.MultiDiscrete:
                env.action_space = SampledActions(env.action_space.nvec, env.action_space.dtype,
                                                  start=env.action_space.start)
            return env
        if self.backend == "envpool":
            import warnings

            import envpool

            # envpool declares float64 bounds, which gymnasium warns about in every actor.
            warnings.filterwarnings("ignore", message=".*Box (low|high)'s precision lowered")
            if rid.startswith("ALE/"):
                env = envpool.make(_envpool_task(rid), env_type="gymnasium", num_envs=num_envs, seed=seed,
                                   repeat_action_probability=STICKY_ACTIONS, max_episode_steps=MAX_FRAMES // 4,
                                   reward_clip=False)
                return ChannelsLastVector(env)
            return envpool.make(rid, env_type="gymnasium", num_envs=num_envs, seed=seed)
        return atari.vector_env(rid, num_envs)

    def spec(self):
        """The EnvSpec the batches will have (for the vector backends, read off a one-env vector env)."""
        if self.backend == "gymnasium":
            return inspect_env(self.env_fn, self.env_id if isinstance(self.env_id, str) else "", self.action_masks)
        env = self.make_vec(1)
        try:
            gspec = gym.registry.get(registered_id(self.env_id))  # envpool's own spec has no threshold
            limit = self.env_kwargs.get("max_episode_steps", getattr(gspec, "max_episode_steps", None))
            return spec_from_spaces(env.single_observation_space, env.single_action_space,
                                    getattr(gspec, "reward_threshold", None), limit)
        finally:
            _close_quietly(env)


def resolve_backend(requested: str, env_id, custom_env_fn: bool, env_kwargs: Optional[dict] = None,
                    frame_stack: int = 1, action_masks: bool = False) -> tuple[str, str]:
    """(backend, why) for --env-backend `requested`; raises ConfigError if it cannot serve the env. env_kwargs:
    the run's --env-kwargs, which gym.make's single envs take, and an id's gymnasium vector entry point where its
    constructor has them (CartPoleVectorEnv: max_episode_steps, sutton_barto_reward); AtariVectorEnv and envpool
    have constructors of their own. frame_stack > 1: single envs, each stacked by a wrapper. action_masks: single
    envs, whose masks come with each one's info or from its method (action_masks.py)."""
    singles = None  # (the flag that needs single envs, what it does with them, the start-up line's reason)
    if action_masks:
        singles = ("--action-masks", "reads each single env's masks", "--action-masks: single envs, each giving its "
                   "masks")
    elif frame_stack > 1:
        singles = ("--frame-stack", "stacks single envs' observations", f"--frame-stack {frame_stack}: single envs, "
                   "each stacked")
    if singles:
        flag, does, why = singles
        if requested not in ("auto", "gymnasium"):
            raise ConfigError(f"{flag} {does}: use --env-backend auto or gymnasium, not {requested}")
        return "gymnasium", why
    if env_kwargs and requested in ("ale", "envpool"):
        raise ConfigError(f"--env-kwargs go to gym.make or an id's gymnasium vector entry point: use --env-backend "
                          f"auto, gymnasium or vector, not {requested}")
    if not custom_env_fn:
        import_env_modules((), env_id)  # the id's own registration (module: prefix, ALE/)
    env_spec = None if custom_env_fn else gym.registry.get(registered_id(env_id))
    has_vector = env_spec is not None and env_spec.vector_entry_point is not None
    is_ale = env_spec is not None and registered_id(env_id).startswith("ALE/")
    ale_ok = is_ale and _importable("ale_py.vector_env")
    asks_vector = requested in ("auto", "vector") and env_kwargs and has_vector and not is_ale
    refused = _vector_refuses(env_id, env_kwargs) if asks_vector else None
    if requested == "auto":
        if env_kwargs and (is_ale or not has_vector):
            return "gymnasium", "--env-kwargs: single envs made by gym.make"
        if refused:
            return "gymnasium", f"--env-kwargs its vector entry point does not take ({refused}): single envs"
        if ale_ok:  # before vector: ale-py registers AtariVectorEnv as the ids' vector entry point too
            return "ale", "ale-py's AtariVectorEnv (C++ threads, preprocessing built in)"
        if has_vector:
            return "vector", ("the env's gymnasium vector entry point takes the --env-kwargs" if env_kwargs else
                              "the env registers a gymnasium vector entry point") + " (all envs in one call)"
        # Never envpool: its version of an id can differ from gymnasium's (its Blackjack-v1 has a Box
        # observation), and on Atari it measured no faster than ale-py here. It is there when asked for.
        return "gymnasium", ("a custom env factory" if custom_env_fn else "no vectorized implementation of this id")
    if requested == "gymnasium":
        return "gymnasium", "asked for"
    if custom_env_fn:
        raise ConfigError(f"--env-backend {requested} needs a registered env id, not an env factory")
    if requested == "vector" and is_ale:
        raise ConfigError("--env-backend vector: ALE/ ids run on --env-backend ale (the standard Atari "
                          "preprocessing, images as H x W x C)")
    if requested == "vector" and not has_vector:
        raise ConfigError(f"--env-backend vector: {env_id} registers no gymnasium vector entry point "
                          f"(use gymnasium or auto)")
    if requested == "vector" and refused:
        raise ConfigError(f"--env-backend vector: {env_id}'s vector entry point does not take these --env-kwargs "
                          f"({refused}); --env-backend gymnasium makes single envs with them")
    if requested == "ale" and not is_ale:
        raise ConfigError(f"--env-backend ale runs ALE/... ids only, not {env_id}")
    if requested == "ale" and not ale_ok:
        raise ConfigError("--env-backend ale needs ale-py: pip install 'actorlearner[atari]'")
    if requested == "envpool" and not _importable("envpool"):
        raise ConfigError("--env-backend envpool needs envpool: pip install envpool")
    if requested == "envpool" and not envpool_serves(env_id):
        raise ConfigError(f"--env-backend envpool: envpool has no {registered_id(env_id)} (use gymnasium or auto)")
    return requested, "asked for"


def _vector_refuses(env_id: str, env_kwargs: dict) -> Optional[str]:
    """Why the id's gymnasium vector entry point cannot be made with env_kwargs (its error, one line), or None
    where it can (a one-env vector env is made and closed: CartPole's costs well under a millisecond)."""
    try:
        env = gym.make_vec(registered_id(env_id), num_envs=1, vectorization_mode="vector_entry_point", **env_kwargs)
    except Exception as e:  # noqa: BLE001 - a constructor's TypeError or ValueError alike: single envs then
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    _close_quietly(env)
    return None


def _envpool_task(rid: str) -> str:
    """envpool's name for a gymnasium id: `ALE/Pong-v5` is `Pong-v5`, classic ids are the same."""
    return rid.split("/", 1)[1] if rid.startswith("ALE/") else rid


def envpool_serves(env_id: str) -> bool:
    """envpool is installed and implements the id (its import costs ~1 s, so it is tried only when needed)."""
    if not _importable("envpool"):
        return False
    import envpool

    return _envpool_task(registered_id(env_id)) in envpool.list_all_envs()


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False
