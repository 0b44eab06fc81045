"""What an env's spaces become: the EnvSpec of each supported observation and action space, one-line errors for the
others, and the wrappers that make an env given by id fit (flattened or folded observations, actions counted from
0, --frame-stack)."""

import gymnasium as gym
import numpy as np
import pytest

from actorlearner.config import ConfigError
from actorlearner.env_wrappers import FoldedStack, flat_observations, stacked_frames
from actorlearner.envs import inspect_env, make_env_fn, spec_from_spaces


def test_only_vectors_and_images_are_supported():
    spec = spec_from_spaces(gym.spaces.Box(0, 255, (8, 8, 3), np.uint8), gym.spaces.Discrete(2))
    assert spec.obs_shape == (8, 8, 3) and spec.obs_dtype == "uint8" and spec.obs_dim == 192
    with pytest.raises(ConfigError, match=r"unsupported observation space Box\(.*\(8, 8\).*FlattenObservation"):
        spec_from_spaces(gym.spaces.Box(0, 1, (8, 8), np.float32), gym.spaces.Discrete(2))


def test_action_spaces_and_their_specs():
    obs = gym.spaces.Box(-1, 1, (3,), np.float32)
    spec = spec_from_spaces(obs, gym.spaces.MultiDiscrete([2, 5]))
    assert (spec.discrete, spec.action_dim, spec.action_nvec, spec.action_shape, spec.joint_actions) == \
        (True, 7, (2, 5), (2,), 10)
    spec = spec_from_spaces(obs, gym.spaces.MultiBinary(4))
    assert (spec.action_dim, spec.action_nvec, spec.action_shape) == (8, (2, 2, 2, 2), (4,))
    spec = spec_from_spaces(obs, gym.spaces.Discrete(3))
    assert (spec.action_shape, spec.joint_actions, spec.action_nvec) == ((), 3, ())
    assert spec_from_spaces(obs, gym.spaces.Box(-1, 1, (2,))).action_shape == (2,)
    for space, why in ((gym.spaces.MultiDiscrete([2, 3], start=[1, 0]), "MultiDiscrete must start at 0"),
                       (gym.spaces.MultiDiscrete([[2, 3], [2, 2]]), "only Discrete, 1-D MultiDiscrete"),
                       (gym.spaces.MultiBinary([2, 2]), "only Discrete, 1-D MultiDiscrete"),
                       (gym.spaces.Box(-1, 1, (2, 2)), "only Discrete, 1-D MultiDiscrete")):
        with pytest.raises(ConfigError, match=why):
            spec_from_spaces(obs, space)


def test_actions_that_start_elsewhere_than_0_are_shifted_for_an_env_given_by_id():
    """MatchSign with Discrete(2, start=-1): the policy's action 0 steps the env with -1 (the env asserts its
    actions are in its space), and 1 with 0, the rewarded one where the observation is positive."""
    env = make_env_fn("custom_envs:MatchSign-v0", kwargs={"start": -1})()
    assert env.action_space == gym.spaces.Discrete(2)
    obs, _ = env.reset(seed=0)
    rewards = []
    for _ in range(20):
        up = obs[0] > 0
        obs, r, *_ = env.step(int(up))
        rewards.append(r)
    assert rewards == [1.0] * 20
    assert inspect_env(make_env_fn("custom_envs:MatchSign-v0", kwargs={"start": -1})).action_dim == 2


def test_stacked_observations_are_folded_into_the_last_axis_oldest_first():
    images = np.arange(3 * 4 * 5 * 2).reshape(3, 4, 5, 2)  # 3 frames of 4 x 5 x 2
    folded = FoldedStack.observation(None, images)
    assert folded.shape == (4, 5, 6)
    np.testing.assert_array_equal(folded[..., 0:2], images[0])  # channels of frame 0, then 1, then 2
    np.testing.assert_array_equal(folded[..., 4:6], images[2])
    assert FoldedStack.observation(None, np.arange(6).reshape(3, 2)).tolist() == [0, 1, 2, 3, 4, 5]
    # An env of images stacked by gymnasium (rank 4) is folded, not flattened into a vector
    stack = gym.spaces.Box(0, 255, (3, 8, 8, 1), np.uint8)
    assert flat_observations(_SpaceEnv(stack)).observation_space.shape == (8, 8, 3)
    with pytest.raises(ConfigError, match="wrap it in actorlearner.env_wrappers.FoldedStack"):
        spec_from_spaces(stack, gym.spaces.Discrete(2))
    # --frame-stack: the reset observation repeated, then the newest last
    env = stacked_frames(make_env_fn("CartPole-v1")(), 3)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (12,) and np.array_equal(obs[:4], obs[8:])
    newer, *_ = env.step(0)
    np.testing.assert_array_equal(newer[:8], obs[4:])
    assert env.observation_space.shape == (12,) and env.observation_space.contains(newer)


