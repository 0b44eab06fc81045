"""Recurrent policies (--core lstm) on the memory tasks, measured in one run:

1. CartPoleNoVel-v1 (the cartpole-novel preset), seeds 1..N: time to a confirmed solve;
2. throughput on CartPoleNoVel with the LSTM core against the same run without it (--core none), both
   --no-stop-at-target for --seconds: their ratio (the memory issue asks for at least 0.5);
3. CueMemory-v0 (20-step delay), seeds 1..N: the LSTM's time to a confirmed solve, and the mean return of the
   feed-forward policy (--core none) after --seconds (chance is 0.5).

    python benchmarks/memory.py [--seeds 1,2,3] [--seconds 20]

Not here yet: sb3-contrib's RecurrentPPO side by side (the memory issue's item 5).
"""

import argparse
import os
import statistics
import tempfile

from common import run_train, write_outputs

NO_VEL, CUE = "actorlearner/CartPoleNoVel-v1", "actorlearner/CueMemory-v0"


def train(env: str, *flags: str) -> dict:
    with tempfile.TemporaryDirectory() as d:
        s = run_train(["--env", env, "--eval-every-s", "0", *flags], os.path.join(d, "run"))
    return {k: v for k, v in s.items() if k != "processes"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--seconds", type=float, default=20.0, help="throughput runs and the feed-forward cue runs")
    p.add_argument("--limit", type=float, default=180.0, help="max seconds of each solve run")
    p.add_argument("--out", default="bench_out")
    a = p.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    out: dict = {"seeds": seeds}
    for name, env in (("novel", NO_VEL), ("cue", CUE)):
        runs = [train(env, "--seed", str(s), "--max-seconds", str(a.limit)) for s in seeds]
        times = [r["solved_at_s"] for r in runs]
        out[f"{name}_lstm"] = runs
        solved = [t for t in times if t is not None]
        print(f"{env} (LSTM preset): solved {len(solved)}/{len(seeds)}, times "
              + ", ".join("-" if t is None else f"{t:.1f} s" for t in times)
              + (f", median {statistics.median(solved):.1f} s" if solved else ""))
    lstm = train(NO_VEL, "--seed", "1", "--max-seconds", str(a.seconds), "--no-stop-at-target")
    ff = train(NO_VEL, "--seed", "1", "--max-seconds", str(a.seconds), "--no-stop-at-target", "--core", "none")
    ratio = lstm["train_env_steps_per_s"] / ff["train_env_steps_per_s"]
    print(f"{NO_VEL} throughput: LSTM {lstm['train_env_steps_per_s']:,.0f} steps/s, feed-forward "
          f"{ff['train_env_steps_per_s']:,.0f} steps/s, ratio {ratio:.2f}")
    cue_ff = [train(CUE, "--seed", str(s), "--max-seconds", str(a.seconds), "--core", "none") for s in seeds]
    print(f"{CUE} feed-forward after {a.seconds:.0f} s: mean return(100) "
          + ", ".join(f"{r['mean_return_100']:.2f}" for r in cue_ff) + " (chance 0.5, target 0.95)")
    out.update(throughput={"lstm": lstm, "ff": ff, "ratio": ratio}, cue_ff=cue_ff)
    write_outputs("memory", a.out, out)


if __name__ == "__main__":
    main()
