"""--action-masks: the env's mask of allowed actions, read from info["action_mask"] or an action_masks() method;
the actors sample only allowed actions, the learner's log-probs and entropies are the masked policy's, and
evaluation plays under the masks too."""

import importlib.util
import json
import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf

from actorlearner import distributions as D
from actorlearner.action_masks import BadMask, read_mask
from actorlearner.config import Config, ConfigError
from actorlearner.envs import EnvSpec, inspect_env
from actorlearner.layout import published_layout
from actorlearner.learner import Learner
from actorlearner.model import build_default_model
from actorlearner.policies import NumpyMLPPolicy, sample_params
from conftest import ROOT

sys.path.insert(0, str(ROOT / "tests"))
from custom_envs import PickAllowed  # noqa: E402

DISCRETE = EnvSpec((5,), "float32", True, 5, None, None, None, None, action_masks=True)
MULTI = EnvSpec((5,), "float32", True, 7, None, None, None, None, action_nvec=(3, 4), action_masks=True)


def random_masks(rng, n: int, nvec: tuple) -> np.ndarray:
    """[n, sum(nvec)] bool, each component allowing at least one choice."""
    parts = []
    for k in nvec:
        m = rng.random((n, k)) < 0.5
        m[np.arange(n), rng.integers(k, size=n)] = True
        parts.append(m)
    return np.concatenate(parts, axis=1)


@pytest.mark.parametrize("spec", [DISCRETE, MULTI], ids=["discrete", "multi-discrete"])
def test_masked_sampling_picks_allowed_actions_with_the_renormalized_probabilities(spec):
    rng = np.random.default_rng(0)
    nvec = spec.action_nvec or (spec.action_dim,)
    n = 40_000
    logits = np.tile(rng.normal(size=(1, spec.action_dim)), (n, 1)).astype(np.float32)
    mask = np.tile(random_masks(rng, 1, nvec), (n, 1))
    actions, logp = sample_params(logits, spec, rng, mask)
    picks = actions.reshape(n, -1)
    start = 0
    want_logp = np.zeros(n)
    for j, k in enumerate(nvec):
        block, allowed = logits[0, start:start + k], mask[0, start:start + k]
        p = np.where(allowed, np.exp(block - block.max()), 0.0)
        p /= p.sum()
        assert allowed[picks[:, j]].all(), "a masked action was sampled"
        np.testing.assert_allclose(np.bincount(picks[:, j], minlength=k) / n, p, atol=0.01)
        want_logp += np.log(p[picks[:, j]])
        start += k
    np.testing.assert_allclose(logp, want_logp, rtol=1e-5)
    greedy = D.np_greedy(logits[:1], True, spec.action_nvec, mask[:1]).reshape(-1)
    assert all(mask[0, sum(nvec[:j]) + a] for j, a in enumerate(greedy)), "greedy chose a masked action"


class _Edge:
    """An rng whose uniform draws are all `u`: the two ends of [0, 1)."""

    def __init__(self, u):
        self.u = u

    def random(self, n):
        return np.full(n, self.u)


@pytest.mark.parametrize("u", [0.0, np.nextafter(1.0, 0.0)], ids=["zero", "just-below-one"])
def test_masked_sampling_never_lands_on_a_masked_action_at_the_ends_of_the_draw(u):
    logits = np.zeros((2, 4), np.float32)
    mask = np.array([[False, True, True, False], [False, False, True, False]])
    actions, logp = D.np_sample_discrete(logits, _Edge(u), mask)
    assert mask[np.arange(2), actions].all(), actions
    assert np.isfinite(logp).all()


@pytest.mark.parametrize("spec", [DISCRETE, MULTI], ids=["discrete", "multi-discrete"])
def test_the_learners_masked_log_probs_and_entropies_equal_the_actors(spec):
    """V-trace's importance weight is exp(learner's log-prob - actor's): both must be the masked policy's."""
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(512, spec.action_dim)).astype(np.float32) * 3
    mask = random_masks(rng, 512, spec.action_nvec or (spec.action_dim,))
    actions, logp = sample_params(logits, spec, rng, mask)
    tf_logp, entropy = D.tf_log_prob_and_entropy(D.tf_masked(tf.constant(logits), tf.constant(mask.astype(np.uint8))),
                                                 tf.constant(actions.astype(np.int32)), discrete=True,
                                                 nvec=spec.action_nvec)
    np.testing.assert_allclose(tf_logp.numpy(), logp, rtol=1e-4, atol=1e-4)
    # The entropy over the allowed actions only: one allowed choice in every component is entropy 0.
    only = np.zeros_like(mask)
    for start in np.cumsum((0, *(spec.action_nvec or (spec.action_dim,))))[:-1]:
        only[:, start] = True
    _, none = D.tf_log_prob_and_entropy(D.tf_masked(tf.constant(logits), tf.constant(only.astype(np.uint8))),
                                        tf.zeros([512, *spec.action_shape], tf.int32), discrete=True,
                                        nvec=spec.action_nvec)
    assert np.isfinite(entropy.numpy()).all() and np.abs(none.numpy()).max() < 1e-6


