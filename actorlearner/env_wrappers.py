"""gymnasium wrappers that turn an env given by id into one the actors and models take: a lean time limit,
observations flattened to a vector (or an image stack folded into channels; MiniGrid's observation made one
vector), action spaces counted from 0, --frame-stack's stacked observations, and --action-masks' masks taken out
of a Dict observation. envs.py's factories apply them; an env made by the user's own function can be wrapped in
them by hand."""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np

from .action_masks import MASK_KEY
from .config import ConfigError


def stacked_frames(env: gym.Env, n: int) -> gym.Env:
    """`env` whose observation is its last n observations (--frame-stack; the first of an episode repeated
    before there are n), folded into one: a vector (D,) -> (n*D,), an image (H, W, C) -> (H, W, n*C); `env`
    itself for n = 1. An env that already gives a stack, (n, H, W, C) as FrameStackObservation of an image
    makes, is folded by flat_observations."""
    return env if n <= 1 else FoldedStack(gym.wrappers.FrameStackObservation(env, n))


class FoldedStack(gym.ObservationWrapper):
    """Observations stacked on a first axis, as gymnasium's FrameStackObservation gives them, with the stack folded
    into the last axis, oldest first: (n, H, W, C) -> (H, W, n*C) images, for a CNN's channels; (n, D) -> (n*D,)
    vectors. Wrap an env of your own in FoldedStack(FrameStackObservation(env, n)) for a stack of images."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.observation_space
        if not (isinstance(space, gym.spaces.Box) and len(space.shape) in (2, 4)):
            raise ConfigError(f"FoldedStack folds stacks of vectors (n, D) or images (n, H, W, C), not {space}")
        self.observation_space = gym.spaces.Box(self.observation(space.low), self.observation(space.high),
                                                dtype=space.dtype)

    def observation(self, obs):
        obs = np.asarray(obs)
        if obs.ndim == 2:
            return obs.reshape(-1)
        n, h, w, c = obs.shape
        return np.ascontiguousarray(obs.transpose(1, 2, 0, 3)).reshape(h, w, n * c)


def masks_from_observation(env: gym.Env, action_masks: bool) -> gym.Env:
    """`env`, wrapped in MaskInInfo where --action-masks is on and its observations are a Dict holding an
    "action_mask" (the convention of PettingZoo's classic games and RLlib's action-masking examples)."""
    return MaskInInfo(env) if action_masks and mask_in_observation(env.observation_space) else env


def mask_in_observation(space) -> bool:
    return isinstance(space, gym.spaces.Dict) and MASK_KEY in space.spaces


class MaskInInfo(gym.Wrapper):
    """A Dict observation's "action_mask" entry moved into info["action_mask"], where --action-masks reads it; the
    observation is the rest: the one other entry as its own space, or a Dict of the others (flattened for the
    MLP). Wrap an env of your own in it for a mask that comes in the observation."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        if not mask_in_observation(env.observation_space):
            raise ConfigError(f"MaskInInfo takes a Dict observation with an {MASK_KEY!r} entry, not "
                              f"{env.observation_space}")
        rest = {k: v for k, v in env.observation_space.spaces.items() if k != MASK_KEY}
        if not rest:
            raise ConfigError(f"the env's observation holds only its {MASK_KEY!r}: nothing is left for the policy")
        self._only = next(iter(rest)) if len(rest) == 1 else None
        self.observation_space = rest[self._only] if self._only else gym.spaces.Dict(rest)

    def _split(self, obs, info: dict):
        info = {**info, MASK_KEY: obs[MASK_KEY]}
        if self._only:
            return obs[self._only], info
        return {k: v for k, v in obs.items() if k != MASK_KEY}, info

    def reset(self, **kwargs):
        return self._split(*self.env.reset(**kwargs))

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        obs, info = self._split(obs, info)
        return obs, reward, terminated, truncated, info


def zero_based_actions(env: gym.Env) -> gym.Env:
    """`env`, wrapped in ZeroBasedActions where its Discrete or MultiDiscrete actions start elsewhere than 0
    (Discrete(3, start=-1) for moves -1, 0, +1): the policy's categoricals count from 0."""
    return ZeroBasedActions(env) if starts_elsewhere(env.action_space) else env


def starts_elsewhere(space) -> bool:
    """A Discrete or MultiDiscrete space whose actions do not count from 0 (policies' categoricals do)."""
    return isinstance(space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete)) and bool(np.any(space.start != 0))


