"""Environment factories and the checks that an env is one we can train on.

An env is either a registered gymnasium id (`CartPole-v1`, or `module:Env-v0`, whose module is imported
first so that its registration runs) or a user callable returning a gymnasium.Env; the callable crosses
into actor processes with cloudpickle, so lambdas and closures work. `--env-module` names modules to import
before any env is made, in the launcher and in every actor (env_registry.import_env_modules).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import gymnasium as gym
import numpy as np

from .action_masks import BadMask, first_allowed, gives_masks, read_mask
from .atari import single_env
from .config import ConfigError
from .env_batch import BadObservation, check_obs
from .env_registry import import_env_modules, registered_id
from .env_wrappers import (LeanTimeLimit, MiniGridVector, flat_observations, flattens_to_a_vector,
                           mask_in_observation, masks_from_observation, minigrid_space, stacked_frames,
                           starts_elsewhere, zero_based_actions)
from .memory_envs import register as _register_memory_envs
from .mujoco_warnings import say_mujoco_warnings_once
from .presets import is_atari, mujoco_task

EnvFn = Callable[[], gym.Env]
_register_memory_envs()  # actorlearner/CartPoleNoVel-v1 and CueMemory-v0, wherever envs are made


def make_env_fn(env_id: str, render_mode: Optional[str] = None, modules: Sequence[str] = (),
                kwargs: Optional[dict] = None, frame_stack: int = 1, action_masks: bool = False) -> EnvFn:
    """A picklable factory for a registered id (see `_RegisteredEnv`); render_mode as in gym.make.
    modules: imported before the env is made (in whichever process calls the factory); kwargs: the env
    constructor's (--env-kwargs); frame_stack: --frame-stack (stacked_frames)."""
    return _RegisteredEnv(env_id, render_mode, tuple(modules), dict(kwargs or {}), frame_stack, action_masks)


def env_spaces(env_id: str, modules: Sequence[str] = (), timeout_s: float = 60.0,
               kwargs: Optional[dict] = None) -> Optional[tuple]:
    """(observation space, action space) of the env of `env_id` as actors make it: one env is made, within
    timeout_s, and closed (the launcher picks the `continuous` preset by them). None where it cannot be made:
    the launcher's checks then name the failure in full."""
    from .stopping import TimedOut, time_limit

    try:  # an id gymnasium does not know is not made (its warning for an old version would print): preflight says
        import_env_modules(modules, env_id)
        if registered_id(env_id) not in gym.registry:
            return None
    except ConfigError:
        return None
    try:
        with time_limit(timeout_s):
            env = make_env_fn(env_id, modules=modules, kwargs=kwargs)()
    except TimedOut:
        raise hung_env_error(env_id, timeout_s, "made") from None
    except Exception:  # noqa: BLE001 - preflight makes it again and says why it fails
        return None
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


@contextlib.contextmanager
def env_time_limit(env_id: str, timeout_s: float, what: str, trained: bool = False):
    """stopping.time_limit around work on an env, whose time running out is hung_env_error's one line (`what`,
    `trained` as there). Yields time_limit's re-arm function, to bound each env step rather than the block."""
    from .stopping import TimedOut, time_limit

    try:
        with time_limit(timeout_s) as step_done:
            yield step_done
    except TimedOut:
        raise hung_env_error(env_id, timeout_s, what, trained) from None


def hung_env_error(env_id: str, timeout_s: float, what: str, trained: bool = False) -> ConfigError:
    """The error for an env that was not `what` (made; made, reset and stepped once) within timeout_s: in the
    launcher's check of it, or (trained) where a trained run's policy is loaded or played, under the run's limit."""
    if trained:
        return ConfigError(f"the env {env_id} was not {what} within {timeout_s:g} s (the run's --wait-timeout-s): "
                           f"does it hang?")
    return ConfigError(f"the env {env_id} was not {what} within {timeout_s:g} s (the launcher's check of it, before "
                       f"anything starts): does it hang? --wait-timeout-s gives it longer")


# Wrappers gym.make adds that only check usage or count steps. On a cheap env they are ~20 % of a step
# (measured on CartPole-v1: 75 K -> 91 K steps/s without them), so registered envs run without them
# and `LeanTimeLimit` keeps the time limit. Any other wrapper (a registration's own) is kept.
_CHECKING_WRAPPERS = (gym.wrappers.TimeLimit, gym.wrappers.OrderEnforcing, gym.wrappers.PassiveEnvChecker)


