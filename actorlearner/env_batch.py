"""K envs stepped as a batch: the one interface an actor steps its envs through, and its two implementations
(which backend serves which id, and how an actor builds its batch: env_backends.py).

`EnvBatch.step(actions)` returns a `BatchStep` in the trajectory's convention (trajectory.py): where an
episode ended, `obs` already holds the next episode's first observation, the final observation of a
truncated episode comes back separately (for the bootstrap), and terminated and truncated are kept
apart. Implementations:

- `GymEnvBatch`: K single gymnasium envs stepped in a Python loop; an env that raises is reported,
  recreated, and its episode cut like a time limit.
- `VectorEnvBatch`: one gymnasium vector env (`gymnasium.make_vec(..., "vector_entry_point")`, e.g.
  CartPoleVectorEnv), ale-py's `AtariVectorEnv` or an envpool pool, all K envs in one call. Its own autoreset
  mode decides where the final observation is: SAME_STEP puts it in `info["final_obs"]`; NEXT_STEP returns it as the
  step's observation and spends the env's next step on the reset, ignoring its action. Such a reset step
  comes back with `valid` False, and the learner masks it out of the loss.

With `episodic_life`, a step that loses a life (the env's `info["lives"]` falls) comes back terminated too:
the value does not bootstrap across a lost life (what the Atari baselines' EpisodicLifeEnv does for learning),
while the episode, its return and the env go on to the game's own end.

A batch knows nothing of slots or channels: errors come back as text, and the actor forwards them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, NamedTuple, Optional, Protocol

import gymnasium as gym
import numpy as np

from .action_masks import BadMask, read_mask

if TYPE_CHECKING:
    from .envs import EnvSpec

# An env that fails this many times without finishing an episode in between stops its actor.
MAX_ENV_FAILS = 5


class BatchStep(NamedTuple):
    """One step of K envs. Arrays are [K] unless said otherwise."""

    obs: np.ndarray  # [K, *obs_shape]: each env's observation now (a new episode's first where one ended)
    rewards: np.ndarray  # float32
    terminated: np.ndarray  # bool: the step ended its episode in a terminal state (or, with episodic_life, a
    #                         life: no bootstrap across it, while the episode goes on and `first` stays False)
    truncated: np.ndarray  # bool: the step ended its episode by a time limit or an env error (bootstrap)
    first: np.ndarray  # bool: obs is the first observation of an episode
    valid: Optional[np.ndarray]  # bool, False for a NEXT_STEP vector env's reset step; None: all valid
    final_idx: list  # envs whose episode was truncated at this step
    final_obs: Optional[np.ndarray]  # [len(final_idx), *obs_shape]: their final observations
    ended_returns: list  # returns of the episodes that ended at this step
    ended_lengths: list
    errors: list  # one-line texts of env errors that were recovered from


class EnvBatch(Protocol):
    num_envs: int
    backend: str
    # [K, A] bool: the actions each env allows in its observation now (--action-masks; GymEnvBatch only), or None.
    action_masks: Optional[np.ndarray]

    def reset(self) -> np.ndarray:
        """Seeds and resets every env; returns the first observations [K, *obs_shape]."""

    def step(self, actions) -> BatchStep:
        """actions: [K] ints (Discrete) or [K, D] floats already clipped to the action space."""

    def close(self) -> None:
        """Safe to call twice."""


class BadObservation(ValueError):
    """An env returned an observation whose shape or dtype is not its space's."""


def check_obs(obs, shape: tuple, dtype: str, call: str) -> None:
    """Raises BadObservation unless obs has `shape` and a dtype that fits `dtype` (a uint8 space takes uint8
    only; a float32 space any real number type, which the slots cast). Cheap: no per-step `contains`."""
    got_shape = getattr(obs, "shape", None)
    if got_shape is None:  # a list or tuple: Box.contains takes them, the slots and policies want arrays
        raise BadObservation(f"{call}() returned an observation that is a {type(obs).__name__}, not a numpy array "
                             f"of shape {shape} {dtype}: np.asarray(obs, np.{dtype}) in the env fixes it")
    got = np.dtype(getattr(obs, "dtype", object))
    if got_shape != shape or (got != np.uint8 if dtype == "uint8" else got.kind not in "fiub"):
        raise BadObservation(f"{call}() returned an observation of shape {got_shape} {got}, expected {shape} {dtype}")


def env_seed(seed: int, actor_id: int, nth_env: int, incarnation: int) -> int:
    """A distinct seed for every env an actor ever makes (replacements of broken envs included)."""
    return (seed * 1_000_003 + actor_id * 10_007 + nth_env * 101 + incarnation * 7919) % (2**31)


