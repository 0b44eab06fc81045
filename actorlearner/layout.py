"""The flat weight vector both sides share: its layout (path, shape), and the observation-normalizer math.

The learner publishes its weights as one float32 vector; actors unflatten it by a layout, a list of
(variable path, shape). This module is the one place that layout is defined, importable without TensorFlow
(actors start before the learner pays for its import): the learner side (model.py, learner.py) and the
actor side (policies.py, loading.py) both import it, and it imports neither.
"""

from __future__ import annotations

import math

import numpy as np

Layout = list[tuple[str, tuple]]

# The observation normalizer's variables (model.ObsNormalizer), when --normalize-obs is on.
OBS_NORM = (("obs_norm/mean", "obs"), ("obs_norm/var", "obs"), ("obs_norm/count", 1))
OBS_CLIP = 10.0  # normalized observations are clipped to +-10 (a rare outlier cannot swamp the torso)


def unflatten(flat: np.ndarray, layout: Layout) -> list[np.ndarray]:
    """Views (no copies) into `flat`, one per entry of `layout`. An actor calls it for every weight version it
    loads (every unroll); math.prod, not np.prod, which cost ~2 % of a CartPole actor's time (64 envs, py-spy)."""
    out, i = [], 0
    for _, shape in layout:
        n = math.prod(shape)
        out.append(flat[i:i + n].reshape(shape))
        i += n
    if i != flat.size:
        raise ValueError(f"flat vector has {flat.size} floats, layout needs {i}")
    return out


def layout_size(layout: Layout) -> int:
    return sum(math.prod(shape) for _, shape in layout)


MODELS = ("auto", "mlp", "impala-shallow", "impala-deep")
CNN_WIDTH = 256  # the dense layer after the convolutions (IMPALA's)
# IMPALA's shallow CNN (the paper's Fig. 3, left): (filters, kernel, stride), 'valid' padding, ReLU after each.
SHALLOW_CONVS = ((16, 8, 4), (32, 4, 2))
# IMPALA's deep ResNet (Fig. 3, right): per stack a 3x3 conv, a 3x3 max-pool of stride 2 and two residual
# blocks of two 3x3 convs, all 'same' padding: 15 layers with the dense one.
DEEP_STACKS = (16, 32, 32)


def model_kind(spec, model: str) -> str:
    """The default model for `--model` (auto: the IMPALA shallow CNN for images, else the MLP)."""
    if model == "auto":
        return "impala-shallow" if len(spec.obs_shape) == 3 else "mlp"
    return model


def default_layout(spec, cfg) -> Layout:
    """(path, shape) of the default model's weights in Keras's order (model.build_default_model), known
    without importing TensorFlow. spec: envs.EnvSpec; cfg: the config (its model, hidden_sizes and
    normalize_obs fields)."""
    kind = model_kind(spec, cfg.model)
    if cfg.core == "lstm":
        torso, width = (mlp_torso_layout(spec, "torso", cfg.hidden_sizes, cfg.normalize_obs) if kind == "mlp"
                        else cnn_torso_layout(spec, kind))
        n = cfg.core_size
        core = [("core/kernel", (width, 4 * n)), ("core/recurrent_kernel", (n, 4 * n)), ("core/bias", (4 * n,))]
        policy, value = _heads(spec, n)
        return torso + core + policy + value
    if kind == "mlp":
        return mlp_layout(spec, cfg.hidden_sizes, cfg.normalize_obs)
    return cnn_layout(spec, kind)


def state_size(cfg) -> int:
    """Floats of recurrent state per env of the default model (h and c of the LSTM; 0 without a core)."""
    return 2 * cfg.core_size if cfg.core == "lstm" else 0


def mlp_torso_layout(spec, prefix: str, hidden_sizes: tuple, normalize: bool) -> tuple[Layout, int]:
    """(layout, output width) of one MLP torso `prefix`_hidden_i over the flattened observation, with the
    observation normalizer first if `normalize`."""
    layers, prev = [], spec.obs_dim
    for i, width in enumerate(hidden_sizes):
        layers += [(f"{prefix}_hidden_{i}/kernel", (prev, int(width))), (f"{prefix}_hidden_{i}/bias", (int(width),))]
        prev = int(width)
    norm = [(path, (spec.obs_dim,) if size == "obs" else (size,)) for path, size in OBS_NORM] if normalize else []
    return norm + layers, prev


def mlp_layout(spec, hidden_sizes: tuple, normalize: bool = False) -> Layout:
    """The default MLP: two torsos (policy, value) over the flattened observation, obs_dim wide.
    normalize: the model starts with the observation normalizer (--normalize-obs)."""

    pi, prev = mlp_torso_layout(spec, "pi", hidden_sizes, normalize)
    vf, _ = mlp_torso_layout(spec, "vf", hidden_sizes, False)
    policy, value = _heads(spec, prev)
    return pi + policy + vf + value


