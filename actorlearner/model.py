"""The Keras 3 actor-critic and the flat parameter vector that carries its weights to the actors.

A model maps observations `[B, obs_dim]` to `(policy_params, value)`: policy_params is `[B, A]` logits
(Discrete) or `[B, 2*D]` = concat(mean, log_std) (Box); value is `[B, 1]` or `[B]`. A user model factory
`model_fn(spec: EnvSpec) -> keras.Model` must follow the same convention.

The default model's layers are named (`hidden_i`, `policy`, `log_std`, `value`) so the numpy policy in
`numpy_policy.py` can run it in actors without TensorFlow.
"""

from __future__ import annotations

import numpy as np
import keras

from .config import Config
from .envs import EnvSpec
from .policies import default_layout


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


def build_default_model(spec: EnvSpec, cfg: Config) -> keras.Model:
    """MLP torso shared by both heads; orthogonal init with a small policy-head gain, so the starting
    policy is near uniform (discrete) or near zero mean (Gaussian)."""
    keras.utils.set_random_seed(cfg.seed)
    ortho = keras.initializers.Orthogonal
    obs = keras.Input((spec.obs_dim,), name="obs")
    h = obs
    for i, width in enumerate(cfg.hidden_sizes):
        h = keras.layers.Dense(int(width), activation=cfg.activation, name=f"hidden_{i}",
                               kernel_initializer=ortho(gain=np.sqrt(2.0), seed=cfg.seed + i))(h)
    policy = keras.layers.Dense(spec.action_dim, name="policy",
                                kernel_initializer=ortho(gain=0.01, seed=cfg.seed + 100))(h)
    if not spec.discrete:
        policy = GaussianLogStd(cfg.init_log_std, name="log_std")(policy)
    value = keras.layers.Dense(1, name="value", kernel_initializer=ortho(gain=1.0, seed=cfg.seed + 200))(h)
    return keras.Model(obs, [policy, value], name="actor_critic")


def param_layout(model: keras.Model) -> list[tuple[str, tuple]]:
    """(variable path, shape) of every weight, in the order of the flat parameter vector."""
    return [(v.path, tuple(v.shape)) for v in model.weights]


def flat_weights(model: keras.Model) -> np.ndarray:
    return np.concatenate([np.asarray(w, np.float32).ravel() for w in model.get_weights()])


def check_default_layout(model: keras.Model, spec: EnvSpec, cfg: Config) -> None:
    """The numpy policy relies on this layout; fail loudly if Keras ever names things differently."""
    got = param_layout(model)
    want = default_layout(spec, cfg.hidden_sizes)
    if got != want:
        raise RuntimeError(f"default model layout {got} differs from the numpy policy's {want}")
