"""Tasks that need memory, registered when actorlearner.envs is imported (so `--env` finds them in the
launcher and in every actor).

- `actorlearner/CartPoleNoVel-v1`: CartPole-v1 with the velocities removed from the observation (cart
  position and pole angle only), the task rl-baselines3-zoo trains RecurrentPPO on. Also as a vector env
  (gymnasium's CartPoleVectorEnv, the velocities dropped), so `--env-backend auto` steps it in one call.
- `actorlearner/CueMemory-v0`: a cue (one of two) is shown in the first step only; `delay` blank steps follow,
  then a query step where the action naming the cue earns 1 (any other 0; no reward before). A policy
  without memory sees the same blank query either way and earns 0.5; one that remembers earns 1.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleEnv, CartPoleVectorEnv

NO_VEL = "actorlearner/CartPoleNoVel-v1"
CUE_MEMORY = "actorlearner/CueMemory-v0"
_KEEP = [0, 2]  # cart position, pole angle


def _no_vel_space(space: gym.spaces.Box) -> gym.spaces.Box:
    return gym.spaces.Box(space.low[_KEEP], space.high[_KEEP], (2,), np.float32)


class CartPoleNoVel(gym.ObservationWrapper):
    def __init__(self, render_mode=None):
        super().__init__(CartPoleEnv(render_mode=render_mode))
        self.observation_space = _no_vel_space(self.env.observation_space)

    def observation(self, obs):
        return np.asarray(obs[_KEEP], np.float32)


class CartPoleNoVelVector(gym.vector.VectorObservationWrapper):
    def __init__(self, num_envs: int = 1, **kwargs):
        super().__init__(CartPoleVectorEnv(num_envs=num_envs, **kwargs))
        self.single_observation_space = _no_vel_space(self.env.single_observation_space)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)

    def observations(self, obs):
        return np.ascontiguousarray(obs[:, _KEEP], np.float32)


class CueMemory(gym.Env):
    """obs [cue_a, cue_b, query]: (1, 0, 0) or (0, 1, 0) at the first step, zeros for `delay` steps, then
    (0, 0, 1); the action at the query step is rewarded 1 if it names the cue. delay + 1 actions an episode."""

    observation_space = gym.spaces.Box(0.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, delay: int = 20):
        if delay < 1:
            raise ValueError(f"delay must be >= 1, got {delay}")
        self.delay = delay

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.cue, self.t = int(self.np_random.integers(2)), 0
        obs = np.zeros(3, np.float32)
        obs[self.cue] = 1.0
        return obs, {}

    def _query(self):
        return np.array([0.0, 0.0, 1.0], np.float32)

    def step(self, action):
        self.t += 1
        if self.t > self.delay:  # this was the query step
            return np.zeros(3, np.float32), float(int(action) == self.cue), True, False, {}
        return (self._query() if self.t == self.delay else np.zeros(3, np.float32)), 0.0, False, False, {}


def register() -> None:
    if NO_VEL not in gym.registry:
        gym.register(NO_VEL, entry_point=CartPoleNoVel, vector_entry_point=CartPoleNoVelVector,
                     max_episode_steps=500, reward_threshold=475.0)
    if CUE_MEMORY not in gym.registry:
        gym.register(CUE_MEMORY, entry_point=CueMemory, reward_threshold=0.95)
