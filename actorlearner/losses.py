"""The IMPALA loss on V-trace targets, as a pure function of tensors."""

from __future__ import annotations

import tensorflow as tf

from . import vtrace


def impala_loss(*, target_logp, behaviour_logp, entropy, values, rewards, discounts, mask=None,
                baseline_cost: float, entropy_cost: float, clip_rho: float, clip_pg_rho: float,
                lambda_: float) -> dict:
    """IMPALA's policy-gradient + baseline - entropy loss, averaged over the T*B samples.

    Args (all float32 tensors):
      target_logp: [T, B] log pi(a_t|x_t) under the learner's policy (gradient flows through it).
      behaviour_logp: [T, B] log mu(a_t|x_t) recorded by the actor that acted.
      entropy: [T, B] entropy of pi(.|x_t) (gradient flows).
      values: [T+1, B] V(x_t) for t = 0..T, the last row bootstrapping (gradient flows through [:T]).
      rewards: [T, B] r_t, already scaled and with truncation bootstraps added (see trajectory.py).
      discounts: [T, B] gamma * (1 - done_t).
      mask: [T, B] 1 for the steps that count, 0 for those left out of every term (a vector env's reset
        steps, see trajectory.py); None: all count. Means stay over all T*B (a left-out step adds 0).

    Returns a dict of scalars: total (to minimise), policy, baseline, entropy (the mean entropy itself),
    and rho_mean (mean importance weight, a policy-lag health figure).
    """
    log_rhos = target_logp - behaviour_logp
    vt = vtrace.from_importance_weights(log_rhos=log_rhos, discounts=discounts, rewards=rewards,
                                        values=values[:-1], bootstrap_value=values[-1],
                                        clip_rho_threshold=clip_rho, clip_pg_rho_threshold=clip_pg_rho,
                                        lambda_=lambda_)
    policy_loss = -tf.reduce_mean(_masked(target_logp * vt.pg_advantages, mask))
    return _with_baseline_and_entropy(policy_loss, vs=vt.vs, values=values, entropy=entropy, log_rhos=log_rhos,
                                      mask=mask, baseline_cost=baseline_cost, entropy_cost=entropy_cost)


def first_rows(x):
    """x[:-1] for a tensor whose leading axis is static, as tf.slice: the gradient of a slice is a Pad, that of
    Python's x[:-1] (a strided slice) a StridedSliceGrad, ~10-20 µs more each in the default learner step."""
    return tf.slice(x, [0] * len(x.shape), [x.shape[0] - 1] + [-1] * (len(x.shape) - 1))


def _masked(x, mask):
    return x if mask is None else x * mask


