"""The learner: one compiled IMPALA update per batch of unrolls, and the flat weights it publishes.

The learner knows a batch (numpy arrays from `trajectory.learner_inputs`) and returns the new flat weight
vector; where batches come from and where weights go is the runner's business.
"""

from __future__ import annotations


import numpy as np
import tensorflow as tf
import keras

from . import distributions as D
from .checkpoint import Checkpoint, assign, is_learning_rate, variables_state
from .config import Config
from .envs import EnvSpec
from .losses import appo_loss, choice_entropy, first_rows, impala_loss, policy_spread
from .layout import (OBS_NORM, flat_weights, merge_moments, mlp_input, ordered_weights, published_layout,
                     unflatten)
from .model import apply_time_major
from .tf_calls import executor_for, flat_caller, to_tensor

# A batch (trajectory.learner_inputs) holds obs, first, actions, the ROW_NAMES arrays, for a recurrent model
# core_state [1, B, S] (the state at each unroll's first step), and with --action-masks action_mask [T, B, A].
# The [T, B] float32 inputs travel to the compiled step stacked as one [4, T, B] tensor: each tensor made from a
# numpy array costs ~25-45 µs, about 2 % of a default CartPole step.
ROW_NAMES = ("behaviour_logp", "rewards", "discounts", "mask")
STAT_NAMES = ("finite", "grad_norm", "total", "policy", "baseline", "entropy", "rho_mean", "policy_spread")
APPO_STAT_NAMES = STAT_NAMES + ("clip_frac", "approx_kl")  # IMPALA's loss has no ratio to clip
# With --target-kl-from batch, a fifth row: the log-probabilities under the learner's policy at the batch's start,
# and the KL from that policy as a stat (the rule's figure; losses.appo_loss).
START_ROW, START_STAT = "start_logp", "update_kl"
# With --action-masks, the mean entropy over the samples whose masks leave a choice, and a uniform choice's among
# the allowed actions over the same samples (health.EntropyWatch: one allowed action is entropy 0 by right).
CHOICE_STATS = ("choice_entropy", "choice_uniform")


class NumericalFault(RuntimeError):
    """A NaN or Inf showed up in the loss or the gradients (the weights were not updated), or, rarely, in
    the weights after a finite update (`weights_damaged`: the model cannot go on)."""

    def __init__(self, message: str, weights_damaged: bool = False):
        super().__init__(message)
        self.weights_damaged = weights_damaged


def has_adam_slots(optimizer, variables) -> bool:
    """Whether a built keras Adam keeps its moments where Learner._apply reads them (Keras 3.0-3.15 do):
    `_momentums` and `_velocities` indexed by `_get_variable_index`, one per variable of its own shape."""
    try:
        slots = [(optimizer._momentums[optimizer._get_variable_index(v)],
                  optimizer._velocities[optimizer._get_variable_index(v)]) for v in variables]
    except (AttributeError, IndexError, KeyError, TypeError):
        return False
    return all(tuple(m.shape) == tuple(v.shape) == tuple(u.shape) for (m, u), v in zip(slots, variables))


