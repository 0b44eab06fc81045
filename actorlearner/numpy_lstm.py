"""The default models with `--core lstm` in plain numpy, so actors carry recurrent state without TensorFlow.

The torso (the MLP's shared `torso_hidden_i` layers, or a CNN's) feeds Keras's LSTMCell, whose output feeds
both heads. `lstm_step` is Keras's cell written out; `tests/test_lstm.py` holds it to the Keras model over
whole unrolls that cross episode boundaries.
"""

from __future__ import annotations

import numpy as np

from . import distributions as D
from .layout import Layout, mlp_input, model_kind, normalize_obs, unflatten


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)  # exact, and no overflow warning for large |x|


def lstm_step(x: np.ndarray, h: np.ndarray, c: np.ndarray, kernel: np.ndarray, recurrent_kernel: np.ndarray,
              bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x [B, D], h and c [B, N]; kernel [D, 4N], recurrent_kernel [N, 4N], bias [4N] -> (h', c') [B, N].
    Keras's LSTMCell: z = x K + h R + b split into gates (i, f, g, o); c' = sig(f) c + sig(i) tanh(g);
    h' = sig(o) tanh(c')."""
    n = h.shape[1]
    z = x @ kernel + h @ recurrent_kernel + bias
    c2 = _sigmoid(z[:, n:2 * n]) * c + _sigmoid(z[:, :n]) * np.tanh(z[:, 2 * n:3 * n])
    return _sigmoid(z[:, 3 * n:]) * np.tanh(c2), c2


_ACTIVATIONS = {"tanh": np.tanh, "relu": lambda x: np.maximum(x, 0.0)}


class NumpyLSTMPolicy:
    """torso -> LSTM -> heads with the weights of a flat vector. The recurrent policy API (policies.py):
    initial_state, act, step, value_at; state is [h, c], each [B, core_size]."""

    recurrent = True

    def __init__(self, spec, layout: Layout, cfg):
        self.spec = spec
        self.layout = layout
        self.kind = model_kind(spec, cfg.model)
        self.n_hidden = len(cfg.hidden_sizes)
        self._activation = _ACTIVATIONS[cfg.activation]
        self.state_sizes = (cfg.core_size, cfg.core_size)
        self._cnn = None
        if self.kind != "mlp":
            from .numpy_cnn import NumpyCNNPolicy

            self._cnn = NumpyCNNPolicy(spec, layout, cfg.model)
        self.w: dict[str, np.ndarray] = {}

    def load(self, flat: np.ndarray) -> None:
        self.w = dict(zip((p for p, _ in self.layout), unflatten(flat, self.layout)))
        if self._cnn is not None:
            self._cnn.load(flat)

    def initial_state(self, n: int) -> list[np.ndarray]:
        return [np.zeros((n, size), np.float32) for size in self.state_sizes]

    def _features(self, obs: np.ndarray) -> np.ndarray:
        if self._cnn is not None:
            return self._cnn.features(obs)
        w, x = self.w, mlp_input(obs)
        if "obs_norm/mean" in w:
            x = normalize_obs(x, w["obs_norm/mean"], w["obs_norm/var"])
        for i in range(self.n_hidden):
            x = self._activation(x @ w[f"torso_hidden_{i}/kernel"] + w[f"torso_hidden_{i}/bias"])
        return x

    def core(self, obs: np.ndarray, state: list) -> list[np.ndarray]:
        """obs [B, *obs_shape], state [h, c] -> the state after this step (h is the heads' input)."""
        w = self.w
        return list(lstm_step(self._features(obs), state[0], state[1], w["core/kernel"],
                              w["core/recurrent_kernel"], w["core/bias"]))

    def _params(self, h: np.ndarray) -> np.ndarray:
        params = h @ self.w["policy/kernel"] + self.w["policy/bias"]
        if not self.spec.discrete:
            params = np.concatenate([params, np.broadcast_to(self.w["log_std/log_std"], params.shape)], axis=-1)
        return params

    def forward(self, obs: np.ndarray, state: list) -> tuple[np.ndarray, np.ndarray, list]:
        """-> (params [B, P], values [B], new state)."""
        state = self.core(obs, state)
        value = (state[0] @ self.w["value/kernel"] + self.w["value/bias"])[:, 0]
        return self._params(state[0]), value, state

    def act(self, obs: np.ndarray, state: list, rng=None, greedy: bool = False):
        """-> (actions, behaviour log-probs or None if greedy, new state)."""
        state = self.core(obs, state)
        params = self._params(state[0])
        if greedy:
            return D.np_greedy(params, self.spec.discrete), None, state
        actions, logp = (D.np_sample_discrete(params, rng) if self.spec.discrete
                         else D.np_sample_gaussian(params, rng))
        return actions, logp, state

    def step(self, obs: np.ndarray, state: list):
        """The greedy action and the new state: `action, state = policy.step(obs, state)`."""
        actions, _, state = self.act(obs, state, greedy=True)
        return actions, state

    def value_at(self, obs: np.ndarray, state: list) -> np.ndarray:
        """values [B] of obs reached from `state` (the core is stepped on obs first)."""
        return self.forward(obs, state)[1]
