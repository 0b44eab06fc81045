"""Test envs a module registers on import (so `--env-module custom_envs` and `custom_envs:MatchSign-v0` find them).
Envs that misbehave on purpose (hang, raise, return the wrong shape) are in faulty_envs.py.

CountNext-v0 / CountSame-v0: a counting env with known episodes, as a single env and as vector envs of both
autoreset modes.

Env i of a batch: obs = [1000 * i + 10 * episode + t]; reward t at step t (1, 2, ...); even episodes
terminate after 3 steps, odd ones are truncated after 4. Every backend must turn these into the same valid
transitions, whatever its autoreset mode. `fail_at`: the vector env raises at that step call (once)."""

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode


def _ends(episode: int, t: int) -> tuple[bool, bool]:
    even = episode % 2 == 0
    return even and t == 3, (not even) and t == 4


class CountEnv(gym.Env):
    observation_space = gym.spaces.Box(-1e6, 1e6, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, index: int = 0, autoreset_mode: str = ""):  # the mode is the vector env's
        self.index, self.episode, self.t = index, -1, 0

    def reset(self, *, seed=None, options=None):
        self.episode += 1
        self.t = 0
        return self._obs(), {}

    def _obs(self):
        return np.array([1000 * self.index + 10 * self.episode + self.t], np.float32)

    def step(self, action):
        self.t += 1
        term, trunc = _ends(self.episode, self.t)
        return self._obs(), float(self.t), term, trunc, {}


class CountingSingles:
    """env_fn for the gymnasium backend: the n-th env made gets index n (so env i of one batch has index i)."""

    def __init__(self):
        self.made = 0

    def __call__(self):
        env = CountEnv(self.made)
        self.made += 1
        return env


class CountVectorEnv(gym.vector.VectorEnv):
    def __init__(self, num_envs: int = 1, autoreset_mode: str = "NextStep", fail_at: int = 0):
        self.num_envs = num_envs
        self.metadata = {"autoreset_mode": AutoresetMode(autoreset_mode)}
        self.single_observation_space = CountEnv.observation_space
        self.single_action_space = CountEnv.action_space
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self.envs = [CountEnv(i) for i in range(num_envs)]
        self.pending = np.zeros(num_envs, bool)
        self.calls, self.fail_at = 0, fail_at

    def reset(self, *, seed=None, options=None):
        self.envs = [CountEnv(i) for i in range(self.num_envs)]
        self.pending[:] = False
        return np.stack([e.reset()[0] for e in self.envs]), {}

    def step(self, actions):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("simulated vector env failure")
        K = self.num_envs
        obs, rew = np.zeros((K, 1), np.float32), np.zeros(K)
        term, trunc = np.zeros(K, bool), np.zeros(K, bool)
        final_obs, has_final = np.full(K, None, object), np.zeros(K, bool)
        for i, env in enumerate(self.envs):
            if self.pending[i]:  # NEXT_STEP: this call resets env i; its action is ignored
                obs[i], _ = env.reset()
                self.pending[i] = False
                continue
            obs[i], rew[i], term[i], trunc[i], _ = env.step(actions[i])
            if term[i] or trunc[i]:
                if self.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP:
                    final_obs[i], has_final[i] = obs[i].copy(), True
                    obs[i], _ = env.reset()
                else:
                    self.pending[i] = True
        info = {"final_obs": final_obs, "_final_obs": has_final} if has_final.any() else {}
        return obs, rew, term, trunc, info


for _mode in ("Next", "Same"):
    if f"Count{_mode}-v0" not in gym.registry:
        gym.register(f"Count{_mode}-v0", entry_point=CountEnv, vector_entry_point=CountVectorEnv,
                     kwargs={"autoreset_mode": f"{_mode}Step"})


