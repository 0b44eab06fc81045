"""The actor: steps K envs with one batched policy call per step and writes unrolls into slots.

An actor knows two edges only: "fill the slot I was given and say so" (the slot pool and the actor's
channel to the learner) and "pull the newest weights in" (the weight store). `Actor` is used as-is in
serial mode; `actor_process_main` is the body of an actor process.

The channel is a duplex pipe owned by this actor alone: the learner sends slot indices (or None: stop),
the actor sends the messages below. With one reader and one writer per end there is no lock that a
killed process could leave held, and either side sees the other's death as end-of-file at once.
"""

from __future__ import annotations

import os
import signal
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .config import Config
from .envs import EnvSpec
from .trajectory import unroll_fields

# Messages from actor to learner: the first item says what the rest is.
MSG_UNROLL = "unroll"  # (MSG_UNROLL, actor_id, slot, episode returns, episode lengths)
MSG_ENV_ERROR = "env_error"  # (MSG_ENV_ERROR, actor_id, env index, one-line error)
MSG_FATAL = "fatal"  # (MSG_FATAL, actor_id, traceback text)


def _env_seed(cfg: Config, actor_id: int, nth_env: int, incarnation: int) -> int:
    return (cfg.seed * 1_000_003 + actor_id * 10_007 + nth_env * 101 + incarnation * 7919) % (2**31)


class Actor:
    def __init__(self, actor_id: int, cfg: Config, spec: EnvSpec, env_fn: Callable, policy: Any, slots,
                 channel, weights, incarnation: int = 0):
        self.id = actor_id
        self.cfg = cfg
        self.spec = spec
        self.env_fn = env_fn
        self.policy = policy
        self.slots = slots
        self.channel = channel
        self.weights = weights
        self.incarnation = incarnation
        self.rng = np.random.default_rng([cfg.seed, actor_id, incarnation])
        self.version = 0
        K = cfg.envs_per_actor
        self.envs = [None] * K
        self.obs = np.zeros((K, spec.obs_dim), np.float32)
        self._envs_made = 0  # seeds each new env differently, also the ones that replace broken envs
        for i in range(K):
            self._new_env(i)
        self.ep_return = [0.0] * K
        self.ep_len = [0] * K
        if not spec.discrete:
            self._low, self._high = spec.action_low, spec.action_high

    def _new_env(self, i: int) -> np.ndarray:
        if self.envs[i] is not None:
            try:
                self.envs[i].close()
            except Exception:  # noqa: BLE001 - a broken env may fail to close too; it is dropped anyway
                pass
        self.envs[i] = self.env_fn()
        self._envs_made += 1
        obs, _ = self.envs[i].reset(seed=_env_seed(self.cfg, self.id, self._envs_made, self.incarnation))
        self.obs[i] = obs
        return obs

    def pull_weights(self) -> bool:
        got = self.weights.read_if_newer(self.version, timeout_s=self.cfg.wait_timeout_s)
        if got is None:
            return False
        self.version, flat = got
        self.policy.load(flat)
        return True

    def fill(self, slot: int) -> tuple[list, list]:
        """Runs T steps of all K envs into `slot`; returns (returns, lengths) of episodes that ended.

        The per-env loop works on Python lists and writes each step's arrays once: numpy scalar writes
        cost as much as a tenth of a CartPole step each."""
        a = self.slots.arrays
        obs_out, act_out, logp_out = a["obs"][slot], a["actions"][slot], a["behaviour_logp"][slot]
        rew_out, term_out, trunc_out = a["rewards"][slot], a["terminated"][slot], a["truncated"][slot]
        fval_out = a["final_value"][slot]
        self.slots.meta[slot, self.slots.META_VERSION] = self.version
        returns, lengths = [], []
        envs, K = self.envs, len(self.envs)
        ep_return, ep_len = self.ep_return, self.ep_len
        discrete = self.spec.discrete
        for t in range(self.cfg.unroll_length):
            obs_out[t] = self.obs
            actions, logp = self.policy.sample(self.obs, self.rng)
            act_out[t] = actions
            logp_out[t] = logp
            step_actions = actions.tolist() if discrete else np.clip(actions, self._low, self._high)
            rewards, term, trunc, next_obs = [0.0] * K, [False] * K, [False] * K, [None] * K
            final_obs, final_idx = [], []
            for i in range(K):
                try:
                    o, r, te, tr, _ = envs[i].step(step_actions[i])
                except Exception as e:  # noqa: BLE001 - a user env may raise anything; recreate it
                    self._report_env_error(i, e)
                    # Cut the episode like a time limit: bootstrap from the last good observation.
                    final_obs.append(self.obs[i].copy())
                    final_idx.append(i)
                    trunc[i] = True
                    ep_return[i], ep_len[i] = 0.0, 0
                    next_obs[i] = self._recreate_after_error(i)
                    continue
                rewards[i] = r
                ep_return[i] += r
                ep_len[i] += 1
                if te or tr:
                    term[i], trunc[i] = te, not te
                    returns.append(float(ep_return[i]))
                    lengths.append(ep_len[i])
                    ep_return[i], ep_len[i] = 0.0, 0
                    if not te:
                        final_obs.append(o)
                        final_idx.append(i)
                    try:
                        o, _ = envs[i].reset()
                    except Exception as e:  # noqa: BLE001
                        self._report_env_error(i, e, what="resetting")
                        o = self._recreate_after_error(i)
                next_obs[i] = o
            rew_out[t] = rewards
            term_out[t] = term
            trunc_out[t] = trunc
            self.obs[:] = next_obs
            fval_out[t] = 0.0
            if final_idx:
                fval_out[t, final_idx] = self.policy.value(np.asarray(final_obs, np.float32))
        obs_out[self.cfg.unroll_length] = self.obs
        return returns, lengths

    def _recreate_after_error(self, i: int) -> np.ndarray:
        """A fresh env in place of env i; returns its first observation."""
        for attempt in range(3):
            try:
                return self._new_env(i)
            except Exception as e:  # noqa: BLE001
                self._report_env_error(i, e, what="recreating")
                time.sleep(0.1 * (attempt + 1))
        raise RuntimeError(f"env {i} of actor {self.id} could not be recreated")

    def _report_env_error(self, i: int, e: BaseException, what: str = "stepping") -> None:
        text = f"env {self.id}.{i} raised while {what}: {type(e).__name__}: {e}; recreating it"
        self.channel.send((MSG_ENV_ERROR, self.id, i, text))

    def produce(self, slot: int) -> None:
        """Fills one slot with the newest weights and hands it to the learner."""
        self.pull_weights()
        returns, lengths = self.fill(slot)
        self.channel.send((MSG_UNROLL, self.id, slot, returns, lengths))

    def close(self) -> None:
        for env in self.envs:
            try:
                env.close()
            except Exception:  # noqa: BLE001
                pass


