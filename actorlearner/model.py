"""The Keras 3 actor-critic: the model contract, the default MLP, and how the learner applies a model.

The contract (a user's `model_fn(spec: EnvSpec) -> keras.Model` follows it too):

- Feed-forward (the default): `model(obs[N, *spec.obs_shape]) -> (params[N, P], value[N, 1] or [N])`, obs in
  the env's dtype (`spec.obs_dtype`: uint8 images stay uint8, the model casts and scales). params are `[N, A]`
  logits (Discrete) or `[N, 2*D]` = concat(mean, log_std) (Box).
- Recurrent: a model with a `state_sizes` attribute (a tuple of ints, one per state tensor `[B, size]`),
  called one step at a time as `model([obs_t[B, *obs_shape], *state]) -> [params[B, P], value[B, 1], *state']`.
  Its state starts at zeros and is reset to zeros where an episode starts. It may also have an `unroll`
  attribute, a function with `apply_time_major`'s arguments and result that the learner then uses instead
  of stepping the model (the default LSTM model has one: same result, fewer graph ops).

The learner always goes through `apply_time_major`: time-major observations `[T, B, *obs_shape]`, the
episode-start flags `first[T, B]` and, for a recurrent model, the state at the first step; a feed-forward
model is the stateless case (time and batch folded into one axis, one call).

The default models' layers are named (MLP: `pi_hidden_i`, `vf_hidden_i`; CNN: those of `layout.cnn_layers`
and `torso`; both: `policy`, `log_std`, `value`) so that `policies.NumpyMLPPolicy` and `numpy_cnn.NumpyCNNPolicy`
can run them in actors without TensorFlow, reading the weights in the order of `layout.default_layout`.
"""

from __future__ import annotations

import functools

import numpy as np
import keras

import tensorflow as tf

from .config import Config
from .envs import EnvSpec
from .layout import CNN_WIDTH, OBS_CLIP, cnn_layers, model_kind
from .losses import first_rows


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


@keras.saving.register_keras_serializable(package="actorlearner")
class HeadDense(keras.layers.Dense):
    """A head's Dense layer (a few outputs, no activation) whose kernel gradient is computed as (g^T x)^T
    rather than x^T g, the same product.

    TensorFlow's Eigen MatMul is slow on x^T g when g has one or two columns: the MLP's policy head at the
    default batch, [64 x 1,344] @ [1,344 x 2], took 150-210 µs against 40-110 µs the other way round (2-core
    AVX2-only AMD EPYC, which runs the MLP without oneDNN), and the CartPole learner step 2.19 against 2.28 ms
    (medians of 12 alternated blocks in one process). Same weights, paths and outputs as keras.layers.Dense;
    only the learner's call (training=True) takes this route."""

    def __init__(self, units: int, **kw):
        super().__init__(units, **kw)
        if self.activation is not keras.activations.linear or not self.use_bias:
            raise ValueError("HeadDense is linear with a bias")

    def call(self, x, training=None):
        if not training:  # inference (actors, evaluation, export: TFLite's converter drops a custom gradient's graph)
            return super().call(x)

        @tf.custom_gradient
        def dense(x, kernel, bias):
            def grad(g):
                return (tf.matmul(g, kernel, transpose_b=True), tf.transpose(tf.matmul(g, x, transpose_a=True)),
                        tf.reduce_sum(g, axis=0))

            return tf.matmul(x, kernel) + bias, grad

        return dense(x, tf.convert_to_tensor(self.kernel), tf.convert_to_tensor(self.bias))


@keras.saving.register_keras_serializable(package="actorlearner")
class ObsToFloat(keras.layers.Layer):
    """obs [B, *obs_shape] -> [B, obs_dim] float32: flattened, uint8 images scaled to [0, 1] (in-graph, so
    observations travel as uint8). No weights; policies.mlp_input is its numpy twin."""

    def call(self, x):
        scale = 1.0 / 255.0 if x.dtype == "uint8" else 1.0
        x = keras.ops.cast(x, "float32") * scale
        return keras.ops.reshape(x, (-1, int(np.prod(x.shape[1:]))))