# gymnasium's MuJoCo models with a camera named "track" that follows the body: their default view is a fixed
# one, which a running HalfCheetah leaves within a second of a video.
MUJOCO_TRACKING_CAMERA = frozenset({"Ant", "HalfCheetah", "Hopper", "Humanoid", "HumanoidStandup", "Swimmer",
                                    "Walker2d"})


class _RegisteredEnv:
    def __init__(self, env_id: str, render_mode: Optional[str] = None, modules: tuple = (),
                 kwargs: Optional[dict] = None, frame_stack: int = 1, action_masks: bool = False):
        self.env_id = env_id
        self.render_mode = render_mode
        self.modules = modules
        self.kwargs = kwargs or {}
        self.frame_stack = frame_stack
        self.action_masks = action_masks

    def __call__(self) -> gym.Env:
        import_env_modules(self.modules, self.env_id)
        if is_atari(self.env_id):
            return single_env(registered_id(self.env_id), self.render_mode, self.kwargs)
        extra = {**self.kwargs, "render_mode": self.render_mode} if self.render_mode else dict(self.kwargs)
        if mujoco_task(self.env_id):
            say_mujoco_warnings_once()
        if self.render_mode and mujoco_task(self.env_id) in MUJOCO_TRACKING_CAMERA:
            extra["camera_name"] = "track"
        env = gym.make(registered_id(self.env_id), disable_env_checker=True, **extra)
        spec = env.spec
        while isinstance(env, _CHECKING_WRAPPERS):
            env = env.env
        env = masks_from_observation(zero_based_actions(LeanTimeLimit(env, spec)), self.action_masks)
        return stacked_frames(flat_observations(env), self.frame_stack)


@dataclass(frozen=True)
class EnvSpec:
    """What the model and the actors need to know about an env, in plain picklable values.

    Observations keep their shape and dtype end to end (uint8 images stay uint8 in the slots, the
    transport and the model's input; models cast and scale in-graph)."""

    obs_shape: tuple  # one observation's shape: (D,) vectors or (H, W, C) images
    obs_dtype: str  # numpy dtype name: "float32" or "uint8"
    discrete: bool  # Discrete, MultiDiscrete or MultiBinary actions: categorical policies (else Box: a Gaussian)
    action_dim: int  # number of actions (Discrete), of logits (Multi*: sum of action_nvec), or Box vector length
    action_low: Optional[np.ndarray]
    action_high: Optional[np.ndarray]
    reward_threshold: Optional[float]
    max_episode_steps: Optional[int]
    # How flat_observations made the env's own observations into the vector above, in words, for the start-up
    # line: "flattened from Discrete(16); Discrete parts one-hot"; None where they are as the env gives them.
    obs_note: Optional[str] = None
    # MultiDiscrete and MultiBinary actions: each component's number of choices (a MultiBinary's are 2). The policy
    # is one categorical per component, their logits side by side; () for Discrete and Box actions.
    action_nvec: tuple = ()
    # --action-masks: the env gives a mask of allowed actions with every observation (action_masks.py), which the
    # actors sample under and the unrolls carry to the learner.
    action_masks: bool = False
    # Without --action-masks: the env gives masks all the same (info["action_mask"] or action_masks(), as Taxi does),
    # which the start-up line points out.
    masks_offered: bool = False

    @property
    def obs_dim(self) -> int:
        """Size of one observation flattened (what an MLP sees)."""
        return int(math.prod(self.obs_shape))

    @property
    def action_shape(self) -> tuple:
        """One action's shape: () for Discrete, (components,) for MultiDiscrete/MultiBinary, (D,) for Box."""
        if self.discrete:
            return (len(self.action_nvec),) if self.action_nvec else ()
        return (self.action_dim,)

    @property
    def joint_actions(self) -> int:
        """How many distinct actions a categorical policy chooses among (the product over components); 0 for Box."""
        if not self.discrete:
            return 0
        return int(math.prod(self.action_nvec)) if self.action_nvec else self.action_dim

    def describe_observations(self) -> str:
        """One observation's shape and dtype, for the start-up line and the run's env_spec.json: '84x84x4 uint8'."""
        return "x".join(str(d) for d in self.obs_shape) + f" {self.obs_dtype}"

    def describe_actions(self) -> str:
        """The actions in words, for the start-up line and errors: '3 actions', 'actions of 2 x 3 choices' (Multi*),
        '2-dim Box actions'."""
        if self.action_nvec:
            return f"actions of {' x '.join(str(n) for n in self.action_nvec)} choices"
        if self.discrete:
            return f"{self.action_dim} action{'s' if self.action_dim != 1 else ''}"
        return f"{self.action_dim}-dim Box actions"