class ZeroBasedActions(gym.ActionWrapper):
    """Discrete(n, start=s) seen as Discrete(n) (MultiDiscrete likewise, per component): action a steps the env
    with a + s."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.action_space
        self._start = space.start
        self.action_space = (gym.spaces.Discrete(space.n) if isinstance(space, gym.spaces.Discrete)
                             else gym.spaces.MultiDiscrete(space.nvec))

    def action(self, action):
        return action + self._start


def flat_observations(env: gym.Env) -> gym.Env:
    """`env`, wrapped in MiniGridVector where its observations are MiniGrid's, else in gymnasium's
    FlattenObservation where they are not a Box of rank 1 or 3 but flatten to a vector: Discrete -> one-hot
    (FrozenLake, Taxi, CliffWalking), Tuple and Dict -> their parts' flattenings concatenated (Blackjack),
    MultiDiscrete/MultiBinary, a Box of rank 0, 2 or 5+; a Box of rank 4, a stack of images (n, H, W, C), is
    folded into (H, W, n*C) by FoldedStack instead. The vector's integer dtype is carried as float32. A space
    with an image in it, or one that does not flatten to a Box (Graph, Sequence, Text), is left as it is, for
    spec_from_spaces to name."""
    space = env.observation_space
    if isinstance(space, gym.spaces.Box) and len(space.shape) in (1, 3):
        return env
    if minigrid_space(space):
        return MiniGridVector(env)
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 4:  # a stack of images: channels, not a vector
        return FoldedStack(env)
    if not flattens_to_a_vector(space):
        return env
    return gym.wrappers.FlattenObservation(env)


def flattens_to_a_vector(space) -> bool:
    if isinstance(space, gym.spaces.Box):
        return len(space.shape) not in (3, 4)  # an image (or a stack) inside a Tuple/Dict is not made a vector
    if isinstance(space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)):
        return True
    if isinstance(space, gym.spaces.Tuple):
        return all(flattens_to_a_vector(s) for s in space.spaces)
    if isinstance(space, gym.spaces.Dict):
        return all(flattens_to_a_vector(s) for s in space.spaces.values())
    return False


def minigrid_space(space) -> bool:
    """MiniGrid's (and BabyAI's) observation: a Dict of the agent's view "image" (H, W, 3), its "direction"
    (Discrete(4)) and the "mission" text."""
    return (isinstance(space, gym.spaces.Dict) and set(space.spaces) == {"image", "direction", "mission"}
            and isinstance(space["image"], gym.spaces.Box) and len(space["image"].shape) == 3
            and isinstance(space["direction"], gym.spaces.Discrete))


# The words of every mission that minigrid 3.2's MiniGrid and BabyAI ids gave in 5 resets each (colours, objects,
# verbs, the function words between them). A mission's words outside it are ignored.
MISSION_WORDS = ("a", "after", "and", "at", "avoid", "ball", "behind", "blue", "box", "door", "end", "fetch", "find",
                 "from", "front", "get", "go", "goal", "green", "grey", "hallway", "in", "key", "lava", "left",
                 "matching", "must", "near", "next", "object", "of", "on", "open", "opening", "pick", "purple", "put",
                 "reach", "red", "right", "room", "rooms", "square", "the", "then", "to", "traverse", "unlock", "up",
                 "use", "yellow", "you", "your")
_WORD_INDEX = {word: i for i, word in enumerate(MISSION_WORDS)}


class MiniGridVector(gym.ObservationWrapper):
    """MiniGrid's observation as one float32 vector for the MLP: the view's cells' object, colour and state codes
    as numbers (H * W * 3: small integers, which the minigrid preset's --normalize-obs scales), the direction
    one-hot (4) and, where the env's mission changes from episode to episode, the mission as a bag of words (one
    flag per word of MISSION_WORDS, 53). The view is a grid of codes, not pixels: 7 x 7 is too small for the CNNs,
    and an MLP on the codes learned DoorKey-5x5 as fast as on the codes one-hot (984 inputs). A bag of words tells
    "go to the green door" from "go to the red door" and "fetch a blue key" from "go get a grey ball", whatever
    the template; it loses the order ("put the red ball near the blue key" and its reverse are one bag). A
    mission that never changes (Empty, DoorKey, FourRooms, LavaCrossing: minigrid's MissionSpace without
    placeholders) is left out."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.observation_space
        if not minigrid_space(space):
            raise ConfigError(f"MiniGridVector takes MiniGrid's observation (a Dict of 'image', 'direction' and "
                              f"'mission'), not {space}")
        self._view = space["image"].shape
        self._turns = np.eye(space["direction"].n, dtype=np.float32)
        self._bagged = not _constant_mission(space["mission"])
        self._bag = ("", np.zeros(0, np.float32))  # (the last mission, its bag): a mission lasts an episode
        n = int(np.prod(self._view)) + len(self._turns) + (len(MISSION_WORDS) if self._bagged else 0)
        self.observation_space = gym.spaces.Box(0.0, 255.0, (n,), np.float32)

    def observation(self, obs):
        parts = [obs["image"].reshape(-1), self._turns[obs["direction"]]]
        if self._bagged:
            mission = obs["mission"]
            if mission != self._bag[0]:
                bag = np.zeros(len(MISSION_WORDS), np.float32)
                for word in re.findall(r"[a-z]+", mission.lower()):
                    if word in _WORD_INDEX:
                        bag[_WORD_INDEX[word]] = 1.0
                self._bag = (mission, bag)
            parts.append(self._bag[1])
        return np.concatenate(parts, dtype=np.float32)

    @property
    def described(self) -> str:
        """How the vector was made, for the start-up line."""
        h, w, _ = self._view
        mission = ("the mission as a bag of words" if self._bagged else
                   "the mission (always the same) left out")
        return f"MiniGrid's {h}x{w} view as codes, its direction one-hot, {mission}"


def _constant_mission(space) -> bool:
    """minigrid's MissionSpace with no placeholders: one mission for every episode (BabyAI's subclass, also
    without placeholders, draws a new one each episode)."""
    try:
        from minigrid.core.mission import MissionSpace
    except ImportError:  # an env of the same shape from elsewhere: its mission may change
        return False
    return type(space) is MissionSpace and space.ordered_placeholders is None


class LeanTimeLimit(gym.Wrapper):
    """gymnasium's TimeLimit semantics (truncated=True at the limit) in one comparison per step."""

    def __init__(self, env: gym.Env, spec):
        super().__init__(env)
        self._spec = spec
        self._limit = spec.max_episode_steps or float("inf")
        self._t = 0
        self._step = env.step  # bound once: the attribute chain is a visible share of a 7 us step

    def step(self, action):
        obs, reward, terminated, truncated, info = self._step(action)
        self._t += 1
        return obs, reward, terminated, truncated or self._t >= self._limit, info

    def reset(self, **kwargs):
        self._t = 0
        return self.env.reset(**kwargs)

    @property
    def spec(self):
        return self._spec
