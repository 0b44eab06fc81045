"""Where a Config comes from: command-line flags generated from its fields (each flag's help is the field's
`help` metadata, so `--help` and the code cannot drift apart), a --config file, a preset, a resumed run."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any, Optional

from .config import Config, ConfigError, config_fields, flag_name, show_value, whole_number
from .config_checks import validate
from .presets import PRESETS, is_atari, preset_for_env


def _parse_sizes(text: str) -> tuple:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma separated integers, got {text!r}") from None


# --help's groups of flags, each named with the first Config field it holds (the fields' own order, config.py's
# sections): 70 flags under one heading were hard to find one's way in.
HELP_SECTIONS = (("the task", "env"), ("when to stop", "max_seconds"), ("actors", "num_actors"),
                 ("the model", "model"), ("the learner", "batch_size"),
                 ("evaluation and the solved test", "eval_every_s"),
                 ("output, checkpoints and resuming", "log_every_s"),
                 ("failures, processes and machines", "on_nonfinite"))


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per Config field, defaults shown in --help, in HELP_SECTIONS' groups; unset flags parse to None
    (keep the default)."""
    defaults = Config()
    starts = dict((first, title) for title, first in HELP_SECTIONS)
    group = parser
    for name, f in config_fields().items():
        if name in starts:
            group = parser.add_argument_group(starts[name])
        default = getattr(defaults, name)
        help_text = f.metadata["help"] + (f" [default: {show_value(default)}]" if default != "" else "")
        flag = "--" + flag_name(name)
        if f.type in ("bool", bool):
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
            continue
        kind = _parse_sizes if name == "hidden_sizes" else {"int": parse_int, "float": float, "str": str}[field_kind(f)]
        group.add_argument(flag, dest=name, type=kind, default=None, metavar=name.upper(),
                           choices=f.metadata.get("choices"), help=help_text)


def config_from_args(args: argparse.Namespace, base: Optional[Config] = None) -> Config:
    """The flags given on the command line over the --config file's values over the preset over `base`
    (default: Config()); with --resume, over the run's saved config instead of preset and base."""
    overrides = {name: getattr(args, name) for name in config_fields() if getattr(args, name, None) is not None}
    from_files: dict = {}
    for path in getattr(args, "config", None) or []:  # --config may be given more than once: later files win
        from_files.update(load_config_file(path))
    overrides = {**from_files, **overrides}  # file values sit under the flags given
    if overrides.get("resume"):
        return resume_config(overrides["resume"], overrides)
    return with_preset(base or Config(), overrides)


def with_preset(base: Config, overrides: dict) -> Config:
    """base, then the preset (named in overrides, or the one of the env in overrides/base: by its id, else
    "continuous" where it takes Box actions), then overrides."""
    env = overrides.get("env", base.env)
    name = overrides.get("preset")
    if name is None:  # by the env: its modules, arguments and time limit as the run will have them
        probe = base.replace(**{k: overrides[k] for k in ("env_module", "env_kwargs", "wait_timeout_s")
                                if k in overrides})
        name = preset_for_env(env)
        kwargs = probe.env_kwargs_dict
        if name is None or kwargs:
            spaces = _spaces(env, probe, kwargs)  # one env made, with the run's arguments
            if name is not None and _other_actions(spaces, _spaces(env, probe, {})):
                name = None  # the id's preset was tuned on the env as registered, not on the task these arguments make
            if name is None:
                name = _by_action_space(spaces)
    if name and name != "none":
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
        if name == "atari" and not is_atari(env):
            raise ConfigError(f"--preset atari is for ALE ids (--env ALE/Game-v5), not {env!r}")
        preset = PRESETS[name]
        if overrides.get("loss") == "impala":  # the preset's passes are APPO's: they go with the loss it named
            preset = {k: v for k, v in preset.items() if k not in APPO_ONLY}
        base = base.replace(**preset, preset=name)
    return base.replace(**overrides)


