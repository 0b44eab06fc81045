"""The run directory and its files: config.json, metrics.jsonl, evals.jsonl, actors.log, policy.npz and
summary.json (checkpoints are checkpoint.py's), and the lock that keeps one run per directory."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from typing import Optional

from .config import ConfigError
from .reporting import warn
from .stopping import interrupts_held


# Written where a run trains on an env factory (env_fn) instead of its config's env id: eval, export and --resume
# then ask for that factory instead of making the id's env (CartPole-v1, the default) and using the run's policy
# on it, or training on, unasked.
CUSTOM_ENV_FILE = "custom_env.json"


def custom_env_error(run_dir: str, env_id, what: str) -> ConfigError:
    """The error for `what` (an action) on a run that trained on an env factory, done without one."""
    return ConfigError(f"{run_dir} trained on an env factory (env_fn), not on the env id {env_id!r} its config "
                       f"names: {what} needs that factory again (env_fn=...), which the command line cannot make "
                       f"(it can where the factory is a function at the top of a module, which the run names)")


def trained_on_custom_env(run_dir: str) -> bool:
    return os.path.exists(os.path.join(run_dir, CUSTOM_ENV_FILE))


def saved_env_fn(run_dir: str) -> Optional[str]:
    """The MODULE:FUNCTION name CUSTOM_ENV_FILE keeps of a run's env_fn (model_fns.importable_name); None where the
    factory had none (a lambda, a script's function) or the run predates it."""
    try:
        with open(os.path.join(run_dir, CUSTOM_ENV_FILE)) as f:
            name = json.load(f).get("env_fn_name")
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) and ":" in name else None


def named_env_fn(run_dir: str, homes: Optional[dict] = None):
    """The env factory a run trained on, imported by the name it kept (saved_env_fn), from where the run found its
    module (homes: saved_module_homes(run_dir), read here when not given); None where it kept none."""
    name = saved_env_fn(run_dir)
    if name is None:
        return None
    from .env_registry import import_named

    return import_named(name, saved_module_homes(run_dir) if homes is None else homes, "env module",
                        "the run's env_fn")


# Where a run found its env modules (--env-module, a `module:Env-v0` id): {top-level module: directory}. Eval,
# export and --resume look there too, so that they work from another working directory than the training's.
ENV_MODULES_FILE = "env_modules.json"


def saved_module_homes(run_dir: str) -> dict:
    """ENV_MODULES_FILE's {module: directory}; {} where the run has none (or it is unreadable: the modules are then
    looked for as on any run, and a missing one is named)."""
    try:
        with open(os.path.join(run_dir, ENV_MODULES_FILE)) as f:
            homes = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(homes, dict):
        return {}
    return {k: v for k, v in homes.items() if isinstance(v, str)}  # JSON keys are strings


# The env's observations and actions as the run saw them. Eval, export, load_policy and --resume compare the env made
# now against them: an env changed since can keep the weights' shapes (Discrete(5) and MultiDiscrete([2, 3]) both
# have 5 logits; MultiDiscrete([2, 3]) and [3, 2] too), and its policy would then play, wrongly, without a word.
ENV_SPEC_FILE = "env_spec.json"


def env_summary(spec) -> dict:
    """What ENV_SPEC_FILE holds of an EnvSpec, in words: {"observations": "5 float32", "actions": "5 actions"}."""
    return {"observations": spec.describe_observations(), "actions": spec.describe_actions()}


def env_differences(run_dir: str, spec, run_side: str, spec_side: str) -> str:
    """Where the env of `spec` differs from the run's, by ENV_SPEC_FILE's entries, as "observations (4,) float32
    {run_side}, (8,) float32 {spec_side}; ..." ("then"/"now", "in the run"/"here"); "" where it does not. A run
    from before this file, or an unreadable one, has nothing to compare: ""."""
    try:
        with open(os.path.join(run_dir, ENV_SPEC_FILE)) as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return ""
    if not isinstance(saved, dict):
        return ""
    return "; ".join(f"{k} {saved[k]} {run_side}, {v} {spec_side}" for k, v in env_summary(spec).items()
                     if k in saved and saved[k] != v)


def check_same_env(run_dir: str, spec, what: str) -> None:
    """ConfigError where the env made now (spec) is not the one the run trained on. `what`: the action, for the
    line."""
    changed = env_differences(run_dir, spec, "then", "now")
    if changed:
        raise ConfigError(f"{run_dir} trained on an env that has changed since ({changed}): {what} needs "
                          f"the env it trained on")


@contextlib.contextmanager
def atomic_file(final: str, mode: str):
    """Writes `final` through a temporary file beside it, fsynced and renamed over it at the end, so a reader sees
    the old file or the new one, never half of one. On any failure (a full disk, a second Ctrl-C) the temporary
    file is removed and the old file stays as it was."""
    tmp = final + ".tmp"
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


