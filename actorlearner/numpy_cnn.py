"""IMPALA's CNNs in plain numpy, so actors run image policies without TensorFlow (a TF import costs ~4 s and
~570 MB per actor, and a TF call is slowest at an actor's small batches: ../shared/DESIGN.md).

A convolution is im2col (a strided window view copied into a patch matrix) and one BLAS matmul. The first
layer's patches are taken from the uint8 image before any float conversion (a quarter of the bytes to copy),
and its kernel carries the 1/255 scale, so the image is never converted as a whole. The architecture is read
from `layout.cnn_layers`, the same list the Keras model (model.build_cnn) is built from.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .layout import Layout, cnn_layers, model_kind, unflatten
from .policies import FeedForward, greedy_params, policy_head, sample_params


def _pad_same(x: np.ndarray, kernel: int, stride: int, value: float) -> np.ndarray:
    """x [B, H, W, C] padded as Keras's 'same' does (the odd pixel at the bottom/right)."""
    pads = []
    for n in x.shape[1:3]:
        total = max((-(-n // stride) - 1) * stride + kernel - n, 0)
        pads.append((total // 2, total - total // 2))
    if not any(a or b for a, b in pads):
        return x
    return np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=value)


def conv2d(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, k: int, stride: int, padding: str) -> np.ndarray:
    """x [B, H, W, C] (any real dtype) * kernel [C*k*k, F] (from `conv_kernel`) + bias [F] -> [B, OH, OW, F]
    float32, as keras.layers.Conv2D(F, k, stride, padding)."""
    if padding == "same":
        x = _pad_same(x, k, stride, 0)
    if stride == 1 and x.dtype == np.float32:
        return _conv_shifted(x, kernel, bias, k)
    win = sliding_window_view(x, (k, k), axis=(1, 2))[:, ::stride, ::stride]  # [B, OH, OW, C, k, k], a view
    b, oh, ow = win.shape[:3]
    cols = win.reshape(b * oh * ow, -1)  # the one copy (im2col), in the input's dtype
    out = cols.astype(np.float32, copy=False) @ kernel
    out += bias
    return out.reshape(b, oh, ow, -1)


def _conv_shifted(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, k: int) -> np.ndarray:
    """A stride-1 convolution of the padded x [B, H', W', C] as one matmul of the unexpanded input by all k*k
    taps at once, then the sum of the k*k shifted slices: no patch matrix (k*k times the input) is built,
    which halves the deep CNN's 3x3 convolutions."""
    b, hp, wp, c = x.shape
    oh, ow = hp - k + 1, wp - k + 1
    taps = (x.reshape(-1, c) @ kernel.reshape(c, -1)).reshape(b, hp, wp, k * k, -1)
    out = taps[:, :oh, :ow, 0] + bias
    for i in range(1, k * k):
        dy, dx = divmod(i, k)
        out += taps[:, dy:dy + oh, dx:dx + ow, i]
    return out


def conv_kernel(kernel: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """A Keras kernel [k, k, C, F] as the matrix [C*k*k, F] that multiplies `conv2d`'s patches (their
    order is channel, row, column), times `scale`."""
    k1, k2, c, f = kernel.shape
    return np.ascontiguousarray(kernel.transpose(2, 0, 1, 3).reshape(c * k1 * k2, f) * np.float32(scale))


def max_pool(x: np.ndarray, size: int, stride: int, padding: str) -> np.ndarray:
    """x [B, H, W, C] -> [B, OH, OW, C], as keras.layers.MaxPooling2D(size, stride, padding). An elementwise
    maximum over the size*size strided views (4x faster than reducing a window view)."""
    if padding == "same":
        x = _pad_same(x, size, stride, -np.inf)
    oh, ow = (x.shape[1] - size) // stride + 1, (x.shape[2] - size) // stride + 1
    out = None
    for dy in range(size):
        for dx in range(size):
            view = x[:, dy:dy + stride * (oh - 1) + 1:stride, dx:dx + stride * (ow - 1) + 1:stride]
            out = view.copy() if out is None else np.maximum(out, view, out=out)
    return out


class NumpyCNNPolicy(FeedForward):
    """The default CNN (impala-shallow or impala-deep) with the weights of a flat vector; the same methods as
    policies.NumpyMLPPolicy (load, sample, greedy, value)."""

    def __init__(self, spec, layout: Layout, model: str):
        self.spec = spec
        self.layout = layout
        self.kind = model_kind(spec, model)
        self.ops = cnn_layers(self.kind)
        self.scale = 1.0 / 255.0 if np.dtype(spec.obs_dtype) == np.uint8 else 1.0
        self.w: dict[str, np.ndarray] = {}

    def load(self, flat: np.ndarray) -> None:
        w = dict(zip((p for p, _ in self.layout), unflatten(flat, self.layout)))
        first = True
        for op, name, *_ in self.ops:
            if op == "conv":  # kernels as matrices once per weight version, not once per call
                w[f"{name}/matrix"] = conv_kernel(w[f"{name}/kernel"], self.scale if first else 1.0)
                first = False
        self.w = w

    def features(self, obs: np.ndarray) -> np.ndarray:
        """obs [B, H, W, C] in the env's dtype -> the torso's output [B, 256]."""
        w, x, res = self.w, obs, {}
        deep = self.kind == "impala-deep"
        for op, name, _, k, stride, pad in self.ops:
            if op == "conv":
                if deep and name.endswith(("_c0", "_c1")):
                    x = np.maximum(x, 0.0)
                x = conv2d(x, w[f"{name}/matrix"], w[f"{name}/bias"], k, stride, pad)
                if not deep:
                    np.maximum(x, 0.0, out=x)
            elif op == "pool":
                x = max_pool(x, k, stride, pad)
            elif op == "res_start":
                res[name] = x
            else:
                x = res.pop(name) + x
        if deep:
            x = np.maximum(x, 0.0)
        h = x.reshape(x.shape[0], -1) @ w["torso/kernel"]
        h += w["torso/bias"]
        return np.maximum(h, 0.0, out=h)

    def policy_params(self, obs: np.ndarray) -> np.ndarray:
        """obs [B, H, W, C] -> policy params [B, A] (logits) or [B, 2D] (mean, log_std)."""
        return policy_head(self.w, self.features(obs), self.spec.discrete)

    def value(self, obs: np.ndarray) -> np.ndarray:
        """obs [B, H, W, C] -> values [B]."""
        return (self.features(obs) @ self.w["value/kernel"] + self.w["value/bias"])[:, 0]

    def sample(self, obs: np.ndarray, rng: np.random.Generator, mask=None):
        """obs [B, H, W, C] -> (actions [B] or [B, D], behaviour log-probs [B])."""
        return sample_params(self.policy_params(obs), self.spec, rng, mask)

    def greedy(self, obs: np.ndarray, mask=None) -> np.ndarray:
        return greedy_params(self.policy_params(obs), self.spec, mask)
