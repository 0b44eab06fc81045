"""Loading a trained policy from a run directory (no pickle: config.json and policy.npz only)."""

from __future__ import annotations

import json
import os
from typing import Callable, Optional

import numpy as np

from .config import ConfigError, config_from_dict
from .envs import check_env_id, inspect_env, make_env_fn
from .policies import KerasPolicy, NumpyMLPPolicy, default_layout


def load_policy(run_dir: str, *, env_fn: Optional[Callable] = None, model_fn: Optional[Callable] = None):
    """The policy of a finished run, ready to call: `policy.greedy(obs[None])`, `policy.sample(obs, rng)`,
    `policy.value(obs)` on float32 batches `[B, obs_dim]`.

    env_fn: needed if the run trained on a custom env factory (to read the spaces).
    model_fn: needed if the run trained a custom Keras model."""
    cfg_path, npz_path = os.path.join(run_dir, "config.json"), os.path.join(run_dir, "policy.npz")
    for path in (cfg_path, npz_path):
        if not os.path.exists(path):
            raise ConfigError(f"{path} not found: is {run_dir} the directory of a finished run?")
    with open(cfg_path) as f:
        cfg = config_from_dict(json.load(f))
    if env_fn is None:
        check_env_id(cfg.env)
        env_fn = make_env_fn(cfg.env)
    spec = inspect_env(env_fn)
    with np.load(npz_path, allow_pickle=False) as data:
        flat = data["flat"]
        layout = [(p, tuple(s)) for p, s in json.loads(str(data["layout"]))]
    if model_fn is None:
        if layout != default_layout(spec, cfg.hidden_sizes):
            raise ConfigError(f"{run_dir} holds a custom model's weights: pass its model_fn")
        policy = NumpyMLPPolicy(spec, layout, cfg.hidden_sizes, cfg.activation)
    else:
        policy = KerasPolicy(spec, model_fn, threads=0)
    policy.load(flat)
    return policy
