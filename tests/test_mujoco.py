"""gymnasium's MuJoCo tasks (the `mujoco` extra): the preset applies by id, and a task is learned."""

import json
import subprocess
import sys

import pytest

from actorlearner.config import Config
from actorlearner.config_sources import with_preset
from actorlearner.presets import PRESETS, is_mujoco, preset_for_env
from conftest import ROOT


def test_mujoco_ids_get_the_mujoco_preset():
    for env_id in ("Hopper-v5", "HalfCheetah-v4", "Humanoid-v5", "mymodule:Walker2d-v5", "InvertedPendulum-v5"):
        assert is_mujoco(env_id) and preset_for_env(env_id) == "mujoco", env_id
    for env_id in ("Hopper", "Hopper-vX", "ALE/Pong-v5", "Pendulum-v1", "MyHopper-v5", None):
        assert not is_mujoco(env_id), env_id
    assert preset_for_env("Pendulum-v1") == "pendulum"
    cfg = with_preset(Config(), {"env": "Hopper-v5", "learning_rate": 5e-4})
    assert cfg.preset == "mujoco" and cfg.loss == PRESETS["mujoco"]["loss"] and cfg.learning_rate == 5e-4
    assert with_preset(Config(), {"env": "Hopper-v5", "preset": "none"}).loss == Config().loss


def test_inverted_pendulum_is_solved_with_the_mujoco_preset(tmp_path, no_leaks):
    """From the command line, as a user runs it: the preset by id, gymnasium's target (950), a confirmed solve,
    and the saved policy holds it when played afresh."""
    pytest.importorskip("mujoco", reason="the mujoco extra is not installed (pip install -e .[mujoco])")
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "actorlearner", "train", "--env", "InvertedPendulum-v5", "--seed",
                           "1", "--max-seconds", "60", "--run-dir", str(run_dir)],
                          capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(preset mujoco)" in proc.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["solved"] and summary["mean_return_100"] >= 950, summary
    played = subprocess.run([sys.executable, "-m", "actorlearner", "eval", str(run_dir), "--episodes", "20"],
                            capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert played.returncode == 0, played.stderr[-3000:]
    assert float(played.stdout.split(": return ")[1].split(" ")[0]) >= 950, played.stdout
