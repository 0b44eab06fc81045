"""The default CNNs: the numpy twin and the LiteRT model the actors run give the Keras model's outputs (1e-4) on
the weights the learner publishes, at start and after updates; the layout known without TensorFlow is the
model's; --model is checked against the observation shape."""

import importlib.util

import numpy as np
import pytest

from actorlearner.config import Config, ConfigError
from actorlearner.envs import EnvSpec
from actorlearner.layout import cnn_layout, default_layout, flat_weights, ordered_weights
from actorlearner.model import build_default_model
from actorlearner.numpy_cnn import NumpyCNNPolicy, conv2d, conv_kernel, max_pool
from actorlearner.policies import make_policy

# Each actor engine for the default CNNs; litert only where ai-edge-litert is installed (the atari extra).
ENGINES = ["numpy", pytest.param("litert", marks=pytest.mark.skipif(
    not importlib.util.find_spec("ai_edge_litert"),
    reason="ai-edge-litert is not installed (pip install -e '.[atari]')"))]


def _cnn_policy(cfg, spec, engine):
    """make_policy's policy for --actor-inference ENGINE, checked to be that engine's."""
    policy = make_policy(cfg.replace(actor_inference=engine), spec, None)
    if engine == "numpy":
        assert type(policy) is NumpyCNNPolicy
    else:
        from actorlearner.litert_cnn import LiteRTCNNPolicy

        assert isinstance(policy, LiteRTCNNPolicy)
    return policy

ATARI = EnvSpec((84, 84, 4), "uint8", True, 6, None, None, None, None)
# Odd sizes exercise 'same' padding's extra pixel at the bottom/right (36 -> 18 -> 9 -> 5).
SMALL = EnvSpec((36, 36, 3), "uint8", True, 4, None, None, None, None)
FLOAT_IMG = EnvSpec((20, 20, 2), "float32", False, 2, -np.ones(2, np.float32), np.ones(2, np.float32), None, None)


def _obs(spec, rng, n):
    if spec.obs_dtype == "uint8":
        return rng.integers(0, 256, size=(n, *spec.obs_shape)).astype(np.uint8)
    return rng.normal(size=(n, *spec.obs_shape)).astype(np.float32)


def _randomize(model, rng, scale=0.1):
    model.set_weights([rng.normal(scale=scale, size=w.shape).astype(np.float32) for w in model.get_weights()])


def _check(policy, model, obs):
    want_params, want_value = (t.numpy() for t in model(obs))
    np.testing.assert_allclose(policy.policy_params(obs), want_params, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(policy.value(obs), want_value[:, 0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("spec,model_name", [(ATARI, "impala-shallow"), (SMALL, "impala-deep"),
                                             (SMALL, "impala-shallow"), (FLOAT_IMG, "impala-deep")])
@pytest.mark.parametrize("engine", ENGINES)
def test_actor_cnn_matches_keras(spec, model_name, engine):
    cfg = Config(model=model_name, seed=2)
    model = build_default_model(spec, cfg)
    layout = default_layout(spec, cfg)
    assert sorted(layout) == sorted((v.path, tuple(v.shape)) for v in model.weights)
    policy = _cnn_policy(cfg, spec, engine)
    rng = np.random.default_rng(0)
    for _ in range(2):  # a second weight version: the kernels cached at load must follow it
        _randomize(model, rng)
        policy.load(flat_weights(ordered_weights(model, layout)))
        _check(policy, model, _obs(spec, rng, 8))
        _check(policy, model, _obs(spec, rng, 3))  # another batch size: LiteRT's tensors are resized
    assert not getattr(policy, "fell_back", False)


@pytest.mark.parametrize("engine", ENGINES)
def test_actor_cnn_follows_the_learners_updates(engine):
    """The production path: the learner's published vector, before and after real updates."""
    from actorlearner.learner import Learner

    spec = EnvSpec((24, 24, 2), "uint8", True, 3, None, None, None, None)
    cfg = Config(model="impala-shallow", unroll_length=3, envs_per_actor=2, batch_size=2, learning_rate=1e-2)
    model = build_default_model(spec, cfg)
    learner = Learner(cfg, spec, model)
    policy = _cnn_policy(cfg, spec, engine)
    rng = np.random.default_rng(1)
    T, B = cfg.unroll_length, cfg.batch_size
    flat = learner.flat_weights()
    for _ in range(3):
        policy.load(flat)
        _check(policy, model, _obs(spec, rng, 5))
        batch = {"obs": _obs(spec, rng, (T + 1) * B).reshape(T + 1, B, *spec.obs_shape),
                 "first": np.zeros((T + 1, B), np.uint8), "actions": rng.integers(0, 3, (T, B)).astype(np.int32),
                 "behaviour_logp": np.full((T, B), np.log(1 / 3), np.float32),
                 "rewards": rng.normal(size=(T, B)).astype(np.float32),
                 "discounts": np.full((T, B), 0.99, np.float32), "mask": np.ones((T, B), np.float32)}
        _, new_flat = learner.step(batch)
        assert not np.allclose(new_flat, flat)
        flat = new_flat


def test_conv_and_pool_match_tensorflow_on_every_padding():
    import tensorflow as tf

    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 11, 13, 3)).astype(np.float32)
    kernel = rng.normal(size=(3, 3, 3, 5)).astype(np.float32)
    bias = rng.normal(size=5).astype(np.float32)
    for stride in (1, 2, 3):
        for pad in ("same", "valid"):
            want = tf.nn.conv2d(x, kernel, stride, pad.upper()).numpy() + bias
            got = conv2d(x, conv_kernel(kernel), bias, 3, stride, pad)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
            want = tf.nn.max_pool2d(x, 3, stride, pad.upper()).numpy()
            np.testing.assert_allclose(max_pool(x, 3, stride, pad), want)


def test_cnn_layout_sizes():
    """IMPALA's shallow net on 84x84: 20x20x16 after the first conv, 9x9x32 after the second."""
    layout = dict(cnn_layout(ATARI, "impala-shallow"))
    assert layout["conv_0/kernel"] == (8, 8, 4, 16) and layout["torso/kernel"] == (9 * 9 * 32, 256)
    deep = dict(cnn_layout(ATARI, "impala-deep"))
    assert deep["torso/kernel"] == (11 * 11 * 32, 256)  # 84 -> 42 -> 21 -> 11
    assert sum(1 for p in deep if p.endswith("/kernel") and p != "policy/kernel" and p != "value/kernel") == 16


def test_model_must_fit_the_observations():
    from actorlearner.preflight import prepare

    with pytest.raises(ConfigError, match="impala-shallow is a CNN for H x W x C images"):
        prepare(Config(env="CartPole-v1", model="impala-shallow"))


def test_images_too_small_for_the_cnn_are_one_line():
    import gymnasium as gym

    from actorlearner.preflight import prepare

    class Tiny(gym.Env):
        observation_space = gym.spaces.Box(0, 255, (10, 10, 1), np.uint8)
        action_space = gym.spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            return np.zeros((10, 10, 1), np.uint8), {}

        def step(self, action):
            return np.zeros((10, 10, 1), np.uint8), 0.0, True, False, {}

    with pytest.raises(ConfigError, match="impala-shallow needs larger images than 10x10"):
        prepare(Config(env="tiny"), env_fn=Tiny)
