"""Tiny envs with known answers, for learning tests."""

import gymnasium as gym
import numpy as np


class AlwaysTruncated(gym.Env):
    """Reward 1 every step, never terminal, truncated after `limit` steps; the observation is constant,
    so it carries no time. The true value under gamma is 1 / (1 - gamma) everywhere."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, limit: int = 20):
        self.limit, self.t = limit, 0

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return np.ones(2, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.ones(2, np.float32), 1.0, False, self.t >= self.limit, {}


class BestActionHalf(gym.Env):
    """One-step episodes; reward -(a - 0.5)^2 for a continuous action a: the best action is 0.5."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), -float((action[0] - 0.5) ** 2), True, False, {}


class BestAtTheBound(gym.Env):
    """Zero observations, 20 steps, reward sum(a) for a 2-D action in [-1, 1]: the best action is the upper bound,
    and every sample above it gets the same reward once clipped, so a Gaussian policy's mean walks out of the bounds
    (a serial run, seeds 1-3: 100 % of the samples outside by learner steps 136-193, 2026-12-08)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return np.zeros(4, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(4, np.float32), float(np.sum(action)), False, self.t >= 20, {}


class CartPoleFailingOnce(gym.Wrapper):
    """CartPole whose 50th step in this process raises (once per process)."""

    steps_in_process = 0

    def __init__(self):
        super().__init__(gym.make("CartPole-v1"))

    def step(self, action):
        type(self).steps_in_process += 1
        if type(self).steps_in_process == 50:
            raise RuntimeError("simulated env failure at step 50")
        return self.env.step(action)


class _CartPoleNanOnce(gym.Wrapper):
    """CartPole whose `nan_at`-th step in this process (once) returns a NaN where `spoil` puts it. Each
    subclass counts its own steps (serial runs: every env of the run counts in this process)."""

    steps_in_process = 0
    nan_at = 3000

    def __init__(self):
        super().__init__(gym.make("CartPole-v1"))

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        type(self).steps_in_process += 1
        if type(self).steps_in_process == self.nan_at:
            obs, reward = self.spoil(obs.copy(), reward)
        return obs, reward, terminated, truncated, info


class CartPoleNanReward(_CartPoleNanOnce):
    steps_in_process = 0

    def spoil(self, obs, reward):
        return obs, float("nan")


class CartPoleNanObs(_CartPoleNanOnce):
    steps_in_process = 0

    def spoil(self, obs, reward):
        obs[2] = np.nan
        return obs, reward
