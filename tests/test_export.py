"""`actorlearner export`: the SavedModel and the TFLite model of a run give the outputs of the policy the run
saved (what `eval` plays), for every default model, discrete and continuous; bad input is one line."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from actorlearner import load_policy
from actorlearner.config import Config, ConfigError
from actorlearner.envs import inspect_env, make_env_fn
from actorlearner.export import export_policy
from actorlearner.layout import default_layout, flat_weights, ordered_weights
from actorlearner.model import build_default_model
from actorlearner.policies import policy_head
from actorlearner.run_files import RunDir
from conftest import ROOT

CASES = {
    "mlp-discrete": Config(env="CartPole-v1"),
    "mlp-continuous-normalized": Config(env="Pendulum-v1", normalize_obs=True),
    "mlp-multi-discrete": Config(env="custom_envs:MatchSign-v0", env_kwargs="multi=discrete"),
    "impala-shallow": Config(env="custom_envs:BrightSquare-v0"),
    "impala-deep": Config(env="custom_envs:BrightSquare-v0", model="impala-deep"),
    # --action-masks: the export takes the masks too, and its params and action are the masked policy's.
    "mlp-masked": Config(env="custom_envs:PickAllowed-v0", action_masks=True),
    "lstm-masked-multi-discrete": Config(env="custom_envs:PickAllowed-v0", env_kwargs="components=2",
                                         action_masks=True, core="lstm", core_size=8),
}


def fake_run(tmp_path, cfg: Config) -> str:
    """A run directory as training leaves it (config.json, policy.npz), with random weights."""
    spec = inspect_env(make_env_fn(cfg.env, kwargs=cfg.env_kwargs_dict), action_masks=cfg.action_masks)
    model = build_default_model(spec, cfg)
    rng = np.random.default_rng(0)
    model.set_weights([np.abs(rng.normal(scale=0.1, size=w.shape)).astype(np.float32) + 0.1 if "var" in v.path
                       else rng.normal(scale=0.1, size=w.shape).astype(np.float32)
                       for v, w in zip(model.weights, model.get_weights())])
    run = RunDir(str(tmp_path / "run"))
    run.write_json("config.json", cfg.replace(run_dir=run.path).to_json())
    layout = default_layout(spec, cfg)
    run.save_weights(flat_weights(ordered_weights(model, layout)), layout)
    return run.path


def observations(spec, n=5):
    rng = np.random.default_rng(1)
    if spec.obs_dtype == "uint8":
        return rng.integers(0, 256, (n, *spec.obs_shape)).astype(np.uint8)
    return rng.normal(size=(n, *spec.obs_shape)).astype(np.float32)


def tflite_interpreter(path: str):
    """LiteRT's interpreter, as the README loads the export, where ai-edge-litert is installed (the atari extra);
    else TensorFlow's (deprecated, same runtime)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter  # noqa: N806
    return Interpreter(model_path=path)


@pytest.mark.parametrize("case", list(CASES))
def test_exported_policy_gives_the_trained_outputs(tmp_path, case):
    run = fake_run(tmp_path, CASES[case])
    policy = load_policy(run)
    spec = policy.spec
    obs = observations(spec)
    inputs, mask = {"obs": obs}, None
    if spec.action_masks:
        mask = np.random.default_rng(2).random((len(obs), spec.action_dim)) < 0.5
        mask[:, 0] = mask[:, 5 % spec.action_dim] = True  # every component allows one
        inputs["action_mask"] = mask.astype(np.int8)
    if policy.state_sizes:
        state = [np.random.default_rng(3).normal(size=(len(obs), n)).astype(np.float32) for n in policy.state_sizes]
        inputs["state"] = np.concatenate(state, axis=1)
        want_action, _, after = policy.act(obs, state, greedy=True, mask=mask)
        want_params, want_value = policy_head(policy.policy.w, after[0], True), policy.value_at(obs, state)
    else:
        want_params, want_value = policy.policy.policy_params(obs), policy.value(obs)
        want_action = policy.greedy(obs, mask=mask)
    if mask is not None:
        want_params = np.where(mask, want_params, -1e9)

    saved = tf.saved_model.load(export_policy(run, "savedmodel"))
    out = {k: v.numpy() for k, v in saved.signatures["serving_default"](
        **{k: tf.constant(v) for k, v in inputs.items()}).items()}
    lite = tflite_interpreter(export_policy(run, "tflite")).get_signature_runner()(**inputs)
    for got in (out, lite):
        np.testing.assert_allclose(got["params"], want_params, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got["value"], want_value, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got["action"], want_action, rtol=1e-4, atol=1e-4)


def test_export_cli_and_its_errors(tmp_path):
    run = fake_run(tmp_path, CASES["mlp-discrete"])
    out = tmp_path / "cartpole.tflite"
    proc = subprocess.run([sys.executable, "-m", "actorlearner", "export", run, "--format", "tflite", "-o", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0 and out.stat().st_size > 1000, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "actorlearner", "export", str(tmp_path), "--format", "tflite"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].endswith("a run directory?"), proc.stderr
    with pytest.raises(ConfigError, match="--format must be one of"):
        export_policy(run, "onnx")


def test_an_interrupted_savedmodel_export_leaves_no_half_written_directory(tmp_path, monkeypatch):
    run = fake_run(tmp_path, CASES["mlp-discrete"])
    old = export_policy(run, "savedmodel")  # an earlier export, which must survive the interrupted one
    real_save = tf.saved_model.save

    def save_then_interrupt(obj, export_dir, **kw):
        real_save(obj, export_dir, **kw)  # the files are there, as part way through a real save
        raise KeyboardInterrupt

    monkeypatch.setattr(tf.saved_model, "save", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        export_policy(run, "savedmodel")
    assert not (tmp_path / "run" / "policy_savedmodel.export-tmp").exists()
    assert tf.saved_model.load(old).signatures["serving_default"] is not None


def test_export_into_an_existing_directory_keeps_what_it_holds(tmp_path):
    """-o DIR once replaced DIR whole: `-o .` or `-o RUN_DIR` deleted everything in it, checkpoints too."""
    run = fake_run(tmp_path, CASES["mlp-discrete"])
    kept = sorted(os.listdir(run))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    assert export_policy(run, "savedmodel", str(mine)) == str(mine / "policy_savedmodel")
    assert export_policy(run, "tflite", str(mine)) == str(mine / "policy.tflite")
    assert export_policy(run, "savedmodel", run) == os.path.join(run, "policy_savedmodel")
    assert (mine / "notes.txt").read_text() == "precious"
    assert set(kept) <= set(os.listdir(run))
    old = export_policy(run, "savedmodel", str(mine / "policy_savedmodel"))  # an earlier SavedModel: replaced
    assert tf.saved_model.load(old).signatures["serving_default"] is not None
    with pytest.raises(ConfigError, match="is a file; a SavedModel export replaces only an earlier SavedModel"):
        export_policy(run, "savedmodel", str(mine / "notes.txt"))
    with pytest.raises(ConfigError, match="is a directory; a TFLite export is a file"):
        export_policy(run, "tflite", str(mine / "policy_savedmodel"))
    assert (mine / "notes.txt").read_text() == "precious"
