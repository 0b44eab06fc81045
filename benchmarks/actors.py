"""Policy lag and time to solve against the number of actor processes (flow.py bounds the lag), per preset.

With more actors than a batch needs, every unroll slot used to circulate: 8 actors on 2 cores ran CartPole at a
mean lag of ~10 learner steps and Acrobot at ~4.7, and most seeds failed. This prints, for each task and actor
count, the seeds solved, the median time to solve and the mean policy lag, so that a change to the flow control
(or a `--baseline` checkout without it, run in the same session) can be compared:

    python benchmarks/actors.py [--tasks CartPole-v1,Acrobot-v1] [--actors 1,2,4,8] [--seeds 1,2,3]
    python benchmarks/actors.py --baseline /tmp/base     # the same runs with another checkout's code, alternated
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from common import parse_seeds

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train(tree: str, env: str, actors: int, seed: int, max_seconds: float) -> dict:
    """One run of `actorlearner train` with `tree`'s code (its directory as working directory); its summary."""
    with tempfile.TemporaryDirectory() as d:
        run_dir = os.path.join(d, "run")
        subprocess.run([sys.executable, "-m", "actorlearner", "train", "--env", env, "--num-actors", str(actors),
                        "--seed", str(seed), "--max-seconds", str(max_seconds), "--run-dir", run_dir, "--quiet"],
                       cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=max_seconds + 120)
        with open(os.path.join(run_dir, "summary.json")) as f:
            return json.load(f)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default="CartPole-v1,Acrobot-v1")
    p.add_argument("--actors", default="1,2,4,8", help="actor counts (comma separated)")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--max-seconds", type=float, default=60.0)
    p.add_argument("--baseline", help="another checkout (a git worktree): its runs alternate with this one's")
    a = p.parse_args()
    trees = {"this": HERE, **({"baseline": os.path.abspath(a.baseline)} if a.baseline else {})}
    print("| code | task | actors | solved | time to solve, median | mean policy lag (median of seeds) |\n"
          "|---|---|---|---|---|---|")
    for env in a.tasks.split(","):
        for n in (int(x) for x in a.actors.split(",")):
            runs = {name: [] for name in trees}
            for seed in parse_seeds(a.seeds):
                for name, tree in trees.items():
                    runs[name].append(train(tree, env, n, seed, a.max_seconds))
            for name, summaries in runs.items():
                times = [s["solved_at_s"] for s in summaries if s["solved"]]
                lags = [s["policy_lag_mean"] for s in summaries if s.get("policy_lag_mean") is not None]
                when = f"{statistics.median(times):.1f} s" if times else "-"
                lag = f"{statistics.median(lags):.2f}" if lags else "-"
                print(f"| {name} | {env} | {n} | {len(times)}/{len(summaries)} | {when} | {lag} |", flush=True)


if __name__ == "__main__":
    main()
