"""The default models with `--core lstm` in plain numpy, so actors carry recurrent state without TensorFlow.

The torso (the MLP's shared `torso_hidden_i` layers, or a CNN's) feeds Keras's LSTMCell, whose output feeds
both heads. `lstm_step` is Keras's cell written out; `tests/test_lstm.py` holds it to the Keras model over
whole unrolls that cross episode boundaries.
"""

from __future__ import annotations

import numpy as np

from .layout import Layout, model_kind, unflatten
from .policies import ACTIVATIONS, Policy, choose, mlp_obs, mlp_torso, policy_head


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


class NumpyLSTMPolicy(Policy):
    """torso -> LSTM -> heads with the weights of a flat vector. The recurrent policy API (policies.py):
    initial_state, act, step, value_at; state is [h, c], each [B, core_size]."""

    def __init__(self, spec, layout: Layout, cfg, acting: bool = False):
        self.spec = spec
        self.layout = layout
        self.kind = model_kind(spec, cfg.model)
        self.n_hidden = len(cfg.hidden_sizes)
        self._activation = ACTIVATIONS[cfg.activation]
        self.state_sizes = (cfg.core_size, cfg.core_size)
        self._cnn = None
        if self.kind != "mlp":
            from .litert_cnn import cnn_policy

            self._cnn = cnn_policy(spec, layout, cfg, acting)
        self.w: dict[str, np.ndarray] = {}

    def load(self, flat: np.ndarray) -> None:
        self.w = dict(zip((p for p, _ in self.layout), unflatten(flat, self.layout)))
        if self._cnn is not None:
            self._cnn.load(flat)

    def _features(self, obs: np.ndarray) -> np.ndarray:
        if self._cnn is not None:
            return self._cnn.features(obs)
        return mlp_torso(self.w, mlp_obs(self.w, obs), "torso", self.n_hidden, self._activation)

    def core(self, obs: np.ndarray, state: list) -> list[np.ndarray]:
        """obs [B, *obs_shape], state [h, c] -> the state after this step (h is the heads' input)."""
        w = self.w
        return list(lstm_step(self._features(obs), state[0], state[1], w["core/kernel"],
                              w["core/recurrent_kernel"], w["core/bias"]))

    def forward(self, obs: np.ndarray, state: list) -> tuple[np.ndarray, np.ndarray, list]:
        """-> (params [B, P], values [B], new state)."""
        state = self.core(obs, state)
        value = (state[0] @ self.w["value/kernel"] + self.w["value/bias"])[:, 0]
        return policy_head(self.w, state[0], self.spec.discrete), value, state

    def act(self, obs: np.ndarray, state: list, rng=None, greedy: bool = False, mask=None):
        """-> (actions, behaviour log-probs or None if greedy, new state)."""
        state = self.core(obs, state)
        return (*choose(policy_head(self.w, state[0], self.spec.discrete), self.spec, rng, greedy, mask), state)

    def value_at(self, obs: np.ndarray, state: list) -> np.ndarray:
        """values [B] of obs reached from `state` (the core is stepped on obs first)."""
        return self.forward(obs, state)[1]