class RunDir:
    """The run directory: config.json at start, metrics.jsonl as it goes, summary.json at the end.

    One run at a time: the directory's `.lock` is held (fcntl.flock) for the run's life, so a second run or a
    --resume of a directory in use is refused instead of interleaving metrics and checkpoints. The kernel
    drops the lock of a process that dies; the pid the lock file still names tells that it happened."""

    def __init__(self, path: str):
        self.discarded = False  # discard() removed what the run wrote
        self.path = path
        if os.path.exists(path) and not os.path.isdir(path):
            raise ConfigError(f"--run-dir {path} exists and is not a directory")
        try:
            os.makedirs(path, exist_ok=True)
            self._lock = _take_lock(path)
            self._metrics = open(os.path.join(path, "metrics.jsonl"), "a", buffering=1)
        except PermissionError as e:
            raise ConfigError(f"--run-dir {path} is not writable ({e.strerror})") from None
        except OSError as e:
            raise ConfigError(f"--run-dir {path} cannot be used: {e.strerror or e}") from None

    def write_json(self, name: str, obj) -> None:
        """Atomic: a reader sees the old file or the new one, never half of one."""
        with atomic_file(os.path.join(self.path, name), "w") as f:
            f.write(obj if isinstance(obj, str) else json.dumps(obj, indent=2))
            f.write("\n")

    def save_weights(self, flat, layout: list, name: str = "policy.npz") -> None:
        """policy.npz: the flat weights and their layout, plain arrays only (loaded without pickle)."""
        import numpy as np

        with atomic_file(os.path.join(self.path, name), "wb") as f:
            np.savez(f, flat=np.asarray(flat, np.float32),
                     layout=np.array(json.dumps([[p, list(s)] for p, s in layout])))

    def log_actor_failure(self, actor_id: int, traceback_text: str) -> str:
        """Appends an actor's traceback to RUN_DIR/actors.log (the console gets one line); returns the path."""
        path = os.path.join(self.path, "actors.log")
        with open(path, "a") as f:
            f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} actor {actor_id} failed:\n{traceback_text.rstrip()}\n")
        return path

    def log_eval(self, record: dict) -> None:
        """One line of RUN_DIR/evals.jsonl: an evaluation's time, env steps and returns."""
        with open(os.path.join(self.path, "evals.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")

    def log_metrics(self, record: dict) -> None:
        self._metrics.write(json.dumps(record) + "\n")

    def discard(self) -> None:
        """Closes a new run that never started (a stop signal or an error before its actors did: Ray's start, say)
        or stopped by a signal before it learned anything, and removes what it wrote, so that the same command can
        be run again; the directory too when nothing else is in it."""
        self.close()
        self.discarded = True
        for name in ("config.json", "metrics.jsonl", CUSTOM_ENV_FILE, ENV_MODULES_FILE, ENV_SPEC_FILE, ".lock"):
            try:
                os.remove(os.path.join(self.path, name))
            except FileNotFoundError:
                pass
        try:
            os.rmdir(self.path)
        except OSError:  # it held something else (it existed before, not empty): it stays
            pass

    @property
    def closed(self) -> bool:
        return self._lock is None

    @contextlib.contextmanager
    def dropped_on_failure(self, fresh: bool):
        """On any exception in the block, unless closed already: a fresh run's directory is discarded (it must not
        block the same command's retry with "stopped before its first checkpoint"), a resumed run's closed."""
        try:
            yield
        except BaseException:
            with interrupts_held():  # a second Ctrl-C must not stop the removal halfway
                if not self.closed:
                    if fresh:
                        self.discard()
                    else:
                        self.close()
            raise

    def close(self) -> None:
        try:
            self._metrics.close()  # flushes the last line
        except OSError as e:  # a full disk: the run's error says so already; the lock is released below
            warn(f"could not finish {self._metrics.name}: {e.strerror or e}")
        if self._lock is not None:
            self._lock.truncate(0)  # no pid left behind: the run ended cleanly
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None


def check_fresh(path: str, resumable: bool) -> None:
    """ConfigError where a new run would go into a directory that holds a run already (its config.json): it
    appended to the old metrics.jsonl and mixed its checkpoints with the old ones (a checkpoint of the same step
    overwritten; --keep-checkpoints, --resume and `eval --which latest` going by step number across both runs).
    A live run there is named as such first. resumable: the run there has a checkpoint (else --resume, which
    the error would suggest, has nothing to resume)."""
    check_not_in_use(path)
    if not os.path.isfile(os.path.join(path, "config.json")):
        return
    if resumable:
        raise ConfigError(f"--run-dir {path} holds a run already: --resume {path} continues it, and a new run "
                          f"needs a directory of its own (another --run-dir, or this one deleted)")
    raise ConfigError(f"--run-dir {path} holds a run that stopped before its first checkpoint (nothing to resume): "
                      f"a new run needs another --run-dir, or this one deleted")


def check_not_in_use(path: str) -> None:
    """Raises ConfigError if a live run holds RUN_DIR's lock (checked before reading a run to --resume it)."""
    lock = os.path.join(path, ".lock")
    if not os.path.isfile(lock):
        return
    with open(lock, "a+") as f:  # closing it drops the probe's lock
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _in_use(path, f) from None


def _in_use(path: str, f):
    f.seek(0)
    holder = f.read().strip() or "?"
    return ConfigError(f"{path} is in use by another run (process {holder}): one run per run directory")


def _take_lock(path: str):
    """Locks RUN_DIR/.lock for this process; raises ConfigError if another live run holds it."""
    f = open(os.path.join(path, ".lock"), "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        error = _in_use(path, f)
        f.close()
        raise error from None
    f.seek(0)
    previous = f.read().strip()
    if previous and previous != str(os.getpid()):
        warn(f"{path}: taking over the lock of process {previous}, which ended without releasing it")
    f.truncate(0)
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f
