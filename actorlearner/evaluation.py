"""Playing whole episodes with a policy, outside training (no exploration unless asked)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from .envs import EnvSpec
from .reporting import say


def run_episodes(policy, env_fn: Callable, spec: EnvSpec, *, episodes: int, seed: int,
                 greedy: bool = True, max_steps: int = 100_000) -> tuple[list[float], list[int]]:
    """Plays `episodes` episodes on one env; returns (returns, lengths). Greedy means argmax / mean."""
    rng = np.random.default_rng(seed)
    env = env_fn()
    returns, lengths = [], []
    try:
        for ep in range(episodes):
            try:
                total, n = _play(policy, env, spec, rng, seed + ep, greedy, max_steps)
            except Exception as e:  # noqa: BLE001 - a user env may raise; one bad episode is not fatal
                say(f"evaluation env raised: {type(e).__name__}: {e}; episode skipped, env recreated")
                env.close()
                env = env_fn()
                continue
            returns.append(total)
            lengths.append(n)
    finally:
        env.close()
    return returns, lengths


def _play(policy, env, spec: EnvSpec, rng, seed: int, greedy: bool, max_steps: int) -> tuple[float, int]:
    obs, _ = env.reset(seed=seed)
    total, n, done = 0.0, 0, False
    while not done and n < max_steps:
        x = np.asarray(obs, np.float32)[None]
        action = policy.greedy(x)[0] if greedy else policy.sample(x, rng)[0][0]
        action = int(action) if spec.discrete else np.clip(action, spec.action_low, spec.action_high)
        obs, r, terminated, truncated, _ = env.step(action)
        total += float(r)
        n += 1
        done = terminated or truncated
    return total, n
