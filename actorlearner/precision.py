"""The learner's number format (--learner-precision) and TensorFlow kernels: which a run gets, and why.

bfloat16 pays where the matrix work is large and the CPU multiplies bfloat16 in hardware: with AMX, oneDNN's
bfloat16 convolutions and matmuls run 3-4x faster than float32 ones, and the default CNN's learner step
(Pong preset, 2 cores) ~1.3x faster in all. AVX512-BF16 (AMD Zen 4, Intel Cooper Lake) pays too: on a 2-core
Zen 4 the Pong preset's learner took 2,277-2,284 samples/s against 1,843-1,898 on 2 cores (1.2x) and
1,553-1,638 against 1,100-1,124 on one (1.4x), alternated runs, 2026-12-04; without either, bfloat16 is
emulated and slower. The default MLP's matmuls are too small for that: the casts
around them cost more than they save (1.63-1.67 ms against 1.51-1.53 ms a CartPole step), so auto keeps it in
float32. Weights, gradients, Adam and the heads stay float32 either way (Keras' mixed_bfloat16 policy on the
torso only), so checkpoints, the published weights and the actors are the same for both.

The default is float32, not auto: on Pong the bfloat16 learner needed more agent steps for each return on both
seeds run (seed 1, one session: -10 at 2.22 M steps against 1.74 M, -3.0 at 3.05 M against -2.9 at 2.26 M, the
same return at each minute mark; seed 2: 0 at 2.64 M against 1.66 M); Breakout was about even per minute.
"""

from __future__ import annotations

from typing import Mapping

from .config import Config, ConfigError


def cpuinfo_field(name: str, path: str = "/proc/cpuinfo") -> str | None:
    """The value of the first processor's `name` line in /proc/cpuinfo (Linux; None elsewhere)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(name):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset:
    """The CPU's feature flags (Linux; empty elsewhere, which keeps auto on float32)."""
    return frozenset((cpuinfo_field("flags", path) or "").split())


def fuse_mlp_layers(vendor: str | None, onednn: bool | None) -> bool:
    """Whether Grappler's remapper should fuse the default MLP's dense layers (MatMul, BiasAdd and tanh in one
    kernel): not on an AMD CPU whose TensorFlow runs oneDNN (Zen 4 and later: TensorFlow turns oneDNN on by itself
    only with AVX512-VNNI, -BF16 or AMX). There the fused kernel's tanh post-op, AVX-512 code that Zen 4 runs in
    256-bit halves, cost ~50 µs a 1,344 x 64 layer against ~20-30 for TensorFlow's own Tanh: the CartPole learner
    batch 1.56-1.58 against 1.63-1.67 ms unfused (2-core AMD EPYC VM, 2026-12-06). On an Intel CPU with AMX the
    fusion measured 3-4 % faster (1.60 -> 1.55 ms, 2026-12-05), and on one with AVX512-VNNI and no AMX as fast or
    faster (1.70-1.78 against 1.73-2.12 ms, 5 alternated process pairs, 2026-12-08), so elsewhere it stays.
    vendor: /proc/cpuinfo's vendor_id (None: unknown); onednn: tf_start.onednn_in_use()."""
    return not (vendor == "AuthenticAMD" and onednn)


# The CPU features that multiply bfloat16 in hardware, as /proc/cpuinfo names them, and as the start-up line does.
BF16_FEATURES = {"amx_bf16": "AMX-BF16", "avx512_bf16": "AVX512-BF16"}


def bf16_hardware(flags: frozenset | None = None) -> str | None:
    """The name of the feature with which the CPU multiplies bfloat16 in hardware, None if it has none
    (flags: cpu_flags()'s, read when None)."""
    flags = cpu_flags() if flags is None else flags
    return next((name for flag, name in BF16_FEATURES.items() if flag in flags), None)