class _Episodes:
    """Running returns and lengths of K episodes."""

    def __init__(self, k: int):
        self.ret = np.zeros(k, np.float64)
        self.len = np.zeros(k, np.int64)

    def add(self, rewards: np.ndarray, counted: Optional[np.ndarray], ended: Optional[np.ndarray]) -> tuple[list, list]:
        """Adds one step (where `counted`; None: every env); returns (returns, lengths) of the episodes `ended`
        (None: none ended), restarted."""
        if counted is None:
            self.ret += rewards
            self.len += 1
        else:
            np.add(self.ret, rewards, out=self.ret, where=counted)  # one call, no temporary array
            self.len += counted
        if ended is None:
            return [], []
        idx = ended.nonzero()[0]
        out = self.ret[idx].tolist(), self.len[idx].tolist()
        self.ret[idx] = 0.0
        self.len[idx] = 0
        return out


class GymEnvBatch:
    """K single gymnasium envs stepped one by one (any env, including user callables)."""

    backend = "gymnasium"

    def __init__(self, env_fn: Callable[[], gym.Env], num_envs: int, seed_of: Callable[[int], int],
                 obs_shape: tuple, obs_dtype: str, scalar_actions: bool, label: str = "env", name: str = "env",
                 episodic_life: bool = False, masks_for: Optional["EnvSpec"] = None):
        """seed_of(n): the seed of the n-th env this batch makes (1, 2, ...). label: names env i as
        f"{label}.{i}" in error texts; name: the env's id, in them too. episodic_life: see the module.
        scalar_actions: one int an env (Discrete), stepped as Python ints; else one array an env.
        masks_for: --action-masks, the spec whose actions the envs' masks fit (a bad mask is an env error: the
        env is recreated, as when it raises); None: no masks."""
        self.num_envs, self.env_fn, self.seed_of, self.label, self.name = num_envs, env_fn, seed_of, label, name
        self.episodic_life = episodic_life
        self._lives: list = [None] * num_envs  # env i's lives after its last step or reset (None: not known)
        self.obs_shape, self.obs_dtype = tuple(obs_shape), obs_dtype
        self.scalar_actions = scalar_actions
        self.envs: list = [None] * num_envs
        self.obs = np.zeros((num_envs, *obs_shape), obs_dtype)
        self._made = 0
        self._fails = [0] * num_envs  # failures of env i since it last finished an episode
        self.ep_return, self.ep_len = [0.0] * num_envs, [0] * num_envs
        self.masks_for = masks_for
        self.action_masks = None if masks_for is None else np.ones((num_envs, masks_for.action_dim), bool)

    def reset(self) -> np.ndarray:
        for i in range(self.num_envs):
            try:
                self._new_env(i)
            except Exception as e:  # noqa: BLE001 - one line naming the env, not a traceback from deep inside
                raise RuntimeError(f"env {self.label}.{i} ({self.name}) could not be started: "
                                   f"{type(e).__name__}: {e}") from e
        return self.obs.copy()

    def _new_env(self, i: int) -> None:
        _close_quietly(self.envs[i])
        self.envs[i] = None
        self.envs[i] = self.env_fn()
        self._made += 1
        self.obs[i] = self._reset(i, seed=self.seed_of(self._made))

    def _reset(self, i: int, seed: Optional[int] = None) -> np.ndarray:
        """Env i's first observation of a new game, checked; with episodic_life, its lives from the reset
        info (a life lost at the game's first step counts too)."""
        o, info = self.envs[i].reset(seed=seed)
        check_obs(o, self.obs_shape, self.obs_dtype, "reset")
        if self.masks_for is not None:
            read_mask(self.envs[i], info, self.masks_for, self.action_masks[i])
        self._lives[i] = info.get("lives") if self.episodic_life else None
        return o

    def step(self, actions) -> BatchStep:
        """The per-env loop works on Python lists and writes arrays once per step: numpy scalar writes
        cost as much as a tenth of a CartPole step each."""
        K, envs = self.num_envs, self.envs
        ep_return, ep_len = self.ep_return, self.ep_len
        acts = actions.tolist() if self.scalar_actions else actions
        rewards, term, trunc, first = [0.0] * K, [False] * K, [False] * K, [False] * K
        next_obs = [None] * K
        final_idx, final_obs, errors, returns, lengths = [], [], [], [], []
        for i in range(K):
            try:
                o, r, te, tr, info = envs[i].step(acts[i])
                check_obs(o, self.obs_shape, self.obs_dtype, "step")
                if self.masks_for is not None and not (te or tr):  # else the reset's mask is the one that counts
                    read_mask(envs[i], info, self.masks_for, self.action_masks[i])
            except Exception as e:  # noqa: BLE001 - a user env may raise anything; recreate it
                errors.append(self._error_text(i, e, "stepping"))
                # Cut the episode like a time limit: bootstrap from the last good observation. The cut
                # episode is not reported (its return is not the env's).
                final_idx.append(i)
                final_obs.append(self.obs[i].copy())
                trunc[i] = first[i] = True
                ep_return[i], ep_len[i] = 0.0, 0
                next_obs[i] = self._recreate(i, errors)
                continue
            rewards[i] = r
            ep_return[i] += r
            ep_len[i] += 1
            if self.episodic_life:
                lives, self._lives[i] = self._lives[i], None if te or tr else info["lives"]
                term[i] = lives is not None and self._lives[i] is not None and self._lives[i] < lives
            if te or tr:
                term[i], trunc[i], first[i] = te, not te, True
                returns.append(float(ep_return[i]))
                self._fails[i] = 0
                lengths.append(ep_len[i])
                ep_return[i], ep_len[i] = 0.0, 0
                if not te:
                    final_idx.append(i)
                    final_obs.append(o)
                try:
                    o = self._reset(i)
                except Exception as e:  # noqa: BLE001
                    errors.append(self._error_text(i, e, "resetting"))
                    o = self._recreate(i, errors)
            next_obs[i] = o
        self.obs[:] = next_obs
        return BatchStep(self.obs.copy(), np.asarray(rewards, np.float32), np.asarray(term), np.asarray(trunc),
                         np.asarray(first), None, final_idx,
                         np.asarray(final_obs, self.obs.dtype) if final_idx else None, returns, lengths, errors)

    def _recreate(self, i: int, errors: list) -> np.ndarray:
        """A fresh env in place of env i; returns its first observation. An env that fails MAX_ENV_FAILS times
        without finishing an episode in between is broken, not unlucky: that ends the actor with its line."""
        self._fails[i] += 1
        if self._fails[i] >= MAX_ENV_FAILS:
            raise RuntimeError(f"env {self.label}.{i} ({self.name}) failed {MAX_ENV_FAILS} times without finishing "
                               f"an episode, last: {errors[-1].split(': ', 1)[-1].removesuffix('; recreating it')}")
        for attempt in range(3):
            try:
                self._new_env(i)
                return self.obs[i].copy()
            except Exception as e:  # noqa: BLE001
                errors.append(self._error_text(i, e, "recreating"))
                time.sleep(0.1 * (attempt + 1))
        raise RuntimeError(f"env {self.label}.{i} ({self.name}) failed 3 times in a row while recreating it, "
                           f"last: {errors[-1].split(': ', 1)[-1].removesuffix('; recreating it')}")

    def _error_text(self, i: int, e: BaseException, what: str) -> str:
        if isinstance(e, (BadObservation, BadMask)):
            return f"env {self.label}.{i} ({self.name}): {e}; recreating it"
        return f"env {self.label}.{i} ({self.name}) raised while {what}: {type(e).__name__}: {e}; recreating it"

    def close(self) -> None:
        for env in self.envs:
            _close_quietly(env)
        self.envs = [None] * self.num_envs


