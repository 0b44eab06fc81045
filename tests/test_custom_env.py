"""Custom envs from the command line: a `module:Env-v0` id and `--env-module` import a module that registers
envs, in the launcher and in every actor process, and the run trains on it."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT


def train(tmp_path, *args, **environ):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests"), **environ}  # custom_envs.py is importable
    # A run stops once solved; 120 s bounds a slow day with another test running beside (the custom Keras model's
    # test took 36 s in all so, its actors importing TensorFlow).
    proc = subprocess.run([sys.executable, "-m", "actorlearner", "train", "--run-dir", str(tmp_path / "run"),
                           "--max-seconds", "120", "--eval-every-s", "0", *args],
                          capture_output=True, text=True, timeout=240, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, json.loads((tmp_path / "run" / "summary.json").read_text())


@pytest.mark.parametrize("how", [["--env", "custom_envs:MatchSign-v0"],
                                 ["--env-module", "custom_envs", "--env", "MatchSign-v0", "--serial"]],
                         ids=["module-prefix", "env-module-serial"])
def test_custom_env_module_trains_through_the_cli(tmp_path, how):
    proc, summary = train(tmp_path, *how)
    # MatchSign pays 10 to a policy that reads its observation and 5 to chance; its threshold is 9.
    assert summary["solved"] and summary["mean_return_100"] >= 9.0, proc.stdout
    assert "gymnasium backend" in proc.stdout
    assert summary["policy_collapses"] == 0  # the policy learned to read its input: no collapse warning
    # eval imports the run's modules as training did (an --env-module run's id was unknown to it)
    proc = subprocess.run([sys.executable, "-m", "actorlearner", "eval", str(tmp_path / "run"), "--episodes", "2"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "tests")})
    assert proc.returncode == 0 and "MatchSign-v0, final weights" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("multi", ["discrete", "binary"])
def test_multi_discrete_and_multi_binary_actions_are_learned(tmp_path, multi):
    """MatchSign with MultiDiscrete([2, 3]) or MultiBinary(3) actions: one categorical per component, each of
    which must read the observation (chance earns ~4.2 and 5 of the 10 a reading policy earns). The env asserts
    that every action it gets is in its space, so a wrong shape or dtype would show as env errors."""
    proc, summary = train(tmp_path, "--env", "custom_envs:MatchSign-v0", "--env-kwargs", f"multi={multi}")
    assert summary["solved"] and summary["mean_return_100"] >= 9.0, proc.stdout
    assert summary["env_errors"] == 0 and summary["policy_collapses"] == 0, proc.stdout
    assert ("actions of 2 x 3 choices" if multi == "discrete" else "actions of 2 x 2 x 2 choices") in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "actorlearner", "eval", str(tmp_path / "run"), "--episodes", "5",
                           "--deterministic"], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "tests")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"deterministic: return 10(\.0)? ", proc.stdout), proc.stdout  # every component right


def test_frame_stack_lets_a_policy_without_memory_use_the_previous_observation(tmp_path):
    """MatchSign with lag=True rewards the previous step's sign: one observation earns chance (~5.5 of 10), two
    stacked (--frame-stack 2, the older one first) earn 10."""
    proc, summary = train(tmp_path, "--env", "custom_envs:MatchSign-v0", "--env-kwargs", "lag=true",
                          "--frame-stack", "2")
    assert summary["solved"] and summary["mean_return_100"] >= 9.0, proc.stdout
    assert "--frame-stack 2: single envs, each stacked" in proc.stdout and "observations 2 float32" in proc.stdout


def test_the_actorlearner_command_finds_an_env_module_in_the_working_directory(tmp_path):
    """The README's `actorlearner train --env my_envs:GridWorld-v0`, run beside my_envs.py: the console script,
    unlike `python -m`, does not put the working directory on sys.path, and the module was not found."""
    command = Path(sys.executable).parent / "actorlearner"
    if not command.exists():
        pytest.skip(f"no actorlearner command beside {sys.executable} (the package is not pip-installed)")
    shutil.copy(ROOT / "tests" / "custom_envs.py", tmp_path / "my_envs.py")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(command), "train", "--env", "my_envs:MatchSign-v0", "--run-dir", str(tmp_path / "run"),
                           "--max-seconds", "120", "--eval-every-s", "0", "--num-actors", "2"],
                          capture_output=True, text=True, timeout=240, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["solved"] and summary["actor_restarts"] == 0, summary  # the actor processes found it too
    # The run says where it found the module, and eval from another directory looks there; once the module has
    # moved, the one line names both places.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    evaluate = [str(command), "eval", str(tmp_path / "run"), "--episodes", "2"]
    proc = subprocess.run(evaluate, capture_output=True, text=True, timeout=120, cwd=elsewhere, env=env)
    assert proc.returncode == 0 and proc.stdout.startswith("my_envs:MatchSign-v0"), proc.stdout + proc.stderr
    (tmp_path / "my_envs.py").rename(tmp_path / "moved.py")
    proc = subprocess.run(evaluate, capture_output=True, text=True, timeout=120, cwd=elsewhere, env=env)
    assert proc.returncode == 2 and proc.stderr == (
        f"actorlearner: error: no env module 'my_envs' on the Python path, in the working directory ({elsewhere}) or "
        f"in {tmp_path}, where the run found it: run from the directory that holds it, or add that directory to "
        "PYTHONPATH\n"), proc.stderr
    # An env edited since the run (two observations instead of one) is named as that, not as a custom model
    changed = (tmp_path / "moved.py").read_text().replace("observation_space = gym.spaces.Box(-1.0, 1.0, (1,)",
                                                            "observation_space = gym.spaces.Box(-1.0, 1.0, (2,)", 1)
    (tmp_path / "my_envs.py").write_text(changed.replace("np.array([self.sign], np.float32)",
                                                         "np.array([self.sign, 0.0], np.float32)"))
    proc = subprocess.run(evaluate, capture_output=True, text=True, timeout=120, cwd=elsewhere, env=env)
    assert proc.returncode == 2 and (f"{tmp_path / 'run'} trained on an env that has changed since (observations 1 "
                                     "float32 then, 2 float32 now)") in proc.stderr, proc.stderr
    # Actions changed where the weights keep their shapes (MultiBinary(1): 2 logits, as Discrete(2)): the layout
    # check cannot see it, the run's env_spec.json can.
    (tmp_path / "my_envs.py").write_text((tmp_path / "moved.py").read_text().replace(
        "Box(-1.0, 1.0, (1,), np.float32)\n    action_space = gym.spaces.Discrete(2)",
        "Box(-1.0, 1.0, (1,), np.float32)\n    action_space = gym.spaces.MultiBinary(1)", 1).replace(
        "float(int(action) - self.start == up)", "float(int(np.asarray(action).reshape(-1)[0]) == up)"))
    proc = subprocess.run(evaluate, capture_output=True, text=True, timeout=120, cwd=elsewhere, env=env)
    assert proc.returncode == 2 and "(actions 2 actions then, actions of 2 choices now)" in proc.stderr, proc.stderr


def test_unimportable_env_module_is_one_line(tmp_path):
    """A module that is nowhere gets the way to make it found; one that fails inside gets its own error."""
    (tmp_path / "broken_envs.py").write_text("import no_such_dependency_xyz\n")
    for env_id, message in (("no_such_module_xyz:Foo-v0", "no env module 'no_such_module_xyz' on the Python path "
                             f"or in the working directory ({tmp_path}): run from the directory that holds it"),
                            ("broken_envs:Foo-v0", "could not import env module 'broken_envs': ModuleNotFoundError: "
                             "No module named 'no_such_dependency_xyz'")):
        proc = subprocess.run([sys.executable, "-m", "actorlearner", "train", "--env", env_id, "--run-dir",
                               str(tmp_path / "run")], capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], proc.stderr


@pytest.mark.skipif(not hasattr(os, "nice"), reason="no Unix niceness on this OS")
def test_actor_processes_run_below_the_learners_priority(tmp_path):
    """--actor-nice 7: the actor processes (not the launcher, which makes an env to read its spaces) run at
    the launcher's niceness + 7; the start-up line says so."""
    probe = tmp_path / "nice.txt"
    proc, summary = train(tmp_path, "--env", "custom_envs:NiceProbe-v0", "--num-actors", "2", "--actor-nice", "7",
                          AL_TEST_NICE_FILE=str(probe))
    assert summary["solved"], summary
    base = os.nice(0)  # the launcher inherited this process's
    seen = {int(n) for n in (line.split()[1] for line in probe.read_text().splitlines())}
    assert seen == {base, min(base + 7, 19)}, probe.read_text()
    assert "2 actors (processes, nice +7)" in proc.stdout


