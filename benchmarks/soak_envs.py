"""The soak benchmark's env: CartPole-v1 that hangs in `step` on demand, for the hung-env fault cycle.

Registered on import as `soak_envs:CartPoleHangOnDemand-v0`. Every 1,000 steps an env looks for the file
named by SOAK_HANG_TRIGGER; when it holds this process's pid, the env sleeps for an hour inside `step`, as a
hung simulator would (the file is removed first, so the replacement runs normally)."""

import os
import time

import gymnasium as gym


class CartPoleHangOnDemand(gym.Wrapper):
    def __init__(self):
        super().__init__(gym.make("CartPole-v1"))
        self.steps = 0
        self.trigger = os.environ.get("SOAK_HANG_TRIGGER")

    def step(self, action):
        self.steps += 1
        if self.trigger and self.steps % 1000 == 0 and os.path.exists(self.trigger):
            try:
                with open(self.trigger) as f:
                    mine = f.read().strip() == str(os.getpid())
            except OSError:
                mine = False
            if mine:
                os.remove(self.trigger)
                time.sleep(3600)
        return self.env.step(action)


if "CartPoleHangOnDemand-v0" not in gym.registry:
    gym.register("CartPoleHangOnDemand-v0", entry_point=CartPoleHangOnDemand, reward_threshold=475.0,
                 max_episode_steps=500)
