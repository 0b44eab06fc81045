"""Time to solve CartPole-v1 on defaults: `actorlearner train --env CartPole-v1 --seed S` for each seed.

    python benchmarks/solve_time.py [--seeds 1,2,3,4,5] [--env CartPole-v1]
"""

import argparse
import os
import statistics
import tempfile

from common import run_train, write_outputs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--seeds", default="1,2,3,4,5")
    p.add_argument("--max-seconds", type=float, default=60.0)
    p.add_argument("--out", default="bench_out")
    a = p.parse_args()
    runs = []
    for seed in (int(s) for s in a.seeds.split(",")):
        with tempfile.TemporaryDirectory() as d:
            s = run_train(["--env", a.env, "--seed", str(seed), "--max-seconds", str(a.max_seconds)],
                          os.path.join(d, "run"))
        runs.append({k: s[k] for k in ("seed", "solved", "solved_at_s", "solved_at_steps", "startup_s",
                                        "train_env_steps_per_s", "policy_lag_mean")})
        r = runs[-1]
        print(f"seed {seed}: " + (f"solved at {r['solved_at_s']:.2f} s, {r['solved_at_steps']:,} env steps"
                                  if r["solved"] else "NOT solved") +
              f" (startup {r['startup_s']:.2f} s, {r['train_env_steps_per_s']:,.0f} steps/s)")
    solved = [r for r in runs if r["solved"]]
    times = [r["solved_at_s"] for r in solved]
    steps = [r["solved_at_steps"] for r in solved]
    result = {"env": a.env, "runs": runs, "solved": f"{len(solved)}/{len(runs)}"}
    if solved:
        result.update(median_s=statistics.median(times), min_s=min(times), max_s=max(times),
                      median_steps=statistics.median(steps), min_steps=min(steps), max_steps=max(steps))
        print(f"solved {len(solved)}/{len(runs)}: median {result['median_s']:.2f} s (range {min(times):.2f}-"
              f"{max(times):.2f} s), median {result['median_steps']:,.0f} env steps "
              f"(range {min(steps):,}-{max(steps):,})")

    def plot(plt):
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.bar([str(r["seed"]) for r in runs], [r["solved_at_s"] or 0 for r in runs])
        ax.set_xlabel("seed")
        ax.set_ylabel("seconds to solve (from the command)")
        ax.set_title(f"{a.env}: time to solve")
        return fig

    write_outputs("solve_time", a.out, result, plot)


if __name__ == "__main__":
    main()
