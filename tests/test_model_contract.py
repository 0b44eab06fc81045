"""The model contract the learner calls (model.apply_time_major): time-major [T, B, *obs_shape] in, a feed-forward
model as one folded call, a recurrent one stepped through time with its state reset where an episode starts."""

import keras
import pytest
import numpy as np
import tensorflow as tf

from actorlearner.config import Config
from actorlearner.envs import EnvSpec
from actorlearner.model import apply_time_major, build_default_model


def test_feed_forward_is_one_folded_call_and_keeps_uint8_images():
    spec = EnvSpec((6, 5, 2), "uint8", True, 3, None, None, None, None)
    model = build_default_model(spec, Config(model="mlp"))
    obs = np.random.default_rng(0).integers(0, 256, (4, 3, 6, 5, 2)).astype(np.uint8)
    params, values, state = apply_time_major(model, tf.constant(obs), tf.zeros((4, 3), tf.uint8))
    want_params, want_values = model(obs.reshape(12, 6, 5, 2))
    np.testing.assert_allclose(params.numpy(), want_params.numpy().reshape(4, 3, 3), rtol=1e-6)
    np.testing.assert_allclose(values.numpy(), want_values.numpy().reshape(4, 3), rtol=1e-6)
    assert state is None


def tiny_recurrent_model(obs_dim=2, size=3, actions=2):
    """h' = tanh(W x + U h); params and value read h'. Follows the recurrent contract (state_sizes)."""
    obs, h = keras.Input((obs_dim,)), keras.Input((size,))
    new_h = keras.layers.Activation("tanh")(keras.layers.Add()([keras.layers.Dense(size)(obs),
                                                               keras.layers.Dense(size, use_bias=False)(h)]))
    model = keras.Model([obs, h], [keras.layers.Dense(actions)(new_h), keras.layers.Dense(1)(new_h), new_h])
    model.state_sizes = (size,)
    return model