@pytest.mark.parametrize("name", ["my_envs.py", "./my_envs", "envs/my_envs.py"])
def test_a_file_name_for_an_env_module_says_to_give_the_module_name(name):
    from actorlearner.config import ConfigError
    from actorlearner.env_registry import import_env_modules

    with pytest.raises(ConfigError, match=rf"^env module '{re.escape(name)}' is a file name: give the module's name "
                                          r"\('my_envs'\)"):
        import_env_modules((), f"{name}:GridWorld-v0")


MY_MODELS = '''
import os
import sys
import types

import keras
import matplotlib  # a model module's own imports work in actors, which import TensorFlow lean before it


def small(spec):
    if "MY_MODELS_LOG" in os.environ:  # each process that builds it: were TensorFlow's unused namespaces left lazy?
        with open(os.environ["MY_MODELS_LOG"], "a") as log:
            lazy = type(sys.modules["tensorflow._api.v2.compat"]) is not types.ModuleType
            log.write(f"{os.getpid()} {lazy} {matplotlib.__name__}\\n")
    obs = keras.Input(spec.obs_shape)
    h = keras.layers.Dense(16, activation="tanh")(obs)
    return keras.Model(obs, [keras.layers.Dense(spec.action_dim)(h), keras.layers.Dense(1)(h)])


def broken(spec):
    raise ValueError("boom")


def match_sign():
    import gymnasium as gym

    import custom_envs  # noqa: F401 - registers MatchSign-v0

    return gym.make("MatchSign-v0")
'''