class Learner:
    def __init__(self, cfg: Config, spec: EnvSpec, model: keras.Model, layout: list | None = None):
        """layout: (path, shape) list giving the order of the published flat vector (layout.published_layout);
        None: the default MLP's, which numpy actors read."""
        self.cfg = cfg
        self.spec = spec
        self.model = model
        layout = layout if layout is not None else published_layout(model, spec, cfg, numpy_actors=True)
        self.optimizer = keras.optimizers.Adam(learning_rate=cfg.learning_rate, epsilon=cfg.adam_epsilon)
        self.optimizer.build(model.trainable_variables)
        self._fused_adam = has_adam_slots(self.optimizer, model.trainable_variables)
        self._layout = layout
        self._published = ordered_weights(model, layout)
        T, B = cfg.unroll_length, cfg.batch_size // cfg.minibatches
        self._minibatch = B
        self._rng = np.random.default_rng(cfg.seed)  # minibatch shuffling
        act_sig = tf.TensorSpec([T, B, *spec.action_shape], tf.int32 if spec.discrete else tf.float32)
        # --target-kl-from batch (several updates a batch; config_checks): each update's KL is measured from the
        # policy at the batch's start, whose log-probabilities one forward pass over the whole batch gives first.
        anchored = bool(cfg.target_kl) and cfg.target_kl_from == "batch"
        self._kl_stat = START_STAT if anchored else "approx_kl"  # the figure --target-kl stops at
        self._row_names = ROW_NAMES + ((START_ROW,) if anchored else ())
        # A fixed input_signature: one trace, and no retracing on Python scalars or shapes. No autograph:
        # the step has no Python control flow to convert, and converting costs ~0.3 s of start-up.
        self.state_sizes = tuple(getattr(model, "state_sizes", ()))
        # --action-masks: the masks, one more input (the step of a run without them stays as it was).
        masks = (lambda n: [tf.TensorSpec([T, n, spec.action_dim], tf.uint8)]) if spec.action_masks else lambda n: []

        def batch_sig(n: int) -> list:  # obs, first, actions, rows and core_state of n unrolls
            return [tf.TensorSpec([T + 1, n, *spec.obs_shape], spec.obs_dtype), tf.TensorSpec([T + 1, n], tf.uint8),
                    tf.TensorSpec([T, n, *act_sig.shape[2:]], act_sig.dtype),
                    tf.TensorSpec([len(self._row_names), T, n], tf.float32),
                    tf.TensorSpec([1, n, sum(self.state_sizes)], tf.float32)]

        # One update a batch (IMPALA's): the step on the batch. Several (APPO's epochs x minibatches): the whole
        # batch becomes tensors once and each update gathers its minibatch in the graph, where it was sliced in
        # numpy and made into tensors update by update. Per batch, medians of 12 alternated blocks in one process
        # (2-core AMD EPYC VM): Pong preset 575 against 626 ms (2 cores), lunarlander's 128 small updates 78.7
        # against 85.3 ms, mountaincar's 16 12.3 against 12.9 ms (1 core).
        single = cfg.epochs * cfg.minibatches == 1
        self._step = None if not single else tf.function(self._train_step, autograph=False, input_signature=[
            *batch_sig(B), tf.TensorSpec([], tf.float32), *masks(B)])
        n = cfg.batch_size
        self._mb_step = None if single else tf.function(
            self._minibatch_step, autograph=False, input_signature=[
                *batch_sig(n), tf.TensorSpec([B], tf.int32), tf.TensorSpec([], tf.float32), *masks(n)])
        obs_sig, first_sig, actions_sig, _, state_sig = batch_sig(n)
        self._start = None if not anchored else tf.function(  # the whole batch's forward pass (--target-kl)
            self._log_probs, autograph=False, input_signature=[obs_sig, first_sig, actions_sig, state_sig, *masks(n)])
        self._start_concrete = None
        # A feed-forward model's (empty) core_state, as wide as the batch the compiled step takes (B or n unrolls).
        self._no_state = tf.zeros([1, B if single else n, 0], tf.float32)
        self._entropy_now = (None, None)  # (scheduled entropy cost, the same as a tensor)
        self.steps = 0
        self._concrete = None
        self._executor = ""  # TensorFlow's executor for the step (executor_for)
        self._lr_now = cfg.learning_rate
        self._stat_names = ((APPO_STAT_NAMES if cfg.loss == "appo" else STAT_NAMES)  # anchored: appo (validate)
                            + ((START_STAT,) if anchored else ()) + (CHOICE_STATS if spec.action_masks else ()))
        by_path = {v.path: v for v in model.weights}
        self._norm = (tuple(by_path[p] for p, _ in OBS_NORM) if cfg.normalize_obs and "obs_norm/mean" in by_path
                      else None)

    def _forward(self, obs, first, actions, core_state, action_mask=None):
        """The model on a time-major batch: (params [T, B, P] without the bootstrap row, values [T+1, B],
        log pi(a_t|x_t) [T, B], entropies [T, B]). obs [T+1, B, *obs_shape]; core_state [1, B, S]; action_mask
        [T, B, A] uint8 or None: log-probs and entropies of the masked policy (params stay the model's own)."""
        spec = self.spec
        if hasattr(self.model, "unroll_heads"):  # the default MLP: its policy tower skips the bootstrap row
            params, values = self.model.unroll_heads(obs)
        else:
            state = tf.split(core_state[0], self.state_sizes, axis=1) if self.state_sizes else None
            params, values, _ = apply_time_major(self.model, obs, first, state)
            params = first_rows(params)  # [T, B, P]: the last row only bootstraps the value
        T, B = params.shape[0], params.shape[1]
        flat_params = tf.reshape(params if action_mask is None else D.tf_masked(params, action_mask), [T * B, -1])
        flat_actions = tf.reshape(actions, [T * B, *spec.action_shape])
        logp, entropy = (tf.reshape(x, [T, B]) for x in D.tf_log_prob_and_entropy(
            flat_params, flat_actions, discrete=spec.discrete, nvec=spec.action_nvec))
        return params, values, logp, entropy

    def _log_probs(self, obs, first, actions, core_state, action_mask=None):
        """log pi(a_t|x_t) [T, B] under the learner's policy now (--target-kl's reference at a batch's start)."""
        return self._forward(obs, first, actions, core_state, action_mask)[2]

    def _minibatch_step(self, obs, first, actions, rows, core_state, idx, entropy_cost, action_mask=None):
        """_train_step on the unrolls idx [B] (int32) of a whole batch: obs [T+1, n, ...], rows [R, T, n] and the
        rest as _train_step's with n unrolls."""
        def pick(x, axis=1):
            return tf.gather(x, idx, axis=axis)

        return self._train_step(pick(obs), pick(first), pick(actions), pick(rows, axis=2), pick(core_state),
                                entropy_cost, None if action_mask is None else pick(action_mask))

    def _train_step(self, obs, first, actions, rows, core_state, entropy_cost, action_mask=None):
        cfg, spec = self.cfg, self.spec
        behaviour_logp, rewards, discounts, mask, *start_logp = tf.unstack(rows)  # self._row_names' order
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            params, values, target_logp, entropy = self._forward(obs, first, actions, core_state, action_mask)
            common = dict(target_logp=target_logp, behaviour_logp=behaviour_logp, entropy=entropy, values=values,
                          rewards=rewards, discounts=discounts, mask=mask, baseline_cost=cfg.baseline_cost,
                          entropy_cost=entropy_cost, clip_rho=cfg.clip_rho, lambda_=cfg.vtrace_lambda)
            if cfg.loss == "appo":
                losses = appo_loss(**common, clip_ratio=cfg.clip_ratio, normalize_advantages=cfg.normalize_advantages,
                                   start_logp=start_logp[0] if start_logp else None)
            else:
                losses = impala_loss(**common, clip_pg_rho=cfg.clip_pg_rho)
        losses["policy_spread"] = policy_spread(params, mask, discrete=spec.discrete,  # health.CollapseWatch
                                                nvec=spec.action_nvec)
        if action_mask is not None:
            losses.update(choice_entropy(entropy, D.tf_uniform_entropy(action_mask, spec.action_nvec), mask))
        grads, grad_norm, finite = clipped_gradients(tape.gradient(losses["total"], variables), losses["total"],
                                                     cfg.max_grad_norm)
        # A non-finite update is never applied, so the published weights stay the last good ones.
        self._apply(grads, variables, finite)
        flat = tf.concat([tf.reshape(w, [-1]) for w in self._published], axis=0)
        # One vector out instead of a dict of scalars: each output tensor costs a host copy per step.
        stats = tf.stack([tf.cast(finite, tf.float32), grad_norm] + [losses[k] for k in self._stat_names[2:]])
        return stats, flat

    def flat_weights(self) -> np.ndarray:
        return flat_weights(self._published)

    def trace(self) -> None:
        """Compiles the step now (half a second), e.g. while the actors produce the first batch.

        Steps then call the concrete function through its flat entry (flat_caller), skipping tf.function's
        per-call dispatch (signature matching, input conversion), which cost about as much as the math here."""
        concrete = (self._step if self._mb_step is None else self._mb_step).get_concrete_function()
        self._concrete = flat_caller(concrete)
        self._executor = executor_for(concrete.graph)
        if self._start is not None:
            self._start_concrete = flat_caller(self._start.get_concrete_function())

    def observe(self, obs: np.ndarray) -> None:
        """Folds a batch's observations [T+1, B, obs_dim] (float vectors) into the running statistics of the model's
        ObsNormalizer (with --normalize-obs; else nothing). The last row is the next unroll's first, so it
        is left out (each observation counted once)."""
        if self._norm is None:
            return
        mean, var, count = self._norm
        flat = mlp_input(obs[:-1].reshape(-1, *obs.shape[2:])).astype(np.float64)
        n, m, v = merge_moments(float(count.numpy()[0]), mean.numpy().astype(np.float64),
                                var.numpy().astype(np.float64), flat)
        mean.assign(m.astype(np.float32))
        var.assign(v.astype(np.float32))
        count.assign([n])

    def state(self) -> tuple[list, list]:
        """(model variables, optimizer variables) as [(path, array)] for a checkpoint. The learning rate
        is left out: it is configuration, which a resumed run may change."""
        return (variables_state(self.model.weights),
                variables_state(self.optimizer.variables, skip=is_learning_rate))

    def restore(self, ckpt: Checkpoint) -> None:
        """Loads a checkpoint's model and optimizer state (Adam's moments and step count included)."""
        assign(self.model.weights, ckpt.model, "model")
        assign(self.optimizer.variables, ckpt.optim, "optimizer", skip=is_learning_rate)
        self.steps = int(ckpt.meta["stats"]["learner_steps"])

    def start_from(self, ckpt: Checkpoint) -> None:
        """--init-from: another run's model weights (--normalize-obs statistics included); the optimizer and the
        step count stay fresh. A checkpoint's are in the model's order; best.npz's and policy.npz's (no `model`
        list) are the published vector, in this run's published order (preflight.starting_point put it so)."""
        if ckpt.model:
            assign(self.model.weights, ckpt.model, "model")
            return
        for v, part in zip(self._published, unflatten(ckpt.policy_flat, self._layout)):
            v.assign(part)

    def _apply(self, grads, variables, finite):
        """Adam, one fused kernel per variable (ResourceApplyAdam) on Keras' own moments and step count, so
        checkpoints are unchanged. The maths is keras.optimizers.Adam's (its update_step):
            alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t);  m += (1 - beta_1) (g - m);
            v += (1 - beta_2) (g^2 - v);  w -= alpha * m / (sqrt(v) + epsilon).
        Keras builds that from ~38 graph ops per variable, and on the default MLP's small tensors those ops
        were ~15 % of a learner step (tests/test_learner_adam.py holds the two to 1e-6). The slots are Keras'
        private attributes, so a Keras without them gets its own Adam instead (has_adam_slots).

        finite: a bool tensor; False leaves weights, moments and step count exactly as they were. The fused
        update skips without a branch (beta_1 = beta_2 = 1 and lr = 0 keep m, v and w, and the gradients are
        zeros, see clipped_gradients): a tf.cond costs a nested function call per step, and a graph without
        one can run on the single-threaded executor (Learner.step). Keras' own Adam keeps the tf.cond."""
        opt = self.optimizer
        if not self._fused_adam:
            tf.cond(finite, lambda: opt.apply(grads, variables) or tf.no_op(), lambda: tf.no_op())
            return
        one = tf.constant(1.0, tf.float32)
        step = tf.cast(opt.iterations + 1, tf.float32)
        beta_1, beta_2 = tf.constant(opt.beta_1, tf.float32), tf.constant(opt.beta_2, tf.float32)
        lr, epsilon = tf.cast(opt.learning_rate, tf.float32), tf.constant(opt.epsilon, tf.float32)
        beta_1_power, beta_2_power = tf.pow(beta_1, step), tf.pow(beta_2, step)
        beta_1, beta_2 = tf.where(finite, beta_1, one), tf.where(finite, beta_2, one)
        lr = tf.where(finite, lr, tf.zeros_like(lr))
        for grad, var in zip(grads, variables):
            i = opt._get_variable_index(var)
            tf.raw_ops.ResourceApplyAdam(var=var.handle, m=opt._momentums[i].handle, v=opt._velocities[i].handle,
                                         beta1_power=beta_1_power, beta2_power=beta_2_power, lr=lr, beta1=beta_1,
                                         beta2=beta_2, epsilon=epsilon, grad=grad)
        opt.iterations.assign_add(tf.cast(finite, opt.iterations.dtype))

    def step(self, batch: dict[str, np.ndarray], progress: float = 0.0,
             lr_scale: float = 1.0) -> tuple[dict[str, float], np.ndarray]:
        """The updates on one batch from `trajectory.learner_inputs`: epochs x minibatches of them (one for
        IMPALA), fewer with --target-kl; returns (stats of the last update, with several: "updates", how many were made;
        new flat weights).

        progress: fraction of --max-steps done, for the learning-rate and entropy schedules.
        lr_scale: multiplies the (scheduled) learning rate (--solved-lr-scale once the task is solved).
        Raises NumericalFault if a loss or gradient norm is not finite; that update is not applied (with
        several minibatches, the ones before it were)."""
        cfg = self.cfg
        if self._concrete is None:
            self.trace()
        lr = scheduled(cfg.learning_rate, cfg.lr_schedule, progress) * lr_scale
        if lr != self._lr_now:
            self.optimizer.learning_rate.assign(lr)
            self._lr_now = lr
        entropy_cost = scheduled(cfg.entropy_cost, cfg.entropy_schedule, progress)
        if entropy_cost != self._entropy_now[0]:  # a tensor made once per value: each costs ~30 µs
            self._entropy_now = (entropy_cost, tf.constant(entropy_cost, tf.float32))
        entropy_cost = self._entropy_now[1]
        inputs = self._inputs(batch)
        if self._mb_step is None:
            return self._update(inputs, entropy_cost)
        n, updates = batch["rewards"].shape[1], 0
        for _ in range(cfg.epochs):
            order = self._rng.permutation(n).astype(np.int32)
            for start in range(0, n, self._minibatch):
                stats, flat = self._update(inputs, entropy_cost, to_tensor(order[start:start + self._minibatch]))
                updates += 1
                # The KL is the minibatch's before its update (computed with the loss): one update past it at most.
                if cfg.target_kl and stats[self._kl_stat] > cfg.target_kl:
                    return {**stats, "updates": updates}, flat
        return {**stats, "updates": updates}, flat

    def _inputs(self, batch: dict) -> dict:
        """The step's tensors of a batch from trajectory.learner_inputs: obs, first, actions, rows (the [T, B]
        arrays stacked in self._row_names' order; with --target-kl-from batch, the log-probs of the batch under
        the policy now among them), core_state (an empty one of the step's width for a feed-forward model) and
        masks (a list)."""
        tensors = {k: to_tensor(batch[k]) for k in ("obs", "first", "actions")}
        tensors["core_state"] = to_tensor(batch["core_state"]) if "core_state" in batch else self._no_state
        tensors["masks"] = _masks(batch)
        if self._start is not None:  # log pi(a_t|x_t) [T, n] of the whole batch, before its updates
            with tf.experimental.function_executor_type(self._executor):
                batch = {**batch, START_ROW: self._start_concrete(
                    tensors["obs"], tensors["first"], tensors["actions"], tensors["core_state"],
                    *tensors["masks"]).numpy()}
        tensors["rows"] = to_tensor(np.stack([batch[k] for k in self._row_names], dtype=np.float32))
        return tensors

    def _update(self, t: dict, entropy_cost, idx=None) -> tuple[dict[str, float], np.ndarray]:
        """One update from _inputs' tensors: the whole of them, or (idx, an int32 tensor [B]) those unrolls."""
        with tf.experimental.function_executor_type(self._executor):
            stats, flat = self._concrete(t["obs"], t["first"], t["actions"], t["rows"], t["core_state"],
                                         *(() if idx is None else (idx,)), entropy_cost, *t["masks"])
        stats = dict(zip(self._stat_names, stats.numpy().tolist()))
        finite = stats.pop("finite")
        if not finite:
            figures = ", ".join(f"{k} {v:.3g}" for k, v in stats.items())
            raise NumericalFault(f"non-finite loss or gradient at learner step {self.steps + 1} ({figures}); the "
                                 f"weights were left as they were. Often a --learning-rate or --reward-scale too "
                                 f"large for the task")
        flat = flat.numpy()
        if not np.isfinite(flat).all():
            raise NumericalFault(f"non-finite weights after learner step {self.steps + 1}", weights_damaged=True)
        self.steps += 1
        return stats, flat