def env_action(action, spec: EnvSpec):
    """One sampled action as the env's step takes it: an int (Discrete), the int vector (MultiDiscrete,
    MultiBinary), or the float32 vector clipped to the Box's bounds (the policy's Gaussian is unbounded)."""
    if not spec.discrete:
        return np.clip(np.asarray(action, np.float32), spec.action_low, spec.action_high)
    return np.asarray(action) if spec.action_nvec else int(action)


# Observation dtypes carried as they are; any other Box dtype is carried as float32.
_KEPT_DTYPES = ("uint8", "float32")


def spec_from_spaces(obs_space, act_space, threshold=None, max_steps=None) -> EnvSpec:
    """The EnvSpec of one env's spaces; raises ConfigError naming a space we do not support."""
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) not in (1, 3):
        stack = isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 4
        hint = ("; a stack of images (n, H, W, C) of an env given by id is folded into channels, one made by your "
                "own function is not: wrap it in actorlearner.env_wrappers.FoldedStack" if stack else
                "; MiniGrid's observation of an env given by id is made one vector, one made by your own function's "
                "is not: wrap it in actorlearner.env_wrappers.MiniGridVector" if minigrid_space(obs_space) else
                "; an env given by id is flattened to a vector, one made by your own function is not: wrap it "
                "in gymnasium.wrappers.FlattenObservation" if flattens_to_a_vector(obs_space) else "")
        raise ConfigError(f"unsupported observation space {obs_space}: only Box vectors (rank 1), images "
                          f"(rank 3, H x W x C) and spaces that flatten to a vector without an image are "
                          f"supported{hint}")
    dtype = np.dtype(obs_space.dtype).name
    obs = (tuple(int(n) for n in obs_space.shape), dtype if dtype in _KEPT_DTYPES else "float32")
    if starts_elsewhere(act_space):
        raise ConfigError(f"unsupported action space {act_space}: {type(act_space).__name__} must start at 0 (an env "
                          f"given by id is shifted for you; wrap one made by your own function in "
                          f"actorlearner.env_wrappers.ZeroBasedActions)")
    if isinstance(act_space, gym.spaces.Discrete):
        return EnvSpec(*obs, True, int(act_space.n), None, None, threshold, max_steps)
    if isinstance(act_space, (gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)) and len(act_space.shape) == 1:
        multi = isinstance(act_space, gym.spaces.MultiDiscrete)
        nvec = tuple(int(n) for n in act_space.nvec) if multi else (2,) * int(act_space.shape[0])
        return EnvSpec(*obs, True, sum(nvec), None, None, threshold, max_steps, action_nvec=nvec)
    if isinstance(act_space, gym.spaces.Box) and len(act_space.shape) == 1:
        return EnvSpec(*obs, False, int(act_space.shape[0]), act_space.low.astype(np.float32),
                       act_space.high.astype(np.float32), threshold, max_steps)
    raise ConfigError(f"unsupported action space {act_space}: only Discrete, 1-D MultiDiscrete, 1-D MultiBinary and "
                      f"1-D Box are supported")