class MatchSign(gym.Env):
    """obs is -1 or +1; action 1 is rewarded where obs > 0, action 0 where obs < 0; 10 steps an episode.
    A policy that reads the observation earns 10; chance earns 5. continuous=True (an argument that changes the
    kind of task, as LunarLander's does): one action in [-1, 1], rewarded where its sign is the observation's.
    multi="discrete": MultiDiscrete([2, 3]), 0.5 for component 0 matching the sign (1 where obs > 0) and 0.5 for
    component 1 at 2 where obs > 0, at 0 where obs < 0 (chance earns ~4.2); multi="binary": MultiBinary(3), 1/3 for
    each of bits 0 and 1 equal to (obs > 0) and bit 2 to (obs < 0) (chance 5). start: the Discrete's first action
    (start + 1 is rewarded where obs > 0). lag=True: the action must match the previous step's sign (the first
    step's own), which a policy seeing one observation cannot know (chance 5.5) and one seeing two can."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)
    # "human": each step is "shown" as a line on stdout, for `eval --render`'s test (no window on a CI machine).
    metadata = {"render_modes": ["human"], "render_fps": 1000}

    def __init__(self, continuous: bool = False, multi: str = "", start: int = 0, lag: bool = False,
                 render_mode=None):
        self.continuous, self.multi, self.start, self.lag = continuous, multi, start, lag
        self.render_mode = render_mode
        if start:
            self.action_space = gym.spaces.Discrete(2, start=start)
        if continuous:
            self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        elif multi:
            self.action_space = {"discrete": gym.spaces.MultiDiscrete([2, 3]),
                                 "binary": gym.spaces.MultiBinary(3)}[multi]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        obs = self._draw()
        self.prev = self.sign
        return obs, {}

    def _draw(self):
        self.sign = 1.0 if self.np_random.random() < 0.5 else -1.0
        return np.array([self.sign], np.float32)

    def step(self, action):
        up = (self.prev if self.lag else self.sign) > 0
        self.prev = self.sign
        if self.continuous:
            reward = float(np.sign(np.asarray(action).reshape(-1)[0]) == (1.0 if up else -1.0))
        elif self.multi == "discrete":
            assert self.action_space.contains(np.asarray(action, np.int64)), action
            reward = 0.5 * (int(action[0]) == up) + 0.5 * (int(action[1]) == (2 if up else 0))
        elif self.multi == "binary":
            assert self.action_space.contains(np.asarray(action, np.int8)), action
            reward = (int(action[0] == up) + int(action[1] == up) + int(action[2] == (not up))) / 3
        else:
            assert self.action_space.contains(action), action
            reward = float(int(action) - self.start == up)
        self.t += 1
        if self.render_mode == "human":
            print(f"MatchSign shows step {self.t}", flush=True)
        return self._draw(), reward, False, self.t >= 10, {}


if "MatchSign-v0" not in gym.registry:
    gym.register("MatchSign-v0", entry_point=MatchSign, reward_threshold=9.0, max_episode_steps=10)


class PickAllowed(gym.Env):
    """Action masks (--action-masks): obs is 5 signs (+1/-1); each step allows a random subset of the 5 actions
    (one with a positive sign always among them) and rewards an allowed action whose sign is positive; an action
    that is not allowed raises, as a board game's illegal move does. 10 steps an episode: a policy that prefers
    the positive signs earns 10, uniform choice among the allowed ~6.7. The mask comes in info["action_mask"]
    (gymnasium's convention), from an action_masks() method with method=True (sb3-contrib's), or in a Dict
    observation {"observation", "action_mask"} with dict_obs=True (PettingZoo's). components=2: MultiDiscrete([5, 5]),
    each component its own mask (side by side in the flat one) and half the reward."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (5,), np.float32)
    action_space = gym.spaces.Discrete(5)

    def __init__(self, method: bool = False, components: int = 1, dict_obs: bool = False):
        self.method, self.components, self.dict_obs = method, components, dict_obs
        if components > 1:
            self.action_space = gym.spaces.MultiDiscrete([5] * components)
        if dict_obs:
            self.observation_space = gym.spaces.Dict({"observation": PickAllowed.observation_space,
                                                      "action_mask": gym.spaces.MultiBinary(5 * components)})

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._observe(), self._info()

    def _draw(self):
        rng = self.np_random
        self.signs = np.where(rng.random(5) < 0.5, 1.0, -1.0).astype(np.float32)
        self.mask = (rng.random((self.components, 5)) < 0.5).astype(np.int8)
        for c in range(self.components):
            j = int(rng.integers(5))
            self.signs[j] = 1.0
            self.mask[c, j] = 1
        return self.signs.copy()

    def _observe(self):
        signs = self._draw()
        return {"observation": signs, "action_mask": self.mask.reshape(-1).copy()} if self.dict_obs else signs

    def _info(self):
        return {} if self.method or self.dict_obs else {"action_mask": self.mask.reshape(-1).copy()}

    def action_masks(self):
        if not self.method:
            raise AttributeError("action_masks")  # masks come in info
        return self.mask.reshape(-1).copy()

    def step(self, action):
        picks = np.asarray(action).reshape(-1)
        if not all(self.mask[c, a] for c, a in enumerate(picks)):
            raise ValueError(f"illegal action {action} at step {self.t}: allowed {self.mask.tolist()}")
        reward = float(np.mean([self.signs[a] > 0 for a in picks]))
        self.t += 1
        return self._observe(), reward, False, self.t >= 10, self._info()


if "PickAllowed-v0" not in gym.registry:
    gym.register("PickAllowed-v0", entry_point=PickAllowed, reward_threshold=9.5, max_episode_steps=10)


class NiceProbe(MatchSign):
    """MatchSign that appends 'pid niceness' to the file named by $AL_TEST_NICE_FILE when made: which
    processes made envs, at what CPU priority."""

    def __init__(self):
        import os

        super().__init__()
        with open(os.environ["AL_TEST_NICE_FILE"], "a") as f:
            f.write(f"{os.getpid()} {os.nice(0)}\n")


if "NiceProbe-v0" not in gym.registry:
    gym.register("NiceProbe-v0", entry_point=NiceProbe, reward_threshold=9.0, max_episode_steps=10)


class BrightSquare(gym.Env):
    """An 84x84 grey image, black but for a bright 10x10 square drawn in one of its four quadrants (at a random
    place inside it); the action naming that quadrant earns 1, any other 0; 10 steps an episode, a new square
    each step. Only a policy that reads the image's pixels earns 10; chance earns 2.5."""

    observation_space = gym.spaces.Box(0, 255, (84, 84, 1), np.uint8)
    action_space = gym.spaces.Discrete(4)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._draw(), {}

    def _draw(self):
        self.quadrant = int(self.np_random.integers(4))
        y, x = self.np_random.integers(0, 32, size=2) + 42 * np.array(divmod(self.quadrant, 2))
        img = np.zeros((84, 84, 1), np.uint8)
        img[y:y + 10, x:x + 10] = 255
        return img

    def step(self, action):
        reward = float(int(action) == self.quadrant)
        self.t += 1
        if self.render_mode == "human":
            print(f"MatchSign shows step {self.t}", flush=True)
        return self._draw(), reward, False, self.t >= 10, {}


if "BrightSquare-v0" not in gym.registry:
    gym.register("BrightSquare-v0", entry_point=BrightSquare, reward_threshold=9.0, max_episode_steps=10)