# Preset fields that only --loss appo reads, left out where the flags ask for impala over an APPO preset (or it
# would be refused for settings the user never gave).
APPO_ONLY = ("epochs", "minibatches", "clip_ratio", "normalize_advantages", "target_kl", "target_kl_from")


def _spaces(env, probe: Config, kwargs: dict) -> Optional[tuple]:
    """(observation space, action space) of the env of id `env`, made once with `kwargs` and the probe's modules
    and time limit; None for an env fn given to the Python API (its defaults are what Config() says) or an env that
    cannot be made (the launcher's checks name why)."""
    if not isinstance(env, str):
        return None
    from .envs import env_spaces  # imports gymnasium: only for ids that no preset names, or with --env-kwargs

    # Not validated yet: a timeout that is not positive is validate()'s one-line error later, not setitimer's here.
    timeout = probe.wait_timeout_s if probe.wait_timeout_s > 0 else Config().wait_timeout_s
    return env_spaces(env, probe.env_modules, timeout, kwargs)


def _other_actions(spaces: Optional[tuple], registered: Optional[tuple]) -> bool:
    """Whether --env-kwargs gave the env another kind of action space (`spaces`) than the registered one's
    (LunarLander-v3 with continuous=true: Box instead of Discrete)."""
    return None not in (spaces, registered) and type(spaces[1]) is not type(registered[1])


def _by_action_space(spaces: Optional[tuple]) -> Optional[str]:
    """"continuous" for an env with Box actions and vector observations (`_spaces`' pair), else None. (Image
    observations go to a CNN, which --normalize-obs is not for.)"""
    if spaces is None:
        return None
    import gymnasium as gym  # imported already: the spaces are its

    if not isinstance(spaces[1], gym.spaces.Box):
        return None
    return "continuous" if isinstance(spaces[0], gym.spaces.Box) and len(spaces[0].shape) == 1 else None


def preset_config(name: str, **overrides: Any) -> Config:
    """For scripts: `preset_config("acrobot", seed=3)` is what `actorlearner train --preset acrobot --seed 3`
    runs."""
    return validate(with_preset(Config(), {"preset": name, **overrides}))


# Fields a resumed run cannot change: they decide the env and the shape of the saved weights.
RESUME_FIXED = ("env", "env_kwargs", "frame_stack", "action_masks", "model", "model_fn", "core", "core_size",
                "hidden_sizes", "activation", "init_from", "init_which")


def resume_config(run_dir: str, overrides: Optional[dict] = None) -> Config:
    """The config to continue RUN_DIR with: its saved config.json, updated by `overrides` (a dict of fields),
    with `resume` and `run_dir` set to RUN_DIR. The env and model shape cannot change."""
    run_dir = os.path.expanduser(run_dir)  # "~/runs/x" from a config file or a script: no shell expanded it
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        raise ConfigError(f"--resume {run_dir}: {path} not found (is it a run directory?)")
    saved = saved_config(path)
    overrides = dict(overrides or {})
    for name in RESUME_FIXED:
        if name in overrides and overrides[name] != getattr(saved, name):
            had = getattr(saved, name)
            what = (f"it trained {'with' if had else 'without'} --{flag_name(name)}" if isinstance(had, bool) else
                    "the run has none" if had is None else f"the run has {show_value(had)}")
            raise ConfigError(f"--{flag_name(name)} cannot change on --resume ({what})")
    if overrides.get("run_dir") is not None and os.path.expanduser(overrides["run_dir"]) != run_dir:
        raise ConfigError("--resume continues in its own directory; drop --run-dir")
    resumed = saved.replace(**{**overrides, "resume": run_dir, "run_dir": run_dir})
    try:
        validate(resumed)
    except ConfigError as e:  # a clash with a setting the user did not give: say where it comes from
        default = Config()
        kept = [name for name in config_fields() if name not in overrides and f"--{flag_name(name)}" in str(e)
                and getattr(saved, name) != getattr(default, name)]
        if not kept:
            raise
        said = ", ".join(_as_flag(n, getattr(saved, n)) for n in kept)
        raise ConfigError(f"{e} ({said}: the run's own setting, which a resumed run keeps unless a flag changes it)") \
            from None
    return resumed


