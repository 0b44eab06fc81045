"""Bad values and a shared run directory: one line, exit status 2, before any process starts."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from test_cli import run_cli


def test_abbreviated_flags_are_not_guessed(tmp_path):
    proc = run_cli("train", "--lr", "nan", "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 2 and "unrecognized arguments: --lr" in proc.stderr, proc.stderr


@pytest.mark.parametrize("kind", ["file", "unusable"])
def test_run_dir_that_cannot_be_used(tmp_path, kind):
    if kind == "file":
        path = tmp_path / "plain-file"
        path.write_text("not a directory")
        message = "exists and is not a directory"
    else:
        path = "/proc/actorlearner-run"  # cannot be created, even by root
        message = "cannot be used" if os.geteuid() == 0 else "not writable"
    proc = run_cli("train", "--run-dir", str(path), "--max-steps", "1000")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_yaml_exponent_numbers_are_floats(tmp_path):
    from actorlearner.config_sources import load_config_file

    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 1e-3\nadam_epsilon: 1e-7\n")
    from actorlearner.config_sources import checked_fields

    assert checked_fields(load_config_file(str(path))) == {"learning_rate": 1e-3, "adam_epsilon": 1e-7}


def test_one_run_per_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "actorlearner", "train", "--run-dir", str(run_dir),
                              "--max-seconds", "60", "--no-stop-at-target", "--checkpoint-every", "1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        deadline = time.monotonic() + 55  # start-up took 7-18 s alone; the run's own --max-seconds is 60
        while not list(run_dir.glob("checkpoints/ckpt-*.npz")):
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.1)
        for again in (["--run-dir", str(run_dir)], ["--resume", str(run_dir)]):
            proc = run_cli("train", *again, "--max-steps", "1000")
            assert proc.returncode == 2, proc.stderr
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1 and f"in use by another run (process {first.pid})" in lines[0], proc.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    time.sleep(1.5)  # its actors notice the dead learner and leave
    # A new run cannot go there (it would mix with the dead run's files); the dead run's lock is taken over by
    # its --resume, with a warning naming it.
    proc = run_cli("train", "--run-dir", str(run_dir), "--max-steps", "2000")
    assert proc.returncode == 2 and f"--run-dir {run_dir} holds a run already: --resume" in proc.stderr, proc.stderr
    from actorlearner import checkpoint

    trained = checkpoint.load_latest(str(run_dir), print).meta["stats"]["elapsed_s"]  # --max-seconds: from the start
    proc = run_cli("train", "--resume", str(run_dir), "--max-seconds", f"{trained + 3:.1f}", "--eval-every-s", "0",
                   timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"taking over the lock of process {first.pid}" in proc.stderr + proc.stdout
    assert (run_dir / ".lock").read_text() == ""  # released at the end


def test_a_new_run_in_a_finished_runs_directory_is_refused(tmp_path):
    """It appended to the old metrics and overwrote or mixed with its checkpoints; --resume is the way in."""
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "ckpt-000000010.npz").write_bytes(b"")
    (run_dir / "config.json").write_text("{}")
    before = sorted(p.name for p in run_dir.rglob("*"))
    proc = run_cli("train", "--run-dir", str(run_dir))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert f"--run-dir {run_dir} holds a run already: --resume {run_dir} continues it" in lines[0]
    assert sorted(p.name for p in run_dir.rglob("*")) == before  # nothing written
    # A run stopped before its first checkpoint: --resume cannot continue it, so neither error sends there (each
    # sent the user to the other: 'holds a run already: --resume', then 'no checkpoint: nothing to resume').
    (run_dir / "checkpoints" / "ckpt-000000010.npz").unlink()
    proc = run_cli("train", "--run-dir", str(run_dir))
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"actorlearner: error: --run-dir {run_dir} holds a run that stopped before its first checkpoint (nothing to "
        "resume): a new run needs another --run-dir, or this one deleted"], proc.stderr
    (run_dir / "config.json").write_text(json.dumps({"env": "CartPole-v1"}))
    proc = run_cli("train", "--resume", str(run_dir))
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"actorlearner: error: --resume {run_dir}: the run stopped before its first checkpoint, so there is nothing "
        "to resume: start a new run (another --run-dir, or this one deleted)"], proc.stderr
    empty = tmp_path / "empty"
    empty.mkdir()  # a directory made for the run is fine
    proc = run_cli("train", "--run-dir", str(empty), "--max-steps", "1000", "--eval-every-s", "0", timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_env_constructor_that_raises_is_named(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    proc = subprocess.run([sys.executable, "-m", "actorlearner", "train", "--env", "faulty_envs:RaisesOnCreate-v0",
                           "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env=env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "could not create the env faulty_envs:RaisesOnCreate-v0" in lines[0]
    assert "RuntimeError: no licence for this simulator" in lines[0]


def test_bfloat16_on_the_mlp_is_refused_before_start(tmp_path):
    proc = run_cli("train", "--env", "CartPole-v1", "--learner-precision", "bfloat16",
                   "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--learner-precision bfloat16 applies to the default CNNs" in lines[0], proc.stderr


def test_settings_a_run_does_not_read_are_named():
    """Said at start-up (a warning): `--hidden-sizes` with a CNN trained for 78 s here with no word that it did
    nothing. Defaults and every preset (with its env's model) say nothing."""
    import importlib.util

    from actorlearner.config import Config
    from actorlearner.config_sources import preset_config
    from actorlearner.envs import inspect_env, make_env_fn
    from actorlearner.layout import model_kind
    from actorlearner.presets import PRESETS, is_mujoco
    from actorlearner.preflight import unused_settings

    said = unused_settings(Config(hidden_sizes=(32,), activation="relu", core_size=64), True, "impala-deep", False)
    assert [flags for flags, _ in said] == ["--hidden-sizes and --activation", "--core-size"]
    assert "this run's model is impala-deep" in said[0][1]
    assert [f for f, _ in unused_settings(Config(init_log_std=0.5), True, "mlp", False)] == ["--init-log-std"]
    assert unused_settings(Config(init_log_std=0.5), False, "mlp", False) == []  # Box actions read it
    assert [f for f, _ in unused_settings(Config(activation="relu"), True, "mlp", True)] == ["--activation"]
    assert unused_settings(Config(), True, "impala-shallow", True) == []
    memory = preset_config("cue-memory", core="none")  # the preset's core size is not the user's
    assert unused_settings(memory, True, "mlp", False) == []
    assert [f for f, _ in unused_settings(memory.replace(core_size=16), True, "mlp", False)] == ["--core-size"]
    for_every = {"atari": "ALE/Breakout-v5", "mujoco": "Hopper-v5", "continuous": "MountainCarContinuous-v0",
                 "minigrid": "MiniGrid-DoorKey-5x5-v0"}
    for name in PRESETS:
        cfg = preset_config(name, env=PRESETS[name].get("env") or for_every[name])
        if cfg.env.startswith("ALE/") and importlib.util.find_spec("ale_py") is None:
            continue
        if is_mujoco(cfg.env) and importlib.util.find_spec("mujoco") is None:
            continue
        if cfg.env.startswith(("LunarLander", "BipedalWalker")) and importlib.util.find_spec("Box2D") is None:
            continue
        if cfg.env.startswith("MiniGrid") and importlib.util.find_spec("minigrid") is None:
            continue
        spec = inspect_env(make_env_fn(cfg.env))
        assert unused_settings(cfg, spec.discrete, model_kind(spec, cfg.model), False) == [], name


def test_a_script_that_calls_train_without_a_main_guard_is_told_so(tmp_path):
    """spawn imports the main script in every actor process; a script that calls train() at its top level called
    it again there, and each actor died on the run directory's lock: 5 restarts of tracebacks, then 'actor 0 died
    5 times'. The first such actor now stops the run with what to do."""
    from conftest import our_segments, spawned_pids

    script = tmp_path / "unguarded.py"
    script.write_text("from actorlearner import Config, train\n"
                      f"train(Config(max_seconds=60, eval_every_s=0, run_dir={str(tmp_path / 'run')!r}))\n")
    before, segments = spawned_pids(), our_segments()
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "actorlearner.actor_pool.ScriptNotGuarded: the actor processes ran your script's call to train() again: they "
        "are started with spawn, which imports the main module in each of them; call train() under "
        "`if __name__ == \"__main__\":`")
    assert "in use by another run" not in proc.stderr and "restart" not in proc.stdout
    assert time.monotonic() - t0 < 60
    assert spawned_pids() - before == set() and our_segments() - segments == set()


