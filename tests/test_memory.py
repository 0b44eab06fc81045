"""Memory tasks: the cue-memory task (a cue shown once, asked for 20 steps later) is solved by the LSTM policy
and not by the feed-forward one, so the task cannot silently become solvable without memory; recurrent
training works in serial mode and with actor processes alike."""

import json
import re
import subprocess
import sys

import pytest

from conftest import ROOT, spawned_pids


def train_cli(tmp_path, *args):
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "actorlearner", "train", "--env", "actorlearner/CueMemory-v0",
                           "--seed", "1", "--eval-every-s", "0", "--run-dir", str(run), *args],
                          capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr, json.loads((run / "summary.json").read_text())  # warnings go to stderr


@pytest.mark.parametrize("mode", [[], ["--serial"]], ids=["processes", "serial"])
def test_lstm_remembers_the_cue(tmp_path, mode):
    """The cue is found after a plateau at chance whose length varies (seeds 1-24, 2026-12-07: 250 K-1.4 M env
    steps, 12-36 s alone). With actor processes it once found it at 15 s, lost it within a second and sat at
    chance for the remaining 2.1 M steps of a 60-s bound (CI beside another test; learner and actors agreed on
    the action probabilities then, rho 1.00, so the actors' LSTM state was the learner's). Hence 120 s: a run
    that solves stops at its target, so the bound costs nothing then."""
    before = spawned_pids()
    out, summary = train_cli(tmp_path, "--max-seconds", "120", *mode)
    assert "(preset cue-memory)" in out and "mlp + LSTM core" in out, out[:2000]
    # Solved means the last 100 episodes and 20 fresh confirmation episodes both average >= 0.95 of the
    # maximum of 1; chance (no memory) is 0.5.
    assert summary["solved"] and summary["confirm_return_mean"] >= 0.95, out[-3000:]
    if not mode:  # `actorlearner eval` steps the state too: without it the policy would be at chance (0.5)
        proc = subprocess.run([sys.executable, "-m", "actorlearner", "eval", str(tmp_path / "run"), "--episodes",
                               "40", "--deterministic"], capture_output=True, text=True, timeout=120, cwd=ROOT)
        found = re.search(r"return ([-\d.]+)", proc.stdout)
        assert proc.returncode == 0 and found and float(found.group(1)) >= 0.9, proc.stdout + proc.stderr[-2000:]
    assert spawned_pids() - before == set()


def test_feed_forward_policy_cannot_beat_chance(tmp_path):
    # The LSTM solves it in 310-390 K env steps (seed 1, serial and processes): 2.5x that, by steps, not seconds,
    # so a slow day gives the control no less of a chance (a budget of 15 s ran 3.9 M steps here, at 0.44).
    out, summary = train_cli(tmp_path, "--core", "none", "--max-steps", "1000000", "--max-seconds", "120")
    assert "not used by this run" not in out  # the preset's --core-size is not the user's to be warned about
    assert summary["env_steps"] >= 1_000_000 and not summary["solved"] and summary["mean_return_100"] < 0.75, summary
