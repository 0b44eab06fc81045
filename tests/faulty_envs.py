"""Envs that misbehave on purpose, registered on import (`faulty_envs:HangsOnCreate-v0`): they hang, raise,
return observations of the wrong shape or non-finite values, run slowly, or behave differently in the launching
process than in a spawned actor. The tests of supervision, preflight, stalls and eval use them; well-behaved test
envs are in custom_envs.py."""

import multiprocessing

import gymnasium as gym
import numpy as np


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
    """Its reset never returns (waits for a server that is not there); it first creates the file that the env var
    RESET_MARKER names, if set, so a test can tell when the hang began."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        import os
        import time

        if os.environ.get("RESET_MARKER"):
            open(os.environ["RESET_MARKER"], "a").close()
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