def build_default_model(spec: EnvSpec, cfg: Config, precision: str = "float32") -> keras.Model:
    """The default model of `--model` (layout.model_kind): the MLP or one of IMPALA's CNNs, with the LSTM
    core of `--core lstm` between torso and heads.

    precision: "bfloat16" computes a CNN torso in bfloat16 (Keras' mixed_bfloat16: float32 variables, so
    the weights' paths, shapes and dtypes are the float32 model's) and casts its features to float32 for
    the core and heads; the learner's choice (precision.py). Actors, evaluation and export use float32."""
    if precision not in ("float32", "bfloat16"):
        raise ValueError(f"precision must be float32 or bfloat16, got {precision!r}")
    kind = model_kind(spec, cfg.model)
    if kind == "impala-deep" or (kind == "mlp" and cfg.core != "lstm" and not _fused_mlp_here()):
        _without_grappler_remapper()
    keras.utils.set_random_seed(cfg.seed)
    inputs = keras.Input(spec.obs_shape, dtype=spec.obs_dtype, name="obs")
    if cfg.core == "lstm":
        return _recurrent(spec, cfg, kind, inputs, precision)
    if kind != "mlp":
        x = _cnn_torso(spec, cfg, kind, inputs, precision)
        policy, value = _heads(spec, cfg, x, x)
        return keras.Model(inputs, [policy, value], name=f"actor_critic_{kind}")
    # Two MLP torsos, one per head: with a shared torso the value loss (returns in the hundreds) swamps the
    # policy's features and the policy collapses at the learning rates that make IMPALA fast.
    obs = _mlp_input(spec, cfg, inputs)
    policy, value = _heads(spec, cfg, _mlp_torso(cfg, obs, "pi", cfg.seed), _mlp_torso(cfg, obs, "vf", cfg.seed + 50))
    model = keras.Model(inputs, [policy, value], name="actor_critic")
    # A function, not a layer attribute, so Keras does not track the two towers as a second copy of its layers.
    model.unroll_heads = functools.partial(_towers_unroll, keras.Model(inputs, policy), keras.Model(inputs, value))
    return model


def _towers_unroll(policy_net, value_net, obs, training: bool = True):
    """The default MLP over a time-major unroll obs [T+1, B, *obs_shape], for the learner: (params [T, B, P],
    values [T+1, B]). Its policy tower skips the bootstrap row, whose params the learner never reads (the value
    tower does not): 1/(T+1) of that tower's work, forward and backward, and no slice and pad of the params."""
    T = obs.shape[0] - 1
    B = tf.shape(obs)[1]
    params = policy_net(fold_time(first_rows(obs)), training=training)
    values = value_net(fold_time(obs), training=training)
    return tf.reshape(params, [T, B, -1]), tf.reshape(values, [T + 1, B])


def _recurrent(spec: EnvSpec, cfg: Config, kind: str, inputs, precision: str) -> keras.Model:
    """torso -> LSTM cell -> both heads, called one step at a time as `model([obs, h, c]) -> [params, value,
    h', c']` (model.py's recurrent contract). One torso for both heads: the core's state is one."""
    n = cfg.core_size
    h_in, c_in = keras.Input((n,), name="core_h"), keras.Input((n,), name="core_c")
    if kind == "mlp":
        x = _mlp_torso(cfg, _mlp_input(spec, cfg, inputs), "torso", cfg.seed)
    else:
        x = _cnn_torso(spec, cfg, kind, inputs, precision)
    torso = keras.Model(inputs, x, name="torso_part")  # the same layers (no new weights), for `unroll`
    cell = keras.layers.LSTMCell(n, name="core", seed=cfg.seed + 70)
    out, (h, c) = cell(x, [h_in, c_in])
    policy, value = _heads(spec, cfg, out, out)
    model = keras.Model([inputs, h_in, c_in], [policy, value, h, c], name=f"actor_critic_{kind}_lstm")
    model.state_sizes = (n, n)
    # A function, not a layer attribute, so Keras does not track the torso as a second copy of its layers.
    policy_layers = [model.get_layer("policy")] + ([] if spec.discrete else [model.get_layer("log_std")])
    model.unroll = functools.partial(_lstm_unroll, torso, cell, policy_layers, model.get_layer("value"))
    return model


