"""The numpy policy the actors run equals the Keras model the learner trains (so behaviour log-probs are
right), and the numpy and TF distribution math agree."""

import warnings

import numpy as np
import pytest
import tensorflow as tf

from actorlearner import distributions as D
from actorlearner.config import Config
from actorlearner.envs import EnvSpec
from actorlearner.layout import (default_layout, flat_weights, layout_size, merge_moments, normalize_obs,
                                 ordered_weights, unflatten)
from actorlearner.model import build_default_model
from actorlearner.policies import NumpyMLPPolicy

SPECS = {
    "discrete": EnvSpec((5,), "float32", True, 3, None, None, None, None),
    "continuous": EnvSpec((4,), "float32", False, 2, -np.ones(2, np.float32), np.ones(2, np.float32), None, None),
    # A small uint8 image: the default MLP flattens it and scales it to [0, 1], in Keras and in numpy alike.
    "image": EnvSpec((6, 5, 2), "uint8", True, 3, None, None, None, None),
    # MultiDiscrete([2, 3, 4]): one categorical per component, 9 logits side by side.
    "multi": EnvSpec((5,), "float32", True, 9, None, None, None, None, action_nvec=(2, 3, 4)),
}


def random_obs(spec, rng, n):
    if spec.obs_dtype == "uint8":
        return rng.integers(0, 256, size=(n, *spec.obs_shape)).astype(np.uint8)
    return 3 * rng.normal(size=(n, *spec.obs_shape)).astype(np.float32)