def test_a_custom_model_named_on_the_command_line_trains_and_is_played_back(tmp_path):
    """--model-fn MODULE:FUNCTION, the module beside the command: the run trains the model (actors in TensorFlow),
    keeps the name in config.json and where it found the module, and eval from another directory builds the
    model again from there (no model_fn to pass, as a Python user would have to)."""
    (tmp_path / "my_models.py").write_text(MY_MODELS)
    log = tmp_path / "built.log"
    proc, summary = train(tmp_path, "--env", "custom_envs:MatchSign-v0", "--model-fn", "my_models:small",
                          MY_MODELS_LOG=str(log))
    assert "actors run the policy in TensorFlow (the model of --model-fn my_models:small)" in proc.stdout
    # The learner and both actors imported TensorFlow lean (tf_start.lean_tensorflow_import) before the module, which
    # then imported matplotlib as usual.
    built = {line.split()[0]: line.split()[1:] for line in log.read_text().splitlines()}
    assert len(built) == 3 and all(v == ["True", "matplotlib"] for v in built.values()), built
    assert summary["solved"] and summary["mean_return_100"] >= 9.0, proc.stdout
    assert "InitializeLog" not in proc.stderr  # TensorFlow's start-up notices, from the module's import of Keras
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run([sys.executable, "-m", "actorlearner", "eval", str(tmp_path / "run"), "--episodes", "5",
                           "--deterministic"], capture_output=True, text=True, timeout=120, cwd=elsewhere,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "tests")})
    assert proc.returncode == 0 and "InitializeLog" not in proc.stderr, proc.stdout + proc.stderr
    assert re.search(r"deterministic: return 10(\.0)? ", proc.stdout), proc.stdout  # the trained model's choices
    # The module edited since (a wider layer): one line, not a reshape's traceback.
    (tmp_path / "my_models.py").write_text(MY_MODELS.replace("Dense(16", "Dense(32"))
    proc = subprocess.run([sys.executable, "-m", "actorlearner", "eval", str(tmp_path / "run")], capture_output=True,
                          text=True, timeout=120, cwd=elsewhere, env={**os.environ, "PYTHONPATH": str(ROOT / "tests")})
    assert proc.returncode == 2 and proc.stderr.endswith(
        "weights do not fit the model --model-fn my_models:small builds now: it has changed since the run, or is not "
        "the run's model\n"), proc.stderr
    proc = subprocess.run([sys.executable, "-m", "actorlearner", "train", "--resume", str(tmp_path / "run"),
                           "--no-stop-at-target"], capture_output=True, text=True, timeout=120, cwd=elsewhere,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "tests")})
    assert proc.returncode == 2 and "its weights do not fit the model --model-fn my_models:small" in proc.stderr
    assert "actorlearner: custom_envs" not in proc.stdout  # refused before the start-up line: no process started


