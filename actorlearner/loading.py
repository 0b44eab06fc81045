"""Loading a trained policy from a run directory (no pickle: config.json and .npz files only)."""

from __future__ import annotations

import json
import os
from typing import Callable, Optional

import numpy as np

from . import checkpoint
from .blas import one_blas_thread
from .config import ConfigError
from .config_sources import saved_config
from .env_registry import check_env_id
from .envs import env_time_limit, inspect_env, make_env_fn, spec_from_spaces
from .layout import default_layout
from .model_fns import check_fits, custom_model_name, model_fn_of
from .policies import KerasPolicy, numpy_policy
from .reporting import warn
from .run_files import (check_same_env, custom_env_error, env_differences, named_env_fn, saved_module_homes,
                        trained_on_custom_env)


WHICH = ("final", "best", "latest")


def load_policy(run_dir: str, *, env_fn: Optional[Callable] = None, model_fn: Optional[Callable] = None,
                which: str = "final"):
    """The policy of a run, ready to call (a `LoadedPolicy`): `policy.greedy(obs)`, `policy.sample(obs, rng)`,
    `policy.value(obs)` on one observation or a batch `[B, *obs_shape]`; recurrent ones `policy.step(obs, state)`.

    which: "final" (policy.npz, written when the run stopped; the newest checkpoint if there is none),
    "best" (best.npz, the weights of the best evaluation), or "latest" (the newest good checkpoint).
    env_fn: needed if the run trained on a custom env factory (to read the spaces).
    model_fn: needed if the run trained a custom Keras model."""
    cfg, spec, _ = run_config(run_dir, env_fn)
    return policy_of(run_dir, cfg, spec, which=which, model_fn=model_fn)


def evaluate(run_dir: str, episodes: int = 10, *, deterministic: bool = False, which: str = "final", seed: int = 0,
             env_kwargs=None, env_fn: Optional[Callable] = None, model_fn: Optional[Callable] = None) -> dict:
    """Plays `episodes` episodes with a run's policy, as `actorlearner eval` does, and returns
    {"returns": [...], "lengths": [...], "mean_return", "std_return", "mean_length"}.

    deterministic: act greedily (argmax / Gaussian mean) instead of sampling; which: as in load_policy; seed: the
    first episode's (episode i gets seed + i); env_kwargs: gym.make arguments over the run's own (a dict, or
    --env-kwargs text), for a variant of its env with the same spaces; env_fn, model_fn: as in load_policy. Each
    env step is bounded by the run's --wait-timeout-s, as in training."""
    from .evaluation import run_episodes

    if episodes < 1:
        raise ConfigError(f"episodes must be >= 1, got {episodes}")
    cfg, spec, make, policy = playing(run_dir, which=which, env_kwargs=env_kwargs, env_fn=env_fn, model_fn=model_fn)
    with one_blas_thread(), env_time_limit(cfg.env, cfg.wait_timeout_s, "made, reset or stepped",
                                           trained=True) as step_done:
        returns, lengths = run_episodes(policy, make, spec, episodes=episodes, seed=seed, greedy=deterministic,
                                        on_step=step_done)
    if not returns:
        raise RuntimeError(f"no episode of {cfg.env} finished: its env raised in every one (see above)")
    return {"returns": returns, "lengths": lengths, "mean_return": float(np.mean(returns)),
            "std_return": float(np.std(returns)), "mean_length": float(np.mean(lengths))}


def playing(run_dir: str, *, which: str = "final", env_kwargs=None, env_fn: Optional[Callable] = None,
            model_fn: Optional[Callable] = None):
    """(cfg, spec, env factory, policy) to play a run's policy, for evaluate and `actorlearner eval`: the run's
    config and env, a variant of it with env_kwargs (a dict or --env-kwargs text over the run's own; None: the
    run's), and its weights (which) in its model."""
    cfg, spec, make = run_config(run_dir, env_fn)
    if env_kwargs is not None:
        if env_fn is not None:
            raise ConfigError("env_kwargs are for a run on an env id; an env_fn makes its env with its own")
        cfg, make = env_variant(run_dir, cfg, env_kwargs if isinstance(env_kwargs, str) else json.dumps(env_kwargs))
    return cfg, spec, make, policy_of(run_dir, cfg, spec, which=which, model_fn=model_fn)


