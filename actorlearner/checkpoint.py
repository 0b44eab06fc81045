"""Checkpoints: the whole learner state in one .npz file, written atomically, read without pickle.

A checkpoint is `RUN_DIR/checkpoints/ckpt-<learner steps>.npz` holding plain arrays only:
- `model/<i>`: the model's variables (`model.weights` order), `optim/<i>`: the optimizer's variables
  except the learning rate (that is configuration: a resumed run may change it);
- `meta`: one JSON string with the format version, the variables' paths and shapes, the config, the run
  counters (`RunStats.state()`), the policy version, and the RNG state (seed and resume generation).

Why this shape: numpy's .npz is a zip with a CRC-32 per member, so a truncated or bit-flipped file fails to
load instead of loading garbage, and `np.load(allow_pickle=False)` cannot execute anything from disk.
Writes go to a temporary file that is fsynced and then renamed, so a crash at any moment leaves the
previous checkpoint intact; the last `keep` checkpoints are kept so a bad one has a fallback.
"""

from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from .config import ConfigError
from .run_files import atomic_file

FORMAT = 1
_NAME = re.compile(r"^ckpt-(\d+)\.npz$")


class CheckpointError(ConfigError):
    """A checkpoint is missing, truncated, corrupt or does not fit this run (one-line message)."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (a full or read-only disk); the ones before it are untouched."""


@dataclass
class Checkpoint:
    """A loaded checkpoint. `model` and `optim` are lists of (path, array) in the saved order."""

    path: str
    meta: dict
    model: list
    optim: list
    policy_flat: Optional[np.ndarray] = None  # the published weights (layout: meta["policy_layout"])


def checkpoint_dir(run_dir: str) -> str:
    return os.path.join(run_dir, "checkpoints")


def list_checkpoints(run_dir: str) -> list[str]:
    """Paths of the run's checkpoints, oldest first (by learner step)."""
    d = checkpoint_dir(run_dir)
    if not os.path.isdir(d):
        return []
    found = sorted((int(m.group(1)), name) for name in os.listdir(d) if (m := _NAME.match(name)))
    return [os.path.join(d, name) for _, name in found]


def save(run_dir: str, step: int, meta: dict, model_vars: list, optim_vars: list, keep: int,
         policy: Optional[tuple] = None) -> str:
    """Writes checkpoint `step` atomically and deletes all but the newest `keep`; returns its path.

    model_vars / optim_vars: lists of (path, numpy array). policy: optional (flat weights, layout) as
    published to actors, so the policy can be loaded without TensorFlow. Refuses non-finite model
    weights, so a bad state can never replace a good checkpoint."""
    for path, value in model_vars:
        if not np.isfinite(value).all():
            raise ValueError(f"refusing to checkpoint non-finite weights ({path})")
    d = checkpoint_dir(run_dir)
    os.makedirs(d, exist_ok=True)
    meta = {**meta, "format": FORMAT, "step": int(step),
            "model_paths": [[p, list(np.shape(v))] for p, v in model_vars],
            "optim_paths": [[p, list(np.shape(v))] for p, v in optim_vars]}
    if policy is not None:
        meta["policy_layout"] = [[p, list(s)] for p, s in policy[1]]
    arrays = {"meta": np.array(json.dumps(meta))}
    arrays.update({f"model/{i}": np.asarray(v) for i, (_, v) in enumerate(model_vars)})
    arrays.update({f"optim/{i}": np.asarray(v) for i, (_, v) in enumerate(optim_vars)})
    if policy is not None:
        arrays["policy/flat"] = np.asarray(policy[0], np.float32)
    final = os.path.join(d, f"ckpt-{int(step):09d}.npz")
    try:  # a full disk, a second Ctrl-C: the previous checkpoints stay as they were
        with atomic_file(final, "wb") as f:
            np.savez(f, **arrays)
    except OSError as e:  # a full or read-only disk: one line, not numpy's zipfile traceback
        kept = list_checkpoints(run_dir)
        raise CheckpointWriteError(f"could not write checkpoint {final}: {e.strerror or e} (the newest one "
                                   f"kept: {kept[-1] if kept else 'none'})") from None
    _fsync_dir(d)
    for old in list_checkpoints(run_dir)[:-keep]:
        os.remove(old)
    return final


def load(path: str) -> Checkpoint:
    """Reads and checks one checkpoint; raises CheckpointError naming the file if it is unusable."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
        with np.load(io.BytesIO(raw), allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format") != FORMAT:
                raise ValueError(f"unknown checkpoint format {meta.get('format')!r}")
            model = [(p, data[f"model/{i}"]) for i, (p, _) in enumerate(meta["model_paths"])]
            optim = [(p, data[f"optim/{i}"]) for i, (p, _) in enumerate(meta["optim_paths"])]
            policy_flat = data["policy/flat"] if "policy/flat" in data.files else None
        for (p, shape), (_, value) in zip(meta["model_paths"] + meta["optim_paths"], model + optim):
            if list(value.shape) != shape:
                raise ValueError(f"{p} has shape {list(value.shape)}, its record says {shape}")
    except Exception as e:  # noqa: BLE001 - zip, CRC, JSON and key errors all mean the same: unusable
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__}: {reason})") \
            from None
    return Checkpoint(path, meta, model, optim, policy_flat)


def load_latest(run_dir: str, warn: Callable[[str], None]) -> Checkpoint:
    """The newest usable checkpoint of a run; a bad one is reported through `warn` and the previous one
    is tried. Raises CheckpointError if there is none, or if none is usable (naming the newest file)."""
    paths = list_checkpoints(run_dir)
    if not paths:
        raise CheckpointError(f"no checkpoint in {checkpoint_dir(run_dir)}: the run stopped before its first one")
    first_error: Optional[CheckpointError] = None
    for path in reversed(paths):
        try:
            ckpt = load(path)
        except CheckpointError as e:
            first_error = first_error or e
            warn(f"{e}; trying the previous one")
            continue
        return ckpt
    raise CheckpointError(f"{first_error} and no earlier checkpoint is usable")


def variables_state(variables, skip: Callable[[str], bool] = lambda p: False) -> list:
    """[(path, numpy value)] of Keras variables, in order."""
    return [(v.path, np.array(v.numpy())) for v in variables if not skip(v.path)]


def assign(variables, saved: list, what: str, skip: Callable[[str], bool] = lambda p: False) -> None:
    """Assigns saved (path, value) pairs to Keras variables in order, after checking that they fit."""
    variables = [v for v in variables if not skip(v.path)]
    if len(variables) != len(saved):
        raise CheckpointError(f"the checkpoint holds {len(saved)} {what} variables, this run has "
                              f"{len(variables)}: was it made with another model?")
    for v, (path, value) in zip(variables, saved):
        if tuple(v.shape) != tuple(value.shape):
            raise CheckpointError(f"{what} variable {v.path} has shape {tuple(v.shape)}, the checkpoint's "
                                  f"{path} has {tuple(value.shape)}: was it made with another model?")
    for v, (_, value) in zip(variables, saved):
        v.assign(value)


def is_learning_rate(path: str) -> bool:
    return path.endswith("learning_rate")


def _fsync_dir(path: str) -> None:
    """Makes the rename itself durable (a crash right after os.replace could otherwise lose it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
