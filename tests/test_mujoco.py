"""gymnasium's MuJoCo tasks (the `mujoco` extra): the preset applies by id, and a task is learned."""

import ctypes.util
import json
import os
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
    assert preset_for_env("HalfCheetah-v5") == "halfcheetah"  # its own (a narrower starting policy)
    assert {**PRESETS["mujoco"], "init_log_std": -1.0, "target_kl_from": "batch",
            "env": "HalfCheetah-v5"} == PRESETS["halfcheetah"]
    cfg = with_preset(Config(), {"env": "Hopper-v5", "learning_rate": 5e-4})
    assert cfg.preset == "mujoco" and cfg.loss == PRESETS["mujoco"]["loss"] and cfg.learning_rate == 5e-4
    assert with_preset(Config(), {"env": "Hopper-v5", "preset": "none"}).loss == Config().loss


@pytest.fixture(scope="module")
def pendulum_run(tmp_path_factory):
    """InvertedPendulum-v5 trained from the command line, as a user runs it: (run dir, its stdout). 17 s alone on a
    slow day (2026-12-07), 30-34 s in CI beside another test; 120 s bounds a run that does not solve."""
    pytest.importorskip("mujoco", reason="the mujoco extra is not installed (pip install -e .[mujoco])")
    run_dir = tmp_path_factory.mktemp("mujoco") / "run"
    proc = subprocess.run([sys.executable, "-m", "actorlearner", "train", "--env", "InvertedPendulum-v5", "--seed",
                           "1", "--max-seconds", "120", "--run-dir", str(run_dir)],
                          capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, proc.stdout


def test_inverted_pendulum_is_solved_with_the_mujoco_preset(pendulum_run):
    """The preset by id, gymnasium's target (950, of at most 1,000), a confirmed solve, and the saved policy
    holds it when played afresh (a random policy lasts ~5-10 steps)."""
    run_dir, stdout = pendulum_run
    assert "(preset mujoco)" in stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["solved"] and summary["mean_return_100"] >= 950, summary
    played = subprocess.run([sys.executable, "-m", "actorlearner", "eval", str(run_dir), "--episodes", "20"],
                            capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert played.returncode == 0, played.stderr[-3000:]
    assert float(played.stdout.split(": return ")[1].split(" ")[0]) >= 950, played.stdout


def test_video_of_a_mujoco_task_without_a_display(pendulum_run, tmp_path):
    """MuJoCo draws through GLFW by default, which needs a display: `eval --video` picks EGL without one
    (cli.headless_mujoco_rendering), where it failed with a traceback before."""
    if ctypes.util.find_library("EGL") is None:
        pytest.skip("no libEGL on this machine (MuJoCo's off-screen OpenGL)")
    run_dir, _ = pendulum_run
    video = tmp_path / "pendulum.mp4"
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MUJOCO_GL")}
    # A 200-step episode: its 1,000 steps took 28 s alone to draw (software OpenGL) and encode, 200 take 7 s.
    played = subprocess.run([sys.executable, "-m", "actorlearner", "eval", str(run_dir), "--episodes", "1",
                             "--video", str(video), "--env-kwargs", "max_episode_steps=200"],
                            capture_output=True, text=True, timeout=180, cwd=ROOT, env=env)
    assert played.returncode == 0, played.stderr[-3000:]
    assert "video: " in played.stdout and "(201 frames" in played.stdout, played.stdout  # reset + 200 steps
    assert video.stat().st_size > 10_000


def test_headless_rendering_choice():
    from actorlearner.cli import headless_mujoco_rendering

    for environ, platform, expected in (({}, "linux", "egl"), ({"DISPLAY": ":0"}, "linux", None),
                                        ({"MUJOCO_GL": "osmesa"}, "linux", "osmesa"), ({}, "darwin", None)):
        headless_mujoco_rendering(environ, platform)
        assert environ.get("MUJOCO_GL") == expected, (environ, platform)


_UNSTABLE = '''
import multiprocessing as mp, sys
import mujoco, numpy as np
from actorlearner.envs import make_env_fn

def unstable_steps(n):  # MuJoCo warns of a NaN velocity at each step, its time in the text
    model = mujoco.MjModel.from_xml_string("<mujoco><worldbody><body><joint type='slide'/><geom size='.1'/>"
                                           "</body></worldbody></mujoco>")
    for i in range(n):
        data = mujoco.MjData(model)
        data.qvel[0], data.time = np.nan, i
        mujoco.mj_step(model, data)

def actor():
    make_env_fn("InvertedPendulum-v5")().close()
    unstable_steps(2)

if __name__ == "__main__":
    make_env_fn("InvertedPendulum-v5")().close()  # sets the callback
    unstable_steps(3)
    print("child", flush=True)
    p = mp.get_context("spawn").Process(target=actor)
    p.start(); p.join(60)
    sys.exit(p.exitcode)
'''


def test_mujoco_warnings_are_said_once_and_leave_no_log_file(tmp_path):
    pytest.importorskip("mujoco", reason="the mujoco extra is not installed (pip install -e .[mujoco])")
    (tmp_path / "unstable.py").write_text(_UNSTABLE)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ACTORLEARNER_MUJOCO_WARNED", None)
    out = subprocess.run([sys.executable, "unstable.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    said = [line for line in (out.stdout + out.stderr).splitlines() if "MuJoCo warning" in line]
    assert len(said) == 1 and "QVEL" in said[0], out  # three warnings of one kind; the actor's too
    assert out.stdout.index("MuJoCo warning") < out.stdout.index("child"), out.stdout
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
