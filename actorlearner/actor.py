"""The actor: steps K envs with one batched policy call per step and writes unrolls into slots.

An actor knows two edges only: "fill the slot I was given and say so" (the slot pool and the actor's
channel to the learner) and "pull the newest weights in" (the weight store). `Actor` is used as-is in
serial mode; `actor_process_main` is the body of an actor process.

The channel is a duplex pipe owned by this actor alone: the learner sends slot indices (or None: stop),
the actor sends the messages of protocol.py. With one reader and one writer per end there is no lock that a
killed process could leave held, and either side sees the other's death as end-of-file at once.
"""

from __future__ import annotations

import os
import signal
import time
import traceback
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .config import Config
from .env_batch import EnvBatch
from .envs import EnvSpec
from .policies import make_policy
from .protocol import ActorFailed, EnvError, UnrollReady


class Actor:
    """Fills unroll slots from an env batch with a policy; the unroll loop only (the envs' stepping,
    resets and error recovery are the batch's)."""

    def __init__(self, actor_id: int, cfg: Config, spec: EnvSpec, envs: EnvBatch, policy: Any, slots,
                 channel, weights, incarnation: int = 0):
        self.id = actor_id
        self.cfg = cfg
        self.spec = spec
        self.envs = envs
        self.policy = policy
        self.slots = slots
        self.channel = channel
        self.weights = weights
        self.rng = np.random.default_rng([cfg.seed, actor_id, incarnation])
        self.version = 0
        self.unrolls = 0  # unrolls produced: with --reproducible, unroll k is acted by a version fixed for k
        self.first_version = 0
        self.obs = envs.reset()
        self.first = np.ones(envs.num_envs, bool)  # every env starts an episode
        self.state = policy.initial_state(envs.num_envs)  # [] for a feed-forward policy
        if not spec.discrete:
            self._low, self._high = spec.action_low, spec.action_high

    def pull_weights(self) -> bool:
        got = self.weights.read_if_newer(self.version, timeout_s=self.cfg.wait_timeout_s)
        if got is None:
            return False
        self.version, flat = got
        self.policy.load(flat)
        return True

    def wait_for_first_weights(self, learner_alive) -> None:
        """Slots are handed out when the actors start, before the learner (still importing TensorFlow) has
        published; the first unroll waits for its weights."""
        self._wait_for_version(1, learner_alive, poll_s=0.005)

    def _wait_for_version(self, needed: int, learner_alive, poll_s: float) -> None:
        """Pulls weights until version `needed` (or newer) is in. learner_alive() is polled; raises EOFError if
        the learner is gone, TransportTimeout after cfg.wait_timeout_s."""
        from .transport import TransportTimeout

        deadline = time.monotonic() + self.cfg.wait_timeout_s
        while self.version < needed:
            if self.pull_weights():
                continue
            if not learner_alive():
                raise EOFError("the learner is gone")
            if time.monotonic() > deadline:
                raise TransportTimeout(f"actor {self.id}: no weights (version {needed}) from the learner in "
                                       f"{self.cfg.wait_timeout_s:.0f} s")
            time.sleep(poll_s)

    def fill(self, slot: int) -> tuple[list, list]:
        """Runs T steps of all K envs into `slot` (alignment: trajectory.py); returns (returns, lengths)
        of the episodes that ended."""
        a = self.slots.arrays
        obs_out, act_out, logp_out = a["obs"][slot], a["actions"][slot], a["behaviour_logp"][slot]
        rew_out, term_out, trunc_out = a["rewards"][slot], a["terminated"][slot], a["truncated"][slot]
        fval_out, first_out, valid_out = a["final_value"][slot], a["first"][slot], a["valid"][slot]
        self.slots.set_version(slot, self.version)
        if self.state:  # the learner re-runs the core from here, resetting where `first` says, as below
            a["core_state"][slot][0] = np.concatenate(self.state, axis=1)
        fval_out[:] = 0.0
        valid_out[:] = 1
        mask_out = a["action_mask"][slot] if self.spec.action_masks else None
        returns, lengths = [], []
        for t in range(self.cfg.unroll_length):
            obs_out[t] = self.obs
            first_out[t] = self.first
            state = [s * ~self.first[:, None] for s in self.state]  # an episode starts from zeros
            mask = self.envs.action_masks
            if mask is not None:
                mask_out[t] = mask
            actions, logp, state = self.policy.act(self.obs, state, self.rng, mask=mask)
            act_out[t] = actions
            logp_out[t] = logp
            step = self.envs.step(actions if self.spec.discrete else np.clip(actions, self._low, self._high))
            for text in step.errors:
                self.channel.send(EnvError(self.id, text))
            rew_out[t] = step.rewards
            term_out[t] = step.terminated
            trunc_out[t] = step.truncated
            if step.valid is not None:
                valid_out[t] = step.valid
            if step.final_idx:  # the core steps on to the final observation from the state it reached
                fval_out[t, step.final_idx] = self.policy.value_at(step.final_obs, [s[step.final_idx] for s in state])
            returns += step.ended_returns
            lengths += step.ended_lengths
            self.obs, self.first, self.state = step.obs, step.first, state
        obs_out[self.cfg.unroll_length] = self.obs
        first_out[self.cfg.unroll_length] = self.first
        return returns, lengths

    def produce(self, slot: int, learner_alive=lambda: True) -> None:
        """Fills one slot with the newest weights (--reproducible: the version of the schedule) and hands it
        to the learner."""
        if self.version == 0:
            self.wait_for_first_weights(learner_alive)
            self.first_version = self.version
        elif self.cfg.reproducible and not self.cfg.serial:
            self._wait_for_scheduled_version(learner_alive)
        else:
            self.pull_weights()
        returns, lengths = self.fill(slot)
        self.unrolls += 1
        self.channel.send(UnrollReady(self.id, slot, returns, lengths, self._nonfinite(slot)))

    def _wait_for_scheduled_version(self, learner_alive) -> None:
        """--reproducible: each batch takes `per_actor` unrolls from every actor, all acted by the weights the
        learner had when the batch began, so unroll k needs version first + k // per_actor. The learner
        publishes the next version only after consuming this unroll, so a newer one cannot show up.
        (Serial mode needs no wait: its order is fixed already, and waiting there would block the learner.)"""
        needed = self.first_version + self.unrolls // (self.cfg.slots_per_batch // self.cfg.num_actors)
        self._wait_for_version(needed, learner_alive, poll_s=0.0005)
        if self.version != needed:
            raise RuntimeError(f"actor {self.id}: --reproducible expected weight version {needed}, got {self.version}")

    def _nonfinite(self, slot: int) -> str:
        """'' if the unroll's observations and rewards are all finite, else where the first bad one is."""
        a = self.slots.arrays
        rewards, obs = a["rewards"][slot], a["obs"][slot]
        checks = [("reward", rewards)]
        if obs.dtype.kind == "f":
            # A sum is non-finite where any of its terms is (a min would miss a +inf).
            checks.insert(0, ("observation", obs.reshape(obs.shape[0], obs.shape[1], -1).sum(axis=2)))
        for what, x in checks:
            if not np.isfinite(x).all():
                t, k = (int(i) for i in np.argwhere(~np.isfinite(x))[0])
                return f"env {self.id}.{k} ({self.cfg.env}) gave a non-finite {what} ({x[t, k]}) at unroll step {t}"
        return ""

    def close(self) -> None:
        self.envs.close()


