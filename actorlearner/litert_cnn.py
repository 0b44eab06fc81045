"""The default CNNs under LiteRT (`ai-edge-litert`, the `atari` extra), for actors: its XNNPack kernels run the
IMPALA torso at about twice the numpy twin's speed on one thread, with a 0.1 s import and no TensorFlow.

The model file is written here, from `layout.cnn_layers` with LiteRT's own flatbuffer schema, so no converter
(and no TensorFlow) is needed, for any image shape. Its input is the observation batch and its output the
torso's features [B, 256]; the heads (a few hundred multiply-adds an observation) stay in numpy.

Weights are constants of the model: XNNPack packs constant weights once, while weights fed as inputs run ~3x
slower (measured here). So each weight version writes the new weights into the model's bytes (they sit at
fixed places of the buffer) and builds a fresh interpreter from them, 3-4 ms a version on this machine, which
actors pay once an unroll. Every version is then checked against the numpy twin on one observation: if they
ever disagree, the policy says so once and runs on numpy from then on, so a LiteRT change can cost speed,
never correctness.

`--actor-precision int8` (actors only: evaluation, confirmation and export keep float32) stores the kernels as
int8 with one scale per output channel, and LiteRT quantizes the activations at run time (its "dynamic range"
kernels): the torso ran ~2x faster (36 against 71 us an 84x84x4 observation, 16 a batch, one thread, 2-core AMD
EPYC). The behaviour policy then differs a little from the learner's (features within ~1-2 % of their largest);
the log-probabilities actors record are the int8 policy's own, so V-trace's importance weights correct for it as
for any policy lag. The per-version check allows that rounding (_INT8_TOL of the features' largest magnitude).
"""

from __future__ import annotations

import importlib.util

import numpy as np

from .layout import cnn_layers, conv_out, model_kind
from .numpy_cnn import NumpyCNNPolicy
from .precision import int8_hardware
from .reporting import warn
from .tf_start import native_stderr_filtered

# Printed by LiteRT's C++ side once a process, when the first interpreter takes the XNNPack delegate.
_LITERT_NOISE = ("Created TensorFlow Lite XNNPACK delegate",)
_CHECK_TOL = 1e-3  # features that differ by more (atol + rtol) mean the model file is wrong, not rounding
# int8 kernels: a feature off by more than this fraction of the largest is a wrong model file, not rounding (random
# and trained weights round to 1-2 %; a kernel in the wrong layout or scale is off by ~100 %).
_INT8_TOL = 0.1


def available() -> bool:
    return importlib.util.find_spec("ai_edge_litert") is not None


def engine_for(cfg, kind: str) -> str:
    """What runs the default model of `kind` (mlp or a CNN) under cfg.actor_inference: 'litert' or 'numpy'."""
    if kind == "mlp" or cfg.actor_inference == "numpy":
        return "numpy"
    return "litert" if available() else "numpy"  # the runner refused --actor-inference litert without it


def int8_for(cfg, kind: str, flags: frozenset | None = None) -> bool:
    """Whether actors that run the default model of `kind` outside TensorFlow (model_fns.actors_run_tensorflow
    false; callers ask only for those) have int8 kernels: --actor-precision int8 where LiteRT runs it (preflight
    refused it elsewhere), or auto where LiteRT runs it on a CPU with int8 dot products (precision.int8_hardware;
    flags: its CPU flags, this CPU's when None). Each actor process decides on its own CPU (a Ray node's may
    differ from the launcher's)."""
    if cfg.actor_precision == "float32" or engine_for(cfg, kind) != "litert":
        return False
    return cfg.actor_precision == "int8" or int8_hardware(flags) is not None


def precision_note(cfg, kind: str, flags: frozenset | None = None) -> str:
    """The start-up line's words on the actors' kernels: ', int8 kernels' and, under auto, why they are or are not
    int8 ('' for the float32 kernels of a run that did not ask for auto, or where LiteRT does not run it)."""
    if engine_for(cfg, kind) != "litert":
        return ""
    if cfg.actor_precision != "auto":
        return ", int8 kernels" if int8_for(cfg, kind, flags) else ""
    found = int8_hardware(flags)
    return (f", int8 kernels (--actor-precision auto: the CPU has {found})" if found else
            ", float32 kernels (--actor-precision auto: the CPU has no int8 dot products, AVX512-VNNI or AVX-VNNI)")


