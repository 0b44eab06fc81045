"""Policies as the actors run them: load a flat weight vector, act on a batch of observations.

`NumpyMLPPolicy` runs the default Keras MLP in plain numpy (numpy_cnn.NumpyCNNPolicy the default CNNs, or
litert_cnn.LiteRTCNNPolicy where ai-edge-litert is installed): a TF
call costs ~50x a CartPole step while the numpy forward pass of a 2x64 MLP costs about one, and actors that
never import TensorFlow start faster and use a fraction of the memory. `KerasPolicy` runs any model (a
user's) under TensorFlow, traced once. All expose the same methods, so the actor does not care which it has:

- `act(obs, state, rng, greedy=False, mask=None) -> (actions, log-probs or None, state')`, `value_at(obs, state)`,
  `initial_state(n)` (an empty list for a feed-forward policy), `step(obs, state) -> (greedy action, state')`;
- feed-forward policies also `sample(obs, rng, mask=None)`, `greedy(obs, mask=None)` and `value(obs)` without a
  state.

`mask` [B, A] bool (--action-masks): the actions allowed in each observation; only those are chosen.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from . import distributions as D
from .envs import EnvSpec
from .layout import default_layout, mlp_input, model_kind, normalize_obs, param_layout, unflatten


def make_policy(cfg, spec: EnvSpec, model_fn: Callable | None, *, own_process: bool = False,
                acting: bool = False):
    """The policy actors and evaluation run: the default model in numpy (model_fn None), else the Keras model
    model_fn(spec) in TensorFlow. own_process: this process is an actor's own, so it may set TensorFlow's
    thread counts and devices. acting: an actor's (--actor-precision applies), not evaluation's."""
    if model_fn is None:
        return numpy_policy(spec, cfg, default_layout(spec, cfg), acting)
    from .model_fns import custom_model_name

    return KerasPolicy(spec, model_fn, cfg.actor_threads if own_process else 0, custom_model_name(cfg))


class Policy:
    """What every policy shares (module docstring): `state_sizes` (one [B, size] tensor each; none for a
    feed-forward policy), zeros as the state at an episode's start, and `step` as the greedy `act`."""

    state_sizes: tuple = ()

    def initial_state(self, n: int) -> list[np.ndarray]:
        return [np.zeros((n, size), np.float32) for size in self.state_sizes]

    def step(self, obs, state: list, mask=None):
        """The greedy action and the next state: `action, state = policy.step(obs, state)`."""
        actions, _, state = self.act(obs, state, greedy=True, mask=mask)
        return actions, state


class FeedForward(Policy):
    """The recurrent API for a policy without state, from its sample / greedy / value: the state passes
    through empty."""

    def act(self, obs, state: list, rng=None, greedy: bool = False, mask=None):
        if greedy:
            return self.greedy(obs, mask), None, state
        actions, logp = self.sample(obs, rng, mask)
        return actions, logp, state

    def value_at(self, obs, state: list):
        return self.value(obs)


def numpy_policy(spec: EnvSpec, cfg, layout: list, acting: bool = False):
    """The default model of cfg (`--model`, `--core`) in numpy, reading weights in `layout` order; an actor's
    (`acting`) CNN torso in LiteRT's int8 under --actor-precision int8."""
    if cfg.core == "lstm":
        from .numpy_lstm import NumpyLSTMPolicy

        return NumpyLSTMPolicy(spec, layout, cfg, acting)
    if model_kind(spec, cfg.model) == "mlp":
        return NumpyMLPPolicy(spec, layout, cfg.hidden_sizes, cfg.activation)
    from .litert_cnn import cnn_policy

    return cnn_policy(spec, layout, cfg, acting)


# Each applied in place (out=x) to a layer's fresh pre-activations: an actor's step saves the arrays.
ACTIVATIONS = {"tanh": np.tanh, "relu": lambda x, out: np.maximum(x, 0.0, out=out)}


# The numpy building blocks of the default models (the MLP, numpy_cnn's CNNs and numpy_lstm's core share them).

def mlp_obs(w: dict, obs: np.ndarray) -> np.ndarray:
    """obs [B, *obs_shape] -> [B, obs_dim] float32 as the MLP sees it: flattened, normalized if the weights
    hold the observation normalizer (--normalize-obs)."""
    x = mlp_input(obs)
    return normalize_obs(x, w["obs_norm/mean"], w["obs_norm/var"]) if "obs_norm/mean" in w else x


def mlp_torso(w: dict, x: np.ndarray, prefix: str, n_hidden: int, activation) -> np.ndarray:
    """The dense layers `prefix`_hidden_0 .. n_hidden-1 applied to x [B, D]."""
    for i in range(n_hidden):
        x = x @ w[f"{prefix}_hidden_{i}/kernel"]  # a new array, so the bias and activation go in place
        x += w[f"{prefix}_hidden_{i}/bias"]
        activation(x, out=x)
    return x