def _lstm_unroll(torso, cell, policy_layers, value_layer, obs, first, state, training: bool = True):
    """The default recurrent model over a time-major unroll, as `apply_time_major` (same arguments and
    result) in half the graph ops of stepping the whole model T times: the torso, the cell's input
    projection and the heads run once on all T*B observations, and only the recurrence h R is stepped.
    `tests/test_lstm.py` holds it to the stepped model, values and gradients."""
    T, B, n = obs.shape[0], tf.shape(obs)[1], cell.units
    x = torso(fold_time(obs), training=training)
    # unstack, not xw[t]: each slice's gradient would be a zero-filled [T, B, 4n] tensor, summed T times.
    xw = tf.unstack(tf.reshape(tf.matmul(x, cell.kernel) + cell.bias, [T, B, 4 * n]))
    keep = tf.unstack(1.0 - tf.cast(first, tf.float32)[:, :, None])
    h, c = state if state is not None else (tf.zeros([B, n]), tf.zeros([B, n]))
    recurrent = tf.convert_to_tensor(cell.recurrent_kernel)  # read once, not once a step
    outs = []
    for t in range(T):  # Keras's LSTMCell: gates (i, f, g, o), sigmoid and tanh
        h, c = h * keep[t], c * keep[t]
        z_i, z_f, z_g, z_o = tf.split(xw[t] + tf.matmul(h, recurrent), 4, axis=1)
        c = tf.sigmoid(z_f) * c + tf.sigmoid(z_i) * tf.tanh(z_g)
        o = tf.sigmoid(z_o)
        h = o * tf.tanh(c)
        outs.append(h)
    feats = tf.reshape(tf.stack(outs), [T * B, n])
    params = feats
    for layer in policy_layers:
        params = layer(params, training=training)
    values = value_layer(feats, training=training)
    return tf.reshape(params, [T, B, -1]), tf.reshape(values, [T, B]), [h, c]


def _init(cfg: Config, gain: float, seed: int):
    """Orthogonal (a small gain on the policy head, so the starting policy is near uniform or near zero
    mean), or Glorot uniform with --no-orthogonal-init."""
    if cfg.orthogonal_init:
        return keras.initializers.Orthogonal(gain=gain, seed=seed)
    return keras.initializers.GlorotUniform(seed=seed)


def _heads(spec: EnvSpec, cfg: Config, pi_features, vf_features):
    """The policy head (logits, or Gaussian mean and log std) and the value head."""
    policy = HeadDense(spec.action_dim, name="policy", kernel_initializer=_init(cfg, 0.01, cfg.seed + 100))(pi_features)
    if not spec.discrete:
        policy = GaussianLogStd(cfg.init_log_std, name="log_std")(policy)
    value = HeadDense(1, name="value", kernel_initializer=_init(cfg, 1.0, cfg.seed + 200))(vf_features)
    return policy, value


def _fused_mlp_here() -> bool:
    """precision.fuse_mlp_layers for this process's CPU and TensorFlow."""
    from .precision import cpuinfo_field, fuse_mlp_layers
    from .tf_start import onednn_in_use

    return fuse_mlp_layers(cpuinfo_field("vendor_id"), onednn_in_use())


def _without_grappler_remapper() -> None:
    """Turns Grappler's remapper off in this process (for every graph it optimizes from now on: a process that
    builds one of these models and then a CNN of its own runs that CNN's layers unfused too).

    The deep net: on its residual blocks the remapper fails (TF 2.21: it fuses an Add into the conv before it and
    the ReLU after it, though the next block's Add reads it too) and prints `E0000 ... remapper failed:
    INVALID_ARGUMENT: Mutation::Apply error` on every run; the function is then optimized without it anyway. The
    learner's step measured as fast either way (Pong, 2 cores, 3 alternated pairs: 101, 106 and 101 against 95,
    99 and 104 samples/s).
    The feed-forward MLP on an AMD CPU with oneDNN (precision.fuse_mlp_layers): the remapper fuses each layer's
    MatMul, BiasAdd and tanh into one oneDNN kernel whose tanh post-op costs ~50 µs a 1,344 x 64 layer there,
    against ~20-30 µs for TensorFlow's own Tanh kernel. The default CartPole learner batch took 1.56-1.58
    against 1.63-1.67 ms without it (2-core AMD EPYC VM, 3 alternated process pairs); with ReLU 1.47-1.48
    against 1.49-1.50."""
    import tensorflow as tf

    tf.config.optimizer.set_experimental_options({"remapping": False})


