"""Atari (ALE/ ids) with the standard preprocessing, the same in both forms an id is made in.

Training actors use ale-py's `AtariVectorEnv` (C++ threads, preprocessing built in; `vector_env`);
evaluation, `--video` and `--env-backend gymnasium` use one gymnasium env with the same preprocessing in
wrappers (`single_env`): frameskip 4 with the last two frames max-pooled, 84x84 grey, a 4-frame stack as
H x W x C (channels last, as the CNNs take it), up to 30 no-ops and FIRE at reset, sticky actions 0.25 and at
most 108 K frames an episode as ALE v5 documents. Rewards are left unclipped, so returns are the game's
score; the presets clip them for learning (`--reward-clip 1`).
"""

from __future__ import annotations

import re
import sys
from typing import Optional

import gymnasium as gym
import numpy as np

STICKY_ACTIONS = 0.25
MAX_FRAMES = 108_000
FRAMESKIP, SIZE, STACK, NOOP_MAX = 4, 84, 4, 30


def game_name(rid: str) -> str:
    """`ALE/SpaceInvaders-v5` -> `space_invaders` (ale-py's ROM name)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", rid.split("/", 1)[1].split("-v", 1)[0]).lower()


def vector_env(rid: str, num_envs: int) -> gym.vector.VectorEnv:
    """ale-py's AtariVectorEnv for `ALE/Game-v5`, preprocessed as the module docstring says, same-step
    autoreset (the final observation in info), observations [K, 84, 84, 4] uint8."""
    from ale_py.vector_env import AtariVectorEnv

    env = AtariVectorEnv(game_name(rid), num_envs, num_threads=1, repeat_action_probability=STICKY_ACTIONS,
                         autoreset_mode=gym.vector.AutoresetMode.SAME_STEP, reward_clipping=False,
                         max_num_frames_per_episode=MAX_FRAMES, frameskip=FRAMESKIP, img_height=SIZE,
                         img_width=SIZE, stack_num=STACK, noop_max=NOOP_MAX, use_fire_reset=True)
    return ChannelsLastVector(env)


# The ALE arguments that the preprocessing here sets, which --env-kwargs cannot change.
PREPROCESSING_KWARGS = ("frameskip", "repeat_action_probability", "obs_type", "max_num_frames_per_episode")


def single_env(rid: str, render_mode=None, kwargs: Optional[dict] = None) -> gym.Env:
    """One gymnasium env for `ALE/Game-v5` with the vector env's preprocessing, observations [84, 84, 4]
    uint8; render_mode "rgb_array" renders the game's own 210x160 RGB frames (for --video). kwargs: the
    game's other arguments (mode, difficulty, full_action_space), not PREPROCESSING_KWARGS."""
    extra = {**(kwargs or {}), **({"render_mode": render_mode} if render_mode else {})}
    env = gym.make(rid, frameskip=1, repeat_action_probability=STICKY_ACTIONS, obs_type="grayscale",
                   max_num_frames_per_episode=MAX_FRAMES, **extra)
    env = FireReset(GreyFrames(env))
    env = gym.wrappers.FrameStackObservation(env, STACK, padding_type="zero")  # as AtariVectorEnv
    return ChannelsLast(env)


def area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] weights of area-averaging resampling (each output pixel the mean of the input area it
    covers, fractional pixels weighted by their overlap), as OpenCV's INTER_AREA when shrinking."""
    scale = n_in / n_out
    edges = np.arange(n_out + 1) * scale
    lo, hi = edges[:-1, None], edges[1:, None]
    pix = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, pix + 1) - np.maximum(lo, pix), 0, None)
    return (overlap / scale).astype(np.float32)