@dataclass(frozen=True)
class ActorArgs:
    """Everything an actor process needs, picklable under spawn (callables pre-pickled with cloudpickle)."""

    actor_id: int
    incarnation: int
    cfg: Config
    spec: EnvSpec
    env_fn_blob: bytes
    model_fn_blob: bytes  # b"" for the numpy policy
    slot_spec: tuple
    weight_spec: tuple
    parent_pid: int


def make_policy(cfg: Config, spec: EnvSpec, model_fn: Callable | None, *, own_process: bool = False):
    """own_process: this process is an actor's own, so it may set TensorFlow's thread counts."""
    from .policies import KerasPolicy, NumpyMLPPolicy, default_layout

    if model_fn is None:
        return NumpyMLPPolicy(spec, default_layout(spec, cfg.hidden_sizes, cfg.normalize_obs), cfg.hidden_sizes, cfg.activation)
    return KerasPolicy(spec, model_fn, cfg.actor_threads if own_process else 0)


def actor_process_main(args: ActorArgs, channel) -> None:
    """Body of an actor process. Exits when told to (None), when the learner is gone (end-of-file on the
    channel, or a new parent), or after reporting a fatal error. SIGINT is ignored: the parent owns
    shutdown, so Ctrl-C in a terminal does not kill actors mid-write."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import cloudpickle

    from .transport import attach_slots, attach_weights

    slots = weights = actor = None
    try:
        env_fn = cloudpickle.loads(args.env_fn_blob)
        model_fn = cloudpickle.loads(args.model_fn_blob) if args.model_fn_blob else None
        slots, weights = attach_slots(args.slot_spec), attach_weights(args.weight_spec)
        policy = make_policy(args.cfg, args.spec, model_fn, own_process=True)
        actor = Actor(args.actor_id, args.cfg, args.spec, env_fn, policy, slots, channel, weights,
                      args.incarnation)
        while True:
            if not channel.poll(0.5):
                if os.getppid() != args.parent_pid:
                    return
                continue
            slot = channel.recv()
            if slot is None:
                return
            actor.produce(slot)
    except (EOFError, BrokenPipeError, ConnectionResetError):
        return  # the learner is gone: nothing to report to, nothing to keep
    except Exception:  # noqa: BLE001 - reported to the learner, which decides what to do
        try:
            channel.send((MSG_FATAL, args.actor_id, traceback.format_exc()))
        except Exception:  # noqa: BLE001
            pass
        raise SystemExit(1)
    finally:
        if actor is not None:
            actor.close()
        for shared in (slots, weights):
            if shared is not None:
                shared.close()


def unroll_spec(cfg: Config, spec: EnvSpec) -> dict:
    return unroll_fields(spec, cfg.unroll_length, cfg.envs_per_actor)