def policy_of(run_dir: str, cfg, spec, *, which: str = "final", model_fn: Optional[Callable] = None):
    """load_policy for a run whose config and spec `run_config` has read already (it makes an env for them)."""
    flat, layout, _ = saved_weights(run_dir, which)
    model_fn = model_fn_of(cfg, model_fn, saved_module_homes(run_dir))
    if model_fn is None:
        if layout != default_layout(spec, cfg):
            # A custom model's weights, or the env is not the one the run trained on (a module edited since): the
            # line said only the first, and sent a user whose env had changed looking for a model_fn.
            raise ConfigError(f"{run_dir}'s weights do not fit the default model of {cfg.env} as it is made now "
                              f"(observations {list(spec.obs_shape)}, {spec.describe_actions()}): the run's env has "
                              f"changed since, or it trained a custom model (pass its model_fn)")
        policy = numpy_policy(spec, cfg, layout)
    else:
        policy = KerasPolicy(spec, model_fn, threads=0, name=custom_model_name(cfg))
        check_fits(policy.model, layout, cfg, f"{run_dir}'s")  # a reshape's traceback in load() before
    policy.load(flat)
    return LoadedPolicy(policy, spec)


class LoadedPolicy:
    """A run's policy behind checks of what a user's code passes it (the actors call the policy itself, unchecked).

    Every call takes a batch `[B, *obs_shape]` or one observation `[*obs_shape]`, answered without the batch axis
    (as an env's `step` wants it); an array or nested lists in any numeric dtype (converted to the env's). Any
    other shape is a ValueError naming the shape expected, where the policy's own code would fail inside a matmul.
    Recurrent policies carry a state: `step(obs, state)` and `act`; `greedy`, `sample` and `value` are for
    feed-forward ones."""

    def __init__(self, policy, spec):
        self.policy, self.spec = policy, spec
        self.state_sizes = policy.state_sizes
        self._rng = None

    def _batch(self, obs) -> tuple[np.ndarray, bool]:
        """(obs as a batch in the env's dtype, whether it was one observation)."""
        x = np.asarray(obs)
        shape = tuple(self.spec.obs_shape)
        one = x.shape == shape
        if not one and x.shape[1:] != shape:
            made = (f" (the env's own observations made {self.spec.obs_note}: actorlearner.make_env(RUN_DIR) makes "
                    f"the env as training did, whose observations these are)" if self.spec.obs_note else "")
            raise ValueError(f"observations of shape {list(x.shape)}: this policy takes one observation of shape "
                             f"{list(shape)} or a batch [B, {', '.join(map(str, shape))}]{made}")
        x = x.astype(self.spec.obs_dtype, copy=False)
        return (x[None], True) if one else (x, False)

    def _stateless(self, what: str) -> None:
        if self.state_sizes:
            raise TypeError(f"policy.{what}(obs) is for feed-forward policies; this one is recurrent: "
                            "action, state = policy.step(obs, state), from state = policy.initial_state(1)")

    def _default_rng(self, rng):
        if rng is None:
            self._rng = self._rng or np.random.default_rng()
            rng = self._rng
        return rng

    def initial_state(self, n: int = 1) -> list[np.ndarray]:
        """The state at an episode's start, for n envs: zeros, [] for a feed-forward policy."""
        return self.policy.initial_state(n)

    def _mask(self, mask, x: np.ndarray, one: bool) -> Optional[np.ndarray]:
        """mask (the allowed actions, [A] or [B, A], any 0/1 or bool) as a [B, A] bool batch matching x, or None."""
        if mask is None:
            return None
        if not self.spec.discrete:
            raise ValueError(f"a mask chooses among categorical actions; this policy has "
                             f"{self.spec.describe_actions()}")
        m = np.asarray(mask).astype(bool)
        m = m[None] if one and m.ndim == 1 else m
        if m.shape != (x.shape[0], self.spec.action_dim):
            raise ValueError(f"an action mask of shape {list(np.shape(mask))}: this policy takes "
                             f"[{self.spec.action_dim}] per observation (one flag per choice for "
                             f"{self.spec.describe_actions()}), [B, {self.spec.action_dim}] for a batch")
        return m

    def greedy(self, obs, mask=None):
        """The most likely action (Discrete; among those `mask` allows, if given) or the Gaussian mean (Box), per
        observation."""
        self._stateless("greedy")
        x, one = self._batch(obs)
        actions = self.policy.greedy(x, self._mask(mask, x, one))
        return actions[0] if one else actions

    def sample(self, obs, rng: Optional[np.random.Generator] = None, mask=None):
        """(sampled actions, their log-probabilities); rng: a numpy Generator (default: one of the policy's);
        mask: the allowed actions (a run trained with --action-masks), [A] or [B, A]."""
        self._stateless("sample")
        x, one = self._batch(obs)
        actions, logp = self.policy.sample(x, self._default_rng(rng), self._mask(mask, x, one))
        return (actions[0], logp[0]) if one else (actions, logp)

    def value(self, obs):
        """The value estimate per observation."""
        self._stateless("value")
        x, one = self._batch(obs)
        values = self.policy.value(x)
        return values[0] if one else values

    def act(self, obs, state: list, rng: Optional[np.random.Generator] = None, greedy: bool = False, mask=None):
        """(actions, log-probabilities or None when greedy, next state); any policy."""
        x, one = self._batch(obs)
        actions, logp, state = self.policy.act(x, state, self._default_rng(rng) if not greedy else rng, greedy,
                                               mask=self._mask(mask, x, one))
        if one:
            actions, logp = actions[0], (None if logp is None else logp[0])
        return actions, logp, state

    def step(self, obs, state: list, mask=None):
        """(the greedy action, the next state); any policy (a feed-forward one passes its empty state through)."""
        actions, _, state = self.act(obs, state, greedy=True, mask=mask)
        return actions, state

    def value_at(self, obs, state: list):
        x, one = self._batch(obs)
        values = self.policy.value_at(x, state)
        return values[0] if one else values


