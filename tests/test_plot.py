"""`actorlearner plot`: a PNG of learning curves, several runs overlaid."""

import json
import struct
import subprocess
import sys

import pytest

from conftest import ROOT


def fake_run(path, returns, target=475.0):
    path.mkdir()
    with open(path / "metrics.jsonl", "w") as f:
        for i, r in enumerate(returns):
            f.write(json.dumps({"time_s": 0.5 * i, "env_steps": 1000 * i, "mean_return_100": r}) + "\n")
    (path / "summary.json").write_text(json.dumps({"target_return": target}))
    return str(path)


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def plot_cli(*args):
    return subprocess.run([sys.executable, "-m", "actorlearner", "plot", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_two_runs_overlaid_in_a_png_of_the_expected_size(tmp_path):
    a = fake_run(tmp_path / "fast", [None, 20, 200, 480])
    b = fake_run(tmp_path / "slow", [10, 30, 60, 120, 300])
    out = tmp_path / "curves.png"
    proc = plot_cli(a, b, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert png_size(out) == (1200, 450)

    from actorlearner.plotting import read_curve

    assert read_curve(a)["returns"] == [20, 200, 480] and read_curve(b)["name"] == "slow"


def test_runs_of_tasks_with_different_thresholds_get_each_in_its_runs_colour():
    from actorlearner.plotting import threshold_lines

    curves = [{"name": n, "target": t} for n, t in (("cart", 475.0), ("cart2", 475.0), ("taxi", 8.0), ("x", None))]
    assert threshold_lines(curves[:2], ["C0", "C1"]) == [(475.0, "k", "solved (475)")]
    assert threshold_lines(curves, ["C0", "C1", "C2", "C3"]) == [(475.0, "C0", "solved (475): cart, cart2"),
                                                                 (8.0, "C2", "solved (8): taxi")]


def test_plot_of_a_missing_run_is_one_line(tmp_path):
    proc = plot_cli(str(tmp_path / "nope"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"actorlearner: error: {tmp_path / 'nope'}/metrics.jsonl not found: is {tmp_path / 'nope'} a run directory?"]


def test_evaluations_are_plotted_and_enough_without_a_finished_episode(tmp_path):
    """A run of long episodes (CarRacing) can have evaluations before its first 100-episode mean."""
    run = fake_run(tmp_path / "long", [None, None])
    with open(tmp_path / "long" / "evals.jsonl", "w") as f:
        for i, r in enumerate([-40.0, 13.4]):
            f.write(json.dumps({"time_s": 30.0 * i, "env_steps": 5000 * i, "return_mean": r, "return_std": 9.0,
                                "episodes": 5}) + "\n")
    out = tmp_path / "curves.png"
    proc = plot_cli(run, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert png_size(out) == (1200, 450)

    from actorlearner.plotting import read_curve

    curve = read_curve(run)
    assert curve["returns"] == [] and [e["return_mean"] for e in curve["evals"]] == [-40.0, 13.4]


def test_a_run_with_nothing_to_plot_says_so(tmp_path):
    run = fake_run(tmp_path / "new", [None])
    proc = plot_cli(run)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"actorlearner: error: {run} has no finished episodes or evaluations to plot yet"


def test_a_line_being_written_is_left_out_and_a_cut_one_skipped_with_a_warning(tmp_path, capsys):
    """`plot` of a run in progress could meet its last line half written, and a run killed while writing (a full
    disk), then resumed, has a cut line in the middle: either stopped the plot with 'not JSON lines'."""
    from actorlearner.config import ConfigError
    from actorlearner.plotting import read_curve

    run = fake_run(tmp_path / "live", [10, 20, 30])
    metrics = tmp_path / "live" / "metrics.jsonl"
    with open(metrics, "a") as f:
        f.write('{"time_s": 1.5, "env_st')  # being written: no newline yet
    assert read_curve(run)["returns"] == [10, 20, 30]
    assert capsys.readouterr().err == ""
    with open(metrics, "a") as f:  # cut there, then a resumed run's lines appended
        f.write(json.dumps({"time_s": 2.0, "env_steps": 4000, "mean_return_100": 40}) + "\n")
    assert read_curve(run)["returns"] == [10, 20, 30]  # the cut line swallowed the next one's start
    with open(metrics, "a") as f:
        f.write(json.dumps({"time_s": 2.5, "env_steps": 5000, "mean_return_100": 50}) + "\n")
    assert read_curve(run)["returns"] == [10, 20, 30, 50]
    err = capsys.readouterr().err
    assert f"skipped 1 unreadable line of {metrics} (line 4: " in err
    metrics.write_text("not json\n")
    with pytest.raises(ConfigError, match=r"metrics.jsonl is not JSON lines \(line 1: "):
        read_curve(run)


def test_out_is_a_png_or_a_directory_to_put_one_in(tmp_path):
    """-o RUN_DIR was a traceback (IsADirectoryError), and -o RUN_DIR/config.json overwrote the config with a PNG."""
    run = fake_run(tmp_path / "run", [10, 30])
    proc = plot_cli(run, "-o", run)
    assert proc.returncode == 0 and proc.stdout.strip() == f"wrote {run}/curves.png", proc.stderr
    assert png_size(f"{run}/curves.png") == (1200, 450)
    config = tmp_path / "run" / "summary.json"
    before = config.read_text()
    proc = plot_cli(run, "-o", str(config))
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"actorlearner: error: --out {config}: the plot is a PNG image: give a path ending in .png (or a directory)")
    assert config.read_text() == before


def test_an_unreadable_summary_costs_only_the_threshold_line(tmp_path):
    run = fake_run(tmp_path / "run", [10, 30])
    (tmp_path / "run" / "summary.json").write_bytes(b'{"target_ret')  # cut short by a full disk
    proc = plot_cli(run, "-o", str(tmp_path / "c.png"))
    assert proc.returncode == 0, proc.stderr
    assert "summary.json is unreadable: its run is plotted without the solved threshold" in proc.stderr
    assert png_size(tmp_path / "c.png") == (1200, 450)