def _heads(spec, width: int) -> tuple[Layout, Layout]:
    """(policy head, value head) over a torso `width` wide."""
    head = [("policy/kernel", (width, spec.action_dim)), ("policy/bias", (spec.action_dim,))]
    if not spec.discrete:
        head += [("log_std/log_std", (spec.action_dim,))]
    return head, [("value/kernel", (width, 1)), ("value/bias", (1,))]


def conv_out(n: int, kernel: int, stride: int, padding: str) -> int:
    """Output size of a convolution or pooling along one axis of size n (Keras's rule)."""
    return -(-n // stride) if padding == "same" else (n - kernel) // stride + 1


def cnn_layers(kind: str) -> list[tuple[str, str, int, int, int, str]]:
    """The CNN torso as (op, name, filters, kernel, stride, padding), op one of conv, pool, res_start, res_end
    (a residual block: its input is added to its output). Both model.build_default_model and the numpy twin
    (numpy_cnn.py) walk this list, so they cannot disagree on the architecture."""
    if kind == "impala-shallow":
        return [("conv", f"conv_{i}", f, k, s, "valid") for i, (f, k, s) in enumerate(SHALLOW_CONVS)]
    ops = []
    for i, f in enumerate(DEEP_STACKS):
        ops += [("conv", f"s{i}_conv", f, 3, 1, "same"), ("pool", f"s{i}_pool", f, 3, 2, "same")]
        for j in range(2):
            ops += [("res_start", f"s{i}_r{j}", f, 0, 0, ""), ("conv", f"s{i}_r{j}_c0", f, 3, 1, "same"),
                    ("conv", f"s{i}_r{j}_c1", f, 3, 1, "same"), ("res_end", f"s{i}_r{j}", f, 0, 0, "")]
    return ops


def cnn_layout(spec, kind: str) -> Layout:
    """The default CNN (kind impala-shallow or impala-deep) for [H, W, C] observations: the torso, a dense
    layer, then the policy and value heads sharing it (in Keras's order of weights)."""
    torso, width = cnn_torso_layout(spec, kind)
    policy, value = _heads(spec, width)
    return torso + policy + value


def cnn_torso_layout(spec, kind: str) -> tuple[Layout, int]:
    """(layout, output width) of the CNN torso: the convolutions and the dense layer after them. Raises
    ValueError if the observations are not images it can take."""
    if len(spec.obs_shape) != 3:
        raise ValueError(f"--model {kind} is a CNN for H x W x C images, not observations of shape "
                         f"{spec.obs_shape} (use --model mlp or auto)")
    h, w, c = spec.obs_shape
    out: Layout = []
    for op, name, f, k, s, pad in cnn_layers(kind):
        if op in ("conv", "pool"):
            h, w = conv_out(h, k, s, pad), conv_out(w, k, s, pad)
            if h < 1 or w < 1:
                raise ValueError(f"{kind} needs larger images than {spec.obs_shape[0]}x{spec.obs_shape[1]} "
                                 f"(its {name} has nothing left to convolve; use --model mlp)")
        if op == "conv":
            out += [(f"{name}/kernel", (k, k, c, f)), (f"{name}/bias", (f,))]
            c = f
    return out + [("torso/kernel", (h * w * c, CNN_WIDTH)), ("torso/bias", (CNN_WIDTH,))], CNN_WIDTH


def param_layout(model) -> Layout:
    """(variable path, shape) of every weight of a Keras model, in the model's own order (custom models)."""
    return [(v.path, tuple(v.shape)) for v in model.weights]


def ordered_weights(model, layout: Layout) -> list:
    """The model's variables in the order of `layout`: the order of the flat vector actors read.
    Raises if the model's weights are not exactly those of the layout."""
    by_path = {v.path: v for v in model.weights}
    got = sorted((v.path, tuple(v.shape)) for v in model.weights)
    if got != sorted(layout):
        raise RuntimeError(f"model weights {got} differ from the expected layout {sorted(layout)}")
    return [by_path[path] for path, _ in layout]


def flat_weights(variables: list) -> np.ndarray:
    return np.concatenate([np.asarray(v, np.float32).ravel() for v in variables])


def published_layout(model, spec, cfg, numpy_actors: bool) -> Layout:
    """The layout of the vector the learner publishes. numpy_actors: the actors run the default model in
    numpy, which reads the vector in `default_layout` order (checked against the model here); otherwise
    the actors run the Keras model itself, and the model's own order is used."""
    if numpy_actors:
        layout = default_layout(spec, cfg)
        ordered_weights(model, layout)
        return layout
    return param_layout(model)


def mlp_input(obs: np.ndarray) -> np.ndarray:
    """obs [B, *obs_shape] -> [B, obs_dim] float32, as the default model's `ObsToFloat` layer: flattened, and
    uint8 (image) observations scaled to [0, 1]."""
    x = obs.reshape(obs.shape[0], -1)
    if x.dtype == np.uint8:
        return x.astype(np.float32) * np.float32(1.0 / 255.0)
    return x if x.dtype == np.float32 else x.astype(np.float32)


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
