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

    Cost: builds a [T, T, B] intermediate (fine for unrolls up to a few hundred steps).
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

    # acc_t = vs_t - V(x_t) = delta_t + discount_t * c_t * acc_{t+1} (acc_T = 0), unrolled in closed form:
    #   acc_t = sum_{k>=t} (prod_{i=t}^{k-1} discount_i c_i) delta_k.
    # The [T, T, B] product matrix is built with one cumprod and no division (a discount may be 0), and
    # replaces a T-step sequential loop whose per-iteration overhead dominated the learner step.
    T = tf.shape(deltas)[0]
    decay = discounts * cs  # [T, B]
    idx = tf.range(T)
    k_after_t = idx[None, :] > idx[:, None]  # [T(t), T(k)]
    k_from_t = idx[None, :] >= idx[:, None]
    # a[t, k] = decay_{k-1} where k > t, else 1; its cumprod along k is prod_{i=t}^{k-1} decay_i for k > t.
    shifted = tf.concat([tf.ones_like(decay[:1]), decay[:-1]], axis=0)  # shifted[k] = decay_{k-1}
    a = tf.where(k_after_t[:, :, None], shifted[None], tf.ones_like(shifted)[None])
    weights = tf.math.cumprod(a, axis=1) * tf.cast(k_from_t, dtype)[:, :, None]  # [T, T, B], 0 for k < t
    vs_minus_v = tf.reduce_sum(weights * deltas[None], axis=1)
    vs = vs_minus_v + values

    vs_tp1 = tf.concat([vs[1:], bootstrap_value[None]], axis=0)
    clipped_pg_rhos = rhos if clip_pg_rho_threshold is None else tf.minimum(
        tf.constant(clip_pg_rho_threshold, dtype), rhos)
    pg_advantages = clipped_pg_rhos * (rewards + discounts * vs_tp1 - values)
    return VTraceReturns(vs=tf.stop_gradient(vs), pg_advantages=tf.stop_gradient(pg_advantages))
