"""Playing whole episodes with a policy, outside training (no exploration unless asked)."""

from __future__ import annotations

import contextlib
import os
import re
import time
import warnings
from typing import Callable, Generator, Iterator, Optional

import numpy as np

from .action_masks import mask_of, read_mask
from .config import ConfigError
from .envs import EnvSpec, env_action
from .reporting import say, warn
from .stopping import no_step_limit


def confirmation_passes(returns, target: float, margin_se: float) -> tuple[bool, float, float]:
    """The confirmed-solve rule: (passed, mean, standard error of the mean) of a confirmation's episode returns.
    Passed when mean - margin_se * se >= target, se = std / sqrt(n): a mean that only just reaches the target
    is as likely to come from a policy below it, and 20 episodes of a return that spreads by +-100 (Pendulum)
    leave an se of ~22. benchmarks/sb3_ppo.py applies the same rule to SB3's policies."""
    r = np.asarray(returns, np.float64)
    se = float(r.std() / np.sqrt(len(r))) if len(r) > 1 else 0.0
    mean = float(r.mean())
    return mean - margin_se * se >= target, mean, se


def run_episodes(policy, env_fn: Callable, spec: EnvSpec, *, episodes: int, seed: int, greedy: bool = True,
                 max_steps: int = 100_000,
                 on_step: Callable[[], None] = no_step_limit) -> tuple[list[float], list[int]]:
    """Plays `episodes` episodes on one env; returns (returns, lengths). Greedy means argmax / mean. on_step is
    called after every env step (StopSignals.user_code's watchdog)."""
    played = list(play_episodes(policy, env_fn, spec, episodes=episodes, seed=seed, greedy=greedy,
                                max_steps=max_steps, on_step=on_step))
    return [r for r, _ in played], [n for _, n in played]


def play_episodes(policy, env_fn: Callable, spec: EnvSpec, *, episodes: int, seed: int, greedy: bool = True,
                  max_steps: int = 100_000, on_step: Callable[[], None] = no_step_limit) -> Iterator[tuple[float, int]]:
    """run_episodes one episode at a time: yields (return, length) as each finishes, so that a caller stopped
    part way (`actorlearner eval` on Ctrl-C) still has the episodes played. An env that raises loses its
    episode (reported) and is recreated."""
    with contextlib.closing(_episode_steps(policy, env_fn, spec, episodes, seed, greedy, max_steps)) as steps:
        for played in steps:
            if played is None:
                on_step()
            else:
                yield played


class SlicedEvaluation:
    """run_episodes played a slice of time at a time, so that the learner can step between slices: a slow
    env's evaluation (CarRacing: 5 episodes of 1,000 steps at 7 ms, ~35 s) no longer holds the learner for its
    whole length. The same episodes as run_episodes with the same arguments, however it is sliced. `policy`
    must keep its weights until the evaluation is done."""

    def __init__(self, policy, env_fn: Callable, spec: EnvSpec, *, episodes: int, seed: int, greedy: bool = True,
                 max_steps: int = 100_000):
        self.returns: list[float] = []
        self.lengths: list[int] = []
        self._steps = _episode_steps(policy, env_fn, spec, episodes, seed, greedy, max_steps)

    def play(self, seconds: float, on_step: Callable[[], None] = no_step_limit) -> bool:
        """Plays env steps for about `seconds` (at least one); True once every episode has been played. An env
        that raises loses its episode (reported, env recreated); an exception from on_step (a stop) or from
        making the env ends the evaluation, its env closed."""
        until = time.monotonic() + seconds
        for played in self._steps:
            if played is not None:
                self.returns.append(played[0])
                self.lengths.append(played[1])
                continue
            on_step()
            if time.monotonic() >= until:
                return False
        return True

    def close(self) -> None:
        self._steps.close()


def _episode_steps(policy, env_fn: Callable, spec: EnvSpec, episodes: int, seed: int, greedy: bool,
                   max_steps: int) -> Iterator[Optional[tuple[float, int]]]:
    """The episodes of play_episodes a step at a time: yields None after every env step and (return, length)
    after each episode. An env that raises loses its episode (reported) and is recreated."""
    rng = np.random.default_rng(seed)
    env = env_fn()
    try:
        for ep in range(episodes):
            try:
                played = yield from _episode(policy, env, spec, rng, seed + ep, greedy, max_steps)
            except Exception as e:  # noqa: BLE001 - a user env may raise; one bad episode is not fatal
                say(f"evaluation env raised: {type(e).__name__}: {e}; episode skipped, env recreated")
                env.close()
                env = env_fn()
                continue
            yield played
    finally:
        env.close()