def _cnn_torso(spec: EnvSpec, cfg: Config, kind: str, inputs, precision: str = "float32"):
    """IMPALA's CNN (layout.cnn_layers: shallow or deep) and a dense layer of 256. Shared by the heads, as in
    IMPALA: on Atari the clipped rewards keep the value loss from swamping the policy's features. uint8
    images are scaled to [0, 1] in-graph, so they travel as uint8. The features are float32 whatever the
    torso computes in (precision, see build_default_model)."""
    dtype = "mixed_bfloat16" if precision == "bfloat16" else None  # None: Keras' default, float32
    x = keras.layers.Rescaling(1.0 / 255.0 if spec.obs_dtype == "uint8" else 1.0, name="scale", dtype=dtype)(inputs)
    res_in = {}
    for i, (op, name, filters, k, stride, pad) in enumerate(cnn_layers(kind)):
        if op == "conv":
            # In the shallow net every conv is followed by a ReLU; in the deep one ReLUs come before the
            # residual convs (pre-activation), as in the paper's figure.
            act = "relu" if kind == "impala-shallow" else None
            if kind == "impala-deep" and name.endswith(("_c0", "_c1")):
                x = keras.layers.ReLU(name=f"{name}_relu", dtype=dtype)(x)
            x = keras.layers.Conv2D(filters, k, stride, pad, activation=act, name=name, dtype=dtype,
                                    kernel_initializer=_init(cfg, np.sqrt(2.0), cfg.seed + i))(x)
        elif op == "pool":
            x = keras.layers.MaxPooling2D(k, stride, pad, name=name, dtype=dtype)(x)
        elif op == "res_start":
            res_in[name] = x
        else:
            x = keras.layers.Add(name=f"{name}_add", dtype=dtype)([res_in.pop(name), x])
    if kind == "impala-deep":
        x = keras.layers.ReLU(name="torso_in_relu", dtype=dtype)(x)
    x = keras.layers.Flatten(name="flatten", dtype=dtype)(x)
    x = keras.layers.Dense(CNN_WIDTH, activation="relu", name="torso", dtype=dtype,
                           kernel_initializer=_init(cfg, np.sqrt(2.0), cfg.seed + 90))(x)
    if dtype is None:
        return x
    return keras.layers.Activation("linear", name="torso_float32", dtype="float32")(x)  # Keras casts the input


def _mlp_input(spec: EnvSpec, cfg: Config, inputs):
    """The observation as the MLP sees it: flattened (uint8 scaled), normalized with --normalize-obs."""
    flat = ObsToFloat(name="obs_to_float")(inputs) if len(spec.obs_shape) > 1 or spec.obs_dtype != "float32" \
        else inputs
    return ObsNormalizer(name="obs_norm")(flat) if cfg.normalize_obs else flat


def _mlp_torso(cfg: Config, obs, prefix: str, seed: int):
    h = obs
    for i, width in enumerate(cfg.hidden_sizes):
        h = keras.layers.Dense(int(width), activation=cfg.activation, name=f"{prefix}_hidden_{i}",
                               kernel_initializer=_init(cfg, np.sqrt(2.0), seed + i))(h)
    return h