# The CPU features with which LiteRT's XNNPack multiplies int8 by dot products (vpdpbusd), as /proc/cpuinfo names
# them, and as the start-up line does: --actor-precision auto takes int8 kernels only with one of them.
INT8_FEATURES = {"avx512_vnni": "AVX512-VNNI", "avx_vnni": "AVX-VNNI"}


def int8_hardware(flags: frozenset | None = None) -> str | None:
    """The name of the feature with which the CPU multiplies int8 by dot products (x86 VNNI), None if it has none
    (flags: cpu_flags()'s, read when None). Without it LiteRT's int8 kernels lose to its float32 ones: the Pong
    CNN 290 against 198 us an observation (batch 16, one thread, 2-core AVX2-only AMD EPYC, 2026-12-07), where an
    AVX512-VNNI AMD EPYC ran it in 37 against 74-79 (2026-12-06). ARM's dot-product instructions are not
    counted: not measured here."""
    flags = cpu_flags() if flags is None else flags
    return next((name for flag, name in INT8_FEATURES.items() if flag in flags), None)


def learner_precision(cfg: Config, kind: str, custom_model: bool, flags: frozenset | None = None) -> tuple[str, str]:
    """(format, why) for the learner's model. kind: layout.model_kind's (mlp or a CNN); custom_model: the run
    has a model_fn, whose layers set their own dtype policy. Raises ConfigError for bfloat16 with a custom
    model (there is nothing of ours to set it on) or the MLP (which has no bfloat16 variant: it would be slower)."""
    if cfg.learner_precision == "bfloat16" and (custom_model or kind == "mlp"):
        raise ConfigError("--learner-precision bfloat16 applies to the default CNNs; " + (
            "a custom model sets its own Keras dtype policy" if custom_model else
            "the MLP runs in float32 (its layers are too small for bfloat16 to pay)"))
    default_cnn = not custom_model and kind != "mlp"
    hardware = bf16_hardware(flags) if default_cnn else None
    if cfg.learner_precision == "float32":
        return "float32", "--learner-precision" + (
            f"; bfloat16 steps faster on this CPU's {hardware} but learned Pong slower per step" if hardware else "")
    if cfg.learner_precision == "bfloat16":
        return "bfloat16", "--learner-precision"
    if not default_cnn:
        return "float32", "auto: " + ("a custom model" if custom_model else "the MLP is faster in float32")
    if hardware:
        return "bfloat16", f"auto: a CNN, and the CPU has {hardware}"
    return "float32", "auto: the CPU has neither AMX-BF16 nor AVX512-BF16"


def onednn_kernels(custom_model: bool, environ: Mapping[str, str], tf_imported: bool) -> tuple[bool, str]:
    """(turn on, note for the start-up line): whether the run sets TF_ENABLE_ONEDNN_OPTS=1 before TensorFlow is
    imported. TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX512-VNNI, AVX512-BF16 or AMX;
    elsewhere it runs the CNNs' convolutions in Eigen, much slower: on an AVX2-only AMD EPYC (2 cores, Pong
    preset, 2026-12-03) the learner stepped 904 samples/s with oneDNN against 499 and 548 without, 734 against
    296 on one core. The default MLP too, since its heads take their kernel gradient the other way round
    (model.HeadDense: oneDNN's thin matmuls had made its step slower, 191 K against 231 K samples/s at batch 32):
    on a 2-core AVX2-only AMD EPYC VM (2026-12-07, one core) the CartPole learner step took ~2.2 against ~2.5 ms
    in 14 alternated process pairs (faster in 11, median ratio 1.10; 1.07 in 24 rounds of turns against Eigen),
    Acrobot's batch of 32 1.045 (6 pairs), the LSTM core even (4 pairs). A value the user set is kept; once
    TensorFlow is imported (a library user's process) it is too late to change."""
    if custom_model:
        return False, ""
    if "TF_ENABLE_ONEDNN_OPTS" in environ:
        return False, f"TF_ENABLE_ONEDNN_OPTS={environ['TF_ENABLE_ONEDNN_OPTS']} as set"
    if tf_imported:
        return False, ""
    return True, "oneDNN kernels"
