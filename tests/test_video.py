"""Videos of a policy playing (`actorlearner eval --video`, evaluation.record_video) and --render's check:
envs that cannot draw are refused before anything plays, a recording that fails mid-episode leaves the old file,
and a GIF stops at its memory cap. The end-to-end `eval --video` of a trained run is in test_eval."""

import gymnasium as gym
import numpy as np
import pytest

from actorlearner.config import Config, ConfigError


class _NoFrames(gym.Env):
    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)


class _DrawsUndeclared(_NoFrames):
    def __init__(self, render_mode=None):
        self.render_mode = render_mode


@pytest.fixture(scope="module")
def policy():
    """The default MLP with its initial weights, for _DrawsThenFails' spaces: what it plays does not matter here."""
    from actorlearner.envs import inspect_env
    from actorlearner.layout import default_layout, flat_weights, ordered_weights
    from actorlearner.model import build_default_model
    from actorlearner.policies import NumpyMLPPolicy

    spec, cfg = inspect_env(lambda: _DrawsThenFails(fail_at=0)), Config(seed=1)
    layout = default_layout(spec, cfg)
    played = NumpyMLPPolicy(spec, layout, cfg.hidden_sizes, cfg.activation)
    played.load(flat_weights(ordered_weights(build_default_model(spec, cfg), layout)))
    return played


def test_video_of_an_env_that_cannot_draw_is_refused_before_the_episodes():
    """A registered env class whose render_modes lack rgb_array and that takes no render_mode: refused up front
    (`eval --video` played its episodes first, then failed in gymnasium with a TypeError under a warning)."""
    from actorlearner.evaluation import check_renders, record_video

    gym.register("test_video/NoFrames-v0", entry_point=_NoFrames)
    gym.register("test_video/DrawsUndeclared-v0", entry_point=_DrawsUndeclared)
    with pytest.raises(ConfigError, match=r"--video: the env test_video/NoFrames-v0 cannot draw frames: "
                                          r"render_mode='rgb_array' is not among its render_modes \(\[\]\)"):
        check_renders("test_video/NoFrames-v0")
    with pytest.raises(ConfigError, match="the env actorlearner/CueMemory-v0 cannot draw frames"):
        check_renders("actorlearner/CueMemory-v0")
    for env_id in ("CartPole-v1", "actorlearner/CartPoleNoVel-v1", "test_video/DrawsUndeclared-v0"):
        check_renders(env_id)  # they draw, or may: making the env will tell
    # --render: the env's human mode, or its rgb_array frames in gymnasium's window (HumanRendering).
    with pytest.raises(ConfigError, match=r"^--render: the env test_video/NoFrames-v0 cannot draw frames: "
                                          r"render_mode='human' is not among its render_modes \(\[\]\)$"):
        check_renders("test_video/NoFrames-v0", "human", "--render")
    gym.register("test_video/FramesOnly-v0", entry_point=_DrawsThenFails)
    check_renders("test_video/FramesOnly-v0", "human", "--render")
    check_renders("CartPole-v1", "human", "--render")
    # Made anyway (the Python API), the failure says the same instead of a TypeError.
    with pytest.raises(ConfigError, match=r"^the env cannot draw frames for a video: render_mode='rgb_array' is not "
                                          r"among its render_modes \(\[\]\)$"):
        record_video(None, lambda: gym.make("test_video/NoFrames-v0", render_mode="rgb_array"), None, "x.mp4", seed=0)


class _DrawsThenFails(gym.Env):
    """Draws 32x32 frames; its step raises at the 6th step, as a renderer or simulator can mid-episode."""

    observation_space = gym.spaces.Box(-1, 1, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)
    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, render_mode=None, fail_at=6):
        self.render_mode, self.fail_at = render_mode, fail_at

    def reset(self, seed=None, options=None):
        self.t = 0
        return np.zeros(4, np.float32), {}

    def step(self, action):
        self.t += 1
        if self.t == self.fail_at:
            raise RuntimeError("the simulator lost its GPU context")
        return np.zeros(4, np.float32), 1.0, self.t >= 20, False, {}

    def render(self):
        return np.full((32, 32, 3), 8 * self.t, np.uint8)


@pytest.mark.parametrize("ext", ["mp4", "gif"])
def test_a_video_that_fails_mid_episode_leaves_the_old_file_and_no_partial_one(policy, tmp_path, ext):
    """Frames go to the writer as they are drawn (a list held a whole episode: a CartPole video's peak RSS was
    409 MB, now 105 MB), into a partial file renamed at the end: a recording that fails mid-episode leaves the
    old video as it was and no partial file."""
    from actorlearner.envs import inspect_env
    from actorlearner.evaluation import record_video

    good, spec = (lambda: _DrawsThenFails(fail_at=0)), inspect_env(lambda: _DrawsThenFails(fail_at=0))
    path = str(tmp_path / f"v.{ext}")
    assert record_video(policy, good, spec, path, seed=0) == (20.0, 20, 21)
    old = open(path, "rb").read()
    assert len(old) > 100
    with pytest.raises(ConfigError, match="could not record the video: .*lost its GPU context"):
        record_video(policy, lambda: _DrawsThenFails(), spec, path, seed=0)
    assert open(path, "rb").read() == old and sorted(p.name for p in tmp_path.iterdir()) == [f"v.{ext}"]


def test_a_gif_stops_at_its_memory_cap_with_a_warning_and_an_mp4_does_not(policy, tmp_path, monkeypatch, capsys):
    """imageio's GIF writer holds every frame until it closes (a long Atari episode: gigabytes): a GIF ends at
    GIF_MAX_BYTES of frames, warned once; an .mp4, written as it goes, keeps them all. Here the cap is 5 of the
    20-step episode's 21 32x32 frames."""
    import imageio.v2 as imageio

    from actorlearner import evaluation
    from actorlearner.envs import inspect_env

    monkeypatch.setattr(evaluation, "GIF_MAX_BYTES", 5 * 32 * 32 * 3)
    env_fn = lambda: _DrawsThenFails(fail_at=0)  # noqa: E731
    spec = inspect_env(env_fn)
    gif, mp4 = str(tmp_path / "v.gif"), str(tmp_path / "v.mp4")
    assert evaluation.record_video(policy, env_fn, spec, gif, seed=0) == (20.0, 20, 5)
    said = capsys.readouterr().err
    assert said.count("a GIF holds its frames in memory until the episode ends; it stops at 5 frames") == 1, said
    assert len(imageio.mimread(gif)) == 5
    assert evaluation.record_video(policy, env_fn, spec, mp4, seed=0) == (20.0, 20, 21)
    assert "GIF" not in capsys.readouterr().err