def check_contract(model, spec: EnvSpec) -> None:
    """Raises ConfigError, one line, where a user's model breaks the contract (module docstring): not a Keras
    model, not callable on observations of the env's shape and dtype, or outputs of other shapes than the
    action space needs. Called once on a batch of two zero observations before anything starts. Without it,
    logits of the wrong width trained on (the actors sampled actions the env does not have), and the other
    faults surfaced in the learner's graph as errors about symbolic tensors or reshapes."""
    from .config import ConfigError

    if not isinstance(model, keras.Model):
        raise ConfigError(f"model_fn must return a keras.Model, got {type(model).__name__}")
    n, sizes = 2, tuple(getattr(model, "state_sizes", ()))
    obs = np.zeros((n, *spec.obs_shape), spec.obs_dtype)
    state = [np.zeros((n, int(size)), np.float32) for size in sizes]
    want = 2 + len(sizes)
    try:
        out = model([obs, *state] if is_recurrent(model) else obs, training=False)
    except Exception as e:  # noqa: BLE001 - a user's model may fail in any way; say where, in one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ConfigError(f"model_fn's model fails on observations [{n}, {', '.join(map(str, spec.obs_shape))}] "
                          f"{spec.obs_dtype}{' and its state' if sizes else ''}: {type(e).__name__}: {first}") from None
    outputs = list(out) if isinstance(out, (list, tuple)) else [out]
    if len(outputs) != want:
        what = "(policy params, value, *state')" if sizes else "(policy params, value)"
        raise ConfigError(f"model_fn's model returns {len(outputs)} output{'s' if len(outputs) != 1 else ''}, "
                          f"the contract {want}: {what}")
    width = spec.action_dim if spec.discrete else 2 * spec.action_dim
    params_shape, value_shape = tuple(outputs[0].shape), tuple(outputs[1].shape)
    if params_shape != (n, width):
        need = (f"{width} values for its {spec.action_dim}-dim Box actions: mean and log std, concatenated"
                if not spec.discrete else f"{width} logits for its {spec.describe_actions()}" +
                (", each component's side by side" if spec.action_nvec else ""))
        raise ConfigError(f"model_fn's policy output has shape [N, {', '.join(map(str, params_shape[1:]))}]; the "
                          f"env needs [N, {width}]: {need}")
    if value_shape not in ((n, 1), (n,)):
        raise ConfigError(f"model_fn's value output has shape [N, {', '.join(map(str, value_shape[1:]))}]; the "
                          f"contract is [N, 1] or [N]")
    for i, (size, s) in enumerate(zip(sizes, outputs[2:])):
        if tuple(s.shape) != (n, int(size)):
            raise ConfigError(f"model_fn's state output {i} has shape [N, {', '.join(map(str, tuple(s.shape)[1:]))}]"
                              f"; its state_sizes say [N, {size}]")


def is_recurrent(model) -> bool:
    return hasattr(model, "state_sizes")


def fold_time(obs):
    """[T, B, *obs_shape] -> [T*B, *obs_shape] (T static): one model call for every step of an unroll."""
    return tf.reshape(obs, tf.concat([[obs.shape[0] * tf.shape(obs)[1]], tf.shape(obs)[2:]], 0))


def apply_time_major(model, obs, first, state=None, training: bool = True):
    """Applies a model of either contract (module docstring) to a time-major unroll.

    obs [T, B, *obs_shape] (the env's dtype); first [T, B] (1 where obs[t] starts an episode); state: for a
    recurrent model, its state at t = 0 (list of [B, size]; None: zeros). Returns
    (params [T, B, P], values [T, B], final state or None). T and the obs shape must be static."""
    T = obs.shape[0]
    B = tf.shape(obs)[1]
    if not is_recurrent(model):
        params, values = model(fold_time(obs), training=training)
        return tf.reshape(params, [T, B, -1]), tf.reshape(values, [T, B]), None
    if hasattr(model, "unroll"):  # the default LSTM model: a faster route to the same result
        return model.unroll(obs, first, state, training=training)
    return step_time_major(model, obs, first, state, training)


def step_time_major(model, obs, first, state=None, training: bool = True):
    """A recurrent model (the contract's) over a time-major unroll, one call a step: `apply_time_major`'s
    route for any recurrent model without an `unroll` of its own."""
    T, B = obs.shape[0], tf.shape(obs)[1]
    if state is None:
        state = [tf.zeros([B, n]) for n in model.state_sizes]
    params, values = [], []
    for t in range(T):  # a static loop: T is small, and the graph then needs no while-loop gradient
        keep = 1.0 - tf.cast(first[t], tf.float32)[:, None]
        out = model([obs[t], *[s * keep for s in state]], training=training)
        params.append(out[0])
        values.append(tf.reshape(out[1], [B]))
        state = list(out[2:])
    return tf.stack(params), tf.stack(values), state
