"""`actorlearner plot`: learning curves of one or more runs, from their metrics.jsonl and evals.jsonl, as one
PNG."""

from __future__ import annotations

import json
import os

from .config import ConfigError
from .reporting import warn
from .run_files import atomic_file

SIZE_IN, DPI = (12.0, 4.5), 100  # the PNG is 1200 x 450 pixels


def _records(path: str) -> list[dict]:
    """The JSON lines of `path`; [] where the file does not exist. A last line without its newline is one being
    written (a run in progress) and is left out; a line cut in the middle (a run killed while writing it, a full
    disk, then resumed) is skipped with a warning. A file none of whose lines is JSON is an error."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"could not read {path}: {getattr(e, 'strerror', None) or e}") from None
    lines = text.split("\n")[:-1]  # the part after the last newline is still being written
    records, bad = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            bad.append((number, e))
    if bad and not records:
        raise ConfigError(f"{path} is not JSON lines (line {bad[0][0]}: {bad[0][1]})")
    if bad:
        warn(f"skipped {len(bad)} unreadable line{'s' if len(bad) > 1 else ''} of {path} (line {bad[0][0]}: "
             f"{bad[0][1]}), as a run cut while writing leaves")
    return records


def read_curve(run_dir: str) -> dict:
    """{"name", "time_s", "env_steps", "returns", "evals", "target"} of a run, "evals" being its evaluations
    ({"time_s", "env_steps", "return_mean", "return_std"} each); ConfigError if it has neither a finished
    training episode nor an evaluation. A run whose episodes are long (CarRacing: 1,000 steps) can have
    evaluations before any training episode has finished in every actor's count."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        raise ConfigError(f"{path} not found: is {run_dir} a run directory?")
    points = [r for r in _records(path) if r.get("mean_return_100") is not None]
    evals = [r for r in _records(os.path.join(run_dir, "evals.jsonl")) if r.get("return_mean") is not None]
    if not points and not evals:
        raise ConfigError(f"{run_dir} has no finished episodes or evaluations to plot yet")
    target = None
    summary = os.path.join(run_dir, "summary.json")
    if os.path.exists(summary):
        try:
            with open(summary, "rb") as f:
                target = json.loads(f.read().decode("utf-8")).get("target_return")
        except (ValueError, AttributeError):  # not JSON, or not a mapping: the curves need no summary
            warn(f"{summary} is unreadable: its run is plotted without the solved threshold")
    return {"name": os.path.basename(os.path.normpath(run_dir)), "time_s": [r["time_s"] for r in points],
            "env_steps": [r["env_steps"] for r in points], "returns": [r["mean_return_100"] for r in points],
            "evals": evals, "target": target}


def threshold_lines(curves: list[dict], colours: list) -> list[tuple]:
    """(target, colour, legend label) of each solved threshold among the curves (read_curve's, drawn in `colours`):
    one threshold is black, "solved (475)"; runs of tasks with different thresholds get each in the colour of its
    first run, named: "solved (8): taxi" (two black lines could not be told apart)."""
    runs: dict = {}
    for c, colour in zip(curves, colours):
        if c["target"] is not None:
            runs.setdefault(c["target"], []).append((c["name"], colour))
    if len(runs) == 1:
        return [(target, "k", f"solved ({target:g})") for target in runs]
    return [(target, named[0][1], f"solved ({target:g}): {', '.join(name for name, _ in named)}")
            for target, named in runs.items()]


def plot_runs(run_dirs: list[str], out: str) -> str:
    """Mean return of the last 100 episodes against env steps and against wall time, the runs overlaid and
    named, each evaluation a point with its standard deviation in the run's colour, the solved threshold
    dashed; writes `out` (a .png file, or an existing directory: curves.png in it) and returns its path."""
    out = os.path.join(out, "curves.png") if os.path.isdir(out) else out
    if not out.lower().endswith(".png"):  # so that a slip (-o RUN_DIR/config.json) overwrites no other file
        raise ConfigError(f"--out {out}: the plot is a PNG image: give a path ending in .png (or a directory)")
    curves = [read_curve(d) for d in run_dirs]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("plot needs matplotlib: pip install 'actorlearner[plot]'") from None
    fig, axes = plt.subplots(1, 2, figsize=SIZE_IN, dpi=DPI)
    for ax, x, label in ((axes[0], "env_steps", "env steps"), (axes[1], "time_s", "seconds from command start")):
        colours = []
        for c in curves:
            few = len(c["returns"]) < 30  # a short run has a point a second: show them
            (line,) = ax.plot(c[x], c["returns"], label=c["name"], lw=1.2, marker="o" if few else None, ms=3)
            colours.append(line.get_color())
            if c["evals"]:
                ax.errorbar([e[x] for e in c["evals"]], [e["return_mean"] for e in c["evals"]],
                            yerr=[e.get("return_std", 0.0) for e in c["evals"]], fmt="s", ms=4, capsize=2,
                            color=line.get_color(), label=f"{c['name']} (evaluations)")
        for target, colour, text in threshold_lines(curves, colours):
            ax.axhline(target, color=colour, ls="--", lw=0.8, label=text)
        ax.set_xlabel(label)
        ax.set_ylabel("mean return (last 100 episodes; evaluations)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    with atomic_file(out, "wb") as f:  # an interrupted plot leaves the previous PNG, not half of one
        fig.savefig(f, format="png", dpi=DPI)
    plt.close(fig)
    return out