class VectorEnvBatch:
    """One vector env holding all K envs (gymnasium vector entry points, ale-py's AtariVectorEnv)."""

    action_masks = None  # --action-masks runs on single envs (env_backends.resolve_backend)

    def __init__(self, make_vec: Callable[[int], "gym.vector.VectorEnv"], num_envs: int, seed: int,
                 backend: str, label: str = "env", obs_shape: Optional[tuple] = None, obs_dtype: str = "float32",
                 episodic_life: bool = False):
        """make_vec(seed): the vector env of num_envs envs. seed: for its reset (its own RNG then seeds every
        later episode, so the same seed replays the same episodes); envpool takes it when it is built.
        obs_shape: one observation's, checked at every reset and step (None: not checked). episodic_life:
        see the module."""
        self.num_envs, self.make_vec, self.seed, self.backend, self.label = num_envs, make_vec, seed, backend, label
        self.episodic_life = episodic_life
        self.batch_shape = None if obs_shape is None else (num_envs, *obs_shape)
        self.obs_dtype = obs_dtype
        self.env = None
        self._episodes = _Episodes(num_envs)
        self._resets = 0
        self._fails = 0  # errors since an episode last ended
        self._checked_dtype = None  # the observation dtype check_obs last passed
        self._no_first = np.zeros(num_envs, bool)  # `first` of a step where no env starts an episode
        self._no_first.flags.writeable = False  # shared by many BatchSteps

    def reset(self) -> np.ndarray:
        _close_quietly(self.env)
        self.env = None
        self._resets += 1
        seed = self.seed + 7919 * (self._resets - 1)  # a recreated env does not replay the broken one
        self.env = self.make_vec(seed)
        mode = self.env.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP)
        mode = gym.vector.AutoresetMode(mode) if isinstance(mode, str) else mode
        if mode not in (gym.vector.AutoresetMode.NEXT_STEP, gym.vector.AutoresetMode.SAME_STEP):
            raise ValueError(f"vector env autoreset mode {mode} is not supported (NEXT_STEP or SAME_STEP)")
        self.same_step = mode == gym.vector.AutoresetMode.SAME_STEP
        self._resetting = np.zeros(self.num_envs, bool)  # NEXT_STEP: the next step of these envs is a reset
        self._any_resetting = False
        obs, info = self.env.reset() if self.backend == "envpool" else self.env.reset(seed=seed)
        self._lives = np.asarray(info["lives"]) if self.episodic_life else None
        self.obs = np.asarray(obs)
        self._check(self.obs, "reset")
        return self.obs.copy()

    def _check(self, obs: np.ndarray, call: str) -> None:
        if self.batch_shape is not None and (obs.shape != self.batch_shape or obs.dtype != self._checked_dtype):
            check_obs(obs, self.batch_shape, self.obs_dtype, call)
            self._checked_dtype = obs.dtype

    def step(self, actions) -> BatchStep:
        # The common step (no episode ends, no env resetting) makes a handful of numpy calls: at 2-5 µs a call
        # on a small VM, the bookkeeping around a CartPole vector step once cost half as much as the step.
        try:
            obs, rewards, term, trunc, info = self.env.step(actions)
            obs = np.asarray(obs)
            self._check(obs, "step")
        except Exception as e:  # noqa: BLE001 - all K envs live in one object: recreate it whole
            text = (f"vector env {self.label} ({self.num_envs} envs) raised while stepping: {type(e).__name__}: {e}; "
                    "recreating it")
            return self._after_error(text)
        rewards, term, trunc = _as_dtype(rewards, np.float32), _as_dtype(term, np.bool_), _as_dtype(trunc, np.bool_)
        trunc = np.greater(trunc, term)  # trunc & ~term, a new array
        ended = term | trunc
        any_ended = np.count_nonzero(ended) > 0  # a third of ended.any()'s µs
        final_idx = trunc.nonzero()[0].tolist() if any_ended else []
        final_obs = None
        if final_idx:  # SAME_STEP: in the info; NEXT_STEP: this step's observation (the reset comes next step)
            final_obs = np.asarray(info["final_obs"][trunc].tolist(), obs.dtype) if self.same_step else obs[trunc]
        if self.same_step:
            valid = counted = None
            first = ended
        else:
            # NEXT_STEP: the envs that ended last step were reset by this one (action ignored, reward 0).
            if self._any_resetting:
                valid = counted = ~self._resetting
                first = self._resetting
                term, trunc = term & valid, trunc & valid
            else:
                valid = counted = None
                first = self._no_first
            self._resetting, self._any_resetting = ended, any_ended
            if valid is not None:
                ended = ended & valid
                any_ended = np.count_nonzero(ended) > 0
        ended_r, ended_l = self._episodes.add(rewards, counted, ended if any_ended else None)
        if self.episodic_life:  # an ended episode's lives are the next one's (after the autoreset): no loss
            lives, self._lives = self._lives, np.asarray(info["lives"])
            lost = (self._lives < lives) & ~ended
            term = term | (lost if counted is None else lost & counted)
        if ended_r:
            self._fails = 0
        self.obs = obs
        return BatchStep(obs.copy(), rewards, term, trunc, first, valid, final_idx, final_obs,
                         ended_r, ended_l, [])

    def _after_error(self, text: str) -> BatchStep:
        K = self.num_envs
        self._fails += 1
        if self._fails >= MAX_ENV_FAILS:
            raise RuntimeError(f"vector env {self.label} failed {MAX_ENV_FAILS} times without finishing an "
                               f"episode, last: {text.removesuffix('; recreating it')}")
        last = self.obs.copy()
        errors = [text]
        for attempt in range(3):
            try:
                obs = self.reset()
                break
            except Exception as e:  # noqa: BLE001
                errors.append(f"vector env {self.label} raised while recreating: {type(e).__name__}: {e}")
                time.sleep(0.1 * (attempt + 1))
        else:
            raise RuntimeError(f"vector env {self.label} could not be recreated")
        self._episodes = _Episodes(K)
        # Every episode is cut like a time limit, bootstrapped from its last good observation.
        return BatchStep(obs, np.zeros(K, np.float32), np.zeros(K, bool), np.ones(K, bool), np.ones(K, bool),
                         None, list(range(K)), last, [], [], errors)

    def close(self) -> None:
        _close_quietly(self.env)
        self.env = None


def _as_dtype(x, dtype) -> np.ndarray:
    """x as an array of dtype, converted only if it is not one already."""
    return x if isinstance(x, np.ndarray) and x.dtype == dtype else np.asarray(x, dtype)


def _close_quietly(env) -> None:
    if env is None:
        return
    try:
        env.close()
    except Exception:  # noqa: BLE001 - a broken env may fail to close too; it is dropped anyway
        pass
