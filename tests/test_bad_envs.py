"""Envs that return malformed observations: one line naming the env and what was wrong, the env recreated,
repeated failures summed up instead of flooding the console, tracebacks in RUN_DIR/actors.log."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import faulty_envs
import gymnasium as gym
from actorlearner.config import ConfigError
from actorlearner.env_batch import GymEnvBatch, check_obs, BadObservation
from actorlearner.envs import inspect_env
from conftest import ROOT, our_segments, spawned_pids


def train(tmp_path, env_id, *args, timeout=120):
    """Runs the command; returns its CompletedProcess with `took` (seconds) added."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "actorlearner", "train", "--env", env_id, "--run-dir",
                           str(tmp_path / "run"), "--eval-every-s", "0", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=tmp_path, env=env)
    proc.took = time.monotonic() - t0
    return proc


def test_check_obs_names_the_call_and_both_shapes():
    check_obs(np.zeros(4, np.float64), (4,), "float32", "step")  # a float64 vector fits a float32 space
    with pytest.raises(BadObservation, match=r"step\(\) returned an observation of shape \(3,\) float32, "
                                             r"expected \(4,\) float32"):
        check_obs(np.zeros(3, np.float32), (4,), "float32", "step")
    with pytest.raises(BadObservation, match="float32, expected .* uint8"):
        check_obs(np.zeros((2, 2, 1), np.float32), (2, 2, 1), "uint8", "reset")


class _Api(gym.Env):
    """An env that breaks gymnasium's API as `how` says."""

    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, how: str):
        self.how = how

    def reset(self, *, seed=None, options=None):
        if self.how == "reset raises":
            raise OSError("simulator not running")
        return np.zeros(2, np.float32), {}

    def step(self, action):
        obs = np.zeros(2, np.float32)
        if self.how == "old gym":
            return obs, 1.0, False, {}
        reward = {"array reward": np.ones(1), "text reward": "1"}.get(self.how, 1.0)
        return (obs[:1] if self.how == "step obs" else obs), reward, False, False, {}


@pytest.mark.parametrize("how, says", [
    ("old gym", "does not follow gymnasium's API: step() returned 4 values, expected 5 (observation, reward, "
                "terminated, truncated, info); an env written for the old gym API (before 0.26)?"),
    ("array reward", "does not follow gymnasium's API: step() returned a reward of type ndarray of shape (1,), "
                     "expected a number"),
    ("text reward", "does not follow gymnasium's API: step() returned a reward of type str, expected a number"),
    ("step obs", "does not follow gymnasium's API: step() returned an observation of shape (1,) float32, "
                 "expected (2,) float32"),
    ("reset raises", "raised in its first reset(): OSError: simulator not running"),
])
def test_the_launchers_env_is_checked_against_gymnasiums_api(how, says):
    for env_fn in (lambda: _Api(how), lambda: gym.wrappers.TimeLimit(_Api(how), 10)):  # bare, and wrapped
        with pytest.raises(ConfigError) as e:
            inspect_env(env_fn, "Odd-v0")
        assert str(e.value) == f"the env Odd-v0 {says}"
    assert inspect_env(lambda: _Api("fine"), "Odd-v0").obs_shape == (2,)


def test_wrong_shape_from_step_recreates_the_env():
    batch = GymEnvBatch(_buggy, 1, lambda n: n, (4,), "float32", True, "0", "WrongShapeStep-v0")
    batch.reset()
    errors = []
    for _ in range(40):
        errors += batch.step(np.zeros(1, np.int64)).errors
    assert errors and "env 0.0 (WrongShapeStep-v0): step() returned an observation of shape (3,)" in errors[0]


def _buggy(steps_done: int = 0):
    """A WrongShape("step") env that hits its bug: at its 30th step."""
    env = faulty_envs.WrongShape("step")
    env.buggy, env.steps = True, steps_done
    return env


def test_wrong_shape_from_reset_is_one_line_before_anything_starts(tmp_path):
    before = spawned_pids()
    proc = train(tmp_path, "faulty_envs:WrongShapeReset-v0", "--max-seconds", "60", "--num-actors", "1")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "actorlearner: error: the env faulty_envs:WrongShapeReset-v0 does not follow gymnasium's API: reset() "
        "returned an observation of shape (3,) float32, expected (4,) float32"], proc.stderr
    assert proc.stdout == "" and not (tmp_path / "run").exists()
    assert spawned_pids() - before == set()


def test_wrong_shape_from_reset_in_actors_stops_the_run_with_that_line(tmp_path):
    """The launcher's env passes its check, the actors' envs fail at their first reset: five quick deaths, then
    one line."""
    before, segments = spawned_pids(), our_segments()
    proc = train(tmp_path, "faulty_envs:WrongShapeActorReset-v0", "--max-seconds", "60", "--num-actors", "1")
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "could not be started" in lines[0] and "faulty_envs:WrongShapeActorReset-v0" in lines[0]
    assert "reset() returned an observation of shape (3,) float32, expected (4,) float32" in lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr  # tracebacks go to actors.log
    log = (tmp_path / "run" / "actors.log").read_text()
    assert log.count("Traceback") >= 5 and "BadObservation" in log
    died = [line for line in proc.stdout.splitlines() if line.startswith("actor 0 died")]
    assert 1 <= len(died) <= 3, proc.stdout  # the rest are summed up
    assert "tracebacks of failed actors go to" in proc.stdout
    assert proc.took < 40, proc.took  # five quick deaths, not a minute of retries
    assert spawned_pids() - before == set() and our_segments() - segments == set()