def _as_flag(name: str, value: Any) -> str:
    """A setting as the flag that gives it: --serial, --no-serial, --num-actors 4."""
    if isinstance(value, bool):
        return f"--{'' if value else 'no-'}{flag_name(name)}"
    return f"--{flag_name(name)} {show_value(value)}"


def saved_config(path: str) -> Config:
    """The Config in a run's config.json; ConfigError (one line) for a file that is not one: cut short by a
    full disk, overwritten (a plot written over it), edited by hand."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
    except ValueError as e:  # not UTF-8, or not JSON
        raise ConfigError(f"{path} is not a valid run config (not JSON: {e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a valid run config (not a mapping of setting: value)")
    try:
        return config_from_dict(data)
    except (ValueError, TypeError) as e:  # ConfigError among them: an unknown key, a value of the wrong type
        raise ConfigError(f"{path} is not a valid run config ({e})") from None


def config_from_dict(d: dict) -> Config:
    """Builds a Config from a JSON-like dict; unknown keys and wrongly typed values are errors."""
    return Config(**checked_fields(d))


def field_kind(f) -> str:
    """A Config field's value type, Optional[...] unwrapped: 'bool', 'int', 'float', 'str' or 'tuple'."""
    return str(f.type).removeprefix("Optional[").removesuffix("]")


def checked_fields(d: dict, source: str = "config") -> dict:
    """The dict's values as Config field values: unknown keys (with a suggestion) and values of the wrong
    type raise ConfigError; ints are accepted for floats, lists for hidden_sizes."""
    import difflib

    fields, defaults = config_fields(), Config()
    out = {}
    for key, value in d.items():
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            raise ConfigError(f"{source}: unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        kind = field_kind(fields[key])
        if key == "env_kwargs" and isinstance(value, dict):  # a mapping in a YAML or JSON file: as --env-kwargs's JSON
            value = json.dumps(value)
        ok = (value is None and getattr(defaults, key) is None) or {
            "bool": lambda v: isinstance(v, bool),
            "int": lambda v: isinstance(v, int) and not isinstance(v, bool) or whole_number(v) is not None,
            "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) or _float_text(v),
            "str": lambda v: isinstance(v, str),
            "tuple": lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, int) for x in v),
        }[kind](value)
        if not ok:
            raise ConfigError(f"{source}: {key} must be {'a list of ints' if kind == 'tuple' else kind}, "
                              f"got {value!r}")
        if kind == "int" and value is not None and not isinstance(value, int):
            value = whole_number(value)  # 1e6, 1.0e6, "1e6": a step count as people write it
        out[key] = tuple(value) if kind == "tuple" else float(value) if kind == "float" and value is not None \
            else value
    return out


def parse_int(text: str) -> int:
    """argparse type for int settings: an int, or a whole number in float notation (--max-steps 1e6)."""
    try:
        return int(text)
    except ValueError:
        pass
    x = whole_number(text)
    if x is None:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    return x


def _float_text(v) -> bool:
    """PyYAML reads `1e-3` (an exponent without a dot) as a string: such a string is taken as the float."""
    if not isinstance(v, str):
        return False
    try:
        float(v)
    except ValueError:
        return False
    return True


def load_config_file(path: str) -> dict:
    """The fields set in a .yaml/.yml or .json config file (checked like flags)."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".yaml", ".yml", ".json"):
        raise ConfigError(f"--config {path}: expected a .yaml, .yml or .json file")
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"--config {path}: {e.strerror}") from None
    try:
        if ext == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:  # noqa: BLE001 - any parse error is the same one-line complaint
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"--config {path}: not valid {ext[1:].upper()}: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of setting: value at the top level")
    return checked_fields({k.replace("-", "_"): v for k, v in data.items()}, source=f"--config {path}")