def policy_head(w: dict, h: np.ndarray, discrete: bool) -> np.ndarray:
    """features [B, F] -> policy params [B, A] (logits) or [B, 2D] (mean, log_std)."""
    params = h @ w["policy/kernel"] + w["policy/bias"]
    if not discrete:
        params = np.concatenate([params, np.broadcast_to(w["log_std/log_std"], params.shape)], axis=-1)
    return params


def sample_params(params: np.ndarray, spec: EnvSpec, rng, mask=None):
    """-> (actions [B, *spec.action_shape], their log-probs [B]); mask [B, A] bool or None (module)."""
    if spec.action_nvec:
        return D.np_sample_multi(params, spec.action_nvec, rng, mask)
    return D.np_sample_discrete(params, rng, mask) if spec.discrete else D.np_sample_gaussian(params, rng)


def greedy_params(params: np.ndarray, spec: EnvSpec, mask=None) -> np.ndarray:
    """-> the deterministic actions [B, *spec.action_shape]: argmax (of each component, among the allowed ones) or
    the Gaussian mean."""
    return D.np_greedy(params, spec.discrete, spec.action_nvec, mask)


def choose(params: np.ndarray, spec: EnvSpec, rng, greedy: bool, mask=None):
    """-> (actions, log-probs, or None when greedy: argmax / the Gaussian mean)."""
    if greedy:
        return greedy_params(params, spec, mask), None
    return sample_params(params, spec, rng, mask)


class NumpyMLPPolicy(FeedForward):
    def __init__(self, spec: EnvSpec, layout: list, hidden_sizes: tuple, activation: str):
        self.spec = spec
        self.layout = layout
        self.n_hidden = len(hidden_sizes)
        self._activation = ACTIVATIONS[activation]
        self.w: dict[str, np.ndarray] = {}
        self._log_odds = None  # (kernel [F], bias) of l1 - l0 where there are two actions (load)

    def load(self, flat: np.ndarray) -> None:
        self.w = w = dict(zip((p for p, _ in self.layout), unflatten(flat, self.layout)))
        # Two actions (CartPole's) are sampled from the log-odds l1 - l0 alone, so the head is one column: a
        # matrix-vector product instead of the [B, 2] logits and their difference. With the in-place layers,
        # policy.act took 22.5 against 31.9 µs for 64 observations, of an actor's ~100 µs batch step.
        two = self.spec.discrete and not self.spec.action_nvec and w["policy/kernel"].shape[1] == 2
        self._log_odds = (w["policy/kernel"][:, 1] - w["policy/kernel"][:, 0],
                          w["policy/bias"][1] - w["policy/bias"][0]) if two else None

    def _features(self, obs: np.ndarray) -> np.ndarray:
        """obs [B, *obs_shape] -> the policy torso's output [B, F]."""
        return mlp_torso(self.w, mlp_obs(self.w, obs), "pi", self.n_hidden, self._activation)

    def policy_params(self, obs: np.ndarray) -> np.ndarray:
        """obs [B, *obs_shape] -> policy params [B, A] (logits) or [B, 2D] (mean, log_std)."""
        return policy_head(self.w, self._features(obs), self.spec.discrete)

    def value(self, obs: np.ndarray) -> np.ndarray:
        """obs [B, *obs_shape] -> values [B]. Separate from the policy: acting never needs the value torso."""
        w = self.w
        v = mlp_torso(w, mlp_obs(w, obs), "vf", self.n_hidden, self._activation)
        return (v @ w["value/kernel"] + w["value/bias"])[:, 0]

    def sample(self, obs: np.ndarray, rng: np.random.Generator, mask=None):
        """obs [B, *obs_shape] -> (actions [B] or [B, D], behaviour log-probs [B])."""
        if self._log_odds is None or mask is not None:
            return sample_params(self.policy_params(obs), self.spec, rng, mask)
        kernel, bias = self._log_odds
        return D.np_sample_log_odds(self._features(obs) @ kernel + bias, rng)

    def greedy(self, obs: np.ndarray, mask=None) -> np.ndarray:
        return greedy_params(self.policy_params(obs), self.spec, mask)


