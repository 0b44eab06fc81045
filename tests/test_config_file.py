"""Config files: YAML or JSON under the command-line flags, checked like flags."""

import argparse
import re

import pytest

from actorlearner.cli import build_parser
from actorlearner.config import ConfigError
from actorlearner.config_sources import config_from_args


def parse(*argv):
    return config_from_args(build_parser().parse_args(["train", *argv]))


def test_yaml_file_with_a_flag_override(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("env: Acrobot-v1\nlearning-rate: 0.001\nhidden_sizes: [32, 32]\nseed: 4\nactor_nice: 5\n")
    cfg = parse("--config", str(path), "--seed", "9")
    assert cfg.env == "Acrobot-v1" and cfg.preset == "acrobot"  # the file's env brings its preset
    assert cfg.learning_rate == 0.001 and cfg.hidden_sizes == (32, 32)
    assert cfg.seed == 9  # the flag wins over the file
    assert cfg.actor_nice == 5 and cfg.target_return is None  # optional fields: int given, default None kept
    assert "learning_rate=0.001" in cfg.describe_changes() and "seed=9" in cfg.describe_changes()


def test_config_files_given_twice_are_merged_in_order(tmp_path):
    """A second --config replaced the first whole (argparse keeps the last value), its settings lost unsaid."""
    base, sweep = tmp_path / "base.yaml", tmp_path / "sweep.json"
    base.write_text("env: Acrobot-v1\nseed: 4\nlearning_rate: 0.001\n")
    sweep.write_text('{"seed": 5, "epochs": 2}')
    cfg = parse("--config", str(base), "--config", str(sweep), "--epochs", "3")
    assert (cfg.env, cfg.learning_rate, cfg.seed, cfg.epochs) == ("Acrobot-v1", 0.001, 5, 3)


def test_json_file_and_a_preset_under_it(tmp_path):
    path = tmp_path / "run.json"
    path.write_text('{"preset": "pendulum", "epochs": 2}')
    cfg = parse("--config", str(path))
    assert cfg.env == "Pendulum-v1" and cfg.loss == "appo" and cfg.epochs == 2  # file over preset


@pytest.mark.parametrize("text, message", [
    ("learning_rat: 0.1\n", "unknown key 'learning_rat' (did you mean 'learning_rate'?)"),
    ("seed: one\n", "seed must be int, got 'one'"),
    ("stop_at_target: 1\n", "stop_at_target must be bool"),
    ("actor_nice: high\n", "actor_nice must be int, got 'high'"),
    ("- a\n- b\n", "expected a mapping"),
    ("env: [unclosed\n", "not valid YAML"),
])
def test_bad_files_give_one_clear_line(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse("--config", str(path))


def test_missing_or_unknown_kind_of_file(tmp_path):
    with pytest.raises(ConfigError, match="No such file"):
        parse("--config", str(tmp_path / "nope.yaml"))
    (tmp_path / "x.toml").write_text("")
    with pytest.raises(ConfigError, match="expected a .yaml, .yml or .json file"):
        parse("--config", str(tmp_path / "x.toml"))


def test_namespace_without_config_attribute_still_works():
    ns = argparse.Namespace(env="CartPole-v1")
    assert config_from_args(ns).env == "CartPole-v1"


def test_a_home_relative_run_dir_from_a_file_or_script_is_expanded(tmp_path, monkeypatch):
    """Only a shell expands '~': `run_dir: ~/runs/x` in a config file made a directory named '~' in the working
    directory."""
    from actorlearner import Config, resume_config
    from actorlearner.run_files import RunDir

    monkeypatch.setenv("HOME", str(tmp_path))
    path = tmp_path / "run.yaml"
    path.write_text("run_dir: ~/runs/x\n")
    assert parse("--config", str(path)).run_dir == str(tmp_path / "runs" / "x")
    assert Config(run_dir="~/y").replace(seed=2).run_dir == str(tmp_path / "y")
    run = RunDir(str(tmp_path / "old"))
    run.write_json("config.json", Config(run_dir=run.path).to_json())
    run.close()
    resumed = resume_config("~/old", {"run_dir": "~/old"})
    assert resumed.resume == resumed.run_dir == str(tmp_path / "old")


def test_step_counts_in_float_notation_are_taken_as_whole_numbers(tmp_path, capsys):
    """--max-steps 1e6 (as RL papers write step counts) was 'invalid int value', and so was max_steps: 1e6 in a
    config file; a number that is not whole stays an error."""
    assert parse("--max-steps", "1e6").max_steps == 1_000_000
    assert parse("--max-steps", "2.0", "--batch-size", "128").batch_size == 128
    path = tmp_path / "run.yaml"
    path.write_text("max_steps: 3e6\nseed: 4.0\n")  # YAML reads 3e6 as text and 4.0 as a float
    cfg = parse("--config", str(path))
    assert (cfg.max_steps, cfg.seed) == (3_000_000, 4) and isinstance(cfg.max_steps, int)
    with pytest.raises(SystemExit):
        parse("--max-steps", "1.5")
    assert "argument --max-steps: expected a whole number, got '1.5'" in capsys.readouterr().err
    path.write_text("seed: 2.5\n")
    with pytest.raises(ConfigError, match="seed must be int, got 2.5"):
        parse("--config", str(path))


def test_a_scripts_whole_float_counts_become_ints_and_others_are_refused():
    """Config(batch_size=64.0) failed inside TensorFlow after the banner ('Dimension value must be integer')."""
    from actorlearner import Config

    cfg = Config(batch_size=64.0, max_steps=1e6, actor_nice=5.0)
    assert (cfg.batch_size, cfg.max_steps, cfg.actor_nice) == (64, 1_000_000, 5)
    assert all(isinstance(v, int) for v in (cfg.batch_size, cfg.max_steps, cfg.actor_nice))
    assert cfg.replace(seed=2.0).seed == 2 and Config(learning_rate=1).learning_rate == 1
    with pytest.raises(ConfigError, match="batch_size must be a whole number, got 64.5"):
        Config(batch_size=64.5)
