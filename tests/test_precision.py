"""--learner-precision: which number format a run's learner gets, and the bfloat16 torso keeps the float32
model's weights (paths, shapes, dtypes) and gives its outputs within bfloat16's rounding."""

import numpy as np
import pytest

from actorlearner.config import Config, ConfigError
from actorlearner.model import apply_time_major, build_default_model
from actorlearner.precision import cpu_flags, learner_precision, onednn_kernels
from test_cnn import ATARI  # the Atari-shaped spec (84x84x4 uint8, 6 actions)

AMX = frozenset({"avx512f", "amx_bf16", "amx_tile"})  # Intel Sapphire Rapids and later
ZEN4 = frozenset({"avx512f", "avx512_vnni", "avx512_bf16"})  # AMD Zen 4, Intel Cooper Lake
NO_AMX = frozenset({"avx2", "fma"})  # nor AVX512-BF16: bfloat16 is emulated


def test_the_default_models_get_onednn_kernels_unless_the_user_chose():
    """TensorFlow leaves oneDNN off on CPUs without AVX512-VNNI or AMX, where its Eigen convolutions are ~2x
    slower and the MLP's matmuls ~10 %; the run turns it on for the default models before TensorFlow is imported,
    and says so."""
    assert onednn_kernels(False, {}, tf_imported=False) == (True, "oneDNN kernels")  # the CNNs and the MLP alike
    assert onednn_kernels(True, {}, tf_imported=False) == (False, "")  # a custom model
    assert onednn_kernels(False, {}, tf_imported=True) == (False, "")  # too late to change
    assert onednn_kernels(False, {"TF_ENABLE_ONEDNN_OPTS": "0"}, tf_imported=False) == (
        False, "TF_ENABLE_ONEDNN_OPTS=0 as set")


def test_the_default_is_float32_and_names_the_faster_choice_on_a_cpu_with_bfloat16_hardware():
    default = Config()
    assert default.learner_precision == "float32"
    fmt, why = learner_precision(default, "impala-shallow", False, AMX)
    assert fmt == "float32" and "bfloat16 steps faster on this CPU's AMX-BF16 but learned Pong slower per step" in why
    assert "this CPU's AVX512-BF16" in learner_precision(default, "impala-shallow", False, ZEN4)[1]
    assert learner_precision(default, "impala-shallow", False, NO_AMX) == ("float32", "--learner-precision")
    assert learner_precision(default, "mlp", False, AMX) == ("float32", "--learner-precision")


def test_auto_picks_bfloat16_only_for_a_default_cnn_on_a_cpu_with_bfloat16_hardware():
    auto = Config(learner_precision="auto")
    assert learner_precision(auto, "impala-shallow", False, AMX) == (
        "bfloat16", "auto: a CNN, and the CPU has AMX-BF16")
    assert learner_precision(auto, "impala-deep", False, AMX)[0] == "bfloat16"
    assert learner_precision(auto, "impala-shallow", False, ZEN4) == (
        "bfloat16", "auto: a CNN, and the CPU has AVX512-BF16")
    assert learner_precision(auto, "impala-shallow", False, NO_AMX) == (
        "float32", "auto: the CPU has neither AMX-BF16 nor AVX512-BF16")
    assert learner_precision(auto, "mlp", False, AMX)[0] == "float32"
    assert learner_precision(auto, "impala-shallow", True, AMX)[0] == "float32"  # a custom model: its own policy


def test_explicit_formats_and_the_custom_model_error():
    assert learner_precision(Config(learner_precision="bfloat16"), "impala-deep", False, NO_AMX) == (
        "bfloat16", "--learner-precision")
    assert learner_precision(Config(learner_precision="float32"), "impala-shallow", False, AMX)[0] == "float32"
    with pytest.raises(ConfigError, match="custom model sets its own"):
        learner_precision(Config(learner_precision="bfloat16"), "impala-shallow", True, AMX)
    with pytest.raises(ConfigError, match="the MLP runs in float32"):
        learner_precision(Config(learner_precision="bfloat16"), "mlp", False, AMX)


def test_cpu_flags_reads_the_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx512f amx_bf16 amx_tile\nbugs\t: none\n")
    assert cpu_flags(str(info)) == frozenset({"fpu", "avx512f", "amx_bf16", "amx_tile"})
    assert cpu_flags(str(tmp_path / "missing")) == frozenset()


@pytest.mark.parametrize("model, core", [("impala-shallow", "none"), ("impala-deep", "none"),
                                         ("impala-shallow", "lstm")])
def test_bfloat16_torso_has_the_float32_weights_and_close_outputs(model, core):
    cfg = Config(model=model, core=core, core_size=32)
    exact, mixed = build_default_model(ATARI, cfg), build_default_model(ATARI, cfg, "bfloat16")
    assert [(w.path, tuple(w.shape), w.dtype) for w in mixed.weights] == [
        (w.path, tuple(w.shape), w.dtype) for w in exact.weights]
    assert {w.dtype for w in mixed.weights} == {"float32"}
    mixed.set_weights(exact.get_weights())
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, (3, 4, *ATARI.obs_shape), dtype=np.uint8)
    first = np.zeros((3, 4), np.uint8)
    (p32, v32, _), (p16, v16, _) = apply_time_major(exact, obs, first), apply_time_major(mixed, obs, first)
    assert p16.dtype == v16.dtype == "float32"  # the heads and what the loss sees stay float32
    for a, b in ((p32, p16), (v32, v16)):
        a, b = a.numpy(), b.numpy()
        scale = np.abs(a).max()
        # bfloat16 keeps 8 significant bits (~0.4 %); the errors of a few layers add up to a few percent.
        assert np.abs(a - b).max() <= 0.05 * scale + 1e-6, (np.abs(a - b).max(), scale)
        assert np.abs(a - b).max() > 0  # it did compute in bfloat16


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="float32 or bfloat16"):
        build_default_model(ATARI, Config(), "float16")


def test_the_mlp_layers_are_fused_except_on_an_amd_cpu_with_onednn():
    """The remapper's MatMul+BiasAdd+tanh kernel is slower than the unfused layers only where oneDNN's AVX-512
    tanh runs on an AMD core (precision.fuse_mlp_layers); building the MLP there turns the remapper off."""
    import tensorflow as tf

    from actorlearner.envs import inspect_env, make_env_fn
    from actorlearner.precision import cpuinfo_field, fuse_mlp_layers
    from actorlearner.tf_start import onednn_in_use

    assert not fuse_mlp_layers("AuthenticAMD", True)
    assert fuse_mlp_layers("AuthenticAMD", False) and fuse_mlp_layers("GenuineIntel", True)
    assert fuse_mlp_layers(None, None)
    build_default_model(inspect_env(make_env_fn("CartPole-v1")), Config())
    if not fuse_mlp_layers(cpuinfo_field("vendor_id"), onednn_in_use()):
        assert tf.config.optimizer.get_experimental_options().get("remapping") is False