def test_recurrent_model_resets_its_state_where_an_episode_starts():
    model = tiny_recurrent_model()
    rng = np.random.default_rng(1)
    T, B = 6, 2
    obs = rng.normal(size=(T, B, 2)).astype(np.float32)
    first = np.zeros((T, B), np.uint8)
    first[3, 0] = 1  # env 0 starts a new episode at t = 3
    start = [rng.normal(size=(B, 3)).astype(np.float32)]  # the state the actor had at t = 0
    params, values, final = apply_time_major(model, tf.constant(obs), tf.constant(first), state=start)

    h = start[0]
    for t in range(T):  # the reference: one step at a time, zeroing the state of a new episode
        h = np.where(first[t][:, None] == 1, 0.0, h).astype(np.float32)
        p, v, h = (x.numpy() for x in model([obs[t], h]))
        np.testing.assert_allclose(params.numpy()[t], p, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(values.numpy()[t], v[:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(final[0].numpy(), h, rtol=1e-5, atol=1e-6)
    # Without the reset, env 0's later outputs would differ: the flags matter.
    no_reset, _, _ = apply_time_major(model, tf.constant(obs), tf.zeros((T, B), tf.uint8), state=start)
    assert not np.allclose(no_reset.numpy()[3:, 0], params.numpy()[3:, 0])
    np.testing.assert_allclose(no_reset.numpy()[:, 1], params.numpy()[:, 1], rtol=1e-6)


def _dense_model(obs_dim, widths):
    x = keras.Input((obs_dim,))
    outs = [keras.layers.Dense(w)(x) for w in widths]
    return keras.Model(x, outs if len(outs) > 1 else outs[0])


@pytest.mark.parametrize("make, says", [
    (lambda: 42, "model_fn must return a keras.Model, got int"),
    (lambda: _dense_model(2, [2]), "model_fn's model returns 1 output, the contract 2: (policy params, value)"),
    (lambda: _dense_model(2, [7, 1]), "model_fn's policy output has shape [N, 7]; the env needs [N, 2]: 2 logits "
                                      "for its 2 actions"),
    (lambda: _dense_model(2, [2, 3]), "model_fn's value output has shape [N, 3]; the contract is [N, 1] or [N]"),
    (lambda: _dense_model(5, [2, 1]), "model_fn's model fails on observations [2, 2] float32: ValueError: "),
    (lambda: _recurrent_with_wrong_state(), "model_fn's model fails on observations [2, 2] float32 and its state: "),
])
def test_a_model_that_breaks_the_contract_is_one_line(make, says):
    """Logits of the wrong width trained on (the actors sampled actions the env does not have); the other faults
    surfaced in the learner's graph as errors about symbolic tensors or reshapes."""
    from actorlearner.config import ConfigError
    from actorlearner.model import check_contract

    spec = EnvSpec((2,), "float32", True, 2, None, None, None, None)
    with pytest.raises(ConfigError) as e:
        check_contract(make(), spec)
    assert str(e.value).startswith(says), str(e.value)
    check_contract(_dense_model(2, [2, 1]), spec)  # and the right ones pass
    check_contract(tiny_recurrent_model(), spec)
    box = EnvSpec((2,), "float32", False, 3, None, None, None, None)
    check_contract(_dense_model(2, [6, 1]), box)  # mean and log std of a 3-dim action


def _recurrent_with_wrong_state():
    model = tiny_recurrent_model(size=3)
    model.state_sizes = (5,)  # says 5, returns 3
    return model


@pytest.mark.parametrize("units", [1, 2, 6])
def test_head_dense_gives_dense_outputs_and_gradients(units):
    """The heads' layer (model.HeadDense) computes its kernel gradient another way round: the same numbers as
    keras.layers.Dense, in training (its own gradient) and in inference (Dense's call)."""
    from actorlearner.model import HeadDense

    x = tf.constant(np.random.default_rng(units).normal(size=(37, 5)), tf.float32)
    ours, theirs = HeadDense(units), keras.layers.Dense(units)
    ours.build((None, 5))
    theirs.build((None, 5))
    rng = np.random.default_rng(1)
    for layer in (ours, theirs):
        layer.set_weights([rng.normal(size=(5, units)).astype(np.float32), rng.normal(size=units).astype(np.float32)])
        rng = np.random.default_rng(1)
    weights = tf.constant(np.random.default_rng(2).normal(size=(37, units)), tf.float32)
    grads = []
    for layer in (ours, theirs):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.tanh(layer(x, training=True)) * weights)
        grads.append(tape.gradient(loss, [x, layer.kernel, layer.bias]))
        np.testing.assert_allclose(layer(x, training=True).numpy(), theirs(x).numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(layer(x).numpy(), theirs(x).numpy(), rtol=1e-6, atol=1e-6)
    for a, b in zip(*grads):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="linear with a bias"):
        HeadDense(2, activation="relu")


def test_mlp_unroll_heads_matches_the_folded_call_in_values_and_gradients():
    """The learner's route for the default MLP (model.unroll_heads: its policy tower skips the bootstrap row) gives
    the params of the first T rows, every row's value and the same gradients as the folded call."""
    spec = EnvSpec((4,), "float32", True, 2, None, None, None, None)
    model = build_default_model(spec, Config(model="mlp", normalize_obs=True))
    obs = tf.constant(np.random.default_rng(3).normal(size=(6, 5, 4)), tf.float32)  # T + 1 = 6, B = 5
    weights = [tf.constant(np.random.default_rng(4).normal(size=s), tf.float32) for s in ((5, 5, 2), (6, 5))]
    results = []
    for route in ("folded", "unroll_heads"):
        with tf.GradientTape() as tape:
            if route == "folded":
                params, values, _ = apply_time_major(model, obs, tf.zeros((6, 5), tf.uint8))
                params = params[:-1]
            else:
                params, values = model.unroll_heads(obs)
            loss = tf.reduce_sum(params * weights[0]) + tf.reduce_sum(values * weights[1])
        results.append([params, values] + tape.gradient(loss, model.trainable_variables))
    assert results[1][0].shape == (5, 5, 2) and results[1][1].shape == (6, 5)
    for a, b in zip(*results):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
