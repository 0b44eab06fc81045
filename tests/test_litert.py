"""LiteRT actor inference (`--actor-inference litert|auto`): the model file written without TensorFlow runs,
a version that disagrees with the numpy twin switches the policy to numpy (said once) instead of acting on
wrong outputs, and bad requests are one-line errors before any process starts. The parity of its outputs with
the Keras model is in test_cnn.py."""

import importlib.util

import numpy as np
import pytest

from actorlearner import litert_cnn
from actorlearner.config import Config, ConfigError
from actorlearner.envs import EnvSpec
from actorlearner.layout import default_layout, layout_size
from actorlearner.numpy_cnn import NumpyCNNPolicy

needs_litert = pytest.mark.skipif(not importlib.util.find_spec("ai_edge_litert"),
                                  reason="ai-edge-litert is not installed (pip install -e '.[atari]')")
SPEC = EnvSpec((36, 36, 4), "uint8", True, 5, None, None, None, None)


def _weights(seed: int) -> np.ndarray:
    layout = default_layout(SPEC, Config(model="impala-shallow"))
    return np.random.default_rng(seed).normal(scale=0.05, size=layout_size(layout)).astype(np.float32)


@needs_litert
def test_a_version_that_disagrees_with_numpy_falls_back_to_numpy(monkeypatch, capsys):
    layout = default_layout(SPEC, Config(model="impala-shallow"))
    policy = litert_cnn.LiteRTCNNPolicy(SPEC, layout, "impala-shallow")
    twin = NumpyCNNPolicy(SPEC, layout, "impala-shallow")
    obs = np.random.default_rng(0).integers(0, 256, (6, *SPEC.obs_shape)).astype(np.uint8)
    policy.load(_weights(1))
    assert not policy.fell_back and "differ" not in capsys.readouterr().err
    real = litert_cnn.write_weights
    # A model file whose first kernel is off by 2x: what a layout change in LiteRT's schema could do.
    monkeypatch.setattr(litert_cnn, "write_weights", lambda views, w, scale: real(views, w, 2 * scale))
    policy.load(_weights(2))
    assert policy.fell_back
    assert "LiteRT's CNN features differ from the numpy twin's" in capsys.readouterr().err
    twin.load(_weights(2))
    np.testing.assert_array_equal(policy.policy_params(obs), twin.policy_params(obs))
    policy.load(_weights(3))  # later versions: numpy, without another warning
    twin.load(_weights(3))
    np.testing.assert_array_equal(policy.policy_params(obs), twin.policy_params(obs))
    assert capsys.readouterr().err == ""


def test_auto_picks_litert_for_cnns_only_where_it_is_installed(monkeypatch):
    cfg = Config(model="auto")
    assert litert_cnn.engine_for(cfg, "mlp") == "numpy"
    assert litert_cnn.engine_for(cfg.replace(actor_inference="numpy"), "impala-shallow") == "numpy"
    monkeypatch.setattr(litert_cnn, "available", lambda: True)
    assert litert_cnn.engine_for(cfg, "impala-deep") == "litert"
    monkeypatch.setattr(litert_cnn, "available", lambda: False)
    assert litert_cnn.engine_for(cfg, "impala-deep") == "numpy"


def test_litert_requests_it_cannot_serve_are_one_line(monkeypatch):
    from actorlearner.preflight import prepare

    with pytest.raises(ConfigError, match="--actor-inference litert runs the default CNNs"):
        prepare(Config(env="CartPole-v1", actor_inference="litert"))
    monkeypatch.setattr(litert_cnn, "available", lambda: False)
    with pytest.raises(ConfigError, match=r"--actor-inference litert needs ai-edge-litert: pip install"):
        prepare(Config(env="custom_envs:BrightSquare-v0", actor_inference="litert"))


@needs_litert
def test_int8_kernels_round_the_features_by_a_little_and_only_actors_get_them():
    """--actor-precision int8: the kernels are int8 (the model a quarter the size), the features within a few
    percent of the float32 twin's (not equal: the int8 model really runs), and evaluation stays float32."""
    from actorlearner.policies import make_policy

    cfg = Config(model="impala-shallow", actor_precision="int8")
    layout = default_layout(SPEC, cfg)
    obs = np.random.default_rng(0).integers(0, 256, (6, *SPEC.obs_shape)).astype(np.uint8)
    twin = NumpyCNNPolicy(SPEC, layout, "impala-shallow")
    actors, evaluation = make_policy(cfg, SPEC, None, acting=True), make_policy(cfg, SPEC, None)
    assert actors.int8 and not evaluation.int8
    assert len(actors._model) < 0.3 * len(evaluation._model)
    for seed in (1, 2):
        flat = _weights(seed)
        for policy in (twin, actors, evaluation):
            policy.load(flat)
        want = twin.features(obs)
        err = np.abs(actors.features(obs) - want).max() / np.abs(want).max()
        assert 1e-5 < err < 0.05, err
        np.testing.assert_allclose(evaluation.features(obs), want, rtol=1e-3, atol=1e-3)
        assert not actors.fell_back


