"""Action distributions: log-probabilities, entropies and sampling, in numpy (actors) and TF (learner).

The policy head's output `p` is `[B, A]` logits for Discrete actions, `[B, sum(nvec)]` = each component's
logits side by side for MultiDiscrete/MultiBinary actions (`nvec`: the components' numbers of choices; the
components are independent categoricals, so log-probs and entropies add), and `[B, 2*D]` = concat(mean,
log_std) for a D-dimensional diagonal Gaussian. The numpy and TF versions of each function compute the
same quantity; tests hold them equal, because V-trace's importance weights divide one by the other.

Action masks (--action-masks, action_masks.py): `mask` [B, A] (one flag per logit, 1 = allowed) takes the
disallowed logits out of the distribution: numpy sets them to -inf, TensorFlow to MASKED_LOGIT (finite, so that
the entropy's p * log p is 0 * -1e9 = 0 rather than 0 * -inf = NaN); both give those actions probability 0
exactly, and the allowed ones the same log-probs.
"""

from __future__ import annotations

import functools
import math

import numpy as np

LOG_2PI = math.log(2.0 * math.pi)
MASKED_LOGIT = -1e9


# ---------------------------------------------------------------- numpy (actor side, no TensorFlow)

def np_sample_discrete(logits: np.ndarray, rng: np.random.Generator,
                       mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """logits [B, A] (mask [B, A] bool or None) -> (actions [B] int64, log-probs [B] float32), by inverse-CDF
    sampling on the unnormalized probabilities (fewer numpy calls: each costs a few µs on an actor's hot path)."""
    if mask is None and logits.shape[-1] == 2:
        return _sample_two(logits, rng)
    z = logits.astype(np.float64)
    if mask is not None:
        z = np.where(mask, z, -np.inf)
    z -= z.max(axis=-1, keepdims=True)
    cdf = np.exp(z).cumsum(axis=-1)
    total = cdf[:, -1]
    # The action is the number of cdf entries below u, in [0, A-1] even where u rounds up to the total. A masked
    # action's entry equals the one before it, so u in (0, total] never lands on one: not even at u's two ends,
    # where u in [0, total) could pick a masked action 0 (rng.random() is 0 once in 2**53 draws).
    u = (rng.random(total.shape[0]) if mask is None else 1.0 - rng.random(total.shape[0])) * total
    actions = (cdf[:, :-1] < u[:, None]).sum(axis=-1)
    logp = z[np.arange(actions.shape[0]), actions] - np.log(total)
    return actions, logp.astype(np.float32)


def _sample_two(logits: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """np_sample_discrete for two actions (CartPole's; a MultiBinary component's) from the log-odds d = l1 - l0 alone:
    10.5 against 18.3 µs for 64 rows here."""
    return np_sample_log_odds(logits[:, 1].astype(np.float64) - logits[:, 0], rng)


def np_sample_log_odds(d: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """log-odds d = l1 - l0 [B] of two actions -> (actions [B] int64, log-probs [B] float32). The same uniform draw
    picks the same action as np_sample_discrete's inverse-CDF rule (action 1 where u > p0, as a log: log u > log p0
    = -log(1 + e^d)), so a seeded run acts the same through either."""
    d = d.astype(np.float64, copy=False)
    # No overflow at any d; a NaN (from a NaN observation, which the run reports in one line) stays NaN without
    # numpy's "invalid value" warning first, as the inverse-CDF rule's NaN did (0.2 µs).
    with np.errstate(invalid="ignore"):
        log_p0 = -np.logaddexp(0.0, d)
    actions = np.log(rng.random(d.shape[0])) > log_p0
    logp = np.where(actions, log_p0 + d, log_p0)  # log p1 = log p0 + d
    return actions.astype(np.int64), logp.astype(np.float32)


def np_sample_multi(logits: np.ndarray, nvec: tuple, rng: np.random.Generator,
                    mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """logits [B, sum(nvec)] (mask the same shape, or None) -> (actions [B, len(nvec)] int64, log-probs [B]
    float32, summed over components)."""
    actions = np.empty((logits.shape[0], len(nvec)), np.int64)
    logp = np.zeros(logits.shape[0], np.float32)
    for j, block in enumerate(_blocks(nvec)):
        actions[:, j], lp = np_sample_discrete(logits[:, block], rng, None if mask is None else mask[:, block])
        logp += lp
    return actions, logp


@functools.cache
def _blocks(nvec: tuple) -> tuple[slice, ...]:
    """The slices of each component's logits (or mask flags) in [.., sum(nvec)]. Cached: the actors' sampling and
    mask checks ask for them every step, and a cumsum costs ~2 µs."""
    ends = np.cumsum(nvec).tolist()
    return tuple(slice(end - n, end) for n, end in zip(nvec, ends))


@functools.cache
def block_starts(nvec: tuple) -> tuple[int, ...]:
    """Where each component's block starts in [.., sum(nvec)] (np.ufunc.reduceat's indices)."""
    return tuple(block.start for block in _blocks(nvec))


def np_gaussian_log_prob(params: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """params [B, 2D] (mean, log_std), actions [B, D] -> log-probs [B] (summed over D)."""
    d = actions.shape[-1]
    mean, log_std = params[:, :d], params[:, d:]
    z = (actions - mean) * np.exp(-log_std)
    return (-0.5 * z * z - log_std - 0.5 * LOG_2PI).sum(axis=-1)


def np_sample_gaussian(params: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """params [B, 2D] -> (unclipped actions [B, D] float32, log-probs [B] float32).

    The action is kept unclipped: clipping to the env's bounds happens only when stepping the env, so the
    log-prob stays that of the action the distribution produced."""
    d = params.shape[-1] // 2
    mean, log_std = params[:, :d], params[:, d:]
    actions = (mean + np.exp(log_std) * rng.standard_normal(mean.shape)).astype(np.float32)
    return actions, np_gaussian_log_prob(params, actions).astype(np.float32)


def np_greedy(params: np.ndarray, discrete: bool, nvec: tuple = (), mask: np.ndarray | None = None) -> np.ndarray:
    """The deterministic action: argmax of logits [B] (among the allowed ones where mask [B, A] is given), each
    component's argmax [B, len(nvec)], or the Gaussian mean [B, D]."""
    if mask is not None:
        params = np.where(mask, params, -np.inf)
    if nvec:
        return np.stack([params[:, block].argmax(axis=-1) for block in _blocks(nvec)], axis=-1)
    if discrete:
        return params.argmax(axis=-1)
    return params[:, : params.shape[-1] // 2]


# ---------------------------------------------------------------- TensorFlow (learner side)

def tf_masked(logits, mask):
    """logits [..., A], mask [..., A] uint8 (1 = allowed) -> the logits with the disallowed ones at MASKED_LOGIT.
    Their gradient is 0: a masked action's logit never learns from a step where it could not be taken."""
    import tensorflow as tf

    return tf.where(mask > 0, logits, tf.constant(MASKED_LOGIT, logits.dtype))


def tf_uniform_entropy(mask, nvec: tuple = ()):
    """mask [..., A] uint8 (1 = allowed; a MultiDiscrete's components side by side, nvec) -> [...] the entropy
    of a uniform choice among the allowed actions: log(allowed), summed over the components. 0 where the mask
    leaves no choice: the yardstick health.EntropyWatch measures a masked policy's entropy against."""
    import tensorflow as tf

    blocks = tf.split(mask, list(nvec), axis=-1) if nvec else [mask]
    return tf.add_n([tf.math.log(tf.reduce_sum(tf.cast(b, tf.float32), axis=-1)) for b in blocks])


def tf_log_prob_and_entropy(params, actions, *, discrete: bool, nvec: tuple = ()):
    """params [N, A], [N, sum(nvec)] or [N, 2D]; actions [N] int, [N, len(nvec)] int or [N, D] float32 ->
    (log-probs [N], entropies [N]).

    One function for both so that a Discrete policy's log-softmax (the slowest small kernel of the learner's
    step) is computed and differentiated once. The taken action's log-prob is picked by a one-hot product,
    whose gradient is a product too (a batched gather's is a scatter); an action outside [0, A) would pick 0
    instead of raising, which the actors' sampling never produces."""
    import tensorflow as tf

    if nvec:
        parts = [_tf_categorical(logits, actions[:, j])
                 for j, logits in enumerate(tf.split(params, list(nvec), axis=-1))]
        return tf.add_n([lp for lp, _ in parts]), tf.add_n([e for _, e in parts])
    if discrete:
        return _tf_categorical(params, actions)
    d = params.shape[-1] // 2
    mean, log_std = params[:, :d], params[:, d:]
    z = (actions - mean) * tf.exp(-log_std)
    return (tf.reduce_sum(-0.5 * z * z - log_std - 0.5 * LOG_2PI, axis=-1),
            tf.reduce_sum(log_std + 0.5 * (LOG_2PI + 1.0), axis=-1))


def _tf_categorical(logits, actions):
    """logits [N, A], actions [N] int -> (log-probs [N], entropies [N])."""
    import tensorflow as tf

    logp_all = tf.nn.log_softmax(logits)
    picked = tf.one_hot(tf.cast(actions, tf.int32), logits.shape[-1], dtype=logits.dtype)
    return tf.reduce_sum(picked * logp_all, axis=-1), -tf.reduce_sum(tf.exp(logp_all) * logp_all, axis=-1)
