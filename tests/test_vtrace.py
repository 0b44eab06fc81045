"""V-trace against the reference cases, eager and compiled, and against a loop in the paper's notation."""

import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from actorlearner import vtrace

CASES = json.loads((pathlib.Path(__file__).parent / "data" / "vtrace_cases.json").read_text())["cases"]
INPUTS = ("log_rhos", "discounts", "rewards", "values", "bootstrap_value")


def _kwargs(case):
    return dict(clip_rho_threshold=case["clip_rho_threshold"], clip_pg_rho_threshold=case["clip_pg_rho_threshold"],
                lambda_=case["lambda_"])


def paper_vtrace(log_rhos, discounts, rewards, values, bootstrap_value, clip_rho_threshold,
                 clip_pg_rho_threshold, lambda_):
    """Slow reference, eq. (1) of Espeholt et al. 2018, one step at a time:
    v_s = V(x_s) + sum_{t>=s} (prod_{i=s}^{t-1} gamma_i c_i) delta_t V, with c_i = lambda min(1, rho_i)."""
    T, B = log_rhos.shape
    rho = np.exp(log_rhos)
    rho_bar = rho if clip_rho_threshold is None else np.minimum(clip_rho_threshold, rho)
    pg_rho = rho if clip_pg_rho_threshold is None else np.minimum(clip_pg_rho_threshold, rho)
    c = lambda_ * np.minimum(1.0, rho)
    V = np.concatenate([values, bootstrap_value[None]], axis=0)  # V[T] is the bootstrap
    vs = np.zeros((T, B))
    for b in range(B):
        for s in range(T):
            total, trace = 0.0, 1.0
            for t in range(s, T):
                delta_t = rho_bar[t, b] * (rewards[t, b] + discounts[t, b] * V[t + 1, b] - V[t, b])
                total += trace * delta_t
                trace *= discounts[t, b] * c[t, b]
            vs[s, b] = V[s, b] + total
    vs_next = np.concatenate([vs[1:], bootstrap_value[None]], axis=0)
    adv = pg_rho * (rewards + discounts * vs_next - values)
    return vs, adv


@pytest.mark.parametrize("case", CASES, ids=[f"seed{c['seed']}" for c in CASES])
@pytest.mark.parametrize("compiled", [False, True, "unknown T"], ids=["eager", "tf.function", "unknown-T"])
def test_reference_cases(case, compiled):
    args = [np.asarray(case[k], np.float64) for k in INPUTS]
    fn = vtrace.from_importance_weights
    if compiled == "unknown T":  # traced without the unroll length: the doubling runs as a graph loop
        sig = [tf.TensorSpec([None, None], tf.float64)] * 4 + [tf.TensorSpec([None], tf.float64)]
        fn = tf.function(lambda *a: vtrace.from_importance_weights(*a, **_kwargs(case)), input_signature=sig)
        out = fn(*args)
    elif compiled:
        fn = tf.function(lambda *a: vtrace.from_importance_weights(*a, **_kwargs(case)), reduce_retracing=True)
        out = fn(*args)
    else:
        out = fn(*args, **_kwargs(case))
    np.testing.assert_allclose(out.vs.numpy(), case["vs"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out.pg_advantages.numpy(), case["pg_advantages"], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("case", CASES, ids=[f"seed{c['seed']}" for c in CASES])
def test_paper_notation_loop_agrees(case):
    args = [np.asarray(case[k], np.float64) for k in INPUTS]
    vs, adv = paper_vtrace(*args, **_kwargs(case))
    np.testing.assert_allclose(vs, case["vs"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(adv, case["pg_advantages"], rtol=1e-5, atol=1e-7)


def test_float32_tensors_accepted():
    case = CASES[0]
    args = [tf.constant(case[k], tf.float32) for k in INPUTS]
    out = vtrace.from_importance_weights(*args, **_kwargs(case))
    assert out.vs.dtype == tf.float32
    np.testing.assert_allclose(out.vs.numpy(), case["vs"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bad", INPUTS)
def test_bad_rank_raises(bad):
    T, B = 4, 3
    args = {k: np.zeros((T, B)) for k in INPUTS}
    args["bootstrap_value"] = np.zeros(B)
    args[bad] = np.zeros((T, B, 1)) if bad != "bootstrap_value" else np.zeros((T, B))
    with pytest.raises(ValueError, match=bad):
        vtrace.from_importance_weights(**args)


def test_float64_inputs_are_clipped_at_float64_thresholds():
    """A threshold of 1.1 must clip at float64's 1.1, not at float32's 1.10000002 (a cast through float32)."""
    T, B = 2, 1
    rho = 1.1 + 1e-9  # above float64's 1.1, below float32's
    out = vtrace.from_importance_weights(log_rhos=np.full((T, B), np.log(rho)), discounts=np.zeros((T, B)),
                                         rewards=np.ones((T, B)), values=np.zeros((T, B)),
                                         bootstrap_value=np.zeros(B), clip_rho_threshold=1.1,
                                         clip_pg_rho_threshold=1.1, lambda_=1.0)
    assert out.pg_advantages.dtype == tf.float64
    np.testing.assert_array_equal(out.pg_advantages.numpy(), np.full((T, B), 1.1))
