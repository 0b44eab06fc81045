"""Recurrent policies (--core lstm): the numpy LSTM the actors run is the Keras model the learner re-runs over
an unroll (episode starts inside it reset the state), the actor records the state each unroll starts from
and carries it across unrolls, and evaluation, load_policy and export step the state."""

import numpy as np
import pytest
import tensorflow as tf

from actorlearner.actor import Actor
from actorlearner.config import Config
from actorlearner.env_batch import GymEnvBatch
from actorlearner.envs import EnvSpec, inspect_env, make_env_fn
from actorlearner.layout import default_layout, flat_weights, ordered_weights, state_size
from actorlearner.memory_envs import CUE_MEMORY
from actorlearner.model import apply_time_major, build_default_model, step_time_major
from actorlearner.policies import make_policy
from actorlearner.trajectory import unroll_fields
from actorlearner.transport import SlotPool, WeightStore, local_channel_pair

VEC = EnvSpec((3,), "float32", True, 2, None, None, None, None)
BOX = EnvSpec((3,), "float32", False, 2, -np.ones(2, np.float32), np.ones(2, np.float32), None, None)
IMG = EnvSpec((20, 20, 2), "uint8", False, 2, -np.ones(2, np.float32), np.ones(2, np.float32), None, None)


def _random_model(spec, cfg, seed=0):
    model = build_default_model(spec, cfg)
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(scale=0.3, size=w.shape).astype(np.float32) for w in model.get_weights()])
    policy = make_policy(cfg, spec, None)
    policy.load(flat_weights(ordered_weights(model, default_layout(spec, cfg))))
    return model, policy


