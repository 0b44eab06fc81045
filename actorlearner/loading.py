"""Loading a trained policy from a run directory (no pickle: config.json and .npz files only)."""

from __future__ import annotations

import json
import os
from typing import Callable, Optional

import numpy as np

from . import checkpoint
from .config import ConfigError
from .config_sources import saved_config
from .envs import check_env_id, inspect_env, make_env_fn
from .layout import default_layout
from .policies import KerasPolicy, numpy_policy
from .reporting import warn
from .run_files import custom_env_error, trained_on_custom_env


WHICH = ("final", "best", "latest")


def load_policy(run_dir: str, *, env_fn: Optional[Callable] = None, model_fn: Optional[Callable] = None,
                which: str = "final"):
    """The policy of a run, ready to call: `policy.greedy(obs[None])`, `policy.sample(obs, rng)`,
    `policy.value(obs)` on batches `[B, *obs_shape]` in the env's dtype.

    which: "final" (policy.npz, written when the run stopped; the newest checkpoint if there is none),
    "best" (best.npz, the weights of the best evaluation), or "latest" (the newest good checkpoint).
    env_fn: needed if the run trained on a custom env factory (to read the spaces).
    model_fn: needed if the run trained a custom Keras model."""
    cfg, spec, env_fn = run_config(run_dir, env_fn)
    flat, layout = saved_weights(run_dir, which)
    if model_fn is None:
        if layout != default_layout(spec, cfg):
            raise ConfigError(f"{run_dir} holds a custom model's weights: pass its model_fn")
        policy = numpy_policy(spec, cfg, layout)
    else:
        policy = KerasPolicy(spec, model_fn, threads=0)
    policy.load(flat)
    return policy


def run_config(run_dir: str, env_fn: Optional[Callable] = None):
    """(Config, EnvSpec, env_fn) of a run directory."""
    cfg_path = os.path.join(run_dir, "config.json")
    if not os.path.exists(cfg_path):
        raise ConfigError(f"{cfg_path} not found: is {run_dir} a run directory?")
    cfg = saved_config(cfg_path)
    if env_fn is None:
        if trained_on_custom_env(run_dir):
            raise custom_env_error(run_dir, cfg.env, "loading its policy")
        check_env_id(cfg.env)
        env_fn = make_env_fn(cfg.env)
    return cfg, inspect_env(env_fn), env_fn


def saved_weights(run_dir: str, which: str) -> tuple[np.ndarray, list]:
    """(flat weight vector, its layout) of a run: `which` as in load_policy."""
    if which not in WHICH:
        raise ConfigError(f"which must be one of {', '.join(WHICH)}, got {which!r}")
    name = {"final": "policy.npz", "best": "best.npz"}.get(which)
    path = os.path.join(run_dir, name) if name else ""
    if path and os.path.exists(path):
        try:
            with np.load(path, allow_pickle=False) as data:
                return data["flat"], _layout(json.loads(str(data["layout"])))
        except Exception as e:  # noqa: BLE001 - zip, CRC, JSON and key errors all mean the same: unusable
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ConfigError(f"{path} is corrupt or truncated ({type(e).__name__}: {reason}); --which latest "
                              "uses the newest checkpoint instead") from None
    if which == "best":
        raise ConfigError(f"{run_dir}/best.npz not found: the run made no evaluation (--eval-every-s 0?)")
    ckpt = checkpoint.load_latest(run_dir, warn=warn)
    if ckpt.policy_flat is None:
        raise ConfigError(f"{ckpt.path} holds no policy weights")
    return ckpt.policy_flat, _layout(ckpt.meta["policy_layout"])


def _layout(pairs: list) -> list:
    """A layout as stored in JSON ([path, shape list] pairs) -> [(path, shape tuple)]."""
    return [(p, tuple(s)) for p, s in pairs]