def test_the_learner_step_takes_the_masks_and_its_log_probs_are_the_actors():
    """The compiled step's forward pass on a masked batch: at the weights the actor acted with, the learner's
    log-probs equal the behaviour log-probs (so the importance weights are 1), and without the masks they do not."""
    cfg = Config(hidden_sizes=(16,), unroll_length=4, batch_size=3)
    spec = DISCRETE
    learner = Learner(cfg, spec, build_default_model(spec, cfg))
    policy = NumpyMLPPolicy(spec, published_layout(learner.model, spec, cfg, numpy_actors=True), cfg.hidden_sizes,
                            cfg.activation)
    policy.load(learner.flat_weights())
    rng = np.random.default_rng(2)
    T, B = cfg.unroll_length, cfg.batch_size
    obs = rng.normal(size=(T + 1, B, 5)).astype(np.float32)
    mask = random_masks(rng, T * B, (5,)).reshape(T, B, 5)
    actions, logp = sample_params(policy.policy_params(obs[:-1].reshape(T * B, 5)), spec, rng, mask.reshape(T * B, 5))
    args = (tf.constant(obs), tf.zeros([T + 1, B], tf.uint8), tf.constant(actions.reshape(T, B).astype(np.int32)),
            tf.zeros([1, B, 0]))
    masked = learner._log_probs(*args, tf.constant(mask.astype(np.uint8))).numpy()
    np.testing.assert_allclose(masked, logp.reshape(T, B), rtol=1e-4, atol=1e-4)
    assert np.abs(learner._log_probs(*args).numpy() - logp.reshape(T, B)).max() > 0.05
    assert len(learner._step.input_signature) == 7  # the masks are the step's seventh input
    # The entropy watch's figures: the masked policy's entropy and log(allowed) over the valid samples that had a
    # choice (here one sample allows a single action and one is a padded step: neither counts).
    mask[0, 0] = np.eye(5, dtype=bool)[actions[0]]
    valid = np.ones((T, B), np.float32)
    valid[1, 2] = 0.0
    params = policy.policy_params(obs[:-1].reshape(T * B, 5))
    probs = np.where(mask.reshape(T * B, 5), np.exp(params - params.max(1, keepdims=True)), 0.0)
    probs /= probs.sum(1, keepdims=True)
    entropy = -(probs * np.log(np.where(probs > 0, probs, 1.0))).sum(1).reshape(T, B)
    choice = (valid > 0) & (mask.sum(2) > 1)
    rows = np.stack([logp.reshape(T, B), np.zeros((T, B)), np.full((T, B), 0.99), valid]).astype(np.float32)
    stats, _ = learner._step(*args[:3], tf.constant(rows), args[3], tf.constant(0.01),
                             tf.constant(mask.astype(np.uint8)))
    stats = dict(zip(learner._stat_names, stats.numpy()))
    np.testing.assert_allclose(stats["choice_entropy"], entropy[choice].mean(), rtol=1e-4)
    np.testing.assert_allclose(stats["choice_uniform"], np.log(mask.sum(2)[choice]).mean(), rtol=1e-5)


def test_masks_are_read_from_info_from_a_method_through_wrappers_and_as_a_tuple():
    spec = DISCRETE
    env = gym.wrappers.TimeLimit(PickAllowed(method=True), 10)  # a wrapper does not forward attributes in 1.x
    env.reset(seed=0)
    np.testing.assert_array_equal(read_mask(env, {}, spec), env.unwrapped.mask[0].astype(bool))
    info_mask = np.array([0, 1, 0, 0, 1], np.int8)
    np.testing.assert_array_equal(read_mask(env, {"action_mask": info_mask}, spec), info_mask.astype(bool))
    got = read_mask(None, {"action_mask": (np.array([1, 0, 0]), np.array([0, 0, 1, 1]))}, MULTI)
    np.testing.assert_array_equal(got, [1, 0, 0, 0, 0, 1, 1])