@needs_litert
def test_an_int8_version_that_disagrees_with_numpy_falls_back_to_numpy(monkeypatch, capsys):
    layout = default_layout(SPEC, Config(model="impala-shallow"))
    policy = litert_cnn.LiteRTCNNPolicy(SPEC, layout, "impala-shallow", int8=True)
    policy.load(_weights(1))
    assert not policy.fell_back
    real = litert_cnn.write_weights
    monkeypatch.setattr(litert_cnn, "write_weights", lambda views, w, scale: real(views, w, 2 * scale))
    policy.load(_weights(2))
    assert policy.fell_back and "differ from the numpy twin's" in capsys.readouterr().err


def test_int8_requests_it_cannot_serve_are_one_line(monkeypatch):
    from actorlearner.preflight import prepare

    with pytest.raises(ConfigError, match=r"--actor-precision int8 quantizes the default CNNs' kernels under LiteRT; "
                                          r"this run's actors run an MLP in numpy"):
        prepare(Config(env="CartPole-v1", actor_precision="int8"))
    with pytest.raises(ConfigError, match="this run's actors run TensorFlow"):
        prepare(Config(env="custom_envs:BrightSquare-v0", actor_precision="int8", actor_inference="tensorflow"))
    with pytest.raises(ConfigError, match="--actor-precision int8 runs under LiteRT: not with --actor-inference numpy"):
        prepare(Config(env="custom_envs:BrightSquare-v0", actor_precision="int8", actor_inference="numpy"))
    monkeypatch.setattr(litert_cnn, "available", lambda: False)
    with pytest.raises(ConfigError, match=r"--actor-precision int8 runs under LiteRT: pip install"):
        prepare(Config(env="custom_envs:BrightSquare-v0", actor_precision="int8"))


@pytest.mark.skipif(not importlib.util.find_spec("ale_py"),
                    reason="ale-py is not installed (pip install -e '.[atari]')")
def test_the_atari_presets_auto_gives_way_where_int8_cannot_apply(monkeypatch):
    """The pong preset asks for auto; a run whose actors cannot have int8 kernels (numpy, TensorFlow, no LiteRT)
    acts in float32 instead of stopping on a setting the user never gave."""
    from actorlearner.config_sources import with_preset
    from actorlearner.preflight import prepare

    for inference in ("numpy", "tensorflow"):
        cfg = with_preset(Config(), {"env": "ALE/Pong-v5", "actor_inference": inference})
        assert cfg.preset == "pong" and cfg.actor_precision == "auto"
        prepare(cfg)
        # (with tensorflow, actors never ask: model_fns.actors_run_tensorflow)
        assert inference == "tensorflow" or not litert_cnn.int8_for(cfg, "impala-shallow", frozenset({"avx512_vnni"}))
    monkeypatch.setattr(litert_cnn, "available", lambda: False)
    prepare(with_preset(Config(), {"env": "ALE/Pong-v5"}))


@needs_litert
def test_auto_precision_takes_int8_only_on_a_cpu_with_int8_dot_products():
    """Without VNNI, LiteRT's int8 kernels were slower than its float32 ones (precision.int8_hardware), so auto
    is int8 only with it, and the start-up line says which and why; an explicit int8 or float32 is kept."""
    vnni, avx2 = frozenset({"avx2", "avx512_vnni"}), frozenset({"avx2", "fma"})
    auto = Config(model="impala-shallow", actor_precision="auto")
    assert litert_cnn.int8_for(auto, "impala-shallow", vnni)
    assert litert_cnn.int8_for(auto, "impala-shallow", frozenset({"avx_vnni"}))
    assert not litert_cnn.int8_for(auto, "impala-shallow", avx2)
    assert litert_cnn.precision_note(auto, "impala-shallow", vnni) == (
        ", int8 kernels (--actor-precision auto: the CPU has AVX512-VNNI)")
    assert litert_cnn.precision_note(auto, "impala-shallow", avx2).startswith(
        ", float32 kernels (--actor-precision auto: the CPU has no int8 dot products")
    for precision, int8 in (("int8", True), ("float32", False)):
        cfg = Config(model="impala-shallow", actor_precision=precision)
        assert all(litert_cnn.int8_for(cfg, "impala-shallow", flags) == int8 for flags in (vnni, avx2))
        assert litert_cnn.precision_note(cfg, "impala-shallow", avx2) == (", int8 kernels" if int8 else "")
    assert not litert_cnn.int8_for(Config(actor_precision="auto"), "mlp", vnni)  # the MLP runs in numpy
    assert litert_cnn.precision_note(Config(actor_precision="auto"), "mlp", vnni) == ""
