"""--reproducible: the same config and seed, run twice with two actor processes for 200 learner steps, give
bit-identical weights and the same metrics rows (times aside)."""

import json
import subprocess
import sys

import numpy as np

from conftest import ROOT

STEPS = 200
FLAGS = ["--env", "CartPole-v1", "--seed", "3", "--reproducible", "--num-actors", "2", "--envs-per-actor", "16",
         "--batch-size", "32", "--max-steps", str(STEPS * 32 * 20), "--no-stop-at-target", "--eval-every-s", "0"]
ON_THE_CLOCK = ("time_s", "env_steps_per_s")


def run(tmp_path, name, *extra):
    out = tmp_path / name
    proc = subprocess.run([sys.executable, "-m", "actorlearner", "train", *FLAGS, *extra, "--run-dir", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    with np.load(out / "policy.npz") as saved:
        weights = saved["flat"].copy()
    rows = [{k: v for k, v in json.loads(line).items() if k not in ON_THE_CLOCK}
            for line in (out / "metrics.jsonl").read_text().splitlines()]
    return weights, rows, json.loads((out / "summary.json").read_text())


def test_two_runs_are_identical(tmp_path):
    w1, rows1, s1 = run(tmp_path, "a")
    w2, rows2, s2 = run(tmp_path, "b")
    assert s1["learner_steps"] == s2["learner_steps"] == STEPS
    assert len(rows1) >= STEPS // 10 and rows1 == rows2
    assert rows1[-1]["episodes"] > 100 and rows1[-1]["mean_return_100"] > 30  # it learned something
    np.testing.assert_array_equal(w1, w2)
    for key in ("env_steps", "episodes", "mean_return_100", "policy_lag_mean"):
        assert s1[key] == s2[key], key


def test_a_reproducible_run_that_stops_on_the_clock_is_warned():
    from actorlearner.config import Config
    from actorlearner.preflight import clock_stop_warning

    said = clock_stop_warning(Config(reproducible=True, max_seconds=5))
    assert said.startswith("--reproducible with --max-seconds 5: a stop at a time comes at a different step")
    assert clock_stop_warning(Config(reproducible=True, max_steps=20_000)) is None
    assert clock_stop_warning(Config(max_seconds=5)) is None
