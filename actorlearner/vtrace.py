"""V-trace off-policy value targets and policy-gradient advantages (Espeholt et al. 2018, "IMPALA").

Convention, stated once: every array is time-major, `[T, B]` — T steps of B independent unrolls — and
index t means "at step t of the unroll". The variant implemented is the paper's and its reference code's
(scalable_agent, seed_rl):

    rho_t = min(rho_bar, pi(a_t|x_t) / mu(a_t|x_t)),      c_t = lambda_ * min(1, pi/mu)
    delta_t = rho_t * (r_t + discount_t * V(x_{t+1}) - V(x_t))
    vs_t = V(x_t) + delta_t + discount_t * c_t * (vs_{t+1} - V(x_{t+1})),   vs_T = V(x_T) (bootstrap)
    pg_advantage_t = min(pg_rho_bar, pi/mu) * (r_t + discount_t * vs_{t+1} - V(x_t))

Note the policy-gradient target uses r_t + discount_t * vs_{t+1}, not rlax's lambda-mixed target.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import tensorflow as tf


class VTraceReturns(NamedTuple):
    vs: tf.Tensor  # [T, B] value targets for the baseline loss (no gradient flows through them)
    pg_advantages: tf.Tensor  # [T, B] advantages for the policy-gradient loss (no gradient)


def from_importance_weights(log_rhos, discounts, rewards, values, bootstrap_value, *,
                            clip_rho_threshold: Optional[float] = 1.0,
                            clip_pg_rho_threshold: Optional[float] = 1.0,
                            lambda_: float = 1.0) -> VTraceReturns:
    """V-trace targets from log importance weights.

    Args (numpy arrays or tensors, one float dtype; the result has the dtype of `values`):
      log_rhos: [T, B] log(pi(a_t|x_t) / mu(a_t|x_t)), target over behaviour policy probabilities.
      discounts: [T, B] gamma_t: the discount applied to V(x_{t+1}); 0 where x_{t+1} starts a new episode.
      rewards: [T, B] r_t, received after taking a_t in x_t.
      values: [T, B] V(x_t) under the current value function.
      bootstrap_value: [B] V(x_T), the value of the state after the last step.
      clip_rho_threshold: rho bar, clipping the weights of the value targets; None means no clipping.
      clip_pg_rho_threshold: clipping of the policy-gradient weights; None means no clipping.
      lambda_: mixes in TD(lambda)-style trace cutting, c_t = lambda_ * min(1, rho_t).

    Returns:
      VTraceReturns(vs, pg_advantages), both [T, B], with gradients stopped.

    Raises:
      ValueError if an argument has the wrong rank.

    Cost: ceil(log2 T) steps of elementwise ops on [T, B] arrays.
    """
    values = tf.convert_to_tensor(values)
    dtype = values.dtype
    log_rhos = tf.cast(tf.convert_to_tensor(log_rhos), dtype)
    discounts = tf.cast(tf.convert_to_tensor(discounts), dtype)
    rewards = tf.cast(tf.convert_to_tensor(rewards), dtype)
    bootstrap_value = tf.cast(tf.convert_to_tensor(bootstrap_value), dtype)
    for name, x, rank in (("log_rhos", log_rhos, 2), ("discounts", discounts, 2), ("rewards", rewards, 2),
                          ("values", values, 2), ("bootstrap_value", bootstrap_value, 1)):
        if x.shape.rank != rank:
            raise ValueError(f"{name} must have rank {rank} ([T, B] or [B]), got shape {x.shape}")

    rhos = tf.exp(log_rhos)
    clipped_rhos = rhos if clip_rho_threshold is None else tf.minimum(
        tf.constant(clip_rho_threshold, dtype), rhos)
    cs = tf.constant(lambda_, dtype) * tf.minimum(tf.constant(1.0, dtype), rhos)
    # V(x_{t+1}) for every t: the values shifted by one, with the bootstrap at the end.
    values_tp1 = tf.concat([values[1:], bootstrap_value[None]], axis=0)
    deltas = clipped_rhos * (rewards + discounts * values_tp1 - values)

    # acc_t = vs_t - V(x_t) = delta_t + discount_t * c_t * acc_{t+1} (acc_T = 0): a linear recurrence,
    # solved by recursive doubling in ceil(log2 T) whole-array steps. After the step with shift s,
    #   b_t = sum_{k=t}^{t+2s-1} (prod_{i=t}^{k-1} a_i) delta_k  and  a_t = prod_{i=t}^{t+2s-1} a_i,
    # (terms past T being 0 and 1), so b ends as acc. No division (a discount may be 0). A T-step loop's
    # per-step overhead, and before that a cumprod over a [T, T, B] matrix (~0.35 ms of a 5 ms learner step
    # at T=20, B=64: Eigen's scan is slow there), both cost more than these ~5 x 7 small ops.
    a, b = discounts * cs, deltas  # [T, B]
    if deltas.shape[0] is not None:
        shift = 1
        while shift < deltas.shape[0]:
            a, b = _doubling_step(a, b, shift)
            shift *= 2
    else:  # T unknown when traced (e.g. reduce_retracing): the same steps in a graph loop
        _, _, b = tf.while_loop(lambda s, a, b: s < tf.shape(b)[0],
                                lambda s, a, b: (2 * s, *_doubling_step(a, b, s)), (tf.constant(1), a, b))
    vs = b + values

    vs_tp1 = tf.concat([vs[1:], bootstrap_value[None]], axis=0)
    clipped_pg_rhos = rhos if clip_pg_rho_threshold is None else tf.minimum(
        tf.constant(clip_pg_rho_threshold, dtype), rhos)
    pg_advantages = clipped_pg_rhos * (rewards + discounts * vs_tp1 - values)
    return VTraceReturns(vs=tf.stop_gradient(vs), pg_advantages=tf.stop_gradient(pg_advantages))


def _doubling_step(a, b, shift):
    """One step of the doubling solve of acc_t = b_t + a_t acc_{t+1}: every t takes in the span that starts
    `shift` steps later. a, b: [T, B]; the rows past T count as a = 1, b = 0."""
    pad = [[0, shift], [0, 0]]
    return a * tf.pad(a[shift:], pad, constant_values=1.0), b + a * tf.pad(b[shift:], pad)
