"""The policy-collapse watches (health.py): the spread the learner measures, the entropy, and when they warn."""

import json

import numpy as np
import pytest
import tensorflow as tf

from actorlearner.config import Config
from actorlearner.health import (COLLAPSE_STEPS, DETERMINISTIC_FRACTION, ENDLESS_STEPS_PER_ENV, MIN_PEAK, STALE_STEPS,
                                 STALE_WINDOW, ClipWatch, CollapseWatch, EntropyWatch, StaleWatch,
                                 deterministic_warning, endless_warning, stale_warning)
from actorlearner.learner import Learner
from actorlearner.losses import policy_spread
from test_cli import run_cli


def test_spread_is_zero_when_every_sample_gets_the_same_distribution():
    rng = np.random.default_rng(0)
    logits = np.tile(rng.normal(size=(1, 1, 3)), (4, 5, 1))
    logits += rng.normal(size=(4, 5, 1))  # a per-sample constant: the same distribution
    assert float(policy_spread(tf.constant(logits, tf.float32), discrete=True)) == pytest.approx(0.0, abs=1e-6)


def test_spread_is_the_largest_output_std_and_honours_the_mask():
    params = np.zeros((2, 2, 2), np.float32)  # continuous: (mean, log_std)
    params[:, :, 0] = [[1.0, -1.0], [1.0, -1.0]]  # mean: std 1 over the samples
    params[:, :, 1] = [[0.5, 0.5], [0.5, 0.5]]  # a state-independent log_std: std 0
    assert float(policy_spread(tf.constant(params), discrete=False)) == pytest.approx(1.0)
    mask = tf.constant([[1.0, 0.0], [1.0, 0.0]])  # only the samples with mean 1 count
    assert float(policy_spread(tf.constant(params), mask, discrete=False)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("discrete", [True, False])
def test_spread_matches_numpy_on_random_outputs_and_mask(discrete):
    rng = np.random.default_rng(1)
    params = rng.normal(2.0, 0.3, size=(20, 16, 3)).astype(np.float32)
    mask = (rng.random((20, 16)) < 0.8).astype(np.float32)
    x = params.reshape(-1, 3).astype(np.float64)
    if discrete:
        x -= x.mean(axis=1, keepdims=True)
    kept = x[mask.reshape(-1) == 1]
    got = float(policy_spread(tf.constant(params), tf.constant(mask), discrete=discrete))
    assert got == pytest.approx(kept.std(axis=0).max(), rel=1e-5)
    got = float(policy_spread(tf.constant(params), discrete=discrete))
    assert got == pytest.approx(x.std(axis=0).max(), rel=1e-5)


def _cartpole_learner():
    from actorlearner.envs import inspect_env, make_env_fn
    from actorlearner.model import build_default_model

    cfg = Config(unroll_length=4, envs_per_actor=4, batch_size=4)
    spec = inspect_env(make_env_fn("CartPole-v1"))
    return Learner(cfg, spec, build_default_model(spec, cfg))


def _batch():
    rng = np.random.default_rng(0)
    return {"obs": rng.normal(size=(5, 4, 4)).astype(np.float32), "actions": np.zeros((4, 4), np.int32),
            "behaviour_logp": np.full((4, 4), np.log(0.5), np.float32),
            "rewards": rng.normal(size=(4, 4)).astype(np.float32), "discounts": np.full((4, 4), 0.9, np.float32),
            "first": np.zeros((5, 4), np.uint8), "mask": np.ones((4, 4), np.float32)}


def test_learner_reports_the_spread_and_it_is_zero_for_a_policy_blind_to_its_input():
    learner = _cartpole_learner()
    stats, _ = learner.step(_batch())
    assert stats["policy_spread"] > 0
    blind = _cartpole_learner()
    for v in blind.model.trainable_variables:
        if v.path == "pi_hidden_0/kernel":  # the policy torso's input weights: its features are constant
            v.assign(tf.zeros_like(v))
    stats, _ = blind.step(_batch())
    assert stats["policy_spread"] == pytest.approx(0.0, abs=1e-6)


def test_watch_warns_once_after_a_long_collapse_and_again_after_recovery():
    watch = CollapseWatch()
    assert not any(watch.update(s) for s in (0.5, 1.0, None, 0.8))
    fired = [watch.update(0.0) for _ in range(3 * COLLAPSE_STEPS)]
    assert fired.index(True) == COLLAPSE_STEPS - 1 and fired.count(True) == 1
    watch.update(0.5)  # back above a tenth of the peak: re-armed
    assert [watch.update(0.0) for _ in range(COLLAPSE_STEPS)].count(True) == 1


def test_watch_stays_quiet_on_a_short_dip_and_on_a_policy_that_never_told_inputs_apart():
    watch = CollapseWatch()
    watch.update(1.0)
    dips = [watch.update(0.0) for _ in range(COLLAPSE_STEPS - 1)] + [watch.update(0.2)]
    assert not any(dips + [watch.update(0.0) for _ in range(COLLAPSE_STEPS - 1)])
    fresh = CollapseWatch()  # a freshly initialised CNN on Pong frames: spreads of 1e-4 to 1e-2
    assert not any(fresh.update(s) for s in np.linspace(MIN_PEAK / 5, 0.0, 5 * COLLAPSE_STEPS))
    resumed = CollapseWatch(peak=1.0)  # the peak comes back from a checkpoint
    assert [resumed.update(0.0) for _ in range(COLLAPSE_STEPS)][-1]


def test_learner_loop_warns_on_stderr_and_counts_the_collapse(capsys):
    from actorlearner.learner_loop import LearnerLoop
    from actorlearner.reporting import RunStats

    loop = LearnerLoop.__new__(LearnerLoop)  # only the health watch's state: no run, no processes
    loop.stats = RunStats(0.0, None)
    loop.entropy_watch = EntropyWatch(2)
    loop.clip_watch = None  # discrete actions
    loop.stale_watch = StaleWatch()
    loop.cfg = Config()
    for spread in [1.0] + [0.0] * (2 * COLLAPSE_STEPS):
        loop.stats.learner_steps += 1
        loop._watch_health({"policy_spread": spread, "entropy": 0.5, "rho_mean": 1.0}, np.zeros((20, 4), np.int32))
    err = capsys.readouterr().err
    assert loop.stats.policy_collapses == 1 and loop.stats.spread_peak == 1.0
    assert err.count("actorlearner: warning: learner step 101: the policy has given every observation") == 1
    for _ in range(STALE_STEPS):  # the actors' samples carry no weight: the second watch
        loop.stats.learner_steps += 1
        loop._watch_health({"policy_spread": 1.0, "entropy": 0.5, "rho_mean": 3e-4}, np.zeros((20, 4), np.int32))
    err = capsys.readouterr().err
    assert loop.stats.policy_collapses == 2
    assert err.count(f"learner step {2 * COLLAPSE_STEPS + 1 + STALE_STEPS}: the actors' samples carried almost no "
                     f"weight in {STALE_STEPS} of the last {STALE_WINDOW} steps (mean importance weight 0.0003;") == 1
    assert "restart with --target-kl 0.02 (appo), a lower --learning-rate" in err
    assert "restart with a --target-kl below 0.02, a lower" in stale_warning(3e-4, 7, target_kl=0.02)  # has it
    resumed = RunStats(0.0, None)  # a checkpoint keeps the count and the watch's peak
    resumed.restore(loop.stats.state())
    assert resumed.policy_collapses == 2 and resumed.collapse.peak == 1.0


def test_stale_watch_warns_once_on_weightless_samples_and_again_after_a_clean_window():
    """Healthy runs keep the mean importance weight near 1; the collapse seen had 1e-36 to 1e-3 in runs of 4-9
    steps, between the ~1 of batches from the actor holding the newest weights."""
    watch = StaleWatch()
    healthy = [0.97, 1.04, None, float("nan"), 0.6, 1.3, 0.051] * 20
    assert not any(watch.update(r) for r in healthy)
    assert not any(watch.update(r) for r in [0.0] * (STALE_STEPS - 1) + [1.0] * STALE_WINDOW)  # short of it
    interleaved = ([1e-20] * 5 + [1.0]) * STALE_WINDOW
    fired = [watch.update(r) for r in interleaved]
    assert fired.index(True) == 22 and fired.count(True) == 1  # the 20th low, five in every six steps
    for _ in range(STALE_WINDOW):  # a whole window with the actors: re-armed
        watch.update(1.0)
    assert [watch.update(0.0) for _ in range(STALE_STEPS)].count(True) == 1


def test_entropy_watch_warns_once_on_a_deterministic_policy_and_again_after_recovery():
    watch = EntropyWatch(3)
    low = DETERMINISTIC_FRACTION * np.log(3) / 10
    assert not any(watch.update(e) for e in (1.0, None, 0.3))
    fired = [watch.update(low) for _ in range(3 * COLLAPSE_STEPS)]
    assert fired.index(True) == COLLAPSE_STEPS - 1 and fired.count(True) == 1
    watch.update(0.5)  # exploring again: re-armed
    assert [watch.update(0.0) for _ in range(COLLAPSE_STEPS)].count(True) == 1


def test_entropy_watch_stays_quiet_on_healthy_entropy_short_dips_and_continuous_actions():
    watch = EntropyWatch(2)  # CartPole after solving keeps ~0.55 of its 0.69 nats
    assert not any(watch.update(e) for e in np.linspace(0.69, 0.3, 5 * COLLAPSE_STEPS))
    dips = [watch.update(0.0) for _ in range(COLLAPSE_STEPS - 1)] + [watch.update(0.1)]
    assert not any(dips + [watch.update(0.0) for _ in range(COLLAPSE_STEPS - 1)])
    solved = EntropyWatch(4)  # FrozenLake's solved policy is deterministic, and right to be
    assert not any(solved.update(1e-4, solved=True) for _ in range(2 * COLLAPSE_STEPS))
    assert not any(EntropyWatch(None).update(-5.0) for _ in range(2 * COLLAPSE_STEPS))  # a Gaussian
    assert not any(EntropyWatch(1).update(0.0) for _ in range(2 * COLLAPSE_STEPS))  # one action: always 0


def test_a_masked_policys_entropy_is_measured_against_the_allowed_actions_where_there_was_a_choice():
    """With --action-masks each step brings its yardstick (losses.choice_entropy): log(allowed) over the samples
    with a choice, 0 where the masks left none, which keeps the watch quiet however low the entropy."""
    watch = EntropyWatch(5, masked=True)
    assert not any(watch.update(0.0, uniform=0.0) for _ in range(2 * COLLAPSE_STEPS))  # one allowed action only
    assert not any(watch.update(0.5, uniform=1.1) for _ in range(2 * COLLAPSE_STEPS))
    fired = [watch.update(1e-5, uniform=1.1) for _ in range(2 * COLLAPSE_STEPS)]
    assert fired.index(True) == COLLAPSE_STEPS - 1 and fired.count(True) == 1
    assert "(mean entropy 1e-05 nats where the masks left a choice, 1.1 for a uniform choice among the allowed " \
           "actions)" in deterministic_warning(1e-5, 1.1, 7, masked=True)


def test_a_run_whose_policy_saturates_on_one_action_is_warned(tmp_path):
    # CartPole at ~67x the preset's learning rate: within ~100 learner steps every observation gets one action at
    # probability ~1 (entropy ~1e-20 nats, return ~9.4). Serial mode and a step budget, so the run is the same
    # whatever else the machine runs: at 10x the rate (the test before) the collapse hung on the actors' timing,
    # and with another test running beside, one run solved CartPole instead. The output-spread watch fires here
    # too, a few steps later; the entropy watch alone saw the collapse at 10x.
    run = tmp_path / "run"
    proc = run_cli("train", "--env", "CartPole-v1", "--seed", "1", "--learning-rate", "0.2", "--serial",
                   "--max-steps", "400000", "--max-seconds", "90", "--run-dir", str(run), "--quiet", timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["mean_return_100"] < 20 and summary["policy_collapses"] >= 1, summary
    assert "the policy has been deterministic for the last 100 steps" in proc.stderr
    done = [line for line in proc.stdout.splitlines() if line.startswith("done (")]
    assert done and "policy collapse warning" in done[0], proc.stdout  # repeated where a long run ends


def test_a_run_whose_envs_never_end_an_episode_is_warned():
    """An env with no terminal state and no time limit (a custom env registered without max_episode_steps) shows
    `return(100) -` forever; past ENDLESS_STEPS_PER_ENV steps per env with no episode ended, it is said."""
    per_env = ENDLESS_STEPS_PER_ENV
    assert endless_warning(64 * per_env - 1, 0, 64) is None  # not yet
    assert endless_warning(64 * per_env, 1, 64) is None  # one episode ended: the env does end them
    said = endless_warning(64 * per_env, 0, 64)
    assert said.startswith(f"no episode has ended in {64 * per_env} env steps ({per_env} per env)")
    assert "max_episode_steps" in said and "TimeLimit" in said


def test_clip_watch_warns_once_after_a_long_stretch_outside_the_bounds_and_rearms():
    watch = ClipWatch(np.array([-1.0, -1.0]), np.array([1.0, 1.0]))
    outside = np.full((20, 8, 2), 3.0, np.float32)
    inside = np.zeros((20, 8, 2), np.float32)
    mostly = outside.copy()
    mostly[0, 0, 0] = 0.0  # 1 of 320 inside: 99.7 % outside
    fired = [watch.update(mostly) for _ in range(COLLAPSE_STEPS)]
    assert fired[:-1] == [None] * (COLLAPSE_STEPS - 1) and fired[-1] > 0.99
    assert all(watch.update(outside) is None for _ in range(3 * COLLAPSE_STEPS))  # once
    watch.update(inside)  # back inside: re-armed
    assert [watch.update(outside) for _ in range(COLLAPSE_STEPS)][-1] == 1.0
    half = np.concatenate([outside[:10], inside[:10]])
    assert all(watch.update(half) is None for _ in range(2 * COLLAPSE_STEPS))  # 50 %: bang-bang control, fine
    solved = ClipWatch(np.array([-1.0]), np.array([1.0]))
    assert all(solved.update(outside[..., :1], solved=True) is None for _ in range(2 * COLLAPSE_STEPS))