def test_an_env_fn_or_model_fn_that_cannot_reach_the_actors_is_refused_before_start():
    """A factory holding a lock (a global of __main__, pickled with it by value) failed after the run had
    started, with a bare 'TypeError: cannot pickle _thread.lock object' from the pickler."""
    import threading

    import gymnasium as gym

    from actorlearner.config import Config, ConfigError
    from actorlearner.preflight import prepare

    lock = threading.Lock()

    def env_fn():
        with lock:
            return gym.make("CartPole-v1")

    with pytest.raises(ConfigError, match=r"^env_fn cannot be sent to the actor processes \(TypeError: cannot pickle "
                                          r"'_thread.lock' object\): it and what it refers to"):
        prepare(Config(), env_fn=env_fn)
    with pytest.raises(ConfigError, match=r"^model_fn cannot be sent to the actor processes"):
        prepare(Config(), model_fn=lambda spec: lock)
    assert prepare(Config(serial=True), env_fn=env_fn)[2].obs_shape == (4,)  # one process: nothing to send


def test_python_api_mistakes_are_named(tmp_path):
    """train('CartPole-v1') and train({...}) were AttributeErrors from deep inside; an env instance passed as
    env_fn, or a model instance (callable: Keras models are) as model_fn, failed later and less clearly."""
    import gymnasium as gym

    from actorlearner import Config, ConfigError, train

    cfg = Config(max_steps=1000, run_dir=str(tmp_path / "run"))
    for wrong in ("CartPole-v1", {"env": "CartPole-v1"}):
        with pytest.raises(ConfigError, match=r"train\(\) takes a Config, e.g. actorlearner.Config\(env="):
            train(wrong)
    with pytest.raises(ConfigError, match="env_fn must be a callable .* got an env itself"):
        train(cfg, env_fn=gym.make("CartPole-v1"))

    class ModelLike:  # what matters of a keras.Model here: callable, with layers
        layers = []

        def __call__(self, x):
            return x

    with pytest.raises(ConfigError, match="model_fn must be a function that builds the model.* got a model itself"):
        train(cfg, model_fn=ModelLike())
    with pytest.raises(ConfigError, match="got a value of type int"):
        train(cfg, model_fn=3)
    assert not (tmp_path / "run").exists()


def test_a_resumed_runs_own_setting_that_clashes_is_named(tmp_path):
    """A run resumed once with --serial keeps it; resuming it again with --backend ray said '--serial ... does not
    go with --backend ray' to a user who had not given --serial."""
    from actorlearner import Config, ConfigError, resume_config
    from actorlearner.run_files import RunDir

    run = RunDir(str(tmp_path / "run"))
    run.write_json("config.json", Config(serial=True, run_dir=run.path).to_json())
    run.close()
    with pytest.raises(ConfigError, match=r"does not go with --backend ray \(--serial: the run's own setting, which a "
                                          r"resumed run keeps unless a flag changes it\)"):
        resume_config(run.path, {"backend": "ray"})
    assert resume_config(run.path, {"backend": "ray", "serial": False}).backend == "ray"