@pytest.mark.parametrize("mask, error", [
    (None, "gave no action mask"),
    (np.ones(4, np.int8), r"shape \(4,\), expected \(5,\)"),
    (np.zeros(5, np.int8), "allows no action"),
])
def test_a_bad_mask_is_one_line(mask, error):
    with pytest.raises(BadMask, match=error):
        read_mask(gym.make("CartPole-v1"), {} if mask is None else {"action_mask": mask}, DISCRETE)


def test_each_component_of_a_multi_discrete_mask_must_allow_a_choice():
    with pytest.raises(BadMask, match="allows no action for component 1"):
        read_mask(None, {"action_mask": np.array([1, 1, 1, 0, 0, 0, 0])}, MULTI)


def test_inspect_env_with_masks_steps_an_allowed_action_and_marks_the_spec():
    spec = inspect_env(lambda: PickAllowed(), "PickAllowed", action_masks=True)  # a disallowed action would raise
    assert spec.action_masks and spec.action_dim == 5
    # Without --action-masks its first (sampled) step is illegal: the error says the env has masks to use.
    with pytest.raises(ConfigError, match=r"illegal action .* \(the env gives action masks: --action-masks samples"):
        inspect_env(lambda: PickAllowed(), "PickAllowed")


def test_a_mask_in_a_dict_observation_is_moved_into_info_for_an_env_id_and_named_for_an_env_fn():
    from actorlearner.envs import make_env_fn

    spec = inspect_env(make_env_fn("custom_envs:PickAllowed-v0", kwargs={"dict_obs": True}, action_masks=True),
                       "PickAllowed", action_masks=True)
    assert spec.action_masks and spec.obs_shape == (5,)  # the observation without its mask
    with pytest.raises(ConfigError, match="wrap it in actorlearner.env_wrappers.MaskInInfo"):
        inspect_env(lambda: PickAllowed(dict_obs=True), "PickAllowed", action_masks=True)


def test_an_env_that_gives_masks_unasked_is_pointed_out():
    from actorlearner.envs import make_env_fn

    assert inspect_env(make_env_fn("Taxi-v4")).masks_offered  # its info["action_mask"]
    assert not inspect_env(make_env_fn("Taxi-v4"), action_masks=True).masks_offered  # used, not offered
    assert not inspect_env(make_env_fn("CartPole-v1")).masks_offered


def cli(tmp_path, *args, timeout=120):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    return subprocess.run([sys.executable, "-m", "actorlearner", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=tmp_path, env=env)


@pytest.mark.parametrize("args, error", [
    (["--env", "CartPole-v1"], "the env CartPole-v1 gave no action mask"),
    (["--env", "Pendulum-v1"], "--action-masks masks categorical actions"),
    (["--env", "CartPole-v1", "--env-backend", "vector"], "--action-masks reads each single env's masks"),
])
def test_masks_the_env_cannot_give_are_refused_in_one_line(tmp_path, args, error):
    proc = cli(tmp_path, "train", *args, "--action-masks", "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 2 and error in proc.stderr, proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.parametrize("kwargs, flags", [("{}", []), ('{"method": true, "components": 2}', []),
                                           ('{"dict_obs": true}', []), ("{}", ["--backend", "ray"])],
                         ids=["info", "method-multi", "in-observation", "info-ray"])
def test_a_task_whose_illegal_actions_raise_is_learned_under_its_masks(tmp_path, kwargs, flags):
    """PickAllowed raises on an action its mask does not allow (so a single unmasked sample is an env error) and
    pays 10 to a policy that prefers positive signs among the allowed actions, ~6.7 to a uniform choice. Ray actors
    fill their own one-slot unrolls, masks included."""
    if flags and importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed (the ray extra: pip install -e '.[ray]')")
    run = tmp_path / "run"
    proc = cli(tmp_path, "train", "--env", "custom_envs:PickAllowed-v0", "--env-kwargs", kwargs, "--action-masks",
               "--max-seconds", "120", "--eval-every-s", "0", "--run-dir", str(run), *flags, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["solved"] and summary["mean_return_100"] >= 9.5, proc.stdout
    assert summary["env_errors"] == 0, proc.stdout
    assert "actions, masked by the env" in proc.stdout or "choices, masked by the env" in proc.stdout, proc.stdout
    proc = cli(tmp_path, "eval", str(run), "--episodes", "10", "--deterministic")
    assert proc.returncode == 0 and "deterministic: return 10" in proc.stdout, proc.stdout + proc.stderr
