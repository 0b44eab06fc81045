"""Action masks (--action-masks): which of an env's actions are allowed in its current observation.

Two conventions are read, in this order:
- gymnasium's: `info["action_mask"]` from reset and from every step (Taxi-v4 and envs written like it);
- sb3-contrib's (MaskablePPO): a method `action_masks()` on the env or one of its wrappers.
A third, PettingZoo's `{"observation": ..., "action_mask": ...}` Dict observation, is turned into the first by
env_wrappers.MaskInInfo (an env given by id is wrapped for you).

A mask has one flag per logit of the policy (nonzero = allowed): `[n]` for Discrete(n); for MultiDiscrete, the
components' masks side by side, `[sum(nvec)]` (sb3-contrib's flat layout; gymnasium's tuple of per-component masks
is joined); `[2 * n]` for MultiBinary(n). Every component must allow at least one choice. The actors sample only
allowed actions and the learner computes log-probs and entropies over the allowed ones (distributions.py), so the
policy is the masked one on both sides of V-trace's importance weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .distributions import block_starts

if TYPE_CHECKING:  # envs.py reads masks with this module
    from .envs import EnvSpec


# The key of gymnasium's convention, in an info dict (and of PettingZoo's, in a Dict observation: MaskInInfo).
MASK_KEY = "action_mask"


class BadMask(ValueError):
    """An env gave no action mask, or one that does not fit its actions."""


def read_mask(env, info, spec: EnvSpec, out: np.ndarray | None = None) -> np.ndarray:
    """The allowed actions [spec.action_dim] bool after a reset or step of `env` that returned `info`, written into
    `out` where given (a batch's row). Raises BadMask with a line saying what is wrong. Runs for every env step:
    ~1.5 µs where cumsum-based checks cost 5 (a Taxi step is ~10)."""
    mask = info.get(MASK_KEY) if isinstance(info, dict) else None
    if mask is None:
        method = _method(env)
        if method is None:
            raise BadMask("gave no action mask: --action-masks reads info['action_mask'] (gymnasium's convention) "
                          "or an action_masks() method (sb3-contrib's), and the env has neither")
        mask = method()
    if not isinstance(mask, np.ndarray):
        if spec.action_nvec and isinstance(mask, (tuple, list)) and len(mask) == len(spec.action_nvec):
            mask = np.concatenate([np.asarray(m).reshape(-1) for m in mask])
        mask = np.asarray(mask)
    if mask.shape != (spec.action_dim,):
        raise BadMask(f"gave an action mask of shape {mask.shape}, expected ({spec.action_dim},): one flag per "
                      f"choice for {spec.describe_actions()}")
    if out is None:
        out = np.empty(spec.action_dim, bool)
    out[...] = mask  # nonzero = allowed
    if spec.action_nvec:
        allows = np.logical_or.reduceat(out, block_starts(spec.action_nvec))
        if not allows.all():
            raise BadMask(f"gave an action mask that allows no action for component {int(np.argmin(allows))}")
    elif not out.any():
        raise BadMask("gave an action mask that allows no action")
    return out


def gives_masks(env, info) -> bool:
    """Whether env has masks in either convention (info: its last reset's or step's)."""
    return (isinstance(info, dict) and MASK_KEY in info) or _method(env) is not None


def mask_of(env, info, spec: EnvSpec):
    """read_mask's [1, A] batch of one where the run has masks (spec.action_masks), else None: what a one-env
    episode (evaluation._episode: --video) passes its policy after each reset and step."""
    return read_mask(env, info, spec)[None] if spec.action_masks else None


def first_allowed(mask: np.ndarray, spec: EnvSpec):
    """An action the mask [spec.action_dim] allows, as the env's step takes it (the API check steps with it)."""
    from .distributions import np_greedy
    from .envs import env_action

    return env_action(np_greedy(np.zeros((1, spec.action_dim)), True, spec.action_nvec, mask[None])[0], spec)


def _method(env):
    """env's action_masks, found through its wrappers (gymnasium 1.x wrappers do not forward attributes), or None."""
    try:
        method = env.get_wrapper_attr("action_masks") if hasattr(env, "get_wrapper_attr") else env.action_masks
    except AttributeError:
        return None
    return method if callable(method) else None
