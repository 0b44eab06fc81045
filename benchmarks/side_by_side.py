"""This checkout against another (e.g. the previous main) in the same run: CartPole-v1 time to solve on defaults,
seed by seed interleaved, start-up against a bare `import tensorflow`, and the learner's one-core capacity.

    git worktree add /tmp/base <commit>
    python benchmarks/side_by_side.py --baseline /tmp/base [--seeds 1,2,3,4,5]
    python benchmarks/side_by_side.py --baseline /tmp/base --capacity-only

Each tree runs its own code (`python -m actorlearner` with the tree as working directory; the learner capacity
through the tree's own benchmarks/broadcast.py), in the same Python environment unless `--baseline-python` names
the baseline's own (a virtual environment where it was installed as its README says, so that it gets the
dependencies its pyproject allows today, as a user's install of it would). A bare `import tensorflow` is timed
in each environment.

The learner capacity is measured in turns: one process per tree stays up, both on the same core, and they take
turns of --capacity-window seconds, the order swapped every round, so each round's two figures are seconds apart
and the ratio is the median of the rounds' ratios. These VMs' speed drifts by tens of percent within a minute;
runs of 5 s in fresh processes one after the other gave ratios of 1.09-1.89 for the same two trees (median
1.45), turns of 1 s 1.30-1.45 once the VM was steady.
"""

import argparse
import json
import os
import selectors
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


# A capacity process: the tree's own broadcast.learner_capacity, one window per "go" line, its samples/s printed.
CAPACITY_CHILD = """
import sys
sys.path[:0] = [{tree!r}, {bench!r}]
import broadcast
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() != "go":
        break
    print("samples_per_s", broadcast.learner_capacity([{batch}], {window})[0]["samples_per_s"], flush=True)
"""


class CapacityTurns:
    """One learner-capacity process per tree, taking turns: `turn(name)` runs one window in that tree's process
    (the others wait on their stdin) and returns its samples/s."""

    def __init__(self, pythons: dict, trees: dict, batch: int, window: float, timeout: float = 300.0):
        self.timeout = timeout
        self.procs = {}
        try:
            for name, tree in trees.items():
                code = CAPACITY_CHILD.format(tree=tree, bench=os.path.join(tree, "benchmarks"), batch=batch,
                                             window=window)
                self.procs[name] = subprocess.Popen(
                    [pythons[name], "-c", code], cwd=tree, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
            for name in self.procs:
                self._line(name, "ready")
        except BaseException:
            self.close()
            raise

    def _line(self, name: str, prefix: str) -> str:
        """The process's next line that starts with `prefix` (others, e.g. a library's notices, are skipped),
        waited for at most self.timeout, checking that the process is alive."""
        proc, deadline = self.procs[name], time.monotonic() + self.timeout
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while True:
                if sel.select(timeout=1.0):
                    line = proc.stdout.readline()
                    if not line:
                        raise RuntimeError(f"the {name} capacity process ended (status {proc.wait(5)})")
                    if line.startswith(prefix):
                        return line.strip()
                elif proc.poll() is not None:
                    raise RuntimeError(f"the {name} capacity process ended (status {proc.returncode})")
                elif time.monotonic() > deadline:
                    raise RuntimeError(f"the {name} capacity process gave nothing in {self.timeout:.0f} s")

    def turn(self, name: str) -> float:
        self.procs[name].stdin.write("go\n")
        self.procs[name].stdin.flush()
        return float(self._line(name, "samples_per_s ").split()[1])

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def capacity_rounds(pythons: dict, trees: dict, rounds: int, window: float) -> dict:
    """samples/s per tree for each round (the order swapped every round), printed as they come."""
    caps = {k: [] for k in trees}
    if rounds <= 0:
        return caps
    turns = CapacityTurns(pythons, trees, 64, window)
    try:
        for r in range(rounds):
            for name in (list(trees) if r % 2 == 0 else list(reversed(trees))):
                caps[name].append(turns.turn(name))
            print(f"capacity round {r + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in caps.items())
                  + f" samples/s, this / baseline {caps['this'][-1] / caps['baseline'][-1]:.2f}", flush=True)
    finally:
        turns.close()
    return caps


def capacity_ratio(caps: dict) -> tuple[float, float, float]:
    """(median, min, max) of the rounds' this / baseline ratios."""
    ratios = [t / b for t, b in zip(caps["this"], caps["baseline"])]
    return statistics.median(ratios), min(ratios), max(ratios)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", required=True, help="the other checkout (a git worktree)")
    p.add_argument("--baseline-python", default=sys.executable,
                   help="the Python that runs the baseline (default: this one)")
    p.add_argument("--seeds", default="1,2,3,4,5")
    p.add_argument("--max-seconds", type=float, default=60.0)
    p.add_argument("--capacity-rounds", type=int, default=16,
                   help="rounds of learner-capacity turns (0: none)")
    p.add_argument("--capacity-window", type=float, default=1.0, help="seconds of one capacity turn")
    p.add_argument("--capacity-only", action="store_true", help="only the learner capacity: a minute or two")
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
    caps = capacity_rounds(pythons, trees, a.capacity_rounds, a.capacity_window)
    ratio = capacity_ratio(caps) if caps["this"] else (float("nan"),) * 3
    capacity_line = (f"learner capacity {ratio[0]:.2f} (median of {len(caps['this'])} rounds' ratios, "
                     f"{ratio[1]:.2f}-{ratio[2]:.2f}; batch 64, one core)")
    if a.capacity_only:
        for name in trees:
            print(f"{name}: median {statistics.median(caps[name]):,.0f} samples/s")
        print(f"\nthis / baseline: {capacity_line}")
        return
    bare = {k: statistics.median(v) for k, v in imports.items()}
    for name in trees:
        print(f"\nbare `import tensorflow` ({name}'s Python): median {bare[name]:.2f} s "
              f"({', '.join(f'{x:.2f}' for x in imports[name])})", end="")
    print()
    print("| tree | solved | time to solve, median (range) | startup_s median | startup - its bare import | "
          "learner samples/s, batch 64, one core (median of rounds) |\n|---|---|---|---|---|---|")
    med = {}
    for name in trees:
        times = [r["solved_at_s"] for r in runs[name] if r["solved"]]
        start = statistics.median(r["startup_s"] for r in runs[name])
        med[name] = statistics.median(times) if times else float("nan")
        spread = f"({min(times):.2f}-{max(times):.2f})" if times else ""
        cap = statistics.median(caps[name]) if caps[name] else float("nan")  # --capacity-rounds 0
        print(f"| {name} | {len(times)}/{len(runs[name])} | {med[name]:.2f} s {spread} | {start:.2f} s | "
              f"{start - bare[name]:+.2f} s | {cap:,.0f} |")
    print(f"\nthis / baseline: time to solve {med['this'] / med['baseline']:.2f}, {capacity_line}")


if __name__ == "__main__":
    main()