def run_episodes_together(policy, env_fn: Callable, spec: EnvSpec, *, episodes: int, seed: int,
                          greedy: bool = False, max_steps: int = 100_000,
                          on_step: Callable[[], None] = no_step_limit) -> tuple[list[float], list[int]]:
    """Plays `episodes` episodes at once, one env each, with one batched policy call per step (a confirmation
    of 20 CartPole episodes takes ~0.1 s this way). Returns (returns, lengths) of the episodes that finished;
    an env that raises loses its episode (reported), the others go on. Sampled actions unless greedy. on_step
    is called after every env step."""
    from .env_batch import check_obs

    rng = np.random.default_rng(seed)
    envs, active = [None] * episodes, []
    obs = np.zeros((episodes, *spec.obs_shape), spec.obs_dtype)
    masks = np.ones((episodes, spec.action_dim), bool) if spec.action_masks else None
    try:
        for i in range(episodes):
            try:
                envs[i] = env_fn()
                o, info = envs[i].reset(seed=seed + i)
                check_obs(o, spec.obs_shape, spec.obs_dtype, "reset")
                if masks is not None:
                    read_mask(envs[i], info, spec, masks[i])
            except Exception as e:  # noqa: BLE001 - a user env may fail; that episode is lost
                say(f"evaluation env failed: {type(e).__name__}: {e}; episode left out")
                continue
            obs[i] = o
            active.append(i)
        totals, lengths = [0.0] * episodes, [0] * episodes
        returns_out, lengths_out = [], []
        state = policy.initial_state(episodes)  # one row per env ([] for a feed-forward policy)
        while active and max(lengths[i] for i in active) < max_steps:
            x = obs[active]
            actions, _, new_state = policy.act(x, [s[active] for s in state], rng, greedy,
                                               mask=None if masks is None else masks[active])
            for s, new in zip(state, new_state):
                s[active] = new
            still = []
            for a, i in zip(actions, active):
                try:
                    o, r, terminated, truncated, info = envs[i].step(env_action(a, spec))
                    check_obs(o, spec.obs_shape, spec.obs_dtype, "step")
                    if masks is not None and not (terminated or truncated):
                        read_mask(envs[i], info, spec, masks[i])
                except Exception as e:  # noqa: BLE001 - a user env may fail; that episode is lost
                    say(f"evaluation env failed: {type(e).__name__}: {e}; episode left out")
                    continue
                on_step()
                totals[i] += float(r)
                lengths[i] += 1
                if terminated or truncated:
                    returns_out.append(totals[i])
                    lengths_out.append(lengths[i])
                else:
                    obs[i] = o
                    still.append(i)
            active = still
        return returns_out, lengths_out
    finally:
        for env in envs:
            try:
                if env is not None:
                    env.close()
            except Exception:  # noqa: BLE001 - closing a broken env may fail too
                pass


def run_first_episodes(policy, batch, spec: EnvSpec, *, seed: int, greedy: bool = False, max_steps: int = 100_000,
                       on_step: Callable[[], None] = no_step_limit) -> tuple[list[float], list[int]]:
    """Plays the first episode of every env of `batch` (an env_batch.EnvBatch: a vector backend steps them all
    in one call; 20 CartPole episodes take ~0.1 s, against ~0.25 s on single envs); returns (returns, lengths)
    of those that finished. Episodes cut by an env error are left out. Sampled actions unless greedy. on_step
    is called after every batch step."""
    rng = np.random.default_rng(seed)
    k = batch.num_envs
    obs = batch.reset()
    state = policy.initial_state(k)
    totals, lengths = np.zeros(k), np.zeros(k, np.int64)
    playing = np.ones(k, bool)
    returns_out, lengths_out = [], []
    for _ in range(max_steps):
        actions, _, state = policy.act(obs, state, rng, greedy, mask=batch.action_masks)
        step = batch.step(actions if spec.discrete else np.clip(actions, spec.action_low, spec.action_high))
        on_step()
        if step.errors:  # the envs an error cut come back truncated: their episodes are not the policy's
            playing &= ~step.truncated
        counted = playing if step.valid is None else playing & step.valid
        totals += np.where(counted, step.rewards, 0.0)
        lengths += counted
        ended = counted & (step.terminated | step.truncated)
        for i in ended.nonzero()[0]:
            returns_out.append(float(totals[i]))
            lengths_out.append(int(lengths[i]))
        playing &= ~ended
        if not playing.any():
            break
        obs = step.obs
    return returns_out, lengths_out


