"""What the peers' scripts share: the command line that learning.py's run_peer calls sb3_ppo.py, sf_appo.py and
rllib_cartpole.py with, the one curves.py calls sb3_atari.py and sf_atari.py with, and the confirmation's episodes
for a policy that acts on a batch of observations. Each
peer runs in a virtual environment of its own, so this imports nothing of theirs (gymnasium and numpy inside)."""

from __future__ import annotations

import argparse
from typing import Callable, Optional, Sequence


def peer_parser(doc: str, envs: Sequence[str], env_help: Optional[str] = None, *, default_env: Optional[str] = None,
                max_seconds: float = 300) -> argparse.ArgumentParser:
    """--env (one of envs; required without default_env), --seed, --target, --max-seconds, --confirm-episodes and
    --confirm-margin-se, as learning.py passes them."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", choices=sorted(envs), default=default_env, required=default_env is None, help=env_help)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--target", type=float, required=True)
    p.add_argument("--max-seconds", type=float, default=max_seconds)
    p.add_argument("--confirm-episodes", type=int, default=20, help="0: the training window alone decides")
    p.add_argument("--confirm-margin-se", type=float, default=1.0,
                   help="the confirmation's mean must reach the target by this many standard errors (as ours)")
    return p


def atari_parser(doc: str) -> argparse.ArgumentParser:
    """--env (an ALE v5 id), --seed and --max-seconds of the Atari peers' fixed-clock runs, as curves.py passes
    them."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="ALE/Pong-v5", help="an ALE v5 id")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-seconds", type=float, default=1200)
    return p


def one_episode_each(env_id: str, n: int, seed: int, act: Callable) -> list[float]:
    """Returns of n fresh episodes of env_id, one per env (reset with seeds seed, seed + 1, ...), stepped together:
    act(observations [n, *obs_shape]) -> actions [n] (the envs whose episode has ended ignore theirs)."""
    import gymnasium as gym
    import numpy as np

    envs = [gym.make(env_id) for _ in range(n)]
    obs = np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(envs)])
    returns, totals = [None] * n, np.zeros(n)
    while any(r is None for r in returns):
        actions = act(obs)
        for i, e in enumerate(envs):
            if returns[i] is None:
                o, r, terminated, truncated, _ = e.step(actions[i].item())
                totals[i] += r
                obs[i] = o
                if terminated or truncated:
                    returns[i] = float(totals[i])
    for e in envs:
        e.close()
    return returns