def make_env(run_dir: str, render_mode: Optional[str] = None):
    """The env of a run (trained on an env id) as its actors made it: its observations are what the run's policy
    takes (`load_policy`), e.g. Taxi's one-hot, MiniGrid's vector, the --frame-stack, with --action-masks the
    masks in `info["action_mask"]`. render_mode: gymnasium's ("rgb_array", "human"). An env whose spaces have
    changed since the run (an edited module, another version) is a ConfigError, as for load_policy."""
    if trained_on_custom_env(run_dir):
        named = named_env_fn(run_dir)
        if named is None:
            raise ConfigError(f"{run_dir} trained on an env factory (env_fn): its env is the one that factory makes")
        if render_mode:
            raise ConfigError(f"{run_dir} trained on an env factory (env_fn), which makes its env with its own "
                              f"render mode: make_env cannot give it render_mode={render_mode!r}")
        env = named()
    else:
        env = _run_env_fn(run_dir, _saved_config(run_dir), render_mode)()
    try:
        check_same_env(run_dir, spec_from_spaces(env.observation_space, env.action_space), "make_env")
    except ConfigError:
        env.close()
        raise
    return env


def _saved_config(run_dir: str):
    cfg_path = os.path.join(run_dir, "config.json")
    if not os.path.exists(cfg_path):
        raise ConfigError(f"{cfg_path} not found: is {run_dir} a run directory?")
    return saved_config(cfg_path)


def _run_env_fn(run_dir: str, cfg, render_mode: Optional[str] = None):
    """The env factory of a run trained on an env id, with its modules, kwargs and wrappers."""
    check_env_id(cfg.env, cfg.env_modules, saved_module_homes(run_dir))
    return make_env_fn(cfg.env, render_mode, cfg.env_modules, cfg.env_kwargs_dict, cfg.frame_stack,
                       cfg.action_masks)


