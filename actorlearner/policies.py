"""Policies as the actors run them: load a flat weight vector, act on a batch of observations.

`NumpyMLPPolicy` runs the default Keras MLP in plain numpy: a TF call costs ~50x a CartPole step while
the numpy forward pass of a 2x64 MLP costs about one, and actors that never import TensorFlow start
faster and use a fraction of the memory. `KerasPolicy` runs any model (a user's) under `tf.function`.
Both expose the same methods (load, sample, greedy, value), so the actor does not care which it has.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from . import distributions as D
from .envs import EnvSpec

def unflatten(flat: np.ndarray, layout: list[tuple[str, tuple]]) -> list[np.ndarray]:
    """Views (no copies) into `flat`, one per entry of `layout`."""
    out, i = [], 0
    for _, shape in layout:
        n = int(np.prod(shape))
        out.append(flat[i:i + n].reshape(shape))
        i += n
    if i != flat.size:
        raise ValueError(f"flat vector has {flat.size} floats, layout needs {i}")
    return out



# The observation normalizer's variables (model.ObsNormalizer), when --normalize-obs is on.
OBS_NORM = (("obs_norm/mean", "obs"), ("obs_norm/var", "obs"), ("obs_norm/count", 1))
OBS_CLIP = 10.0  # normalized observations are clipped to +-10 (a rare outlier cannot swamp the torso)


def normalize_obs(obs: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """obs [B, obs_dim] -> clip((obs - mean) / sqrt(var + 1e-8), -10, 10), the same as ObsNormalizer."""
    return np.clip((obs - mean) / np.sqrt(var + 1e-8), -OBS_CLIP, OBS_CLIP).astype(np.float32)


def merge_moments(count: float, mean: np.ndarray, var: np.ndarray, batch: np.ndarray):
    """Running (count, mean, population var) updated with `batch` [N, d] (Chan et al.'s parallel merge),
    so the statistics are exactly those of all observations seen, in any order of batches."""
    n = batch.shape[0]
    if n == 0:
        return count, mean, var
    b_mean, b_var = batch.mean(axis=0), batch.var(axis=0)
    total = count + n
    delta = b_mean - mean
    new_mean = mean + delta * (n / total)
    m2 = var * count + b_var * n + delta ** 2 * (count * n / total)
    return total, new_mean, m2 / total


def default_layout(spec: EnvSpec, hidden_sizes: tuple, normalize: bool = False) -> list[tuple[str, tuple]]:
    """(path, shape) of the default model's weights in Keras's order (see model.build_default_model),
    known without importing TensorFlow, so actors can start before the learner pays for its import.
    normalize: the model starts with the observation normalizer (--normalize-obs)."""

    def torso(prefix):
        layers, prev = [], spec.obs_dim
        for i, width in enumerate(hidden_sizes):
            layers += [(f"{prefix}_hidden_{i}/kernel", (prev, int(width))), (f"{prefix}_hidden_{i}/bias", (int(width),))]
            prev = int(width)
        return layers, prev

    pi, prev = torso("pi")
    vf, _ = torso("vf")
    head = [("policy/kernel", (prev, spec.action_dim)), ("policy/bias", (spec.action_dim,))]
    if not spec.discrete:
        head += [("log_std/log_std", (spec.action_dim,))]
    norm = [(path, (spec.obs_dim,) if size == "obs" else (size,)) for path, size in OBS_NORM] if normalize else []
    return norm + pi + head + vf + [("value/kernel", (prev, 1)), ("value/bias", (1,))]


def layout_size(layout: list[tuple[str, tuple]]) -> int:
    return int(sum(np.prod(shape) for _, shape in layout))


_ACTIVATIONS = {"tanh": np.tanh, "relu": lambda x: np.maximum(x, 0.0)}


class NumpyMLPPolicy:
    def __init__(self, spec: EnvSpec, layout: list, hidden_sizes: tuple, activation: str):
        self.spec = spec
        self.layout = layout
        self.n_hidden = len(hidden_sizes)
        self._activation = _ACTIVATIONS[activation]
        self.w: dict[str, np.ndarray] = {}

    def load(self, flat: np.ndarray) -> None:
        self.w = dict(zip((p for p, _ in self.layout), unflatten(flat, self.layout)))

    def _input(self, obs: np.ndarray) -> np.ndarray:
        w = self.w
        if "obs_norm/mean" in w:
            return normalize_obs(obs, w["obs_norm/mean"], w["obs_norm/var"])
        return obs

    def policy_params(self, obs: np.ndarray) -> np.ndarray:
        """obs [B, obs_dim] float32 -> policy params [B, A] (logits) or [B, 2D] (mean, log_std)."""
        w = self.w
        h = self._input(obs)
        for i in range(self.n_hidden):
            h = self._activation(h @ w[f"pi_hidden_{i}/kernel"] + w[f"pi_hidden_{i}/bias"])
        params = h @ w["policy/kernel"] + w["policy/bias"]
        if not self.spec.discrete:
            params = np.concatenate([params, np.broadcast_to(w["log_std/log_std"], params.shape)], axis=-1)
        return params

    def value(self, obs: np.ndarray) -> np.ndarray:
        """obs [B, obs_dim] -> values [B]. Separate from the policy: acting never needs the value torso."""
        w = self.w
        v = self._input(obs)
        for i in range(self.n_hidden):
            v = self._activation(v @ w[f"vf_hidden_{i}/kernel"] + w[f"vf_hidden_{i}/bias"])
        return (v @ w["value/kernel"] + w["value/bias"])[:, 0]

    def forward(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """obs [B, obs_dim] -> (policy params, values [B])."""
        return self.policy_params(obs), self.value(obs)

    def sample(self, obs: np.ndarray, rng: np.random.Generator):
        """obs [B, obs_dim] -> (actions [B] or [B, D], behaviour log-probs [B])."""
        return _sample(self.policy_params(obs), self.spec.discrete, rng)

    def greedy(self, obs: np.ndarray) -> np.ndarray:
        return D.np_greedy(self.policy_params(obs), self.spec.discrete)


class KerasPolicy:
    """Runs an arbitrary Keras model in the actor; costs a TensorFlow import and ~0.4 ms per call."""

    def __init__(self, spec: EnvSpec, model_fn: Callable, threads: int):
        import tensorflow as tf

        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        self.spec = spec
        self.model = model_fn(spec)
        self._fwd = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)

    def load(self, flat: np.ndarray) -> None:
        from .model import param_layout

        self.model.set_weights(unflatten(flat, param_layout(self.model)))

    def forward(self, obs: np.ndarray):
        params, value = self._fwd(obs.astype(np.float32))
        return params.numpy(), np.reshape(value.numpy(), (-1,))

    def sample(self, obs, rng):
        return _sample(self.forward(obs)[0], self.spec.discrete, rng)

    def greedy(self, obs):
        return D.np_greedy(self.forward(obs)[0], self.spec.discrete)

    def value(self, obs):
        return self.forward(obs)[1]


def _sample(params, discrete, rng):
    return D.np_sample_discrete(params, rng) if discrete else D.np_sample_gaussian(params, rng)
