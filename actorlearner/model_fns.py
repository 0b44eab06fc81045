"""--model-fn MODULE:FUNCTION: a custom Keras model named by text, so that it can be given on the command line
and kept in a run's config.json, from which eval, export, load_policy and --resume build it again.

The function follows model.py's contract, `FUNCTION(spec: EnvSpec) -> keras.Model`, as train()'s `model_fn=` does.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from typing import Callable, Mapping, Optional

from .config import ConfigError
from .env_registry import import_named
from .layout import param_layout


def model_module(text: str) -> str:
    """The module part of MODULE:FUNCTION; ConfigError where text is not of that form."""
    module, sep, name = text.partition(":")
    if not (sep and module and name.isidentifier()):
        raise ConfigError(f"--model-fn must be MODULE:FUNCTION, a function that builds the model "
                          f"(FUNCTION(spec) -> keras.Model) in a module importable from the working directory or "
                          f"PYTHONPATH; got {text!r}")
    return module


def load_model_fn(text: str, homes: Optional[Mapping[str, str]] = None) -> Callable:
    """The function --model-fn MODULE:FUNCTION names (env_registry.import_named; homes: where the run found its
    module)."""
    model_module(text)  # its form, in --model-fn's words
    return import_named(text, homes, "model module", "--model-fn", _tensorflow_first)


def _tensorflow_first(module: str) -> None:
    """In the command's learner (tf_start.LEAN_IMPORT), TensorFlow imported lean before the model's module, which
    most often imports Keras, and so all of TensorFlow, at its top; the learner needs TensorFlow anyway. Not for a
    module that cannot be found: its one-line error comes at once, not after TensorFlow's seconds."""
    from . import tf_start

    if not tf_start.LEAN_IMPORT:
        return
    try:
        if importlib.util.find_spec(module) is None:
            return
    except (ImportError, ValueError):  # a parent package missing: the import itself says so
        return
    tf_start.import_tensorflow_lean()


def built_by(model_fn: Callable, spec, name: str = "model_fn"):
    """model_fn(spec). An exception inside it (a bug in the user's model code) is a ConfigError chained to it, one
    line as a failing env_fn's is, naming the line of the function's own file where it failed: the traceback ran
    through our planning code, and Keras' messages run to many lines."""
    try:
        return model_fn(spec)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure in the user's function is theirs to fix
        own = getattr(getattr(model_fn, "__code__", None), "co_filename", None)
        frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == own]
        where = f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ConfigError(f"{name} failed to build the model: {type(e).__name__}: {first}{where}") from e


def check_fits(model, layout, cfg, whose: str) -> None:
    """ConfigError unless the custom `model` (built now) has the weights of `layout` ((path, shape) pairs, the run's):
    shapes compared in order, as the weights are loaded, not paths (Keras names a model's layers anew on each build
    in a process: dense_2/kernel). whose: the error's subject, "RUN's" or "--resume RUN: its"."""
    if [tuple(s) for _, s in param_layout(model)] != [tuple(s) for _, s in layout]:
        raise ConfigError(f"{whose} weights do not fit the model {custom_model_name(cfg)} builds now: it has changed "
                          f"since the run, or is not the run's model")


def custom_model_name(cfg) -> str:
    """How errors name a run's custom model: by --model-fn's text, else as the model_fn passed."""
    return f"--model-fn {cfg.model_fn}" if cfg.model_fn else "model_fn"


def actors_run_tensorflow(cfg, model_fn: Optional[Callable]) -> bool:
    """Whether the actors (and evaluation) run the model in TensorFlow: a custom model always does (only the
    default models have numpy and LiteRT twins), the default ones with --actor-inference tensorflow."""
    return model_fn is not None or cfg.actor_inference == "tensorflow"


def model_fn_of(cfg, model_fn: Optional[Callable], homes: Optional[Mapping[str, str]] = None) -> Optional[Callable]:
    """The run's custom model function: train()'s or load_policy's `model_fn`, else the one cfg.model_fn names
    (None: the default models). Both given is a ConfigError: which one would win is not obvious."""
    if not cfg.model_fn:
        return model_fn
    if model_fn is not None:
        if importable_name(model_fn) == cfg.model_fn:  # the run's own function, passed again
            return model_fn
        raise ConfigError(f"two custom models: model_fn= and --model-fn {cfg.model_fn} (in the Config): give one")
    return load_model_fn(cfg.model_fn, homes)


def importable_name(fn) -> Optional[str]:
    """"MODULE:FUNCTION" for a function (or class) defined at the top level of an importable module (one with a
    file), which another process finds by that name; None for a lambda, a nested function, a callable object, or a
    function of a script or notebook (module __main__), which only this process knows."""
    module, name = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or module in ("__main__", "__mp_main__") or not isinstance(name, str):
        return None
    home = sys.modules.get(module)
    if not name.isidentifier() or getattr(home, name, None) is not fn or not getattr(home, "__file__", None):
        return None
    return f"{module}:{name}"


def with_model_name(cfg, model_fn: Optional[Callable], saved_model_fn: Optional[str] = None):
    """cfg, with model_fn set to the name of train()'s `model_fn` callable where it has one (importable_name), so
    that the run's config.json names its model and `actorlearner eval`, `export`, `--resume` and load_policy build
    it without being given it, as for --model-fn. Left unset with --model (validate refuses both) and where a
    --resume'd run was saved without a name (saved_model_fn "": the model_fn setting cannot change on resume)."""
    if model_fn is None or cfg.model_fn or cfg.model != "auto" or saved_model_fn == "":
        return cfg
    name = importable_name(model_fn)
    return cfg.replace(model_fn=name) if name else cfg