class _SpaceEnv(gym.Env):
    """An env with the given observation space, for flat_observations."""

    action_space = gym.spaces.Discrete(2)

    def __init__(self, space):
        self.observation_space = space

    def reset(self, *, seed=None, options=None):
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


def test_observations_that_flatten_to_a_vector_are_flattened_and_images_are_not():
    discrete = flat_observations(_SpaceEnv(gym.spaces.Discrete(5)))
    obs, _ = discrete.reset(seed=0)
    assert obs.shape == (5,) and obs.sum() == 1  # one-hot
    mixed = gym.spaces.Dict({"goal": gym.spaces.Discrete(3), "pos": gym.spaces.Box(-1, 1, (2,), np.float32),
                             "flags": gym.spaces.MultiBinary(4)})
    assert flat_observations(_SpaceEnv(mixed)).observation_space.shape == (9,)
    spec = inspect_env(lambda: flat_observations(_SpaceEnv(gym.spaces.Tuple((gym.spaces.Discrete(32),
                                                                             gym.spaces.Discrete(11))))))
    assert spec.obs_shape == (43,) and spec.obs_dtype == "float32"  # int64 one-hots carried as float32
    assert spec.obs_note == "flattened from Tuple(Discrete(32), Discrete(11)); Discrete parts one-hot"
    for kept in (gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)):
        env = _SpaceEnv(kept)
        assert flat_observations(env) is env
        assert inspect_env(lambda env=env: flat_observations(env)).obs_note is None
    with_image = gym.spaces.Dict({"frame": gym.spaces.Box(0, 255, (8, 8, 3), np.uint8), "goal": gym.spaces.Discrete(3)})
    env = _SpaceEnv(with_image)
    assert flat_observations(env) is env  # an image is not flattened into a vector: named as unsupported
    with pytest.raises(ConfigError, match="unsupported observation space Dict") as err:
        inspect_env(lambda: flat_observations(env))
    assert "FlattenObservation" not in str(err.value)


def test_a_run_knows_the_env_it_trained_on_where_the_weights_cannot_tell(tmp_path):
    """Discrete(5) and MultiDiscrete([2, 3]) both have 5 logits, so their weights have the same layout; the run's
    env_spec.json tells them apart for eval, export, load_policy and --resume."""
    import json

    from actorlearner.run_files import ENV_SPEC_FILE, check_same_env, env_summary

    box = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    discrete = spec_from_spaces(box, gym.spaces.Discrete(5))
    multi = spec_from_spaces(box, gym.spaces.MultiDiscrete([2, 3]))
    check_same_env(str(tmp_path), multi, "eval")  # a run from before the file: nothing to compare
    (tmp_path / ENV_SPEC_FILE).write_text(json.dumps(env_summary(discrete)))
    check_same_env(str(tmp_path), discrete, "eval")
    with pytest.raises(ConfigError, match=r"changed since \(actions 5 actions then, actions of 2 x 3 choices now\): "
                                          "eval needs the env it trained on"):
        check_same_env(str(tmp_path), multi, "eval")
    (tmp_path / ENV_SPEC_FILE).write_text("{not json")
    check_same_env(str(tmp_path), multi, "eval")  # unreadable: nothing to compare, as before the file


def test_make_env_refuses_an_env_that_has_changed_since_the_run(tmp_path):
    """make_env(run_dir) gives the env its policy plays: one whose spaces differ from the run's env_spec.json
    (here CartPole's 4 observations against a saved 5) is the same one line load_policy gives."""
    import json

    from actorlearner import Config, make_env
    from actorlearner.run_files import ENV_SPEC_FILE

    (tmp_path / "config.json").write_text(Config(env="CartPole-v1").to_json())
    (tmp_path / ENV_SPEC_FILE).write_text(json.dumps({"observations": "4 float32", "actions": "2 actions"}))
    env = make_env(str(tmp_path))
    assert env.observation_space.shape == (4,)
    env.close()
    (tmp_path / ENV_SPEC_FILE).write_text(json.dumps({"observations": "5 float32", "actions": "2 actions"}))
    with pytest.raises(ConfigError, match=r"changed since \(observations 5 float32 then, 4 float32 now\): make_env "
                                          "needs the env it trained on"):
        make_env(str(tmp_path))
