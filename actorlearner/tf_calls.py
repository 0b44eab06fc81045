"""Calling the learner's compiled TensorFlow step cheaply: eager tensors made from numpy arrays without
tf.constant's Python layers, the concrete function's flat entry, and the executor it runs on. Each is a
private TensorFlow path with the public one as its fallback; each docstring gives what it saved where measured."""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf


def to_tensor(array: np.ndarray):
    """An eager tensor of a numpy array, for the step's inputs: the EagerTensor constructor that tf.constant ends
    in, without its Python layers (shape, dtype and argument checks a numpy array does not need): ~10 against
    ~21 µs an input here. tf.constant where that private class has moved or takes other arguments."""
    eager = _eager_tensor()
    if eager is None:
        return tf.constant(array)
    make, context = eager
    ctx = context.context()
    ctx.ensure_initialized()
    return make(array, ctx.device_name, None)


@functools.cache
def _eager_tensor():
    """(TensorFlow's EagerTensor class, its eager context module) if the class makes the tensor tf.constant makes,
    else None. Decided at the first step, not at import: the eager context must not start before the learner's
    thread settings."""
    try:
        from tensorflow.python.eager import context
        from tensorflow.python.framework.ops import EagerTensor

        probe = np.arange(6, dtype=np.float32).reshape(2, 3)
        context.context().ensure_initialized()
        made = EagerTensor(probe, context.context().device_name, None)
        if made.dtype == tf.float32 and made.shape == (2, 3) and np.array_equal(made.numpy(), probe):
            return EagerTensor, context
    except Exception:  # noqa: BLE001 - any change in private classes: the public way
        pass
    return None


CONTROL_FLOW_OPS = frozenset({"If", "StatelessIf", "While", "StatelessWhile", "Case", "StatelessCase",
                               "Switch", "Merge", "Enter", "Exit", "NextIteration"})


def executor_for(graph) -> str:
    """The executor a compiled step runs on: TensorFlow's single-threaded one where the graph has no control
    flow and no GPU is visible (it runs each kernel inline, in order, where the default one schedules each of
    the step's ~240 small kernels: with the tf.cond gone, 3-5 % of the default CartPole step in alternated
    runs), else the default (""). Control flow there hung a step in a probe (a tf.cond's nested call); a GPU
    step is a graph partitioned between host and GPU, whose send/recv nodes that executor refuses
    ("does not support partitioned graphs"). Kernels keep their own intra-op threads either way."""
    if tf.config.list_logical_devices("GPU"):
        return ""
    if any(op.type in CONTROL_FLOW_OPS for op in graph.get_operations()):
        return ""
    return "SINGLE_THREADED_EXECUTOR"


def flat_caller(concrete):
    """A function calling `concrete` (a ConcreteFunction) with its inputs as positional tensors, through the
    flat entry that its public call ends in (`_call_flat`, with the captured variables read once here), so
    not binding them to the structured signature on every call: that binding cost ~0.3 ms per learner step
    (TF 2.21, 9 inputs: 408 against 116 µs for a call of a near-empty function). A TensorFlow without that
    private method gets the public call."""
    call_flat = getattr(concrete, "_call_flat", None)
    if call_flat is None:
        return concrete
    captured = list(concrete.captured_inputs)  # the model's and optimizer's variables: fixed for its life
    return lambda *args: call_flat(list(args), captured)