def cnn_policy(spec, layout, cfg, acting: bool = False) -> NumpyCNNPolicy:
    """The default CNN as actors (`acting`) and evaluation run it (engine_for decides); int8 kernels for actors
    under --actor-precision int8."""
    kind = model_kind(spec, cfg.model)
    if engine_for(cfg, kind) == "litert":
        return LiteRTCNNPolicy(spec, layout, cfg.model, int8=acting and int8_for(cfg, kind))
    return NumpyCNNPolicy(spec, layout, cfg.model)


def torso_model(obs_shape: tuple, obs_dtype: str, kind: str,
                int8: bool = False) -> tuple[bytearray, dict[str, tuple]]:
    """The CNN torso of `kind` as a LiteRT model: (file bytes, {weight path: (buffer index, shape in the model's
    layout, tensor index)}). The input is obs [B, H, W, C] (uint8 or float32; B is free), the output features
    [B, 256] after the torso's ReLU. Weights are zero until `write_weights`. int8: the kernels are int8 with a
    scale per output channel (the first dimension in the model's layout), the biases float32."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as S

    tensors, buffers, operators, codes = [], [S.BufferT()], [], []  # buffer 0: the schema's "no data"
    weights: dict[str, tuple] = {}

    def tensor(name: str, shape, dtype=S.TensorType.FLOAT32, data: bytes | None = None) -> int:
        t = S.TensorT()
        t.name, t.shape, t.type = name, list(shape), dtype
        t.shapeSignature = [-1, *shape[1:]] if name.startswith("act/") else None  # activations: any batch
        t.buffer = 0
        if data is not None:
            buffers.append(_AlignedBuffer(data))
            t.buffer = len(buffers) - 1
        tensors.append(t)
        return len(tensors) - 1

    def weight(path: str, shape) -> int:
        if int8 and path.endswith("/kernel"):
            index = tensor(path, shape, S.TensorType.INT8, data=bytes(int(np.prod(shape))))
            q = tensors[index].quantization = S.QuantizationParametersT()
            q.scale, q.zeroPoint, q.quantizedDimension = [1.0] * shape[0], [0] * shape[0], 0
        else:
            index = tensor(path, shape, data=bytes(4 * int(np.prod(shape))))
        weights[path] = (tensors[index].buffer, tuple(shape), index)
        return index

    def op(code: int, inputs: list, outputs: list, options_type: int = 0, options=None) -> None:
        if code not in codes:
            codes.append(code)
        o = S.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = codes.index(code), inputs, outputs
        o.builtinOptionsType, o.builtinOptions = options_type, options
        operators.append(o)

    B = S.BuiltinOperator
    relu, none = S.ActivationFunctionType.RELU, S.ActivationFunctionType.NONE
    h, w, c = obs_shape
    uint8 = np.dtype(obs_dtype) == np.uint8
    x = obs = tensor("act/obs", (1, h, w, c), S.TensorType.UINT8 if uint8 else S.TensorType.FLOAT32)
    if uint8:
        x = tensor("act/cast", (1, h, w, c))
        op(B.CAST, [obs], [x])
    deep, residuals, n = kind == "impala-deep", {}, 0

    def activation(shape) -> int:
        nonlocal n
        n += 1
        return tensor(f"act/{n}", shape)

    def relu_of(t: int, shape) -> int:
        out = activation(shape)
        op(B.RELU, [t], [out])
        return out

    for kind_, name, f, k, s, pad in cnn_layers(kind):
        padding = S.Padding.SAME if pad == "same" else S.Padding.VALID
        if kind_ == "conv":
            if deep and name.endswith(("_c0", "_c1")):  # the residual blocks' pre-activation
                x = relu_of(x, (1, h, w, c))
            kernel, bias = weight(f"{name}/kernel", (f, k, k, c)), weight(f"{name}/bias", (f,))
            h, w, c = conv_out(h, k, s, pad), conv_out(w, k, s, pad), f
            opts = S.Conv2DOptionsT()
            opts.padding, opts.strideH, opts.strideW = padding, s, s
            opts.fusedActivationFunction = none if deep else relu
            out = activation((1, h, w, c))
            op(B.CONV_2D, [x, kernel, bias], [out], S.BuiltinOptions.Conv2DOptions, opts)
        elif kind_ == "pool":
            h, w = conv_out(h, k, s, pad), conv_out(w, k, s, pad)
            opts = S.Pool2DOptionsT()
            opts.padding, opts.strideH, opts.strideW, opts.filterHeight, opts.filterWidth = padding, s, s, k, k
            out = activation((1, h, w, c))
            op(B.MAX_POOL_2D, [x], [out], S.BuiltinOptions.Pool2DOptions, opts)
        elif kind_ == "res_start":
            residuals[name] = x
            continue
        else:
            out = activation((1, h, w, c))
            op(B.ADD, [residuals.pop(name), x], [out], S.BuiltinOptions.AddOptions, S.AddOptionsT())
        x = out
    if deep:
        x = relu_of(x, (1, h, w, c))
    flat = h * w * c
    new_shape = tensor("flatten/shape", (2,), S.TensorType.INT32, np.array([-1, flat], np.int32).tobytes())
    out = activation((1, flat))
    op(B.RESHAPE, [x, new_shape], [out])
    x = out
    kernel, bias = weight("torso/kernel", (256, flat)), weight("torso/bias", (256,))
    opts = S.FullyConnectedOptionsT()
    opts.fusedActivationFunction = relu
    features = activation((1, 256))
    op(B.FULLY_CONNECTED, [x, kernel, bias], [features], S.BuiltinOptions.FullyConnectedOptions, opts)

    graph = S.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators = tensors, [obs], [features], operators
    graph.name = "torso"
    model = S.ModelT()
    model.version, model.description, model.subgraphs, model.buffers = 3, "actorlearner CNN torso", [graph], buffers
    model.operatorCodes = []
    for code in codes:
        oc = S.OperatorCodeT()
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
        model.operatorCodes.append(oc)
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytearray(builder.Output()), weights


class _AlignedBuffer:
    """A schema Buffer whose data starts on a 16-byte boundary of the file (the float weights are read in
    place); the generated BufferT packs byte vectors with no alignment."""

    def __init__(self, data: bytes):
        self.data = data

    def Pack(self, builder):  # noqa: N802 - the schema's object API calls it by this name
        from ai_edge_litert import schema_py_generated as S

        n = len(self.data)
        builder.StartVector(1, n, 16)
        builder.head -= n
        builder.Bytes[builder.head:builder.head + n] = self.data
        data = builder.EndVector()
        S.BufferStart(builder)
        S.BufferAddData(builder, data)
        return S.BufferEnd(builder)


def weight_views(model: bytearray, weights: dict[str, tuple]) -> dict[str, tuple]:
    """{path: (a writable view of that weight's bytes inside `model`, float32 or int8, and for an int8 kernel a
    writable float32 view of its per-channel scales, else None)}."""
    from ai_edge_litert import schema_py_generated as S

    root = S.Model.GetRootAs(model, 0)
    graph = root.Subgraphs(0)
    views = {}
    for path, (index, shape, tensor) in weights.items():
        raw = root.Buffers(index).DataAsNumpy()  # a uint8 view into the bytearray
        t = graph.Tensors(tensor)
        if t.Type() == S.TensorType.INT8:
            views[path] = (raw.view(np.int8).reshape(shape), t.Quantization().ScaleAsNumpy())
        else:
            views[path] = (raw.view(np.float32).reshape(shape), None)
    return views


def quantized(value: np.ndarray, scales: np.ndarray, axis: int) -> np.ndarray:
    """value float32 -> int8 of its shape, symmetric with one scale per index of `axis` (an output channel),
    written into scales [value.shape[axis]]: value ~= q * scale."""
    others = tuple(i for i in range(value.ndim) if i != axis)
    scales[...] = np.maximum(np.abs(value).max(axis=others), np.float32(1e-30)) / np.float32(127.0)
    shape = [1] * value.ndim
    shape[axis] = -1
    q = value * (np.float32(1.0) / scales).reshape(shape)
    np.rint(q, out=q)
    return q.astype(np.int8)  # within [-127, 127] by the scale's choice


def write_weights(views: dict[str, tuple], w: dict[str, np.ndarray], scale: float) -> None:
    """Keras weights (kernels [k, k, C, F] and [in, out]) into the model's layouts ([F, k, k, C], [out, in]);
    `scale` multiplies the first convolution's kernel (1/255 for uint8 images, as numpy_cnn folds it)."""
    first = True
    for path, (view, scales) in views.items():
        value = w[path]
        if path.endswith("/kernel") and value.ndim == 4:
            value = value.transpose(3, 0, 1, 2) * np.float32(scale if first else 1.0)
            first = False
        elif path == "torso/kernel":  # [in, out] -> [out, in] by blocks of rows: 0.4 ms, not 3.3 in one go
            if scales is not None:  # quantized in place, then moved as int8: a quarter of the bytes
                value = quantized(value, scales, 1)
            for i in range(0, value.shape[0], 64):
                view[:, i:i + 64] = value[i:i + 64].T
            continue
        view[...] = value if scales is None else quantized(value, scales, 0)