@pytest.mark.parametrize("spec,model_name", [(VEC, "mlp"), (IMG, "impala-shallow")])
def test_numpy_lstm_matches_keras_over_an_unroll_with_episode_starts(spec, model_name):
    cfg = Config(model=model_name, core="lstm", core_size=8, hidden_sizes=(16,), seed=4)
    model, policy = _random_model(spec, cfg)
    T, B = 12, 3
    rng = np.random.default_rng(1)
    obs = (rng.integers(0, 256, (T + 1, B, *spec.obs_shape)).astype(np.uint8) if spec.obs_dtype == "uint8"
           else rng.normal(size=(T + 1, B, *spec.obs_shape)).astype(np.float32))
    first = np.zeros((T + 1, B), np.uint8)
    first[4, 0] = first[9, 0] = first[0, 1] = first[7, 2] = 1  # episodes start inside the unroll
    state = [rng.normal(size=(B, 8)).astype(np.float32) for _ in range(2)]  # carried in from the last unroll
    want_params, want_values, _ = apply_time_major(model, tf.constant(obs), tf.constant(first),
                                                   [tf.constant(s) for s in state], training=False)
    s = state
    for t in range(T + 1):  # as the actor steps: reset where an episode starts, then step the core
        s = [x * (1 - first[t])[:, None] for x in s]
        params, values, s = policy.forward(obs[t], s)
        np.testing.assert_allclose(params, want_params[t].numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(values, want_values[t].numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("spec,model_name", [(VEC, "mlp"), (BOX, "mlp"), (IMG, "impala-shallow")])
def test_the_learners_unroll_route_is_the_stepped_model(spec, model_name):
    """The default LSTM model's `unroll` (torso and heads batched over time) gives what stepping the whole
    model does: outputs, final state and the gradients the learner applies."""
    cfg = Config(model=model_name, core="lstm", core_size=8, hidden_sizes=(16,), seed=2)
    model, _ = _random_model(spec, cfg, seed=3)
    T, B = 9, 4
    rng = np.random.default_rng(5)
    obs = tf.constant(rng.integers(0, 256, (T, B, *spec.obs_shape)).astype(np.uint8) if spec.obs_dtype == "uint8"
                      else rng.normal(size=(T, B, *spec.obs_shape)).astype(np.float32))
    first = np.zeros((T, B), np.uint8)
    first[3, 0] = first[0, 2] = first[6, 3] = 1
    state = [tf.constant(rng.normal(size=(B, 8)).astype(np.float32)) for _ in range(2)]
    results = []
    for route in (apply_time_major, step_time_major):
        with tf.GradientTape() as tape:
            params, values, final = route(model, obs, tf.constant(first), state)
            loss = tf.reduce_sum(tf.sin(params)) + tf.reduce_sum(values ** 2) + tf.reduce_sum(final[1])
        results.append([params, values, *final, *tape.gradient(loss, model.trainable_variables)])
    assert hasattr(model, "unroll") and len(results[0]) == 4 + len(model.trainable_variables)
    for fast, stepped in zip(*results):
        np.testing.assert_allclose(fast.numpy(), stepped.numpy(), rtol=1e-4, atol=1e-5)


def test_the_state_an_unroll_starts_from_is_recorded_and_carried():
    cfg = Config(core="lstm", core_size=4, hidden_sizes=(8,), unroll_length=5, envs_per_actor=2, batch_size=2)
    env_fn = make_env_fn(CUE_MEMORY)  # 21 steps an episode: unrolls of 5 cross episode starts
    spec = inspect_env(env_fn)
    _, policy = _random_model(spec, cfg)
    slots = SlotPool(unroll_fields(spec, cfg.unroll_length, cfg.envs_per_actor, state_size(cfg)), 6, None)
    weights = WeightStore(1, None)
    weights.publish(np.zeros(1, np.float32))
    ours, theirs = local_channel_pair()
    envs = GymEnvBatch(env_fn, 2, lambda n: n, spec.obs_shape, spec.obs_dtype, spec.discrete, label="0")
    actor = Actor(0, cfg, spec, envs, policy, slots, theirs, weights)
    actor.version = 1  # weights are loaded already; produce() must not wait for the learner's
    ends = []
    for slot in range(6):
        actor.fill(slot)
        ends.append(np.concatenate(actor.state, axis=1))
    recorded = slots.arrays["core_state"][:, 0]  # [slot, env, 8]
    np.testing.assert_array_equal(recorded[0], 0)  # the first unroll starts from zeros
    for slot in range(1, 6):  # each unroll starts from the state the previous one ended in, before any reset
        np.testing.assert_array_equal(recorded[slot], ends[slot - 1])
    assert np.abs(recorded[1:]).max() > 0
    # Re-running the core over each unroll from its recorded state reproduces the actor's behaviour log-probs.
    model, _ = _random_model(spec, cfg)
    for slot in range(6):
        a = {k: v[slot] for k, v in slots.arrays.items()}
        params, _, _ = apply_time_major(model, tf.constant(a["obs"]), tf.constant(a["first"]),
                                        tf.split(tf.constant(a["core_state"][0]), [4, 4], axis=1), training=False)
        logits = params[:cfg.unroll_length].numpy()
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        taken = np.take_along_axis(logp, a["actions"][..., None].astype(int), -1)[..., 0]
        np.testing.assert_allclose(taken, a["behaviour_logp"], rtol=1e-4, atol=1e-5)
    slots.close()
    weights.close()
    envs.close()


def test_load_policy_steps_the_state_and_export_carries_it(tmp_path):
    from actorlearner import load_policy
    from actorlearner.export import export_policy
    from actorlearner.run_files import RunDir

    cfg = Config(env=CUE_MEMORY, core="lstm", core_size=6, hidden_sizes=(8,))
    spec = inspect_env(make_env_fn(CUE_MEMORY))
    model, _ = _random_model(spec, cfg)
    run = RunDir(str(tmp_path / "run"))
    run.write_json("config.json", cfg.replace(run_dir=run.path).to_json())
    run.save_weights(flat_weights(ordered_weights(model, default_layout(spec, cfg))), default_layout(spec, cfg))
    policy = load_policy(run.path)
    state = policy.initial_state(2)
    assert [s.shape for s in state] == [(2, 6), (2, 6)]
    obs = np.eye(3, dtype=np.float32)[:2]
    action, state = policy.step(obs, state)
    assert action.shape == (2,) and np.abs(state[0]).max() > 0
    with pytest.raises(TypeError, match="this one is recurrent: action, state = policy.step"):
        policy.greedy(obs)

    serve = tf.saved_model.load(export_policy(run.path, "savedmodel")).signatures["serving_default"]
    out = serve(obs=tf.constant(obs), state=tf.zeros((2, 12)))
    np.testing.assert_allclose(out["state"].numpy(), np.concatenate(state, axis=1), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out["action"].numpy(), action)


def test_keras_policy_steps_a_recurrent_model_as_the_numpy_one_does():
    """A custom recurrent Keras model in TensorFlow actors: initial_state, act and step carry its state."""
    from actorlearner.layout import param_layout
    from actorlearner.policies import KerasPolicy

    cfg = Config(core="lstm", core_size=4, hidden_sizes=(8,), seed=2)
    model, numpy_policy = _random_model(VEC, cfg)
    keras_policy = KerasPolicy(VEC, lambda spec: build_default_model(spec, cfg), threads=0)
    keras_policy.load(flat_weights(ordered_weights(model, param_layout(model))))
    obs = np.random.default_rng(3).normal(size=(2, 3)).astype(np.float32)
    s_np, s_tf = numpy_policy.initial_state(2), keras_policy.initial_state(2)
    assert [s.shape for s in s_tf] == [(2, 4), (2, 4)]
    for _ in range(3):
        a_np, s_np = numpy_policy.step(obs, s_np)
        a_tf, s_tf = keras_policy.step(obs, s_tf)
        np.testing.assert_array_equal(a_tf, a_np)
        np.testing.assert_allclose(s_tf[0], s_np[0], rtol=1e-5, atol=1e-5)
