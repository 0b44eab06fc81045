"""--env-kwargs: gym.make's keyword arguments for an env id, kept by the run for eval, export and --resume."""

import json
import os
import subprocess
import sys

import pytest

from actorlearner.config import Config, ConfigError, parse_env_kwargs
from actorlearner.config_sources import with_preset
from actorlearner.presets import PRESETS


def test_key_value_pairs_and_json_objects_parse_to_the_same_arguments():
    assert parse_env_kwargs(None) == parse_env_kwargs(" ") == {}
    want = {"map_name": "8x8", "is_slippery": False, "gravity": -9.5, "n": 3, "goal": None}
    assert parse_env_kwargs("map_name=8x8, is_slippery=false,gravity=-9.5,n=3,goal=null") == want
    assert parse_env_kwargs("map_name=8x8,is_slippery=False,gravity=-9.5,n=3,goal=None") == want  # Python's words
    assert parse_env_kwargs(json.dumps(want)) == want
    assert parse_env_kwargs('{"desc": ["SF", "HG"]}') == {"desc": ["SF", "HG"]}  # a list needs the JSON form
    assert parse_env_kwargs('name="a b"') == {"name": "a b"}


@pytest.mark.parametrize("text, message", [
    ("map_name", "--env-kwargs: 'map_name' is not key=value"),
    ("a=1,,b=2", "--env-kwargs: '' is not key=value"),
    ("2x=1", "--env-kwargs: '2x=1' is not key=value"),
    ('{"map_name": 8x8}', "--env-kwargs '{\"map_name\": 8x8}' is not a JSON object"),
    ('{"a b": 1}', "--env-kwargs '{\"a b\": 1}': every key must be an argument name"),
])
def test_what_does_not_parse_is_named(text, message):
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace("[", r"\[")):
        parse_env_kwargs(text)


def test_a_run_on_an_env_with_arguments_trains_and_is_evaluated_on_the_same_env(tmp_path):
    """FrozenLake's 8x8 map without slipping: 64 states (the default 4x4 map has 16, on which the run's policy
    would not load), solved at its threshold 0.7."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    run = tmp_path / "run"
    cli = [sys.executable, "-m", "actorlearner"]
    proc = subprocess.run([*cli, "train", "--env", "FrozenLake-v1", "--env-kwargs", "map_name=8x8,is_slippery=false",
                           "--run-dir", str(run), "--max-seconds", "120", "--eval-every-s", "0"],
                          capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "observations 64 float32" in proc.stdout and "--env-kwargs: single envs made by gym.make" in proc.stdout
    assert json.loads((run / "summary.json").read_text())["solved"], proc.stdout
    proc = subprocess.run([*cli, "eval", str(run), "--episodes", "3"], capture_output=True, text=True, timeout=120,
                          env=env)
    assert proc.returncode == 0 and proc.stdout.startswith("FrozenLake-v1, final weights"), proc.stdout + proc.stderr


def test_the_ids_preset_is_kept_unless_the_arguments_change_the_kind_of_actions(monkeypatch):
    """LunarLander-v3's preset is tuned on its discrete actions; with continuous=true it is another task, which
    gets the preset its Box actions get (as LunarLanderContinuous-v3 does). A toy id stands in for it here."""
    monkeypatch.setitem(PRESETS, "toy", {"env": "custom_envs:MatchSign-v0", "entropy_cost": 0.002})

    def preset(**overrides):
        return with_preset(Config(), {"env": "custom_envs:MatchSign-v0", **overrides}).preset

    assert preset() == "toy"
    assert preset(env_kwargs="continuous=false") == "toy"  # the same kind of actions
    assert preset(env_kwargs="continuous=true") == "continuous"
    assert preset(env_kwargs="continuous=true", preset="toy") == "toy"  # asked for by name



def test_a_changed_episode_length_under_the_ids_own_target_is_warned_about():
    """CartPole-v1 with max_episode_steps=200 returned 200 on every episode for 12 s and never reached the id's 475,
    with nothing said. A target the user gives is theirs: no warning then."""
    from actorlearner.preflight import changed_time_limit

    def said(target, **overrides):
        return changed_time_limit(with_preset(Config(), {"env": "CartPole-v1", **overrides}), target)

    assert said(475.0, env_kwargs="max_episode_steps=200") == (
        "target return 475 is set for CartPole-v1's episodes of up to 500 steps; --env-kwargs max_episode_steps=200 "
        "changes their length, so it may be out of reach or too easy: give --target-return")
    assert said(195.0, env_kwargs="max_episode_steps=200", target_return=195.0) is None
    assert said(475.0, env_kwargs="max_episode_steps=500") is None
    assert said(475.0) is None
    pendulum = with_preset(Config(), {"env": "Pendulum-v1", "env_kwargs": "max_episode_steps=400"})
    assert "target return -200 is set for Pendulum-v1's episodes of up to 200 steps" in changed_time_limit(
        pendulum, pendulum.target_return)  # the preset's target, not the user's