def inspect_env(env_fn: EnvFn, name: str = "", action_masks: bool = False) -> EnvSpec:
    """Builds one env to read its spaces; raises ConfigError for spaces we do not support. name: the env's
    id, for the error line. action_masks: --action-masks (the env must give masks that fit its actions)."""
    try:
        env = env_fn()
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure to build the env is a user-input error here
        what = f"the env {name}" if name else "the env"
        raise ConfigError(f"could not create {what}: {type(e).__name__}: {e}") from None
    try:
        spec = getattr(env, "spec", None)
        threshold = getattr(spec, "reward_threshold", None) if spec else None
        max_steps = getattr(spec, "max_episode_steps", None) if spec else None
        if action_masks and mask_in_observation(env.observation_space):  # an env id's is wrapped: an env_fn's
            raise ConfigError(f"{name or 'the env'} gives its action mask in its observation (a Dict with an "
                              f"'action_mask'): wrap it in actorlearner.env_wrappers.MaskInInfo, which moves the mask "
                              f"into info (an env given by id is wrapped for you)")
        flat = spec_from_spaces(env.observation_space, env.action_space, threshold, max_steps)
        flat = dataclasses.replace(flat, obs_note=_obs_note(env))
        if action_masks:
            if not flat.discrete:
                raise ConfigError(f"--action-masks masks categorical actions, and {name or 'the env'} has "
                                  f"{flat.describe_actions()}")
            flat = dataclasses.replace(flat, action_masks=True)
        if check_api(env, flat, name) and not flat.action_masks:
            flat = dataclasses.replace(flat, masks_offered=True)
        return flat
    finally:
        env.close()


def _obs_note(env: gym.Env) -> Optional[str]:
    """EnvSpec.obs_note of an env: how flat_observations' wrapper (under a --frame-stack, if any) made its vector."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.FlattenObservation):
            return f"flattened from {env.env.observation_space}; Discrete parts one-hot"
        if isinstance(env, MiniGridVector):
            return env.described
        env = env.env
    return None


def check_api(env: gym.Env, spec: EnvSpec, name: str = "") -> bool:
    """One reset and one step of `env`, checked against gymnasium's API and the env's own spaces; returns whether
    the env gives action masks (action_masks.py's conventions). Raises ConfigError with one line naming the env and
    what is wrong. Without it, an env that breaks the API (the
    old gym's 4-value step, a reward in an array, observations of another shape) fails in every actor
    process, each restarted five times before the run gives up."""
    what = f"the env {name}" if name else "the env"
    call = "reset"
    try:
        out = env.reset(seed=0)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise _ApiError(f"reset() returned {_count(out)}, expected 2 (observation, info)")
        check_obs(out[0], spec.obs_shape, spec.obs_dtype, "reset")
        call = "step"
        if spec.action_masks:  # an env with masks may refuse an action they do not allow
            action = first_allowed(read_mask(env, out[1], spec), spec)
        else:
            env.action_space.seed(0)
            action = env_action(env.action_space.sample(), spec)
        out = env.step(action)
        if not (isinstance(out, tuple) and len(out) == 5):
            got = _count(out)
            raise _ApiError(f"step() returned {got}, expected 5{_OLD_GYM if got == '4 values' else _FIVE}")
        check_obs(out[0], spec.obs_shape, spec.obs_dtype, "step")
        reward = out[1]
        if np.ndim(reward) != 0 or np.asarray(reward).dtype.kind not in "fiub":
            raise _ApiError(f"step() returned a reward of {_describe(reward)}, expected a number")
        if spec.action_masks:
            read_mask(env, out[4], spec)
        return gives_masks(env, out[4])
    except BadMask as e:
        raise ConfigError(f"{what} {e} (at its first {call})") from None
    except (_ApiError, BadObservation) as e:
        raise ConfigError(f"{what} does not follow gymnasium's API: {e}") from None
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - a user env may raise anything; here it is a user-input error
        unpack = re.search(r"values to unpack \(expected 5, got (\d+)\)", str(e)) if call == "step" else None
        if unpack:  # a wrapper (gym.make's, or our time limit) unpacked the env's own step
            raise ConfigError(f"{what} does not follow gymnasium's API: step() returned {unpack.group(1)} values, "
                              f"expected 5{_OLD_GYM if unpack.group(1) == '4' else ''}") from None
        hint = ""
        if call == "step" and not spec.action_masks and gives_masks(env, out[1]):
            hint = " (the env gives action masks: --action-masks samples only the actions they allow)"
        raise ConfigError(f"{what} raised in its first {call}(): {type(e).__name__}: {e}{hint}") from None


_FIVE = " (observation, reward, terminated, truncated, info)"
_OLD_GYM = _FIVE + "; an env written for the old gym API (before 0.26)?"


class _ApiError(ValueError):
    pass


def _count(out) -> str:
    return f"{len(out)} values" if isinstance(out, tuple) else f"a {type(out).__name__}"


def _describe(x) -> str:
    shape = getattr(x, "shape", None)
    return f"type {type(x).__name__}" + (f" of shape {shape}" if shape is not None else "")
