"""Test envs a module registers on import (so `--env-module custom_envs` and `custom_envs:MatchSign-v0` find them).

CountNext-v0 / CountSame-v0: a counting env with known episodes, as a single env and as vector envs of both
autoreset modes.

Env i of a batch: obs = [1000 * i + 10 * episode + t]; reward t at step t (1, 2, ...); even episodes
terminate after 3 steps, odd ones are truncated after 4. Every backend must turn these into the same valid
transitions, whatever its autoreset mode. `fail_at`: the vector env raises at that step call (once)."""

import multiprocessing

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
    A policy that reads the observation earns 10; chance earns 5."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._draw(), {}

    def _draw(self):
        self.sign = 1.0 if self.np_random.random() < 0.5 else -1.0
        return np.array([self.sign], np.float32)

    def step(self, action):
        reward = float(int(action) == (self.sign > 0))
        self.t += 1
        return self._draw(), reward, False, self.t >= 10, {}


if "MatchSign-v0" not in gym.registry:
    gym.register("MatchSign-v0", entry_point=MatchSign, reward_threshold=9.0, max_episode_steps=10)


class NiceProbe(MatchSign):
    """MatchSign that appends 'pid niceness' to the file named by $AL_TEST_NICE_FILE when made: which
    processes made envs, at what CPU priority."""

    def __init__(self):
        import os

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
        return self._draw(), reward, False, self.t >= 10, {}


if "BrightSquare-v0" not in gym.registry:
    gym.register("BrightSquare-v0", entry_point=BrightSquare, reward_threshold=9.0, max_episode_steps=10)


class HangInLearner(gym.Wrapper):
    """CartPole whose `step` hangs (sleeps for an hour) in the launching process, never in a spawned actor:
    the evaluation env of a process run, or every env of a serial one. Its 5th step hangs."""

    def __init__(self):
        super().__init__(gym.make("CartPole-v1"))
        self.steps = 0

    def step(self, action):
        import time

        self.steps += 1
        if multiprocessing.parent_process() is None and self.steps >= 5:
            time.sleep(3600)
        return self.env.step(action)


if "HangInLearner-v0" not in gym.registry:
    gym.register("HangInLearner-v0", entry_point=HangInLearner, reward_threshold=475.0, max_episode_steps=500)


class WrongShape(gym.Wrapper):
    """CartPole whose observations lose their last value: from every reset (`where="reset"`), from every reset
    in an actor process (`where="actorreset"`: the launcher's check passes), or from the 30th step of every
    10th env made in the process (`where="step"`: a bug the env's replacement usually does not hit), as a
    buggy env would."""

    made = 0

    def __init__(self, where: str = "reset"):
        super().__init__(gym.make("CartPole-v1"))
        self.where, self.steps = where, 0
        type(self).made += 1
        self.buggy = type(self).made % 10 == 0

    def reset(self, **kw):
        obs, info = self.env.reset(**kw)
        in_actor = multiprocessing.parent_process() is not None
        return (obs[:3] if self.where == "reset" or (self.where == "actorreset" and in_actor) else obs), info

    def step(self, action):
        obs, r, te, tr, info = self.env.step(action)
        self.steps += 1
        return (obs[:3] if self.where == "step" and self.buggy and self.steps == 30 else obs), r, te, tr, info


for _where in ("Reset", "ActorReset", "Step"):
    if f"WrongShape{_where}-v0" not in gym.registry:
        gym.register(f"WrongShape{_where}-v0", entry_point=WrongShape, kwargs={"where": _where.lower()},
                     reward_threshold=475.0, max_episode_steps=500)


class HangOnceInActor(gym.Wrapper):
    """CartPole whose step hangs for an hour in the first actor process to reach its 3000th step there; the
    marker file (env var HANG_MARKER) makes it once per test, so the replacement runs normally."""

    steps_in_process = 0

    def __init__(self):
        super().__init__(gym.make("CartPole-v1"))

    def step(self, action):
        import os
        import time

        type(self).steps_in_process += 1
        marker = os.environ.get("HANG_MARKER")
        if multiprocessing.parent_process() is not None and marker and type(self).steps_in_process == 3000:
            try:  # created atomically: both actors reach step 3000 within ms of each other, and only one may hang
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return self.env.step(action)
            time.sleep(3600)
        return self.env.step(action)


