"""`actorlearner export`: a run's policy as a TensorFlow SavedModel or a TFLite (LiteRT) flatbuffer that needs
neither actorlearner nor its Python classes to run.

The exported function takes a batch of observations `obs [N, *obs_shape]` in the env's dtype (uint8 images
stay uint8; the graph scales them) and returns `params [N, P]` (logits, or the Gaussian mean and log std),
`value [N]` and the greedy `action` ([N] int32, or [N, D] float32 Gaussian means, unclipped). A run trained with
--action-masks takes `action_mask [N, A]` int8 too (nonzero = allowed): its `params` are the masked policy's
(disallowed logits at distributions.MASKED_LOGIT) and its `action` an allowed one. How to load and call both from
plain TensorFlow and from LiteRT is in the README ("Exporting a policy").
"""

from __future__ import annotations

import os
from typing import Callable, Optional

from . import distributions as D
from .config import ConfigError
from .layout import param_layout, unflatten
from .model_fns import check_fits, model_fn_of
from .run_files import atomic_file, saved_module_homes

FORMATS = ("savedmodel", "tflite")
DEFAULT_NAMES = {"savedmodel": "policy_savedmodel", "tflite": "policy.tflite"}


def export_policy(run_dir: str, fmt: str, path: Optional[str] = None, *, which: str = "final",
                  model_fn: Optional[Callable] = None, env_fn: Optional[Callable] = None) -> str:
    """Writes the run's policy (`which` weights, as loading.load_policy) in `fmt`; returns the path written
    (default: RUN_DIR/policy_savedmodel or RUN_DIR/policy.tflite; an existing directory other than an earlier
    SavedModel gets that name inside it). model_fn/env_fn: as load_policy's, for a run that trained a custom
    model or env factory."""
    from .loading import run_config, saved_weights

    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    cfg, spec, _ = run_config(run_dir, env_fn)
    flat, layout, _ = saved_weights(run_dir, which)
    path = output_path(path or run_dir, fmt)
    model_fn = model_fn_of(cfg, model_fn, saved_module_homes(run_dir))
    model = _model_with_weights(cfg, spec, model_fn, flat, layout, run_dir)
    import tensorflow as tf

    serve = _serving_function(model, spec)
    if fmt == "savedmodel":
        module = tf.Module()
        module.model, module.serve = model, serve  # tracked, so the variables are saved with the function
        tmp = path.rstrip("/") + ".export-tmp"  # a name of ours alone: it is removed before and after
        _remove(tmp)  # left by an export that was killed
        try:
            tf.saved_model.save(module, tmp, signatures={"serving_default": serve})
        except BaseException:  # a full disk, Ctrl-C: no half-written directory left beside the export
            _remove(tmp)
            raise
        _replace(tmp, path)
        return path
    data = _tflite(serve)
    with atomic_file(path, "wb") as f:
        f.write(data)
    return path


def output_path(path: str, fmt: str) -> str:
    """Where an export asked to go to `path` is written. An existing directory is written into (under the
    format's default name) unless it is an earlier SavedModel, which a SavedModel export replaces: replacing
    any directory would delete what it holds (`-o .`, `-o RUN_DIR`). ConfigError for a path that an export
    must not replace: a file where a SavedModel (a directory) goes, or a directory that is no SavedModel
    where a file goes."""
    if os.path.isdir(path) and not _is_savedmodel(path):
        path = os.path.join(path, DEFAULT_NAMES[fmt])
    if fmt == "savedmodel" and os.path.exists(path) and not _is_savedmodel(path):
        what = "a directory that holds no SavedModel" if os.path.isdir(path) else "a file"
        raise ConfigError(f"{path} is {what}; a SavedModel export replaces only an earlier SavedModel: "
                          "give -o a new path")
    if fmt == "tflite" and os.path.isdir(path):
        raise ConfigError(f"{path} is a directory; a TFLite export is a file: give -o a file's path")
    return path


def _is_savedmodel(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "saved_model.pb"))


def _model_with_weights(cfg, spec, model_fn, flat, layout, run_dir):
    """The Keras model of the run with the weights `flat` (in `layout` order) assigned: a default model's by variable
    path (its layout's order is the actors', not the model's), a custom model's in the model's own order, which
    its layout keeps (Keras names a custom model's layers anew on each build in a process: dense_2/kernel)."""
    from .learner_loop import build_model

    model = build_model(cfg, spec, model_fn)
    if model_fn is None:
        by_path = {v.path: v for v in model.weights}
        if sorted(param_layout(model)) != sorted(layout):
            raise ConfigError(f"{run_dir} holds weights of another model than {cfg.model!r}: if it trained a custom "
                              f"model, pass its model_fn")
        variables = [by_path[p] for p, _ in layout]
    else:
        check_fits(model, layout, cfg, f"{run_dir}'s")
        variables = model.weights
    for variable, value in zip(variables, unflatten(flat, layout)):
        variable.assign(value)
    return model


def _serving_function(model, spec):
    """obs [N, *obs_shape] -> {"params", "value", "action"}, a tf.function with a fixed signature; a
    recurrent model also takes and returns `state` [N, S] (its state tensors side by side; zeros at an
    episode's start); with action masks (spec.action_masks) it takes `action_mask` [N, A] int8 last."""
    import tensorflow as tf

    def outputs(params, value, action_mask=()):
        if action_mask:
            params = D.tf_masked(params, tf.cast(action_mask[0], tf.int32))  # TFLite compares no int8
        if spec.action_nvec:  # each component's argmax: [N, components]
            action = tf.stack([tf.cast(tf.argmax(b, axis=-1), tf.int32)
                               for b in tf.split(params, list(spec.action_nvec), axis=-1)], axis=-1)
        elif spec.discrete:
            action = tf.cast(tf.argmax(params, axis=-1), tf.int32)
        else:
            action = params[:, : spec.action_dim]
        return {"params": params, "value": tf.reshape(value, [-1]), "action": action}

    obs_spec = tf.TensorSpec([None, *spec.obs_shape], spec.obs_dtype, name="obs")
    masks = [tf.TensorSpec([None, spec.action_dim], tf.int8, name="action_mask")] if spec.action_masks else []
    sizes = list(getattr(model, "state_sizes", ()))
    if not sizes:
        @tf.function(input_signature=[obs_spec, *masks])
        def serve(obs, *action_mask):
            return outputs(*model(obs, training=False), action_mask)

        return serve

    @tf.function(input_signature=[obs_spec, tf.TensorSpec([None, sum(sizes)], tf.float32, name="state"), *masks])
    def serve_recurrent(obs, state, *action_mask):
        out = model([obs, *tf.split(state, sizes, axis=1)], training=False)
        return {**outputs(out[0], out[1], action_mask), "state": tf.concat(out[2:], axis=1)}

    return serve_recurrent


def _tflite(serve) -> bytes:
    """The serving function as a TFLite flatbuffer. The converter keeps Keras 3's variables as resource
    variables that nothing initializes (the model returned NaN), so the function is first frozen (variables
    to constants) and re-wrapped to keep its named outputs."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    concrete = serve.get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete)

    @tf.function(input_signature=serve.input_signature)
    def named(*inputs):
        return tf.nest.pack_sequence_as(concrete.structured_outputs, frozen(*inputs))

    return tf.lite.TFLiteConverter.from_concrete_functions([named.get_concrete_function()], tf.Module()).convert()


def _remove(path: str) -> None:
    import shutil

    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)


def _replace(tmp: str, path: str) -> None:
    """Moves the finished directory `tmp` to `path` (replacing an older export): never a half-written one."""
    _remove(path)
    os.replace(tmp, path)