def test_wrong_shape_from_step_is_counted_and_the_run_goes_on(tmp_path):
    before, segments = spawned_pids(), our_segments()
    # A step budget, not a time one: on a slow day start-up alone took 7 of the 8 s this test once had.
    # 20 K env steps are ~31 learner steps of 640; the error comes at the 30th step of env 0.9 (the 10th made).
    proc = train(tmp_path, "faulty_envs:WrongShapeStep-v0", "--max-steps", "20000", "--max-seconds", "60",
                 "--no-stop-at-target", "--num-actors", "1", "--envs-per-actor", "16", "--batch-size", "32")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "max_steps", summary
    assert summary["env_errors"] >= 1 and summary["learner_steps"] > 10, summary
    assert "(faulty_envs:WrongShapeStep-v0): step() returned an observation of shape (3,) float32" in proc.stdout
    assert proc.took < 60, proc.took
    assert spawned_pids() - before == set() and our_segments() - segments == set()


def test_env_whose_reset_keeps_failing_is_replaced_without_a_flood(tmp_path):
    """Every env raises at its second reset, so each episode ends in a replacement: before, the same line
    was printed for each, ~60 times a second; now the first few are, the rest summed up, and the run goes on."""
    before, segments = spawned_pids(), our_segments()
    # A step budget (8 K env steps: ~270 episodes, each ending in a replacement), as start-up's share of a
    # time budget varies from day to day; 60 s only bounds a hang.
    proc = train(tmp_path, "faulty_envs:ResetFails-v0", "--max-steps", "8000", "--max-seconds", "60",
                 "--no-stop-at-target", "--num-actors", "1", "--envs-per-actor", "16", "--batch-size", "32")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "max_steps", summary
    assert summary["env_errors"] >= 100 and summary["episodes"] >= 100, summary
    raised = [line for line in proc.stdout.splitlines() if line.startswith("env 0.") and "raised" in line]
    assert len(raised) <= 3 * (proc.took / 10 + 2), proc.stdout
    assert "... repeated" in proc.stdout and "simulator lost its licence" in proc.stdout
    assert proc.took < 60, proc.took
    assert spawned_pids() - before == set() and our_segments() - segments == set()


def test_env_that_never_finishes_an_episode_stops_the_run_with_one_line():
    """Failing 5 times without finishing an episode in between is a broken env: its actor stops with that line
    (and the crash-loop cap then stops the run with it)."""
    batch = GymEnvBatch(lambda: _buggy(steps_done=29), 1, lambda n: n, (4,), "float32", True, "0", "X")
    batch.reset()
    with pytest.raises(RuntimeError, match=r"env 0.0 \(X\) failed 5 times without finishing an episode, last: "
                                           r"step\(\) returned an observation of shape \(3,\)"):
        for _ in range(10):
            batch.step(np.zeros(1, np.int64))



def test_a_non_finite_observation_in_an_actor_is_one_line_without_numpy_warnings(tmp_path):
    """The error line came after numpy's RuntimeWarnings ('invalid value encountered in matmul') from the
    actor's policy forward on the inf observation."""
    proc = train(tmp_path, "faulty_envs:InfAtFifthStep-v0", "--max-seconds", "60", "--num-actors", "1")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "actorlearner: error: env 0.0 (faulty_envs:InfAtFifthStep-v0) gave a non-finite observation (inf) at unroll "
        "step 5; --on-nonfinite skip drops such unrolls instead"], proc.stderr
    assert "RuntimeWarning" not in proc.stdout


def test_an_observation_that_is_a_list_is_named_as_one():
    """It was 'returned an observation of shape None object'."""
    from actorlearner.env_batch import BadObservation, check_obs

    says = (r"^step\(\) returned an observation that is a list, not a numpy array of shape \(3,\) float32: "
            r"np.asarray\(obs, np.float32\) in the env fixes it$")
    with pytest.raises(BadObservation, match=says):
        check_obs([0.0, 1.0, 2.0], (3,), "float32", "step")
    check_obs(np.zeros(3), (3,), "float32", "step")  # float64 arrays are fine: the slots cast them


def test_an_env_that_hangs_in_the_launchers_check_is_one_line_after_the_wait_timeout(tmp_path):
    """The launcher resets and steps its env once before anything starts; an env that hung there hung the
    command, silent (nothing is printed before the check)."""
    proc = train(tmp_path, "faulty_envs:HangsAtFirstReset-v0", "--wait-timeout-s", "2")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "actorlearner: error: the env faulty_envs:HangsAtFirstReset-v0 was not made, reset and stepped once within "
        "2 s (the launcher's check of it, before anything starts): does it hang? --wait-timeout-s gives it longer"]
    assert proc.took < 30 and not (tmp_path / "run").exists()
