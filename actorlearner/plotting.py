"""`actorlearner plot`: learning curves of one or more runs, from their metrics.jsonl, as one PNG."""

from __future__ import annotations

import json
import os

from .config import ConfigError

SIZE_IN, DPI = (12.0, 4.5), 100  # the PNG is 1200 x 450 pixels


def read_curve(run_dir: str) -> dict:
    """{"name", "time_s", "env_steps", "returns", "target"} of a run; ConfigError if it has no metrics."""
    path = os.path.join(run_dir, "metrics.jsonl")
    try:
        with open(path) as f:
            records = [json.loads(line) for line in f if line.strip()]
    except OSError:
        raise ConfigError(f"{path} not found: is {run_dir} a run directory?") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not JSON lines ({e})") from None
    points = [r for r in records if r.get("mean_return_100") is not None]
    if not points:
        raise ConfigError(f"{run_dir} has no finished episodes to plot yet")
    target = None
    summary = os.path.join(run_dir, "summary.json")
    if os.path.exists(summary):
        with open(summary) as f:
            target = json.load(f).get("target_return")
    return {"name": os.path.basename(os.path.normpath(run_dir)), "time_s": [r["time_s"] for r in points],
            "env_steps": [r["env_steps"] for r in points], "returns": [r["mean_return_100"] for r in points],
            "target": target}


def plot_runs(run_dirs: list[str], out: str) -> str:
    """Mean return of the last 100 episodes against env steps and against wall time, the runs overlaid and
    named, the solved threshold dashed; writes `out` (PNG) and returns it."""
    curves = [read_curve(d) for d in run_dirs]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("plot needs matplotlib: pip install 'actorlearner[plot]'") from None
    fig, axes = plt.subplots(1, 2, figsize=SIZE_IN, dpi=DPI)
    for ax, x, label in ((axes[0], "env_steps", "env steps"), (axes[1], "time_s", "seconds from command start")):
        for c in curves:
            few = len(c["returns"]) < 30  # a short run has a point a second: show them
            ax.plot(c[x], c["returns"], label=c["name"], lw=1.2, marker="o" if few else None, ms=3)
        for target in {c["target"] for c in curves if c["target"] is not None}:
            ax.axhline(target, color="k", ls="--", lw=0.8, label=f"solved ({target:g})")
        ax.set_xlabel(label)
        ax.set_ylabel("mean return, last 100 episodes")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return out