def run_config(run_dir: str, env_fn: Optional[Callable] = None):
    """(Config, EnvSpec, env_fn) of a run directory. The env made for the spec gets the run's --wait-timeout-s."""
    cfg = _saved_config(run_dir)
    if env_fn is None and trained_on_custom_env(run_dir):
        env_fn = named_env_fn(run_dir)  # the factory the run names, if it named one
        if env_fn is None:
            raise custom_env_error(run_dir, cfg.env, "loading its policy")
    elif env_fn is None:
        env_fn = _run_env_fn(run_dir, cfg)
    with env_time_limit(cfg.env, cfg.wait_timeout_s, "made, reset and stepped once", trained=True):
        spec = inspect_env(env_fn, action_masks=cfg.action_masks)
    check_same_env(run_dir, spec, "playing or loading its policy")
    return cfg, spec, env_fn


def env_variant(run_dir: str, cfg, env_kwargs: str):
    """(cfg, env_fn) for the run's env made with `env_kwargs` (--env-kwargs text) over the run's own, checked
    to give the observations and actions the run's policy takes (ConfigError otherwise). A run on an env id."""
    from .config import parse_env_kwargs

    merged = {**cfg.env_kwargs_dict, **parse_env_kwargs(env_kwargs)}
    cfg = cfg.replace(env_kwargs=json.dumps(merged, separators=(",", ":")) if merged else None)
    env_fn = _run_env_fn(run_dir, cfg)
    with env_time_limit(cfg.env, cfg.wait_timeout_s, "made, reset and stepped once", trained=True):
        spec = inspect_env(env_fn, action_masks=cfg.action_masks)
    differ = env_differences(run_dir, spec, "in the run", "here")
    if differ:
        raise ConfigError(f"--env-kwargs {env_kwargs}: the env has other observations or actions than the run's "
                          f"({differ}): its policy plays only an env with the same spaces")
    return cfg, env_fn


def saved_weights(run_dir: str, which: str) -> tuple[np.ndarray, list, str]:
    """(flat weight vector, its layout, the file read) of a run: `which` as in load_policy (final falls back to
    the newest good checkpoint where a killed run left no policy.npz)."""
    if which not in WHICH:
        raise ConfigError(f"which must be one of {', '.join(WHICH)}, got {which!r}")
    name = {"final": "policy.npz", "best": "best.npz"}.get(which)
    path = os.path.join(run_dir, name) if name else ""
    if path and os.path.exists(path):
        try:
            with np.load(path, allow_pickle=False) as data:
                return data["flat"], _layout(json.loads(str(data["layout"]))), path
        except Exception as e:  # noqa: BLE001 - zip, CRC, JSON and key errors all mean the same: unusable
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ConfigError(f"{path} is corrupt or truncated ({type(e).__name__}: {reason}); --which latest "
                              "uses the newest checkpoint instead") from None
    if which == "best":
        raise ConfigError(f"{run_dir}/best.npz not found: the run made no evaluation (--eval-every-s 0?)")
    try:
        ckpt = checkpoint.load_latest(run_dir, warn=warn)
    except checkpoint.CheckpointError as e:
        # A run killed before its first checkpoint may still have kept its best evaluation's weights.
        if os.path.exists(os.path.join(run_dir, "best.npz")):
            raise checkpoint.CheckpointError(f"{e}; its best evaluation's weights are in best.npz: --which best "
                                             "plays them") from None
        raise
    if ckpt.policy_flat is None:
        raise ConfigError(f"{ckpt.path} holds no policy weights")
    return ckpt.policy_flat, _layout(ckpt.meta["policy_layout"]), ckpt.path


def _layout(pairs: list) -> list:
    """A layout as stored in JSON ([path, shape list] pairs) -> [(path, shape tuple)]."""
    return [(p, tuple(s)) for p, s in pairs]
