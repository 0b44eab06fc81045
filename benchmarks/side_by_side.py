"""This checkout against another (e.g. the previous main) in the same run: CartPole-v1 time to solve on defaults,
seed by seed interleaved, start-up against a bare `import tensorflow`, and the learner's one-core capacity.

    git worktree add /tmp/base <commit>
    python benchmarks/side_by_side.py --baseline /tmp/base [--seeds 1,2,3,4,5]
    python benchmarks/side_by_side.py --baseline /tmp/base --capacity-only --capacity-repeats 6

Each tree runs its own code (`python -m actorlearner` with the tree as working directory; the learner capacity
through the tree's own benchmarks/broadcast.py), in the same Python environment unless `--baseline-python` names
the baseline's own (a virtual environment where it was installed as its README says, so that it gets the
dependencies its pyproject allows today, as a user's install of it would). A bare `import tensorflow` is timed
in each environment.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def solve(python: str, tree: str, seed: int, max_seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as d:
        run_dir = os.path.join(d, "run")
        proc = subprocess.run([python, "-m", "actorlearner", "train", "--env", "CartPole-v1", "--seed",
                               str(seed), "--max-seconds", str(max_seconds), "--run-dir", run_dir, "--quiet"],
                              cwd=tree, capture_output=True, text=True, timeout=max_seconds + 120)
        if proc.returncode != 0:
            raise RuntimeError(f"{tree} seed {seed}: {proc.stderr[-2000:]}")
        with open(os.path.join(run_dir, "summary.json")) as f:
            return json.load(f)


def import_tf_s(python: str) -> float:
    t = time.monotonic()
    subprocess.run([python, "-c", "import tensorflow"], check=True, capture_output=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    return time.monotonic() - t


def capacity(python: str, tree: str, batch: int, seconds: float) -> float:
    code = (f"import sys; sys.path[:0] = [{tree!r}, {os.path.join(tree, 'benchmarks')!r}]; import broadcast; "
            f"print(broadcast.learner_capacity([{batch}], {seconds})[0]['samples_per_s'])")
    out = subprocess.run([python, "-c", code], cwd=tree, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", required=True, help="the other checkout (a git worktree)")
    p.add_argument("--baseline-python", default=sys.executable,
                   help="the Python that runs the baseline (default: this one)")
    p.add_argument("--seeds", default="1,2,3,4,5")
    p.add_argument("--max-seconds", type=float, default=60.0)
    p.add_argument("--capacity-repeats", type=int, default=3)
    p.add_argument("--capacity-only", action="store_true",
                   help="only the learner capacity (alternated --capacity-repeats times): a few minutes")
    a = p.parse_args()
    trees = {"baseline": os.path.abspath(a.baseline), "this": HERE}
    pythons = {"baseline": a.baseline_python, "this": sys.executable}
    runs = {k: [] for k in trees}
    imports = {k: [] for k in trees}
    for seed in ([] if a.capacity_only else (int(s) for s in a.seeds.split(","))):
        for name, tree in trees.items():
            imports[name].append(import_tf_s(pythons[name]))
            s = solve(pythons[name], tree, seed, a.max_seconds)
            runs[name].append(s)
            print(f"seed {seed} {name}: solved {s['solved']} at {s['solved_at_s']} s, startup "
                  f"{s['startup_s']:.2f} s, {s['train_env_steps_per_s']:,.0f} steps/s", flush=True)
    caps = {k: [] for k in trees}
    for _ in range(a.capacity_repeats):  # alternated, as the machine's speed drifts
        for name, tree in trees.items():
            caps[name].append(capacity(pythons[name], tree, 64, 5.0))
            print(f"capacity {name}: {caps[name][-1]:,.0f} samples/s", flush=True)
    if a.capacity_only:
        med = {k: statistics.median(v) for k, v in caps.items()}
        for name in trees:
            print(f"{name}: median {med[name]:,.0f} samples/s ({', '.join(f'{c:,.0f}' for c in caps[name])})")
        print(f"\nthis / baseline: learner capacity {med['this'] / med['baseline']:.2f} (batch 64, one core)")
        return
    bare = {k: statistics.median(v) for k, v in imports.items()}
    for name in trees:
        print(f"\nbare `import tensorflow` ({name}'s Python): median {bare[name]:.2f} s "
              f"({', '.join(f'{x:.2f}' for x in imports[name])})", end="")
    print()
    print("| tree | solved | time to solve, median (range) | startup_s median | startup - its bare import | "
          "learner samples/s, batch 64, one core (median of runs) |\n|---|---|---|---|---|---|")
    med = {}
    for name in trees:
        times = [r["solved_at_s"] for r in runs[name] if r["solved"]]
        start = statistics.median(r["startup_s"] for r in runs[name])
        med[name] = (statistics.median(times) if times else float("nan"),
                     statistics.median(caps[name]) if caps[name] else float("nan"))  # --capacity-repeats 0
        spread = f"({min(times):.2f}-{max(times):.2f})" if times else ""
        each = ", ".join(f"{c:,.0f}" for c in caps[name])
        print(f"| {name} | {len(times)}/{len(runs[name])} | {med[name][0]:.2f} s {spread} | {start:.2f} s | "
              f"{start - bare[name]:+.2f} s | {med[name][1]:,.0f} ({each}) |")
    print(f"\nthis / baseline: time to solve {med['this'][0] / med['baseline'][0]:.2f}, "
          f"learner capacity {med['this'][1] / med['baseline'][1]:.2f}")


if __name__ == "__main__":
    main()