class KerasPolicy(FeedForward):
    """Runs an arbitrary Keras model in the actor; costs a TensorFlow import and ~0.4 ms per call. A model
    with `state_sizes` (model.py's recurrent contract) is stepped with its state.

    threads: in an actor's own process, its TensorFlow's thread count (>= 1, and the GPUs are hidden); 0 in a
    process shared with others (serial mode, the learner's checks, evaluation), whose settings stay as they are."""

    def __init__(self, spec: EnvSpec, model_fn: Callable, threads: int, name: str = "model_fn"):
        """name: how an error in model_fn names it (model_fns.custom_model_name)."""
        from .model_fns import built_by
        from .tf_start import tf_notices_filtered

        # TensorFlow's C++ start-up notices (oneDNN, no CUDA driver, a failed cuInit) came from every actor process
        # that runs TensorFlow, ~7 lines each; they are filtered here as in the learner.
        with tf_notices_filtered():
            import tensorflow as tf

            if threads:
                tf.config.threading.set_intra_op_parallelism_threads(threads)
                tf.config.threading.set_inter_op_parallelism_threads(threads)
                # An actor runs its model on the CPU: TensorFlow would otherwise give each actor process a context
                # on every GPU and reserve nearly all of its memory, so with a GPU the second actor (or the learner)
                # runs out of it. Must come before the model's first op; a CPU-only machine lists no GPU to hide.
                tf.config.set_visible_devices([], "GPU")
            self.spec = spec
            self.model = built_by(model_fn, spec, name)  # its first op starts the runtime (the rest of the notices)
        self.state_sizes = tuple(getattr(self.model, "state_sizes", ()))
        self._forward, self._assign = _compiled_calls(self.model, spec, self.state_sizes)
        self._size = sum(int(np.prod(v.shape)) for v in self.model.weights)

    def load(self, flat: np.ndarray) -> None:
        if self._assign is None:
            self.model.set_weights(unflatten(flat, param_layout(self.model)))
            return
        if flat.size != self._size:
            raise ValueError(f"flat vector has {flat.size} floats, layout needs {self._size}")
        self._assign(np.asarray(flat, np.float32))

    def forward(self, obs: np.ndarray, state: list = ()):
        """obs [B, *obs_shape] in the env's dtype (the model casts) -> (params [B, P], values [B], state')."""
        out = self._forward(np.asarray(obs, self.spec.obs_dtype), *state)
        return out[0].numpy(), np.reshape(out[1].numpy(), (-1,)), [s.numpy() for s in out[2:]]

    def act(self, obs, state: list, rng=None, greedy: bool = False, mask=None):
        params, _, state = self.forward(obs, state)
        return (*choose(params, self.spec, rng, greedy, mask), state)

    def value_at(self, obs, state: list):
        return self.forward(obs, state)[1]

    def sample(self, obs, rng, mask=None):
        return sample_params(self.forward(obs)[0], self.spec, rng, mask)

    def greedy(self, obs, mask=None):
        return greedy_params(self.forward(obs)[0], self.spec, mask)

    def value(self, obs):
        return self.forward(obs)[1]


def _compiled_calls(model, spec: EnvSpec, state_sizes: tuple):
    """(forward(obs, *state) -> [params, value, *state'], assign(flat) or None) for KerasPolicy: the model's call
    and a weight version's assignment, each traced once with a fixed signature and called through its concrete
    function's flat entry (tf_calls.flat_caller) with its inputs made as eager tensors directly. tf.function's
    per-call dispatch was most of an actor's step: a 32-unit MLP at batch 32 took 550-640 µs a call and
    set_weights 640-720 µs a version, against 260-300 and 220-350 µs this way (2-core Intel Xeon, one thread).
    A model whose weights are not all float32 loads through set_weights; one that cannot be traced for a batch of
    any size (Python code reading the batch dimension) runs under a plain tf.function, traced per batch size."""
    import tensorflow as tf

    from .tf_calls import flat_caller, to_tensor

    def call_model(obs, *state):
        return model([obs, *state] if state_sizes else obs, training=False)

    obs_spec = tf.TensorSpec([None, *spec.obs_shape], tf.as_dtype(spec.obs_dtype))
    state_specs = [tf.TensorSpec([None, n], tf.float32) for n in state_sizes]
    try:
        call = flat_caller(tf.function(call_model, input_signature=[obs_spec, *state_specs],
                                       autograph=False).get_concrete_function())
    except Exception:  # noqa: BLE001 - any failure to trace for a free batch size: the dispatching call
        slow = tf.function(call_model)  # traced per batch size: an actor has one

        def forward(obs: np.ndarray, *state):
            out = slow(obs, *state)
            return list(out) if isinstance(out, (list, tuple)) else [out]
    else:
        def forward(obs: np.ndarray, *state):
            return call(to_tensor(obs), *(to_tensor(np.asarray(s, np.float32)) for s in state))

    variables = list(model.weights)
    if any(v.dtype != "float32" for v in variables):
        return forward, None
    shapes = [tuple(v.shape) for v in variables]
    sizes = [int(np.prod(s)) for s in shapes]

    def assign_all(flat):
        for v, part, shape in zip(variables, tf.split(flat, sizes), shapes):
            v.assign(tf.reshape(part, shape))
        return tf.constant(0)

    assign = flat_caller(tf.function(assign_all, input_signature=[tf.TensorSpec([sum(sizes)], tf.float32)],
                                     autograph=False).get_concrete_function())
    return forward, lambda flat: assign(to_tensor(flat))
