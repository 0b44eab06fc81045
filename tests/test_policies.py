"""The numpy policy the actors run equals the Keras model the learner trains (so behaviour log-probs are
right), and the numpy and TF distribution math agree."""

import numpy as np
import pytest
import tensorflow as tf

from actorlearner import distributions as D
from actorlearner.config import Config
from actorlearner.envs import EnvSpec
from actorlearner.model import build_default_model, model_layout, ordered_weights, flat_weights
from actorlearner.policies import NumpyMLPPolicy, default_layout

SPECS = {
    "discrete": EnvSpec(5, True, 3, None, None, None, None),
    "continuous": EnvSpec(4, False, 2, -np.ones(2, np.float32), np.ones(2, np.float32), None, None),
}


@pytest.mark.parametrize("kind", list(SPECS))
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_numpy_policy_matches_keras(kind, activation):
    spec, cfg = SPECS[kind], Config(hidden_sizes=(32, 16), activation=activation, seed=3)
    model = build_default_model(spec, cfg)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in model.get_weights()])
    layout = model_layout(model, spec, cfg, default=True)
    policy = NumpyMLPPolicy(spec, default_layout(spec, cfg.hidden_sizes), cfg.hidden_sizes, cfg.activation)
    policy.load(flat_weights(ordered_weights(model, layout)))
    obs = rng.normal(size=(64, spec.obs_dim)).astype(np.float32)
    want_params, want_value = (t.numpy() for t in model(obs))
    got_params, got_value = policy.forward(obs)
    np.testing.assert_allclose(got_params, want_params, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got_value, want_value[:, 0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", list(SPECS))
def test_behaviour_log_probs_match_learner(kind):
    spec = SPECS[kind]
    rng = np.random.default_rng(1)
    width = spec.action_dim if spec.discrete else 2 * spec.action_dim
    params = rng.normal(size=(256, width)).astype(np.float32)
    if spec.discrete:
        actions, logp = D.np_sample_discrete(params, rng)
    else:
        actions, logp = D.np_sample_gaussian(params, rng)
    tf_logp = D.tf_log_prob(tf.constant(params), tf.constant(actions.astype(np.int32 if spec.discrete else np.float32)),
                            discrete=spec.discrete).numpy()
    np.testing.assert_allclose(logp, tf_logp, rtol=1e-4, atol=1e-4)


def test_discrete_sampling_follows_the_probabilities():
    rng = np.random.default_rng(2)
    logits = np.log(np.array([[0.2, 0.5, 0.3]] * 60_000))
    actions, _ = D.np_sample_discrete(logits, rng)
    np.testing.assert_allclose(np.bincount(actions, minlength=3) / len(actions), [0.2, 0.5, 0.3], atol=0.01)


def test_entropy_of_uniform_and_gaussian():
    uniform = D.tf_entropy(tf.zeros([1, 4]), discrete=True).numpy()[0]
    assert abs(uniform - np.log(4)) < 1e-6
    gauss = D.tf_entropy(tf.constant([[0.0, 0.0]]), discrete=False).numpy()[0]  # mean 0, log_std 0
    assert abs(gauss - 0.5 * np.log(2 * np.pi * np.e)) < 1e-6
