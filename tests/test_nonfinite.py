"""Non-finite numbers: a NaN/Inf gradient is caught and never applied or published, and NaN rewards and
observations are found where they enter (dropped and counted, or the run stops with its last good checkpoint)."""

import json

import numpy as np
import pytest

from actorlearner import Config, checkpoint, train
from actorlearner.learner_loop import NonFiniteData
from envs import CartPoleNanReward


@pytest.mark.parametrize("fused", [True, False], ids=["fused-adam", "keras-adam"])
def test_non_finite_gradient_is_caught_and_not_applied(fused):
    from actorlearner.envs import inspect_env, make_env_fn
    from actorlearner.learner import Learner, NumericalFault
    from actorlearner.model import build_default_model

    cfg = Config(unroll_length=4, envs_per_actor=2, batch_size=2)
    spec = inspect_env(make_env_fn("CartPole-v1"))
    model = build_default_model(spec, cfg)
    learner = Learner(cfg, spec, model)
    T, B = 4, 2
    batch = {"obs": np.zeros((T + 1, B, 4), np.float32), "actions": np.zeros((T, B), np.int32),
             "behaviour_logp": np.full((T, B), -0.69, np.float32), "rewards": np.ones((T, B), np.float32),
             "discounts": np.full((T, B), 0.99, np.float32), "first": np.zeros((T + 1, B), np.uint8),
             "mask": np.ones((T, B), np.float32)}
    learner._fused_adam = fused  # the fallback a Keras without Adam's private slots would take
    _, flat = learner.step(batch)  # a good step works
    before = learner.flat_weights()
    _, optimizer_before = learner.state()  # Adam's moments and step count
    batch["rewards"][1, 1] = np.nan
    with pytest.raises(NumericalFault, match=r"non-finite loss or gradient at learner step 2 \(.*total nan.*\); "
                                             r"the weights were left as they were"):
        learner.step(batch)
    np.testing.assert_array_equal(learner.flat_weights(), before)
    for (path, was), (_, now) in zip(optimizer_before, learner.state()[1]):
        np.testing.assert_array_equal(now, was, err_msg=path)
    batch["rewards"][1, 1] = 1.0
    learner.step(batch)  # and the next good step updates again
    assert not np.array_equal(learner.flat_weights(), before)


def nan_run(tmp_path, mode):
    CartPoleNanReward.steps_in_process = 0  # serial mode: every env of the run counts in this process
    cfg = Config(env="nan-reward", serial=True, num_actors=1, max_steps=40_000, stop_at_target=False, eval_every_s=0,
                 checkpoint_every=0.01, on_nonfinite=mode, run_dir=str(tmp_path / mode))
    return cfg, (lambda: train(cfg, env_fn=CartPoleNanReward))


def test_nan_reward_dropped_and_counted_when_configured(tmp_path, capsys, no_leaks):
    _, run = nan_run(tmp_path, "skip")
    summary = run()
    assert summary["status"] == "max_steps" and summary["nonfinite_unrolls"] == 1
    assert summary["nonfinite_skips"] == 0  # found in the actor: the learner never saw it
    out = capsys.readouterr().out
    assert "(nan-reward) gave a non-finite reward (nan) at unroll step" in out and "unroll dropped" in out


def test_nan_reward_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, no_leaks):
    cfg, run = nan_run(tmp_path, "stop")
    with pytest.raises(NonFiniteData, match=r"env 0\.\d+ \(nan-reward\) gave a non-finite reward"):
        run()
    summary = json.loads(open(f"{cfg.run_dir}/summary.json").read())
    assert summary["status"] == "error" and "NonFiniteData" in summary["error"]
    last = checkpoint.load(checkpoint.list_checkpoints(cfg.run_dir)[-1])  # loads: finite and whole
    assert 0 < last.meta["stats"]["env_steps"] < CartPoleNanReward.nan_at + 1280


def test_nan_observation_stays_out_of_the_normalizer(tmp_path, capsys, no_leaks):
    from envs import CartPoleNanObs

    CartPoleNanObs.steps_in_process = 0
    cfg = Config(env="nan-obs", serial=True, num_actors=1, max_steps=40_000, stop_at_target=False,
                 eval_every_s=0, normalize_obs=True, on_nonfinite="skip", run_dir=str(tmp_path / "run"))
    summary = train(cfg, env_fn=CartPoleNanObs)
    # Before, the NaN entered the running mean and variance, every later batch was NaN and skipped.
    assert summary["status"] == "max_steps" and summary["nonfinite_unrolls"] == 1
    assert summary["nonfinite_skips"] == 0 and summary["learner_steps"] > 20
    assert "gave a non-finite observation (nan)" in capsys.readouterr().out
    weights = np.load(tmp_path / "run" / "policy.npz")["flat"]
    assert np.isfinite(weights).all()
