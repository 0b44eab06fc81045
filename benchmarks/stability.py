"""Stability after solving: does a solved policy stay solved if training goes on?

For each task, each seed trains with its preset for --seconds (about 3x its median solve time) with
--no-stop-at-target, evaluating every --eval-every-s seconds (RUN_DIR/evals.jsonl). After the first
confirmed solve (summary.json's solved_at_s) it reports the share of evaluations at or above the target and
the worst one, and plots eval return against time for every seed (the dashed line: the target).

    python benchmarks/stability.py [--tasks cartpole,acrobot] [--seeds 1-10]
"""

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile

from common import ROOT, parse_seeds, write_outputs

# task: (target, seconds of training: about 3x the median solve time on 2 cores)
TASKS = {"cartpole": (475.0, 18), "acrobot": (-100.0, 12), "pendulum": (-200.0, 45), "lunarlander": (200.0, 150)}


def run(task: str, seed: int, seconds: float, eval_every: float, episodes: int, greedy: bool,
        flags: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as d:
        run_dir = os.path.join(d, "run")
        proc = subprocess.run([sys.executable, "-m", "actorlearner", "train", "--preset", task, "--seed", str(seed),
                               "--max-seconds", str(seconds), "--no-stop-at-target", "--eval-every-s",
                               str(eval_every), "--eval-episodes", str(episodes), "--run-dir", run_dir, "--quiet",
                               *([] if greedy else ["--no-eval-greedy"]), *flags],
                              capture_output=True, text=True, cwd=ROOT, timeout=seconds + 120)
        if proc.returncode != 0:
            raise RuntimeError(f"{task} seed {seed} failed: {proc.stderr[-2000:]}")
        with open(os.path.join(run_dir, "summary.json")) as f:
            summary = json.load(f)
        evals = []
        if os.path.exists(os.path.join(run_dir, "evals.jsonl")):
            with open(os.path.join(run_dir, "evals.jsonl")) as f:
                evals = [json.loads(line) for line in f if line.strip()]
    return {"seed": seed, "solved_at_s": summary["solved_at_s"], "evals": evals}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="cartpole,acrobot")
    p.add_argument("--seeds", default="1-10")
    p.add_argument("--eval-every-s", type=float, default=2.0)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--seconds-scale", type=float, default=1.0, help="multiplies each task's training time")
    p.add_argument("--greedy", action="store_true", help="evaluate the greedy policy (default: sampled actions, "
                   "as the confirmation and `actorlearner eval` play)")
    p.add_argument("--flags", default="", help="more flags for every run, e.g. '--learning-rate 1e-3'")
    p.add_argument("--out", default="bench_out")
    a = p.parse_args()
    results = {}
    print("| task | seeds confirmed | evaluations after the confirmation | at or above the target | worst |\n"
          "|---|---|---|---|---|")
    for task in a.tasks.split(","):
        target, seconds = TASKS[task]
        runs = [run(task, s, seconds * a.seconds_scale, a.eval_every_s, a.eval_episodes, a.greedy,
                    shlex.split(a.flags)) for s in parse_seeds(a.seeds)]
        after = [e["return_mean"] for r in runs if r["solved_at_s"] is not None
                 for e in r["evals"] if e["time_s"] > r["solved_at_s"]]
        ok = sum(x >= target for x in after)
        confirmed = sum(r["solved_at_s"] is not None for r in runs)
        share = ok / len(after) if after else float("nan")
        worst = min(after) if after else float("nan")
        results[task] = {"target": target, "seconds": seconds * a.seconds_scale, "runs": runs,
                         "share_at_target": share, "worst": worst, "evaluations": len(after)}
        print(f"| {task} | {confirmed}/{len(runs)} | {len(after)} | {ok} ({share:.0%}) | {worst:.1f} |", flush=True)
        for r in runs:
            bad = [e for e in r["evals"] if r["solved_at_s"] is not None and e["time_s"] > r["solved_at_s"]
                   and e["return_mean"] < target]
            if bad:
                print(f"  seed {r['seed']}: below the target after solving at "
                      + ", ".join(f"{e['time_s']:.0f} s ({e['return_mean']:.0f})" for e in bad))
    if results:
        print("median share:", statistics.median(r["share_at_target"] for r in results.values()))

    def plot(plt):
        fig, axes = plt.subplots(1, len(results), figsize=(4.5 * len(results), 3.5), squeeze=False)
        for ax, (task, r) in zip(axes[0], results.items()):
            for run_ in r["runs"]:
                ax.plot([e["time_s"] for e in run_["evals"]], [e["return_mean"] for e in run_["evals"]], lw=0.8)
                if run_["solved_at_s"] is not None:
                    ax.axvline(run_["solved_at_s"], color="0.8", lw=0.5)
            ax.axhline(r["target"], color="k", ls="--", lw=0.8)
            ax.set_title(f"{task}: eval return (grey: confirmations)")
            ax.set_xlabel("seconds from command start")
        return fig

    write_outputs("stability", a.out, results, plot)


if __name__ == "__main__":
    main()