class GreyFrames(gym.Wrapper):
    """An ALE env of grey frames (obs_type="grayscale", frameskip 1) -> 84x84 uint8 frames, FRAMESKIP frames
    an agent step with the last two max-pooled (flicker), up to NOOP_MAX no-ops after reset; rewards summed.
    Written out instead of gymnasium's AtariPreprocessing, which needs OpenCV just to resize."""

    def __init__(self, env):
        super().__init__(env)
        h, w = env.observation_space.shape
        self._ry, self._rx = area_matrix(h, SIZE), area_matrix(w, SIZE).T
        self.observation_space = gym.spaces.Box(0, 255, (SIZE, SIZE), np.uint8)

    def _resize(self, frame: np.ndarray) -> np.ndarray:
        return np.rint(self._ry @ frame.astype(np.float32) @ self._rx).astype(np.uint8)

    def reset(self, **kw):
        obs, info = self.env.reset(**kw)
        for _ in range(int(self.env.unwrapped.np_random.integers(1, NOOP_MAX + 1))):
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset(**kw)
        return self._resize(obs), info

    def step(self, action):
        total, frames = 0.0, []
        for _ in range(FRAMESKIP):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += reward
            frames = [*frames[-1:], obs]
            if terminated or truncated:
                break
        return self._resize(np.maximum.reduce(frames)), total, terminated, truncated, info


class FireReset(gym.Wrapper):
    """Presses FIRE after a reset in games that wait for it (Breakout's ball), as ale-py's use_fire_reset."""

    def reset(self, **kw):
        obs, info = self.env.reset(**kw)
        if self.env.unwrapped.get_action_meanings()[1:2] == ["FIRE"]:
            obs, _, terminated, truncated, info = self.env.step(1)
            if terminated or truncated:
                obs, info = self.env.reset(**kw)
        return obs, info


# A frame stack of 2, 4 or 8 uint8 frames is one unsigned integer a pixel once channels are last.
_PIXEL_WORD = {2: np.uint16, 4: np.uint32, 8: np.uint64}


def frames_last(obs: np.ndarray) -> np.ndarray:
    """Stacked frames [K, S, H, W] uint8 as images [K, H, W, S] (C-contiguous).

    numpy's transposing copy writes S bytes at a time here (~35 µs an agent step for 16 envs of 84x84x4,
    a tenth of the env's own cost); on a little-endian machine the S frames are instead shifted into the bytes
    of one S-byte integer per pixel, a few whole-array passes, 4-5x faster."""
    k, s, h, w = obs.shape
    word = _PIXEL_WORD.get(s)
    if word is None or obs.dtype != np.uint8 or sys.byteorder != "little":
        return np.ascontiguousarray(obs.transpose(0, 2, 3, 1))
    packed = obs[:, s - 1].astype(word)
    for i in range(s - 2, -1, -1):  # frame i becomes byte i of the pixel's word
        packed <<= 8
        packed |= obs[:, i]
    return packed.view(np.uint8).reshape(k, h, w, s)


class ChannelsLast(gym.ObservationWrapper):
    """A stack of frames [stack, H, W] as an image [H, W, stack]."""

    def __init__(self, env):
        super().__init__(env)
        s, h, w = env.observation_space.shape
        self.observation_space = gym.spaces.Box(0, 255, (h, w, s), np.uint8)

    def observation(self, obs):
        return frames_last(obs[None])[0]


class ChannelsLastVector(gym.vector.VectorWrapper):
    """AtariVectorEnv's stacked frames [K, stack, H, W] as images [K, H, W, stack]."""

    def __init__(self, env):
        super().__init__(env)
        s = env.single_observation_space
        self.single_observation_space = gym.spaces.Box(0, 255, (s.shape[1], s.shape[2], s.shape[0]), np.uint8)

    def reset(self, **kw):
        obs, info = self.env.reset(**kw)
        return frames_last(obs), info

    def step(self, actions):
        obs, r, te, tr, info = self.env.step(actions)
        if "final_obs" in info:
            info = {**info, "final_obs": np.stack([o.transpose(1, 2, 0) if o is not None else np.zeros(
                self.single_observation_space.shape, np.uint8) for o in info["final_obs"]])}
        return frames_last(obs), r, te, tr, info
