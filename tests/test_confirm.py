"""Confirmed solve: "solved" means the current weights also reach the target on fresh episodes, and those
weights are the final policy."""

import json
import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from actorlearner.config import Config
from actorlearner.envs import inspect_env, make_env_fn
from actorlearner.env_backends import EnvBatchFactory
from actorlearner.env_batch import VectorEnvBatch
from actorlearner.evaluation import (SlicedEvaluation, confirmation_passes, run_episodes, run_episodes_together,
                                    run_first_episodes)
from actorlearner.layout import default_layout, layout_size
from actorlearner.policies import NumpyMLPPolicy
from conftest import ROOT


def random_cartpole_policy():
    """(env_fn, spec, policy): CartPole and the default MLP with random weights (episodes of varied lengths)."""
    env_fn = make_env_fn("CartPole-v1")
    spec, cfg = inspect_env(env_fn), Config()
    layout = default_layout(spec, cfg)
    policy = NumpyMLPPolicy(spec, layout, cfg.hidden_sizes, cfg.activation)
    policy.load(np.random.default_rng(3).normal(scale=0.5, size=layout_size(layout)).astype(np.float32))
    return env_fn, spec, policy


def test_episodes_played_together_are_the_episodes_played_one_by_one():
    env_fn, spec, policy = random_cartpole_policy()
    one, one_len = run_episodes(policy, env_fn, spec, episodes=6, seed=11, greedy=True)
    together, together_len = run_episodes_together(policy, env_fn, spec, episodes=6, seed=11, greedy=True)
    assert sorted(zip(one, one_len)) == sorted(zip(together, together_len))
    assert len(set(one_len)) > 1  # different episodes, not one repeated


def test_an_evaluation_played_in_slices_plays_the_same_episodes():
    env_fn, spec, policy = random_cartpole_policy()
    # Sampled actions: the rng's draws must follow the same order however the episodes are sliced.
    whole = run_episodes(policy, env_fn, spec, episodes=3, seed=11, greedy=False)
    sliced, slices, steps = SlicedEvaluation(policy, env_fn, spec, episodes=3, seed=11, greedy=False), 0, []
    while not sliced.play(0.0, on_step=lambda: steps.append(1)):  # 0 s: one env step a slice
        slices += 1
    assert (sliced.returns, sliced.lengths) == whole and len(set(whole[1])) > 1
    assert slices == len(steps) == sum(whole[1])  # one step a slice, on_step after every step
    sliced.close()


class _Ones:
    """A feed-forward policy that always takes action 1."""

    def initial_state(self, n):
        return []

    def act(self, obs, state, rng, greedy=False, mask=None):
        return np.ones(len(obs), np.int64), None, state


@pytest.mark.parametrize("kind", ["Next", "Same"])
def test_a_vector_batch_confirmation_counts_the_first_episode_of_each_env(kind):
    import custom_envs  # noqa: F401 - registers CountNext-v0 / CountSame-v0

    factory = EnvBatchFactory("vector", 3, env_id=f"Count{kind}-v0")
    assert factory.confirm_batches == factory.vector_batch  # what the runner hands the learner loop
    assert EnvBatchFactory("gymnasium", 3, env_fn=make_env_fn("CartPole-v1")).confirm_batches is None
    assert EnvBatchFactory("ale", 3, env_id="ALE/Pong-v5").confirm_batches is None  # episodic life: single envs
    batch = factory.confirm_batches(4, seed=0)
    # Every env's episode 0 is rewarded 1 + 2 + 3 and terminates; episode 1 (return 10, 4 steps) must not count.
    assert run_first_episodes(_Ones(), batch, factory.spec(), seed=0) == ([6.0] * 4, [3] * 4)
    batch.close()
    # An error at the second step cuts every episode: none is the policy's to count.
    failing = VectorEnvBatch(lambda s: custom_envs.CountVectorEnv(4, f"{kind}Step", fail_at=2), 4, 0, "vector")
    assert run_first_episodes(_Ones(), failing, factory.spec(), seed=0) == ([], [])
    failing.close()


def test_a_confirmation_must_clear_the_target_by_its_standard_error():
    assert confirmation_passes([500.0] * 20, 475, 1.0) == (True, 500.0, 0.0)  # no spread: the mean decides
    # Pendulum-like: a mean of -190 from returns that spread by +-100 is within one standard error of -200.
    spread = np.tile([-90.0, -290.0], 10)
    passed, mean, se = confirmation_passes(spread, -200, 1.0)
    assert not passed and mean == -190.0 and abs(se - 100 / np.sqrt(20)) < 1e-9
    assert confirmation_passes(spread, -200, 0.0)[0]  # the mean alone would pass it
    assert confirmation_passes(spread + 30, -200, 1.0)[0]  # -160 clears -200 by more than 22.4
    assert not confirmation_passes([470.0] * 20, 475, 0.0)[0]


def test_a_window_that_reaches_the_target_is_not_solved_unless_confirmed(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    proc = subprocess.run([sys.executable, "-m", "actorlearner", "train", "--env", "faulty_envs:EasyOnlyInActors-v0",
                           "--run-dir", str(tmp_path / "run"), "--max-steps", "200000", "--max-seconds", "90",
                           "--eval-every-s", "0"],
                          capture_output=True, text=True, timeout=150, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    # A step budget: a 10-s run (the window reached at 6 s alone) ended before it with two busy processes beside.
    assert summary["status"] == "max_steps" and not summary["solved"] and summary["solved_at_s"] is None
    assert summary["window_reached_at_s"] is not None and summary["confirmations_failed"] >= 1
    assert summary["mean_return_100"] >= 9.0  # the window alone would have called it solved
    assert "window 10.0 ≥ 9, confirmation 0 < 9: training on" in proc.stdout


def test_confirmation_off_trusts_the_window(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    proc = subprocess.run([sys.executable, "-m", "actorlearner", "train", "--env", "faulty_envs:EasyOnlyInActors-v0",
                           "--run-dir", str(tmp_path / "run"), "--max-seconds", "30", "--eval-every-s", "0",
                           "--confirm-episodes", "0"],
                          capture_output=True, text=True, timeout=90, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["solved"] and summary["confirm_return_mean"] is None and summary["confirmations_failed"] == 0


def test_confirmed_cartpole_policy_is_the_saved_one(tmp_path):
    from actorlearner import load_policy, train

    summary = train(Config(seed=2, serial=True, max_seconds=90, eval_every_s=0, run_dir=str(tmp_path / "run")))
    assert summary["solved"] and summary["confirm_return_mean"] >= 475
    assert summary["solved_at_s"] >= summary["window_reached_at_s"]
    policy = load_policy(str(tmp_path / "run"))
    env_fn = lambda: gym.make("CartPole-v1")  # noqa: E731
    returns, _ = run_episodes_together(policy, env_fn, inspect_env(env_fn), episodes=20, seed=99)
    assert np.mean(returns) >= 475 * 0.9, returns  # the saved policy solves fresh episodes too