def _masked_mean(x, mask):
    """Mean of x over the steps where mask is 1 (all of them when mask is None)."""
    return tf.reduce_mean(x) if mask is None else tf.reduce_sum(x * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def policy_spread(params, mask=None, *, discrete: bool, nvec: tuple = ()):
    """How much the policy's outputs vary across observations: the largest, over output units, of the
    (masked) standard deviation over the T*B samples. 0 means the policy gives every observation the same
    action distribution (it no longer reads its input: a collapse, see health.py).

    params: [T, B, P] logits (discrete; each sample's logits are centred first, since adding a constant to
    all of them changes nothing; with nvec, each component's block of P = sum(nvec) apart) or the Gaussian's
    (mean, log_std); mask: [T, B] or None."""
    x = tf.reshape(tf.stop_gradient(params), [-1, params.shape[-1]])  # [N, P]
    if nvec:
        x = tf.concat([b - tf.reduce_mean(b, axis=-1, keepdims=True) for b in tf.split(x, list(nvec), axis=-1)], -1)
    elif discrete:
        x = x - tf.reduce_mean(x, axis=-1, keepdims=True)
    if mask is None:
        var = tf.reduce_mean(tf.square(x - tf.reduce_mean(x, axis=0)), axis=0)
    else:
        # Weighted sums as [1, N] x [N, P] products: tf.nn.weighted_moments' broadcasts and tiles made this
        # figure ~6 % of the default CartPole learner step. Two passes (mean, then squared deviations), so a
        # collapsed policy's variance does not drown in cancellation.
        w = tf.reshape(mask, [1, -1])
        n = tf.maximum(tf.reduce_sum(w), 1.0)
        mean = tf.matmul(w, x) / n
        var = tf.matmul(w, tf.square(x - mean)) / n
    return tf.sqrt(tf.reduce_max(var))


def normalize(x, mask=None, eps: float = 1e-8):
    """(x - mean) / (std + eps) over all elements (those where mask is 1); used on advantages, whose scale
    drifts with the returns."""
    axes = list(range(len(x.shape)))
    if mask is None:
        mean, var = tf.nn.moments(x, axes=axes)
    else:
        mean, var = tf.nn.weighted_moments(x, axes=axes, frequency_weights=mask)
    return (x - mean) / (tf.sqrt(var) + eps)


def appo_loss(*, target_logp, behaviour_logp, entropy, values, rewards, discounts, mask=None,
              baseline_cost: float, entropy_cost, clip_rho: float, lambda_: float, clip_ratio: float,
              normalize_advantages: bool, start_logp=None) -> dict:
    """APPO: PPO's clipped surrogate on V-trace advantages (as in Sample Factory and RLlib's APPO), so a
    batch can be used for several passes without the policy running away from the one that acted.

    Same args and returns as `impala_loss` (shapes [T, B], values [T+1, B]), plus two measures of how far the
    updates (and the policy lag) have moved the policy from the one that acted: clip_frac, the share of
    (unmasked) samples whose ratio is outside [1 - clip_ratio, 1 + clip_ratio] (clip_ratio is PPO's epsilon), and
    approx_kl, KL(behaviour || target) estimated as mean(ratio - 1 - log ratio) (unbiased, never negative).
    start_logp: [T, B] log pi_0(a_t|x_t) under the learner's policy at the start of the batch's passes, or None;
    given, the dict also has update_kl, KL(pi_0 || target) estimated the same way: how far this batch's updates
    alone have moved the policy, the figure --target-kl stops them at (PPO's, whose rollout policy is pi_0).
    The advantage is A_t = r_t + discount_t * vs_{t+1} - V(x_t) with the V-trace targets vs, without
    V-trace's rho factor: the surrogate's ratio pi/mu already weighs each sample, and clipping it is the
    correction for policy lag.

        ratio_t = exp(target_logp - behaviour_logp)
        policy  = -mean(min(ratio * A, clip(ratio, 1 - clip_ratio, 1 + clip_ratio) * A))
    """
    log_rhos = target_logp - behaviour_logp
    vt = vtrace.from_importance_weights(log_rhos=log_rhos, discounts=discounts, rewards=rewards,
                                        values=values[:-1], bootstrap_value=values[-1],
                                        clip_rho_threshold=clip_rho, lambda_=lambda_)
    vs_tp1 = tf.concat([vt.vs[1:], values[-1:]], axis=0)
    advantages = tf.stop_gradient(rewards + discounts * vs_tp1 - values[:-1])
    if normalize_advantages:
        advantages = normalize(advantages, mask)
    ratio = tf.exp(log_rhos)
    surrogate = tf.minimum(ratio * advantages,
                           tf.clip_by_value(ratio, 1.0 - clip_ratio, 1.0 + clip_ratio) * advantages)
    policy_loss = -tf.reduce_mean(_masked(surrogate, mask))
    losses = _with_baseline_and_entropy(policy_loss, vs=vt.vs, values=values, entropy=entropy, log_rhos=log_rhos,
                                        mask=mask, baseline_cost=baseline_cost, entropy_cost=entropy_cost)
    ratio, log_rhos = tf.stop_gradient(ratio), tf.stop_gradient(log_rhos)
    clipped = tf.cast(tf.abs(ratio - 1.0) > clip_ratio, tf.float32)
    losses.update(clip_frac=_masked_mean(clipped, mask), approx_kl=_approx_kl(ratio, log_rhos, mask))
    if start_logp is not None:
        log_moved = tf.stop_gradient(target_logp - start_logp)
        losses["update_kl"] = _approx_kl(tf.exp(log_moved), log_moved, mask)
    return losses


def _approx_kl(ratio, log_ratio, mask):
    """KL(p || q) estimated from ratio = q(a) / p(a) and its log at actions a drawn from p: mean(r - 1 - log r)
    (unbiased, never negative). ratio, log_ratio, mask: [T, B]."""
    return _masked_mean(ratio - 1.0 - log_ratio, mask)


def _with_baseline_and_entropy(policy_loss, *, vs, values, entropy, log_rhos, mask, baseline_cost: float,
                               entropy_cost) -> dict:
    """The loss dict both losses return: the policy term plus baseline_cost * 0.5 * mean((vs - V)^2) minus
    entropy_cost * mean entropy. vs, values[:-1], entropy, log_rhos, mask: [T, B]."""
    baseline_loss = 0.5 * tf.reduce_mean(_masked(tf.square(vs - first_rows(values)), mask))
    mean_entropy = tf.reduce_mean(_masked(entropy, mask))
    total = policy_loss + baseline_cost * baseline_loss - entropy_cost * mean_entropy
    return {"total": total, "policy": policy_loss, "baseline": baseline_loss, "entropy": mean_entropy,
            "rho_mean": tf.reduce_mean(tf.exp(tf.stop_gradient(log_rhos)))}


def choice_entropy(entropy, uniform, mask) -> dict:
    """entropy, uniform [T, B]: the masked policy's entropy and a uniform choice's among the allowed actions;
    mask [T, B] 1 for a valid sample -> {"choice_entropy", "choice_uniform"}: their means over the valid samples
    that had a choice (uniform > 0), 0 and 0 where none had."""
    choice = mask * tf.cast(uniform > 0.0, mask.dtype)
    n = tf.maximum(tf.reduce_sum(choice), 1.0)
    return {"choice_entropy": tf.reduce_sum(tf.stop_gradient(entropy) * choice) / n,
            "choice_uniform": tf.reduce_sum(uniform * choice) / n}
