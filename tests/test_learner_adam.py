"""The learner's fused Adam update (Learner._apply) against keras.optimizers.Adam on the same gradients, and its
fast call of the compiled step (flat_caller)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from actorlearner.config import Config
from actorlearner.envs import inspect_env, make_env_fn
from actorlearner.learner import Learner, has_adam_slots
from actorlearner.tf_calls import flat_caller
from actorlearner.model import build_default_model


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "keras-fallback"])
def test_fused_adam_matches_keras_adam_over_steps_and_a_learning_rate_change(fused):
    cfg = Config(learning_rate=3e-3, adam_epsilon=1e-5, hidden_sizes=(8, 8))
    spec = inspect_env(make_env_fn("CartPole-v1"))
    learner = Learner(cfg, spec, build_default_model(spec, cfg))
    assert learner._fused_adam, "this Keras keeps Adam's slots elsewhere: the learner fell back to keras' Adam"
    assert not has_adam_slots(keras.optimizers.SGD(), learner.model.trainable_variables)
    learner._fused_adam = fused  # the fallback a Keras without those private slots would take
    variables = learner.model.trainable_variables
    reference = [tf.Variable(v.numpy()) for v in variables]
    keras_adam = keras.optimizers.Adam(learning_rate=cfg.learning_rate, epsilon=cfg.adam_epsilon)
    keras_adam.build(reference)

    @tf.function(autograph=False)
    def fused(grads):
        learner._apply(grads, variables, tf.constant(True))

    rng = np.random.default_rng(0)
    for step in range(5):
        if step == 3:  # a schedule's new rate reaches both through their learning-rate variables
            learner.optimizer.learning_rate.assign(1e-3)
            keras_adam.learning_rate.assign(1e-3)
        grads = [tf.constant(rng.normal(scale=10.0 ** -step, size=v.shape).astype(np.float32)) for v in variables]
        fused(grads)
        keras_adam.apply_gradients(zip(grads, reference))
    assert int(learner.optimizer.iterations.numpy()) == 5
    for v, r in zip(variables, reference):
        np.testing.assert_allclose(v.numpy(), r.numpy(), rtol=1e-5, atol=1e-6, err_msg=v.path)
    moments = {v.path: v.numpy() for v in learner.optimizer.variables}
    for v, r in zip(learner.optimizer.variables, keras_adam.variables):
        if "iteration" not in v.path and "learning_rate" not in v.path:
            np.testing.assert_allclose(moments[v.path], r.numpy(), rtol=1e-5, atol=1e-7, err_msg=v.path)


def test_flat_caller_gives_the_public_calls_result_and_updates_the_same_variables():
    v = tf.Variable([1.0, 2.0])

    @tf.function(autograph=False, input_signature=[tf.TensorSpec([2]), tf.TensorSpec([], tf.int32)])
    def step(x, n):
        v.assign_add(x)
        return tf.reduce_sum(v) * tf.cast(n, tf.float32), v * 2.0

    concrete = step.get_concrete_function()
    fast = flat_caller(concrete)
    assert fast is not concrete, "this TensorFlow has no ConcreteFunction._call_flat: steps take the public call"
    got = fast(tf.constant([1.0, 1.0]), tf.constant(3))
    want = concrete(tf.constant([1.0, 1.0]), tf.constant(3))
    assert isinstance(got, tuple) and len(got) == 2
    np.testing.assert_allclose(got[0].numpy(), 15.0)  # v = [2, 3] after the first call
    np.testing.assert_allclose(want[0].numpy(), 21.0)  # and [3, 4] after the second: one variable, both paths
    np.testing.assert_allclose(got[1].numpy(), [4.0, 6.0])
    assert flat_caller(len) is len  # no flat entry: the function itself


def test_steps_without_control_flow_run_on_the_single_threaded_executor(monkeypatch):
    from actorlearner.tf_calls import executor_for

    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind=None: [])  # as on a machine without GPU

    @tf.function(autograph=False, input_signature=[tf.TensorSpec([], tf.float32)])
    def branchy(x):
        return tf.cond(x > 0, lambda: x, lambda: -x)

    assert executor_for(branchy.get_concrete_function().graph) == ""
    cfg = Config(hidden_sizes=(8, 8))
    spec = inspect_env(make_env_fn("CartPole-v1"))
    learner = Learner(cfg, spec, build_default_model(spec, cfg))
    learner.trace()
    assert learner._executor == "SINGLE_THREADED_EXECUTOR"  # the fused Adam skips a bad update without a branch
    keras_adam = Learner(cfg, spec, build_default_model(spec, cfg))
    keras_adam._fused_adam = False
    keras_adam.trace()
    assert keras_adam._executor == ""  # Keras' Adam sits in a tf.cond


def test_a_step_on_a_gpu_runs_on_the_default_executor(monkeypatch):
    """On a GPU the step's graph is partitioned between host and GPU, and the single-threaded executor refuses
    the send/recv nodes that joins them. No GPU here: one is listed by a stand-in."""
    from actorlearner.tf_calls import executor_for

    plain = tf.function(lambda x: x * 2.0, autograph=False, input_signature=[tf.TensorSpec([], tf.float32)])
    graph = plain.get_concrete_function().graph
    gpus = []
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind=None: gpus if kind == "GPU" else [])
    assert executor_for(graph) == "SINGLE_THREADED_EXECUTOR"
    gpus.append(tf.config.LogicalDevice("/device:GPU:0", "GPU"))
    assert executor_for(graph) == ""