if "HangOnceInActor-v0" not in gym.registry:
    gym.register("HangOnceInActor-v0", entry_point=HangOnceInActor, reward_threshold=475.0, max_episode_steps=500)


class RaisesOnCreate(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self):
        raise RuntimeError("no licence for this simulator")


if "RaisesOnCreate-v0" not in gym.registry:
    gym.register("RaisesOnCreate-v0", entry_point=RaisesOnCreate)


class ResetFailsAfterFirstEpisode(gym.Wrapper):
    """CartPole whose every reset but its first raises: each env plays one episode, then must be replaced."""

    def __init__(self):
        super().__init__(gym.make("CartPole-v1"))
        self.resets = 0

    def reset(self, **kw):
        self.resets += 1
        if self.resets > 1:
            raise RuntimeError("simulator lost its licence")
        return self.env.reset(**kw)


if "ResetFails-v0" not in gym.registry:
    gym.register("ResetFails-v0", entry_point=ResetFailsAfterFirstEpisode, reward_threshold=475.0,
                 max_episode_steps=500)


class SlowInLearner(gym.Env):
    """100 steps an episode; in the launching process (evaluation, confirmation) every step takes 20 ms, so an
    episode takes 2 s there: slow, but never hung."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):

        self.t, self.in_learner = 0, multiprocessing.parent_process() is None
        return np.zeros(1, np.float32), {}

    def step(self, action):
        import time

        if self.in_learner:
            time.sleep(0.02)
        self.t += 1
        return np.zeros(1, np.float32), 1.0, False, self.t >= 100, {}


if "SlowInLearner-v0" not in gym.registry:
    gym.register("SlowInLearner-v0", entry_point=SlowInLearner, max_episode_steps=100)


class EasyOnlyInActors(gym.Env):
    """Ten steps an episode, reward 1 a step in an actor process and 0 in the launching one (where the
    confirmation episodes are played): the training window reaches the target 9, the confirmation never."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):

        self.t, self.pays = 0, float(multiprocessing.parent_process() is not None)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(1, np.float32), self.pays, False, self.t >= 10, {}


if "EasyOnlyInActors-v0" not in gym.registry:
    gym.register("EasyOnlyInActors-v0", entry_point=EasyOnlyInActors, reward_threshold=9.0, max_episode_steps=10)


class InfAtFifthStep(gym.Env):
    """An observation of inf at each episode's fifth step (past the launcher's one-step API check)."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(3, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.full(3, np.inf if self.t == 5 else 0.0, np.float32), 1.0, self.t >= 10, False, {}


if "InfAtFifthStep-v0" not in gym.registry:
    gym.register("InfAtFifthStep-v0", entry_point=InfAtFifthStep, max_episode_steps=50)


class HangsAtFirstReset(gym.Env):
    """Its reset never returns (waits for a server that is not there)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        import time

        time.sleep(3600)


if "HangsAtFirstReset-v0" not in gym.registry:
    gym.register("HangsAtFirstReset-v0", entry_point=HangsAtFirstReset)


class HangsOnCreate(gym.Env):
    """Box actions, and a constructor that never returns: the launcher's look at the action space (for the
    continuous preset) is bounded by --wait-timeout-s."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self):
        import time

        time.sleep(3600)


if "HangsOnCreate-v0" not in gym.registry:
    gym.register("HangsOnCreate-v0", entry_point=HangsOnCreate)


class CartPoleHangsLater(gym.Wrapper):
    """CartPole whose 30th step (counted from the env's making) never returns: a trained CartPole policy played on
    it (actorlearner eval) meets a hung env mid-episode. With only_when_drawn, only an env made to draw frames
    (eval --video's) hangs."""

    def __init__(self, render_mode=None, only_when_drawn=False):
        super().__init__(gym.make("CartPole-v1", render_mode=render_mode))
        self.steps, self.hangs = 0, render_mode == "rgb_array" or not only_when_drawn

    def step(self, action):
        self.steps += 1
        if self.steps == 30 and self.hangs:
            import time

            time.sleep(3600)
        return self.env.step(action)


if "CartPoleHangsLater-v0" not in gym.registry:
    gym.register("CartPoleHangsLater-v0", entry_point=CartPoleHangsLater)
    gym.register("CartPoleHangsInVideo-v0", entry_point=CartPoleHangsLater, kwargs={"only_when_drawn": True})
