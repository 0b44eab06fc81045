"""Pixels: the default CNN learns from images, and an Atari id trains out of the box (ALE vector env, uint8
observations end to end, CNN actors without TensorFlow), plays a video of the game's own frames, exports, and leaves no
process or shared-memory segment behind."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from actorlearner.precision import bf16_hardware, int8_hardware
from conftest import ROOT, our_segments, spawned_pids

# What `--actor-inference auto` runs the default CNN in: LiteRT where ai-edge-litert is installed (the atari extra).
ENGINE = "LiteRT" if importlib.util.find_spec("ai_edge_litert") else "numpy"
BF16_HARDWARE = bf16_hardware()  # what --learner-precision auto looks for (actorlearner/precision.py)


def cli(tmp_path, *args, timeout=180):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}  # custom_envs.py is importable, not installed
    return subprocess.run([sys.executable, "-m", "actorlearner", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=tmp_path, env=env)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_default_cnn_solves_an_image_task(tmp_path, precision):
    """BrightSquare: the rewarded action is the quadrant a bright square is drawn in, in an 84x84 frame;
    chance earns 2.5 of 10. Solved (confirmed on 20 fresh episodes) by the default model, with the learner's torso in
    either number format: 21 s alone on a slow day (2026-12-07), 28-31 s in CI beside another test; 120 s bounds
    a run that does not solve."""
    if precision == "bfloat16" and not BF16_HARDWARE:
        pytest.skip("the CPU has neither AMX-BF16 nor AVX512-BF16: bfloat16 would run emulated, far slower than "
                    "the 120 s budget assumes")
    before = spawned_pids()
    proc = cli(tmp_path, "train", "--env", "custom_envs:BrightSquare-v0", "--seed", "1", "--max-seconds", "120",
               "--eval-every-s", "0", "--learner-precision", precision, "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "observations 84x84x1 uint8" in proc.stdout and f"{ENGINE} (the default impala-shallow model" in proc.stdout
    assert f"in {precision} (--learner-precision" in proc.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["solved"] and summary["confirm_return_mean"] >= 9.0, proc.stdout[-3000:]
    assert summary["learner_precision"] == precision
    device = summary["learner_device"]  # "CPU" here; a line at start-up names a GPU
    assert device == "CPU" or device.startswith("GPU:0"), device
    assert ("the learner runs on" in proc.stdout) == (device != "CPU"), proc.stdout[-3000:]
    assert device == "CPU" or f"the learner runs on {device}" in proc.stdout, proc.stdout[-3000:]
    if "TF_ENABLE_ONEDNN_OPTS" not in os.environ:  # the run turns oneDNN on for the CNN, whatever the CPU
        assert ", oneDNN kernels |" in proc.stdout and summary["learner_onednn"] is True, summary
    assert spawned_pids() - before == set(), "actor processes outlived the run"


@pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None,
                    reason="ai-edge-litert is not installed (pip install -e '.[atari]'): int8 kernels run under LiteRT")
def test_actors_with_int8_kernels_solve_the_image_task(tmp_path):
    """--actor-precision int8: the actors act on a rounded copy of the policy (their log-probabilities its own, which
    V-trace corrects for) and the task is still solved, confirmed by the float32 policy (24 s alone on a slow day,
    30-37 s in CI beside another test; 120 s bounds a run that does not)."""
    proc = cli(tmp_path, "train", "--env", "custom_envs:BrightSquare-v0", "--seed", "1", "--max-seconds", "120",
               "--eval-every-s", "0", "--actor-precision", "int8", "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "LiteRT (the default impala-shallow model, int8 kernels" in proc.stdout, proc.stdout
    assert "differ from the numpy twin" not in proc.stderr, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["solved"] and summary["confirm_return_mean"] >= 9.0, proc.stdout[-3000:]


NEEDS_ALE = pytest.mark.skipif(importlib.util.find_spec("ale_py") is None,
                               reason="ale-py is not installed (the atari extra: pip install -e '.[atari]')")


@NEEDS_ALE
def test_old_atari_ids_point_to_the_v5_one(tmp_path):
    """ale-py's v0/v4 ids (raw frames, no sticky actions) would train without the Atari preprocessing: refused in
    one line that names the id to use, before anything starts."""
    proc = cli(tmp_path, "train", "--env", "PongNoFrameskip-v4", "--run-dir", str(tmp_path / "run"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "ALE/Pong-v5" in lines[0], proc.stderr
    assert not (tmp_path / "run").exists()


@NEEDS_ALE
def test_a_game_named_without_its_namespace_points_to_its_id():
    """`pong` or `SpaceInvaders` is not an id; the error names the one that is (a close match on the whole id
    finds nothing there)."""
    from actorlearner.config import ConfigError
    from actorlearner.env_registry import check_env_id

    for name, hint in (("pong", "ALE/Pong-v5"), ("SpaceInvaders", "ALE/SpaceInvaders-v5"),
                       ("mountaincar", "MountainCar-v0")):
        with pytest.raises(ConfigError, match=f"unknown gymnasium env id '{name}' \\(did you mean {hint}"):
            check_env_id(name)


@NEEDS_ALE
def test_pong_smoke_run_video_and_export(tmp_path):
    before = spawned_pids()
    shm_before = our_segments()
    run = tmp_path / "run"
    # A step budget, not a time one: beside another test its actors (nice +19) get what the learner leaves them.
    # 15 s alone; the whole test took 74-108 s in CI beside other tests, so the bound is wide. One evaluation
    # episode (the final one: 759 steps of Pong), not the preset's 5, which took 7 s alone.
    proc = cli(tmp_path, "train", "--env", "ALE/Pong-v5", "--max-steps", "2000", "--max-seconds", "300",
               "--eval-episodes", "1", "--run-dir", str(run), timeout=360)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "(preset pong)" in out and "ale backend" in out and "observations 84x84x4 uint8" in out, out
    assert "target return 18 |" in out, out
    assert f"{ENGINE} (the default impala-shallow model" in out and "MB per actor" in out
    # The preset's --actor-precision auto: int8 kernels where LiteRT runs the CNN on a CPU with VNNI
    assert ("int8 kernels" in out) == (ENGINE == "LiteRT" and int8_hardware() is not None), out
    assert ("--actor-precision auto: the CPU has" in out) == (ENGINE == "LiteRT"), out
    assert "in float32 (--learner-precision" in out  # the default, whatever auto would pick
    assert "(processes, nice +19)" in out, out  # Atari's actors far below the learner, which is the limit
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "max_steps" and summary["learner_steps"] >= 2, summary
    with np.load(run / "policy.npz") as saved:
        layout = dict((p, tuple(s)) for p, s in json.loads(str(saved["layout"])))
    assert layout["conv_0/kernel"] == (8, 8, 4, 16) and layout["policy/kernel"] == (256, 6)
    assert spawned_pids() - before == set(), "actor processes outlived the run"
    assert our_segments() - shm_before == set(), "segments left in /dev/shm"

    # Episodes cut at 600 frames, 150 agent steps (an untrained policy loses 21-0 in ~760): the GIF (a frame an
    # agent step) is what is checked here.
    proc = cli(tmp_path, "eval", str(run), "--episodes", "1", "--video", str(tmp_path / "pong.gif"), "--env-kwargs",
               "max_episode_steps=600")
    assert proc.returncode == 0, proc.stderr[-3000:]
    import imageio.v3 as iio

    frames = iio.imread(tmp_path / "pong.gif")
    assert frames.shape[1:] == (210, 160, 3) and len(frames) > 100  # the game's RGB frames, not the 84x84 input

    proc = cli(tmp_path, "export", str(run), "--format", "tflite")
    assert proc.returncode == 0 and (run / "policy.tflite").stat().st_size > 2_000_000, proc.stderr[-3000:]


def test_deep_cnn_learner_step_prints_no_grappler_error(tmp_path):
    """Grappler's remapper fails on the deep net's residual blocks (TF 2.21) and printed `E0000 ... remapper
    failed: INVALID_ARGUMENT` on every impala-deep run; model.py turns it off for that net."""
    out = cli(tmp_path, "train", "--env", "custom_envs:BrightSquare-v0", "--model", "impala-deep", "--max-steps", "1",
              "--num-actors", "1", "--envs-per-actor", "2", "--batch-size", "2", "--unroll-length", "4",
              "--eval-every-s", "0", "--run-dir", "run", timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["learner_steps"] >= 1
    assert "remapper failed" not in out.stderr + out.stdout, out.stderr