def test_a_model_fn_that_cannot_be_built_is_one_line_before_anything_starts(tmp_path, monkeypatch):
    from actorlearner import Config
    from actorlearner.config import ConfigError
    from actorlearner.config_checks import validate
    from actorlearner.config_sources import preset_config
    from actorlearner.model_fns import built_by, load_model_fn, model_fn_of
    from actorlearner.preflight import prepare

    (tmp_path / "my_models.py").write_text(MY_MODELS)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"--model-fn must be MODULE:FUNCTION, .* got 'my_models'"):
        validate(Config(model_fn="my_models"))
    with pytest.raises(ConfigError, match="--model mlp picks a default model and --model-fn builds your own"):
        validate(Config(model_fn="my_models:small", model="mlp"))
    with pytest.raises(ConfigError, match=r"module 'my_models' \(.*my_models.py\) has no function 'large'"):
        load_model_fn("my_models:large")
    with pytest.raises(ConfigError, match=r"no model module 'their_models' on the Python path"):
        load_model_fn("their_models:small")
    assert load_model_fn("my_models:small").__name__ == "small"
    # A bug in the user's function: one line naming it and where in its file, the original chained for Python users.
    boom = MY_MODELS.splitlines().index('    raise ValueError("boom")') + 1  # its line in the file
    with pytest.raises(ConfigError, match=r"^--model-fn my_models:broken failed to build the model: ValueError: boom "
                                          rf"\(.*my_models.py, line {boom}\)$") as err:
        built_by(load_model_fn("my_models:broken"), None, "--model-fn my_models:broken")
    assert isinstance(err.value.__cause__, ValueError)
    with pytest.raises(ConfigError, match="two custom models: model_fn= and --model-fn my_models:small"):
        model_fn_of(Config(model_fn="my_models:small"), lambda spec: None)
    # A preset's --normalize-obs (MountainCarContinuous gets the continuous one by its Box actions) is named as
    # the preset's, not as a flag the user never gave.
    cfg = preset_config("continuous", env="MountainCarContinuous-v0", model_fn="my_models:small")
    with pytest.raises(ConfigError, match=r"--preset continuous sets --normalize-obs, which works on the default "
                                          r"model; a custom model can normalize inside itself: --no-normalize-obs"):
        prepare(cfg, model_fn=load_model_fn(cfg.model_fn))


def test_a_model_fn_and_env_fn_passed_from_python_are_kept_by_name_where_another_process_can_import_them(
        tmp_path, monkeypatch, capsys):
    """train(cfg, env_fn=match_sign, model_fn=small), both defined at the top of a module with a file: the run names
    them (config.json, custom_env.json), so load_policy, evaluate and --resume (and the CLI's eval and export) build
    them without being given them; the same functions passed again are accepted. A lambda, a nested function or
    one of a script (module __main__) cannot be imported by another process: no name, as before."""
    from actorlearner import Config, evaluate, load_policy, resume_config, train
    from actorlearner.cli import main as cli_main
    from actorlearner.model_fns import importable_name, with_model_name

    (tmp_path / "py_models.py").write_text(MY_MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    import py_models

    run = str(tmp_path / "run")
    cfg = Config(env="match-sign", serial=True, max_steps=1_280, stop_at_target=False, eval_every_s=0, run_dir=run)
    train(cfg, env_fn=py_models.match_sign, model_fn=py_models.small)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model_fn"] == "py_models:small"
    assert json.loads((tmp_path / "run" / "custom_env.json").read_text())["env_fn_name"] == "py_models:match_sign"
    assert json.loads((tmp_path / "run" / "env_modules.json").read_text())["py_models"] == str(tmp_path)
    obs = np.array([[0.5], [-0.5]], np.float32)
    expected = load_policy(run, env_fn=py_models.match_sign, model_fn=py_models.small).value(obs)  # passed again
    assert np.array_equal(load_policy(run).value(obs), expected)  # both built by name
    assert evaluate(run, 2)["lengths"] == [10, 10]
    summary = train(resume_config(run, {"max_steps": 2_560}))  # --resume from the command line does the same
    assert summary["env_steps"] >= 2_560
    assert cli_main(["eval", run, "--video", str(tmp_path / "x.mp4")]) == 2  # its own env: one line, below
    assert capsys.readouterr().err.endswith("trained on an env factory (env_fn), which makes its env its own way: "
                                            "--video needs a run on an env id\n")

    def nested(spec):
        return py_models.small(spec)

    class Builder:
        def __call__(self, spec):
            return py_models.small(spec)

    for fn in (nested, lambda spec: None, Builder(), 3):
        assert importable_name(fn) is None
    script = {"__name__": "__main__"}
    exec("def small(spec):\n    return None", script)  # as a script run by python defines it
    assert script["small"].__module__ == "__main__" and importable_name(script["small"]) is None
    # A run saved without a name (before this change, or a lambda's) resumes with its function as it was saved.
    assert with_model_name(Config(resume=run), py_models.small, saved_model_fn="").model_fn == ""