@pytest.mark.parametrize("kind", list(SPECS))
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("normalize", [False, True])
def test_numpy_policy_matches_keras(kind, activation, normalize):
    spec = SPECS[kind]
    cfg = Config(hidden_sizes=(32, 16), activation=activation, seed=3, normalize_obs=normalize, model="mlp")
    model = build_default_model(spec, cfg)
    rng = np.random.default_rng(0)
    # Random weights; the normalizer's variance must stay positive, and some observations hit the clip.
    model.set_weights([np.abs(rng.normal(size=w.shape)).astype(np.float32) * (0.1 if "var" in v.path else 1)
                       if "obs_norm" in v.path else rng.normal(size=w.shape).astype(np.float32)
                       for v, w in zip(model.weights, model.get_weights())])
    layout = default_layout(spec, cfg)
    policy = NumpyMLPPolicy(spec, layout, cfg.hidden_sizes, cfg.activation)
    policy.load(flat_weights(ordered_weights(model, layout)))
    obs = random_obs(spec, rng, 64)
    want_params, want_value = (t.numpy() for t in model(obs))
    got_params, got_value = policy.policy_params(obs), policy.value(obs)
    np.testing.assert_allclose(got_params, want_params, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got_value, want_value[:, 0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("normalize", [False, True])
def test_two_action_policy_samples_as_its_logits_do(normalize):
    """With two actions the MLP samples from one head column (the log-odds): the same actions from the same draws,
    and the same log-probs, as sampling its [B, 2] logits."""
    from actorlearner.policies import sample_params

    spec = EnvSpec((4,), "float32", True, 2, None, None, None, None)
    cfg = Config(hidden_sizes=(64, 64), seed=3, normalize_obs=normalize)
    layout = default_layout(spec, cfg)
    rng = np.random.default_rng(4)
    flat = rng.normal(scale=0.5, size=layout_size(layout)).astype(np.float32)
    if normalize:  # a positive variance (unflatten's views write into flat)
        var = dict(zip((p for p, _ in layout), unflatten(flat, layout)))["obs_norm/var"]
        var[:] = np.abs(var)
    policy = NumpyMLPPolicy(spec, layout, cfg.hidden_sizes, cfg.activation)
    policy.load(flat)
    obs = random_obs(spec, rng, 4096)
    actions, logp = policy.sample(obs, np.random.default_rng(9))
    want_actions, want_logp = sample_params(policy.policy_params(obs), spec, np.random.default_rng(9))
    np.testing.assert_array_equal(actions, want_actions)
    np.testing.assert_allclose(logp, want_logp, rtol=1e-5, atol=1e-5)
    assert actions.dtype == np.int64 and logp.dtype == np.float32 and 0.2 < actions.mean() < 0.8


@pytest.mark.parametrize("kind", ["discrete", "continuous", "multi"])
def test_behaviour_log_probs_match_learner(kind):
    from actorlearner.policies import sample_params

    spec = SPECS[kind]
    rng = np.random.default_rng(1)
    width = spec.action_dim if spec.discrete else 2 * spec.action_dim
    params = rng.normal(size=(256, width)).astype(np.float32)
    actions, logp = sample_params(params, spec, rng)
    assert actions.shape == (256, *spec.action_shape)
    tf_logp, _ = D.tf_log_prob_and_entropy(tf.constant(params), tf.constant(
        actions.astype(np.int32 if spec.discrete else np.float32)), discrete=spec.discrete, nvec=spec.action_nvec)
    tf_logp = tf_logp.numpy()
    np.testing.assert_allclose(logp, tf_logp, rtol=1e-4, atol=1e-4)


def test_discrete_sampling_follows_the_probabilities():
    rng = np.random.default_rng(2)
    logits = np.log(np.array([[0.2, 0.5, 0.3]] * 60_000))
    actions, _ = D.np_sample_discrete(logits, rng)
    np.testing.assert_allclose(np.bincount(actions, minlength=3) / len(actions), [0.2, 0.5, 0.3], atol=0.01)


def test_two_action_sampling_is_the_inverse_cdf_rule_on_the_same_draws():
    """Two actions take a shorter path (the log-odds alone): each draw u picks action 1 exactly where u > p0, as the
    inverse-CDF rule of more actions does, with log p(a) to float32; extreme logits give no NaN and no warning, and a
    NaN logit a NaN log-prob without one."""
    logits = np.random.default_rng(4).normal(scale=4.0, size=(50_000, 2)).astype(np.float32)
    actions, logp = D.np_sample_discrete(logits, np.random.default_rng(5))
    u = np.random.default_rng(5).random(len(logits))
    z = logits.astype(np.float64)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    np.testing.assert_array_equal(actions, (u > p[:, 0]).astype(np.int64))
    np.testing.assert_allclose(logp, np.log(p[np.arange(len(p)), actions]), rtol=1e-6, atol=1e-6)
    assert actions.dtype == np.int64 and logp.dtype == np.float32
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is right here
        a, lp = D.np_sample_discrete(np.array([[0, 1e30], [1e30, 0], [-3e38, 3e38]], np.float32),
                                     np.random.default_rng(0))
    np.testing.assert_array_equal(a, [1, 0, 1])
    np.testing.assert_array_equal(lp, [0, 0, 0])
    with warnings.catch_warnings():  # a NaN (a NaN observation's) stays NaN, without numpy's warning first
        warnings.simplefilter("error")
        _, lp = D.np_sample_discrete(np.array([[np.nan, 0.0]], np.float32), np.random.default_rng(0))
    assert np.isnan(lp).all()


def test_multi_discrete_components_are_independent_categoricals():
    """Each component is sampled from its own block of logits; the log-prob and the entropy are the sums of the
    components' (a uniform MultiDiscrete([2, 3, 4]) has the entropy of a uniform choice among 24), and the greedy
    action is each block's argmax."""
    rng = np.random.default_rng(3)
    nvec = (2, 3, 4)
    probs = [np.array([0.3, 0.7]), np.array([0.6, 0.1, 0.3]), np.array([0.1, 0.2, 0.3, 0.4])]
    logits = np.tile(np.log(np.concatenate(probs)), (40_000, 1))
    actions, logp = D.np_sample_multi(logits, nvec, rng)
    for j, p in enumerate(probs):
        np.testing.assert_allclose(np.bincount(actions[:, j], minlength=len(p)) / len(actions), p, atol=0.01)
    want = sum(np.log(p[actions[:, j]]) for j, p in enumerate(probs))
    np.testing.assert_allclose(logp, want, rtol=1e-5)
    uniform = D.tf_log_prob_and_entropy(tf.zeros([1, 9]), tf.constant([[1, 2, 3]]), discrete=True,
                                        nvec=nvec)[1].numpy()[0]
    assert abs(uniform - np.log(24)) < 1e-5
    logits = rng.normal(size=(8, 9))
    greedy = D.np_greedy(logits, True, nvec)
    np.testing.assert_array_equal(greedy, np.stack([logits[:, :2].argmax(-1), logits[:, 2:5].argmax(-1),
                                                    logits[:, 5:].argmax(-1)], axis=-1))


def test_entropy_of_uniform_and_gaussian():
    uniform = D.tf_log_prob_and_entropy(tf.zeros([1, 4]), tf.constant([2]), discrete=True)[1].numpy()[0]
    assert abs(uniform - np.log(4)) < 1e-6
    gauss = D.tf_log_prob_and_entropy(tf.constant([[0.0, 0.0]]), tf.constant([[0.3]]),  # mean 0, log_std 0
                                      discrete=False)[1].numpy()[0]
    assert abs(gauss - 0.5 * np.log(2 * np.pi * np.e)) < 1e-6


def test_running_moments_equal_the_moments_of_everything_seen():
    rng = np.random.default_rng(4)
    batches = [rng.normal(loc=3.0, scale=2.0, size=(n, 3)) for n in (1, 7, 50, 200)]
    count, mean, var = 0.0, np.zeros(3), np.ones(3)
    for b in batches:
        count, mean, var = merge_moments(count, mean, var, b)
    everything = np.concatenate(batches)
    assert count == len(everything)
    np.testing.assert_allclose(mean, everything.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(var, everything.var(axis=0), rtol=1e-10)


def test_learner_observe_moves_the_statistics_into_the_published_weights():
    from actorlearner.learner import Learner

    spec, cfg = SPECS["discrete"], Config(normalize_obs=True, unroll_length=4, envs_per_actor=2, batch_size=2)
    model = build_default_model(spec, cfg)
    learner = Learner(cfg, spec, model)
    obs = np.random.default_rng(5).normal(loc=2.0, size=(5, 2, *spec.obs_shape)).astype(np.float32)
    learner.observe(obs)
    policy = NumpyMLPPolicy(spec, default_layout(spec, cfg), cfg.hidden_sizes, cfg.activation)
    policy.load(learner.flat_weights())
    seen = obs[:-1].reshape(-1, spec.obs_dim)  # the last row is the next unroll's first
    np.testing.assert_allclose(policy.w["obs_norm/mean"], seen.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(policy.w["obs_norm/var"], seen.var(axis=0), rtol=1e-4)
    assert policy.w["obs_norm/count"][0] == len(seen)
    np.testing.assert_allclose(normalize_obs(seen, policy.w["obs_norm/mean"], policy.w["obs_norm/var"]).mean(axis=0),
                               0.0, atol=1e-5)


def test_an_actor_runs_a_keras_model_off_the_gpu_and_the_learner_grows_its_gpu_memory(monkeypatch):
    """With a GPU, TensorFlow would give every actor process a context on it and reserve nearly all its memory.
    This machine has no GPU, so the calls are recorded: an actor's own process hides the GPUs before its model's
    first op, a policy in a shared process (serial mode, the learner's checks) leaves them, and the learner asks
    for memory growth on each GPU it finds."""
    from actorlearner.tf_start import configure_tensorflow
    from actorlearner.policies import make_policy

    calls = []
    monkeypatch.setattr(tf.config, "set_visible_devices", lambda devices, kind: calls.append((kind, devices)))
    monkeypatch.setattr(tf.config.threading, "set_intra_op_parallelism_threads", lambda n: calls.append(n))
    monkeypatch.setattr(tf.config.threading, "set_inter_op_parallelism_threads", lambda n: calls.append(n))
    spec, cfg = SPECS["discrete"], Config(hidden_sizes=(8,), seed=1)

    def model_fn(s):
        calls.append("model")
        return build_default_model(s, cfg)

    make_policy(cfg, spec, model_fn, own_process=True)
    assert calls == [1, 1, ("GPU", []), "model"]
    calls.clear()
    make_policy(cfg, spec, model_fn)
    assert calls == ["model"]

    fake_gpu = tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU")
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [fake_gpu] if kind == "GPU" else [])
    monkeypatch.setattr(tf.config.experimental, "set_memory_growth", lambda d, on: calls.append((d.name, on)))
    calls.clear()
    configure_tensorflow(threads=0)
    assert calls == [("/physical_device:GPU:0", True)]


def test_the_learner_names_the_gpus_it_runs_on(monkeypatch):
    """A run's summary says where the learner ran, and a line at start-up names the GPU. No GPU here: the
    devices are stand-ins."""
    from actorlearner.tf_start import learner_device

    if not tf.config.list_physical_devices("GPU"):
        assert learner_device() == "CPU"
    gpus = [tf.config.PhysicalDevice(f"/physical_device:GPU:{i}", "GPU") for i in range(2)]
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: gpus if kind == "GPU" else [])
    monkeypatch.setattr(tf.config.experimental, "get_device_details",
                        lambda d: {"device_name": "NVIDIA H200"} if d.name.endswith("0") else {})
    assert learner_device() == "GPU:0 NVIDIA H200, GPU:1"


def test_keras_policy_loads_weight_versions_and_runs_models_traced_for_any_batch_or_not():
    """KerasPolicy (custom models in actors) calls its model through a concrete function with a free batch size
    and assigns each weight version in one traced call; its outputs are the model's own after each load. A model
    that reads the batch size in Python cannot be traced so, and runs under a plain tf.function instead."""
    import keras

    from actorlearner.layout import param_layout
    from actorlearner.policies import KerasPolicy

    spec = SPECS["discrete"]

    def functional(spec):
        obs = keras.Input(spec.obs_shape)
        h = keras.layers.Dense(8, activation="tanh")(obs)
        return keras.Model(obs, [keras.layers.Dense(spec.action_dim)(h), keras.layers.Dense(1)(h)])

    class ReadsBatch(keras.Model):
        def __init__(self):
            super().__init__()
            self.torso, self.logits, self.value = (keras.layers.Dense(8), keras.layers.Dense(spec.action_dim),
                                                   keras.layers.Dense(1))

        def call(self, obs):
            h = tf.reshape(self.torso(obs), (int(obs.shape[0]), 8))  # int(None) fails: no free batch size
            return self.logits(h), self.value(h)

    def subclassed(spec):
        model = ReadsBatch()
        model(np.zeros((2, *spec.obs_shape), np.float32))
        return model

    rng = np.random.default_rng(0)
    for model_fn in (functional, subclassed):
        policy = KerasPolicy(spec, model_fn, threads=0)
        for _ in range(2):  # two weight versions
            flat = rng.normal(size=sum(int(np.prod(s)) for _, s in param_layout(policy.model))).astype(np.float32)
            policy.load(flat)
            for n in (1, 5):
                obs = random_obs(spec, rng, n)
                params, value, _ = policy.forward(obs)
                want_params, want_value = policy.model(obs)
                np.testing.assert_allclose(params, want_params.numpy(), rtol=1e-5, atol=1e-5)
                np.testing.assert_allclose(value, want_value.numpy().reshape(-1), rtol=1e-5, atol=1e-5)
        with pytest.raises(ValueError, match="flat vector has 3 floats"):
            policy.load(np.zeros(3, np.float32))