def _masks(batch: dict) -> list:
    """The step's last input: the batch's action masks (--action-masks), or nothing."""
    return [to_tensor(batch["action_mask"])] if "action_mask" in batch else []


def clipped_gradients(grads: list, loss, max_norm: float):
    """(grads scaled to a global norm of at most max_norm, their global norm before, finite) where finite is
    whether loss and that norm are finite. The scale is tf.clip_by_global_norm's, to the bit; where not
    finite every gradient is 0 (multiply_no_nan: a NaN or Inf gradient times 0 gives 0, not NaN), so an
    update that reads them stays finite. grads: tensors of the variables' shapes; loss: a scalar."""
    norm = tf.linalg.global_norm(grads)
    finite = tf.math.is_finite(loss) & tf.math.is_finite(norm)
    clip = tf.constant(max_norm, norm.dtype)
    scale = clip * tf.minimum(1.0 / norm, tf.constant(1.0, norm.dtype) / clip)
    scale = tf.where(finite, scale, tf.zeros_like(scale))
    return [tf.math.multiply_no_nan(g, scale) for g in grads], norm, finite


def scheduled(initial: float, kind: str, progress: float) -> float:
    """A scheduled hyperparameter: `initial` (constant), or initial * (1 - progress) floored at 0 (linear),
    progress being the fraction of the run done (env steps / max steps)."""
    if kind == "constant":
        return initial
    if kind == "linear":
        return initial * max(0.0, 1.0 - progress)
    raise ValueError(f"unknown schedule {kind!r}")