def record_video(policy, env_fn: Callable, spec: EnvSpec, path: str, *, seed: int, greedy: bool = True,
                 max_steps: int = 100_000, step_limit=None) -> tuple[float, int, int]:
    """Plays one episode on `env_fn()` (made with render_mode="rgb_array") and writes its frames to
    `path`: .mp4 through imageio-ffmpeg, .gif through imageio's pillow writer. Returns (return, length,
    frames written). step_limit, a context manager like envs.env_time_limit that yields a function to call after
    every step, bounds the env's making and each step with its frame, not the writing of the file at the end (a
    GIF's frames are all encoded there: seconds for one CartPole episode)."""
    try:
        import imageio.v2 as imageio
    except ImportError:
        raise ConfigError("--video needs imageio: pip install 'actorlearner[video]'") from None
    # No window and no sound device is needed to draw into an array; without these SDL complains on stderr.
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    with contextlib.ExitStack() as limit:
        step_done = limit.enter_context(step_limit) if step_limit is not None else no_step_limit
        env = _video_env(env_fn)
        frames = _FrameWriter(imageio, path, env.metadata.get("render_fps") or 30)
        try:
            total, n = _play(policy, env, spec, np.random.default_rng(seed), seed, greedy, max_steps, frames,
                             step_done)
            limit.close()
            frames.finish()
        except ConfigError:
            raise
        except Exception as e:  # noqa: BLE001 - a renderer that fails mid-episode; the episodes played were reported
            raise ConfigError(f"could not record the video: {_render_failure(e)}") from None
        finally:
            frames.discard()  # after finish(): nothing left to discard
            env.close()
    return total, n, frames.count


def _video_env(env_fn: Callable):
    """env_fn(), with a one-line error where the env cannot draw frames."""
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        try:
            env = env_fn()
        except Exception as e:  # noqa: BLE001 - a renderer that cannot start is the user's setup: say what failed
            modes = [str(w.message) for w in said if "possible render_modes" in str(w.message)]
            if modes:  # gymnasium's warning says why: the env declares no rgb_array mode (and then fails on it)
                listed = re.search(r"possible render_modes \((.*)\)", modes[0])
                raise ConfigError(f"the env cannot draw frames for a video: render_mode='rgb_array' is not among "
                                  f"its render_modes ({listed.group(1) if listed else '?'})") from None
            raise ConfigError(f"could not make the env for the video: {_render_failure(e)}") from None
    for w in said:  # passed on: only an env that failed needed them explained
        if "possible render_modes" not in str(w.message):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return env


NO_FRAMES = "the env rendered no frames (does it support render_mode='rgb_array'?)"


# What a GIF may hold: imageio's GIF writer (pillow's) keeps every frame until the file is closed, so an
# episode's frames all sit in memory (an Atari episode of 100,000 steps: 10 GB of 210x160 RGB frames).
GIF_MAX_BYTES = 1 << 30


class _FrameWriter:
    """Frames go to the video file as they are drawn: a list of them held a whole episode in memory (a
    500-step CartPole episode: 360 MB of 600x400 frames; an Atari one of 100,000 steps: 10 GB). They are
    written to a partial file beside `path`, renamed over it by `finish()`: an interrupted video leaves no
    half-written file, and an older video at `path` stays as it was. A GIF, which its writer holds in memory,
    ends at GIF_MAX_BYTES of frames (warned; `dropped` counts the rest)."""

    def __init__(self, imageio, path: str, fps: float):
        root, ext = os.path.splitext(path)
        self.path, self.partial = path, f"{root}.partial{ext}"
        self._gif = ext.lower() == ".gif"
        self._open = lambda: (imageio.get_writer(self.partial, mode="I", duration=1000.0 / fps, loop=0)
                              if self._gif else imageio.get_writer(self.partial, fps=fps, macro_block_size=1))
        self._writer = None
        self.count = self.dropped = self.held = 0

    def append(self, frame) -> None:
        if frame is None:
            raise ConfigError(NO_FRAMES)
        frame = np.asarray(frame)
        if self._gif and self.held + frame.nbytes > GIF_MAX_BYTES and self.count:
            if not self.dropped:
                warn(f"--video: a GIF holds its frames in memory until the episode ends; it stops at {self.count} "
                     f"frames ({self.held / 2**20:.0f} MB). An .mp4 writes every frame as it is drawn")
            self.dropped += 1
            return
        if self._writer is None:
            self._writer = self._open()
        self._writer.append_data(frame)
        self.count += 1
        self.held += frame.nbytes if self._gif else 0

    def finish(self) -> None:
        if self._writer is None:
            raise ConfigError(NO_FRAMES)
        self._writer.close()
        self._writer = None
        os.replace(self.partial, self.path)

    def discard(self) -> None:
        """Closes and removes a partial file (a failure or Ctrl-C mid-episode); nothing after finish()."""
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001 - the file goes anyway
                pass
            self._writer = None
        if os.path.exists(self.partial):
            os.remove(self.partial)


