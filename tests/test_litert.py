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
