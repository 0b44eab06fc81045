"""The Keras 3 actor-critic and the flat parameter vector that carries its weights to the actors.

A model maps observations `[B, obs_dim]` to `(policy_params, value)`: policy_params is `[B, A]` logits
(Discrete) or `[B, 2*D]` = concat(mean, log_std) (Box); value is `[B, 1]` or `[B]`. A user model factory
`model_fn(spec: EnvSpec) -> keras.Model` must follow the same convention.

The default model's layers are named (`pi_hidden_i`, `vf_hidden_i`, `policy`, `log_std`, `value`) so the numpy policy in
`numpy_policy.py` can run it in actors without TensorFlow.
"""

from __future__ import annotations

import numpy as np
import keras

from .config import Config
from .envs import EnvSpec
from .policies import OBS_CLIP, default_layout


@keras.saving.register_keras_serializable(package="actorlearner")
class GaussianLogStd(keras.layers.Layer):
    """Appends a state-independent, learned log standard deviation to the Gaussian mean."""

    def __init__(self, init_log_std: float = 0.0, **kw):
        super().__init__(**kw)
        self.init_log_std = init_log_std

    def build(self, input_shape):
        self.log_std = self.add_weight(name="log_std", shape=(input_shape[-1],),
                                       initializer=keras.initializers.Constant(self.init_log_std))

    def call(self, mean):
        return keras.ops.concatenate([mean, keras.ops.zeros_like(mean) + self.log_std], axis=-1)

    def get_config(self):
        return {**super().get_config(), "init_log_std": self.init_log_std}


@keras.saving.register_keras_serializable(package="actorlearner")
class ObsNormalizer(keras.layers.Layer):
    """clip((x - mean) / sqrt(var + 1e-8), -10, 10) with the running statistics as non-trainable variables
    (mean, var, count): the learner assigns them (`Learner.observe`), the optimizer never touches them, and
    being model weights they travel in the flat vector to the actors and into checkpoints."""

    def build(self, input_shape):
        d = input_shape[-1]
        self.mean = self.add_weight(name="mean", shape=(d,), initializer="zeros", trainable=False)
        self.var = self.add_weight(name="var", shape=(d,), initializer="ones", trainable=False)
        self.count = self.add_weight(name="count", shape=(1,), initializer="zeros", trainable=False)

    def call(self, x):
        z = (x - self.mean) / keras.ops.sqrt(self.var + 1e-8)
        return keras.ops.clip(z, -OBS_CLIP, OBS_CLIP)


def build_default_model(spec: EnvSpec, cfg: Config) -> keras.Model:
    """Two MLP torsos, one per head: with a shared torso the value loss (returns in the hundreds)
    swamps the policy's features and the policy collapses at the learning rates that make IMPALA fast.
    Orthogonal init with a small policy-head gain, so the starting policy is near uniform (discrete)
    or near zero mean (Gaussian)."""
    keras.utils.set_random_seed(cfg.seed)
    def ortho(gain: float, seed: int):
        if cfg.orthogonal_init:
            return keras.initializers.Orthogonal(gain=gain, seed=seed)
        return keras.initializers.GlorotUniform(seed=seed)
    inputs = keras.Input((spec.obs_dim,), name="obs")
    obs = ObsNormalizer(name="obs_norm")(inputs) if cfg.normalize_obs else inputs

    def torso(prefix: str, seed: int):
        h = obs
        for i, width in enumerate(cfg.hidden_sizes):
            h = keras.layers.Dense(int(width), activation=cfg.activation, name=f"{prefix}_hidden_{i}",
                                   kernel_initializer=ortho(gain=np.sqrt(2.0), seed=seed + i))(h)
        return h

    policy = keras.layers.Dense(spec.action_dim, name="policy",
                                kernel_initializer=ortho(gain=0.01, seed=cfg.seed + 100))(torso("pi", cfg.seed))
    if not spec.discrete:
        policy = GaussianLogStd(cfg.init_log_std, name="log_std")(policy)
    value = keras.layers.Dense(1, name="value", kernel_initializer=ortho(gain=1.0, seed=cfg.seed + 200))(
        torso("vf", cfg.seed + 50))
    return keras.Model(inputs, [policy, value], name="actor_critic")


def param_layout(model: keras.Model) -> list[tuple[str, tuple]]:
    """(variable path, shape) of every weight, in the model's own order (used for custom models)."""
    return [(v.path, tuple(v.shape)) for v in model.weights]


def ordered_weights(model: keras.Model, layout: list[tuple[str, tuple]]) -> list:
    """The model's variables in the order of `layout`: the order of the flat vector actors read.
    Raises if the model's weights are not exactly those of the layout."""
    by_path = {v.path: v for v in model.weights}
    got = sorted((v.path, tuple(v.shape)) for v in model.weights)
    if got != sorted(layout):
        raise RuntimeError(f"model weights {got} differ from the expected layout {sorted(layout)}")
    return [by_path[path] for path, _ in layout]


def flat_weights(variables: list) -> np.ndarray:
    return np.concatenate([np.asarray(v, np.float32).ravel() for v in variables])


def model_layout(model: keras.Model, spec: EnvSpec, cfg: Config, default: bool) -> list[tuple[str, tuple]]:
    """The flat-vector layout: the numpy policy's for the default model (checked against the model, as
    the numpy forward pass depends on it), the model's own order otherwise."""
    if default:
        layout = default_layout(spec, cfg.hidden_sizes, cfg.normalize_obs)
        ordered_weights(model, layout)
        return layout
    return param_layout(model)