def check_renders(env_id, mode: str = "rgb_array", flag: str = "--video") -> None:
    """ConfigError where a registered id's env class lists its render modes without `mode` and takes no
    render_mode, so that `eval --video` (rgb_array) or `--render` (human) says so before it plays its episodes,
    not after. Other ids (a function entry point, a class that takes render_mode) pass: making the env finds out."""
    import gymnasium as gym

    from .env_registry import import_env_modules, registered_id

    if not isinstance(env_id, str):
        return
    import_env_modules((), env_id)
    entry = getattr(gym.registry.get(registered_id(env_id)), "entry_point", None)
    try:
        creator = gym.envs.registration.load_env_creator(entry) if isinstance(entry, str) else entry
    except Exception:  # noqa: BLE001 - an entry point that does not load fails where the env is made, said there
        return
    meta = getattr(creator, "metadata", None)  # a wrapper class has a property here: not known
    modes = meta.get("render_modes") if isinstance(meta, dict) else None
    # human: gymnasium.make shows an env's rgb_array frames in a window of its own (HumanRendering) where the env
    # has no human mode.
    drawn = {mode, "rgb_array"} if mode == "human" else {mode}
    if isinstance(creator, type) and modes is not None and not drawn & set(modes) and not _takes_render_mode(creator):
        raise ConfigError(f"{flag}: the env {env_id} cannot draw frames: render_mode={mode!r} is not among its "
                          f"render_modes ({list(modes)})")


def _takes_render_mode(cls: type) -> bool:
    """cls(render_mode=...) is accepted: an env may draw without declaring the mode (gymnasium only warns)."""
    import inspect

    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return True  # not known: let making it tell
    return any(p.name == "render_mode" or p.kind == p.VAR_KEYWORD for p in params)


def _render_failure(e: Exception) -> str:
    """The error in one line, with what to try where MuJoCo could not open OpenGL."""
    text = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if "OpenGL" in str(e) or "mujoco" in type(e).__module__:
        text += (" (MuJoCo draws with OpenGL: MUJOCO_GL=egl, the default here without a display, needs libEGL; "
                 "MUJOCO_GL=osmesa needs libOSMesa and PyOpenGL)")
    return text


def _play(policy, env, spec: EnvSpec, rng, seed: int, greedy: bool, max_steps: int,
          frames: Optional["_FrameWriter"] = None, on_step: Callable[[], None] = no_step_limit) -> tuple[float, int]:
    """One episode played through; with `frames`, appends env.render() after the reset and after every step."""
    steps = _episode(policy, env, spec, rng, seed, greedy, max_steps, frames)
    while True:
        try:
            next(steps)
        except StopIteration as end:
            return end.value
        on_step()


def _episode(policy, env, spec: EnvSpec, rng, seed: int, greedy: bool, max_steps: int,
             frames: Optional["_FrameWriter"] = None) -> Generator[None, None, tuple[float, int]]:
    """One episode, a step at a time: yields after every env step, returns (return, length). With `frames`,
    appends env.render() after the reset and after every step."""
    obs, info = env.reset(seed=seed)
    if frames is not None:
        frames.append(env.render())
    total, n, done = 0.0, 0, False
    state = policy.initial_state(1)
    while not done and n < max_steps:
        x = np.asarray(obs, spec.obs_dtype)[None]  # the env's dtype: a uint8 image is scaled by the model
        actions, _, state = policy.act(x, state, rng, greedy, mask=mask_of(env, info, spec))
        obs, r, terminated, truncated, info = env.step(env_action(actions[0], spec))
        if frames is not None:
            frames.append(env.render())
        total += float(r)
        n += 1
        done = terminated or truncated
        yield
    return total, n