@dataclass(frozen=True)
class ActorArgs:
    """Everything an actor process needs, picklable under spawn (callables pre-pickled with cloudpickle)."""

    actor_id: int
    incarnation: int
    cfg: Config
    spec: EnvSpec
    batch_blob: bytes  # env_backends.EnvBatchFactory
    model_fn_blob: bytes  # b"" for the numpy policy
    slot_spec: tuple  # transport.attach_slots's argument (a Ray actor's: its own one slot, token None)
    weight_spec: Optional[tuple]  # transport.attach_weights's argument (None on Ray: each call brings them)
    parent_pid: int
    stack_path: str = ""  # where the actor dumps its Python stack on SIGUSR1 (a stalled actor is asked first)


def build_actor(args: ActorArgs, slots, channel, weights) -> Actor:
    """The actor of `args` (its env batch and policy made here, in the process that runs it), writing into
    `slots`, talking through `channel`, reading weights from `weights`: the same for a process and a Ray actor.
    Lowers this process's CPU priority by cfg.actor_nice (serial mode builds its Actor without this)."""
    import cloudpickle

    if args.cfg.actor_nice and hasattr(os, "nice"):
        os.nice(args.cfg.actor_nice)

    make_batch = cloudpickle.loads(args.batch_blob)
    model_fn = None
    if args.model_fn_blob:
        from .tf_start import import_tensorflow_lean, tf_notices_filtered

        with tf_notices_filtered():  # a model_fn's module that imports Keras at its top is imported here
            import_tensorflow_lean()  # ~0.9 s of ~5.3 saved (medians of 4 alternated fresh imports)
            model_fn = cloudpickle.loads(args.model_fn_blob)
    policy = make_policy(args.cfg, args.spec, model_fn, own_process=True, acting=True)
    envs = make_batch(args.actor_id, args.incarnation, args.cfg.seed, args.spec)
    try:
        return Actor(args.actor_id, args.cfg, args.spec, envs, policy, slots, channel, weights, args.incarnation)
    except BaseException:
        envs.close()
        raise


def actor_process_main(args: ActorArgs, channel) -> None:
    """Body of an actor process. Exits when told to (None), when the learner is gone (end-of-file on the
    channel, or a new parent), or after reporting a fatal error. SIGINT and SIGHUP are ignored: the parent
    owns shutdown, so neither Ctrl-C in a terminal nor its hangup (both reach the whole process group) kills
    actors mid-write."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # A non-finite observation is reported as one line (--on-nonfinite); numpy's RuntimeWarnings from the
    # policy's matmul on it ("invalid value encountered") would only come first and say less.
    np.seterr(all="ignore")
    stack_file = None
    if args.stack_path:
        import faulthandler

        # faulthandler writes from the C signal handler: it answers even when an env hangs inside C code.
        stack_file = open(args.stack_path, "w")
        faulthandler.register(signal.SIGUSR1, file=stack_file, all_threads=False)

    from .transport import attach_slots, attach_weights

    slots = weights = actor = None
    try:
        slots, weights = attach_slots(args.slot_spec), attach_weights(args.weight_spec)
        actor = build_actor(args, slots, channel, weights)
        while True:
            if not channel.poll(0.5):
                if os.getppid() != args.parent_pid:
                    return
                continue
            slot = channel.recv()
            if slot is None:
                return
            actor.produce(slot, learner_alive=lambda: os.getppid() == args.parent_pid)
    except (EOFError, BrokenPipeError, ConnectionResetError):
        return  # the learner is gone: nothing to report to, nothing to keep
    except Exception:  # noqa: BLE001 - reported to the learner, which decides what to do
        try:
            channel.send(ActorFailed(args.actor_id, traceback.format_exc()))
        except Exception:  # noqa: BLE001
            pass
        raise SystemExit(1) from None
    finally:
        if actor is not None:
            actor.close()
        for shared in (slots, weights):
            if shared is not None:
                shared.close()