class LiteRTCNNPolicy(NumpyCNNPolicy):
    """NumpyCNNPolicy with the torso under LiteRT (module docstring); everything else, and the fallback, numpy."""

    def __init__(self, spec, layout, model: str, int8: bool = False):
        super().__init__(spec, layout, model)
        self.int8 = int8
        self._model, weights = torso_model(tuple(spec.obs_shape), spec.obs_dtype, self.kind, int8)
        self._views = weight_views(self._model, weights)
        self._interpreter = None
        self._sized = 0  # the batch the interpreter's tensors are allocated for
        self.fell_back = False
        rng = np.random.default_rng(0)  # one fixed observation for the per-version check
        self._probe = (rng.integers(0, 256, (1, *spec.obs_shape)).astype(np.uint8) if self.scale != 1.0
                       else rng.normal(size=(1, *spec.obs_shape)).astype(np.float32))

    def load(self, flat: np.ndarray) -> None:
        super().load(flat)
        if self.fell_back:
            return
        from ai_edge_litert.interpreter import Interpreter

        write_weights(self._views, self.w, self.scale)
        with native_stderr_filtered(_LITERT_NOISE):  # the delegate is applied at the first run
            self._interpreter = it = Interpreter(model_content=bytes(self._model), num_threads=1)
            self._io = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
            self._sized = 0  # not yet allocated
            got = self._litert_features(self._probe)
        want = NumpyCNNPolicy.features(self, self._probe)
        if not (np.abs(got - want).max() <= _INT8_TOL * np.abs(want).max() + _CHECK_TOL if self.int8
                else np.allclose(got, want, rtol=_CHECK_TOL, atol=_CHECK_TOL)):
            warn(f"LiteRT's CNN features differ from the numpy twin's by {np.abs(got - want).max():.3g}; this "
                 f"process runs the numpy CNN from now on (--actor-inference numpy avoids LiteRT)")
            self.fell_back, self._interpreter = True, None

    def _litert_features(self, obs: np.ndarray) -> np.ndarray:
        it = self._interpreter
        if obs.shape[0] != self._sized:
            it.resize_tensor_input(self._io[0], list(obs.shape))
            it.allocate_tensors()
            self._sized = obs.shape[0]
        it.set_tensor(self._io[0], np.ascontiguousarray(obs, self._probe.dtype))
        it.invoke()
        return it.get_tensor(self._io[1])

    def features(self, obs: np.ndarray) -> np.ndarray:
        """obs [B, H, W, C] in the env's dtype -> the torso's output [B, 256]."""
        if self._interpreter is None:
            return super().features(obs)
        return self._litert_features(obs)
