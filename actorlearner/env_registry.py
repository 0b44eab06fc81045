"""Which envs gymnasium knows in this process: the env modules imported (`module:Env-v0` ids and
`--env-module`, in the launcher and in every actor, so that their registrations run there), ale-py's ALE/ ids and
minigrid's MiniGrid-/BabyAI- ids registered, and an id checked against the registry with a one-line error that
names what was meant.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import re
import sys
from typing import Callable, Mapping, Optional, Sequence

import cloudpickle
import gymnasium as gym

from .atari import game_name
from .config import ConfigError
from .presets import is_minigrid


def _register_ale_ids() -> bool:
    """Registers ale-py's ALE/ ids with gymnasium (it does so only once ale_py is imported, in every process
    that makes one); False where ale-py is not installed."""
    try:
        import ale_py
    except ImportError:
        return False
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # not its banner in every process
    gym.register_envs(ale_py)
    return True


def _register_minigrid_ids() -> bool:
    """Imports minigrid, which registers its ids with gymnasium when imported (~0.15 s: it imports pygame), in
    every process that makes one; False where it is not installed."""
    try:
        import minigrid  # noqa: F401
    except ImportError:
        return False
    return True


def import_env_modules(modules: Sequence[str], env_id: Optional[str] = None,
                       homes: Optional[Mapping[str, str]] = None) -> None:
    """Imports `modules` and the module of a `module:Env-v0` id, so their gymnasium registrations run in
    this process. homes: {top-level module: directory} where a run found them (`module_homes`), looked in where
    neither the Python path nor the working directory has one. Raises ConfigError naming a module that cannot
    be imported."""
    names = env_module_names(modules, env_id)
    rid = registered_id(env_id) if isinstance(env_id, str) else ""
    if rid.startswith("ALE/") and rid not in gym.registry and not _register_ale_ids():
        raise ConfigError(f"{env_id} needs ale-py: pip install 'actorlearner[atari]'")
    if is_minigrid(rid) and rid not in gym.registry and not _register_minigrid_ids():
        raise ConfigError(f"{env_id} needs minigrid: pip install 'actorlearner[minigrid]'")
    for name in names:
        import_user_module(name, homes or {}, "env module")


def import_user_module(name: str, homes: Mapping[str, str], what: str,
                       before_import: Optional[Callable[[str], None]] = None):
    """Imports a user's module by name (an env module, --model-fn's module), found as `_make_findable` says;
    returns it. what: its role, for the one-line error naming a module that cannot be imported. before_import:
    called with the name once it is findable, just before the import."""
    if name.endswith(".py") or "/" in name or os.sep in name:
        module = os.path.splitext(os.path.basename(name))[0]
        raise ConfigError(f"{what} {name!r} is a file name: give the module's name ({module!r}), importable "
                          f"from the working directory or PYTHONPATH")
    _make_findable(name, homes)
    if before_import is not None:
        before_import(name)
    try:
        return importlib.import_module(name)
    except Exception as e:  # noqa: BLE001 - any failure to import a user module is a user-input error
        if isinstance(e, ModuleNotFoundError) and e.name and (name + ".").startswith(e.name + "."):
            # The module (or its package) is nowhere, not something it imports: `actorlearner eval RUN` of a
            # run whose module has moved since, or a typo.
            home = homes.get(_top(name))
            where = (f", in the working directory ({os.getcwd()}) or in {home}, where the run found it" if home
                     else f" or in the working directory ({os.getcwd()})")
            raise ConfigError(f"no {what} {name!r} on the Python path{where}: run from the directory that "
                              f"holds it, or add that directory to PYTHONPATH") from None
        raise ConfigError(f"could not import {what} {name!r}: {type(e).__name__}: {e}") from None


def import_named(text: str, homes: Optional[Mapping[str, str]], what: str, named: str,
                 before_import: Optional[Callable[[str], None]] = None) -> Callable:
    """The function MODULE:NAME names (a --model-fn, a run's env_fn kept by name), its module imported as
    import_user_module does (homes: where the run found it). Its module is pickled by value for the actors: a Ray
    actor on another host, or one started in another working directory, need not find the file. what, named: the
    module's role and how the name was given, for the one-line errors ("model module", "--model-fn")."""
    from .tf_start import tf_notices_filtered

    module_name, _, name = text.partition(":")
    with tf_notices_filtered():  # such a module imports Keras, most often at its top
        module = import_user_module(module_name, homes or {}, what, before_import)
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ConfigError(f"{named} {text}: module {module.__name__!r} ({getattr(module, '__file__', '?')}) has "
                          f"no function {name!r}")
    cloudpickle.register_pickle_by_value(module)
    return fn


def env_module_names(modules: Sequence[str], env_id=None) -> list[str]:
    """The modules a run imports: `modules` and the module of a `module:Env-v0` id."""
    names = list(modules)
    if isinstance(env_id, str) and ":" in env_id:
        names.append(env_id.split(":", 1)[0])
    return names


def module_homes(modules: Sequence[str], env_id=None) -> dict[str, str]:
    """{top-level module: the directory on sys.path it was imported from} for the env modules of a run, once
    imported. Saved with the run (run_files.ENV_MODULES_FILE), so that eval, export and --resume find a module
    from another working directory. A module without a file (a namespace package) is left out."""
    homes = {}
    for name in env_module_names(modules, env_id):
        top = _top(name)
        path = getattr(sys.modules.get(top), "__file__", None)
        if path:
            path = os.path.dirname(os.path.abspath(path))
            homes[top] = os.path.dirname(path) if os.path.basename(path) == top else path  # a package: its parent
    return homes


def _top(name: str) -> str:
    return name.split(".", 1)[0]


def _make_findable(name: str, homes: Mapping[str, str]) -> None:
    """Makes the module `name` importable where no place on sys.path holds it: the current directory first, then
    where the run found it (homes), appended to sys.path. `python -m actorlearner` has the current directory on the
    path already; the `actorlearner` command does not, and `--env my_envs:GridWorld-v0` beside my_envs.py would
    fail there. Appended, so that it shadows no installed package; actor processes inherit the path (spawn passes
    it on)."""
    top = _top(name)
    try:
        if importlib.util.find_spec(top) is not None:
            return
    except (ImportError, ValueError):
        pass
    for where in (os.getcwd(), homes.get(top)):
        if where and where not in sys.path and (os.path.isfile(os.path.join(where, top + ".py"))
                                                or os.path.isdir(os.path.join(where, top))):
            sys.path.append(where)
            return


def registered_id(env_id: str) -> str:
    """The registry's id of `module:Env-v0` (the part after the colon), or env_id itself."""
    return env_id.split(":", 1)[1] if ":" in env_id else env_id


def check_env_id(env_id: str, modules: Sequence[str] = (), homes: Optional[Mapping[str, str]] = None) -> None:
    """Imports the env modules (`module:` prefix, --env-module; homes as in import_env_modules), then checks the
    id is registered."""
    import_env_modules(modules, env_id, homes)
    env_id = registered_id(env_id)
    ale = _ale_id_for(env_id)
    if ale:
        raise ConfigError(f"{env_id} is one of ale-py's older ids (raw frames, no sticky actions); Atari games train "
                          f"here as {ale}, with frameskip 4, sticky actions 0.25 and the standard preprocessing")
    if env_id not in gym.registry:
        _register_ale_ids()  # so that `Pong` can be pointed to ALE/Pong-v5
        known = [k for k, v in gym.registry.items() if k.startswith("ALE/") or not _from_ale_py(v)]
        close = difflib.get_close_matches(env_id, known, n=3) or _same_name(env_id, known)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown gymnasium env id {env_id!r}{hint}")


def _same_name(env_id: str, known: Sequence[str]) -> list[str]:
    """The newest version of each known id whose name (no namespace, no version) is env_id's, ignoring case:
    `pong` or `Pong-v4` -> `ALE/Pong-v5`, `cartpole` -> `CartPole-v1`, which a close-match on the whole id misses."""
    from gymnasium.envs.registration import parse_env_id

    try:
        want = parse_env_id(env_id)[1].lower()
    except gym.error.Error:
        return []
    newest: dict[tuple, tuple[int, str]] = {}
    for k in known:
        namespace, name, version = parse_env_id(k)
        if name.lower() == want and (version or 0) >= newest.get((namespace, name), (-1, ""))[0]:
            newest[(namespace, name)] = (version or 0, k)
    return sorted(k for _, k in newest.values())[:3]


def _from_ale_py(spec: gym.envs.registration.EnvSpec) -> bool:
    """A registry entry made by ale-py's registration (its ALE/ ids and its older ones)."""
    return "ale_py" in str(spec.entry_point)


def _ale_id_for(env_id: str) -> str:
    """`ALE/Pong-v5` for ale-py's older ids (`PongNoFrameskip-v4`, `Pong-v0`, ...: raw 210x160 RGB frames, no
    sticky actions, known to gymnasium once ale_py is imported); "" if env_id is not one (or ale-py is missing)."""
    match = re.fullmatch(r"([A-Z][A-Za-z]*?)(?:NoFrameskip)?-v[04]", env_id)
    registered = gym.registry.get(env_id)
    if not match or (registered is not None and not _from_ale_py(registered)):
        return ""
    try:
        from ale_py.roms import get_all_rom_ids  # not ale_py's registration: the old ids stay unknown here
    except ImportError:
        return ""
    ale = f"ALE/{match.group(1)}-v5"
    return ale if game_name(ale) in get_all_rom_ids() else ""
