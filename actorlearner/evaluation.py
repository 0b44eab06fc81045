"""Playing whole episodes with a policy, outside training (no exploration unless asked)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from .envs import EnvSpec


def run_episodes(policy, env_fn: Callable, spec: EnvSpec, *, episodes: int, seed: int,
                 greedy: bool = True, max_steps: int = 100_000) -> tuple[list[float], list[int]]:
    """Plays `episodes` episodes on one env; returns (returns, lengths). Greedy means argmax / mean."""
    rng = np.random.default_rng(seed)
    env = env_fn()
    returns, lengths = [], []
    try:
        for ep in range(episodes):
            obs, _ = env.reset(seed=seed + ep)
            total, n, done = 0.0, 0, False
            while not done and n < max_steps:
                x = np.asarray(obs, np.float32)[None]
                if greedy:
                    action = policy.greedy(x)[0]
                else:
                    action = policy.sample(x, rng)[0][0]
                if spec.discrete:
                    action = int(action)
                else:
                    action = np.clip(action, spec.action_low, spec.action_high)
                obs, r, terminated, truncated, _ = env.step(action)
                total += float(r)
                n += 1
                done = terminated or truncated
            returns.append(total)
            lengths.append(n)
    finally:
        env.close()
    return returns, lengths
