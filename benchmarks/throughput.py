"""End-to-end training throughput against the env-only ceiling and the learner's capacity, both measured in the
same run.

For each (actors, envs per actor) in the sweep, trains the env (--env-backend as given, default auto) for
--seconds without stopping at the target and reports env steps/s consumed by the learner (from the first
learner step on), learner steps/s, mean and p95 policy lag, CPU use and peak RSS of every process, and
throughput against (a) the env-only ceiling of the fastest backend for the id on all cores and (b) the
learner's own capacity on one core at the default batch (benchmarks/broadcast.py's measurement), taken just
before and just after each configuration's training and averaged: a shared VM's speed drifts within minutes,
and the two figures (both in the table) show how far. With a vectorized env the learner, not the actors,
should be the limit: (b) near 1. `actor_alone`: one actor's work (its envs stepped, the preset's numpy policy
choosing the actions, a weight load an unroll) in one process with no learner, just before the training;
with one actor training cannot outrun it, and where it is below the learner's capacity the actor is the limit.
`second_half_ratio`: the env steps/s of the training's second half (its metrics.jsonl, a row a second) against the
same capacity, to tell whether the first seconds (short CartPole episodes, each ending in a reset; the first
learner steps) hold the whole-training ratio down (on 2026-12-08 they did not: 0.74 and 0.73 against 0.76 and
0.75); the whole-training ratio is the one to quote.

    python benchmarks/throughput.py [--sweep 2x32,2x16,2x64] (the first: the defaults on 2 cores) [--seconds 10]

--backend ray runs every configuration twice, on the local backend and then as Ray actors on a Ray instance
the run starts, and adds the ratio ray/local of training throughput and the start-up difference (`ray_cpu`:
the CPU share Ray's own servers took).
"""

import argparse
import json
import math
import os
import statistics
import tempfile

import multiprocessing as mp

from broadcast import learner_capacity
from common import actor_alone, backends_for, ceiling, run_train, write_outputs


def second_half_rate(run_dir: str, summary: dict) -> float:
    """Env steps/s over the second half of a run's training (from its first learner step on), from the rows of its
    metrics.jsonl; NaN where that half has fewer than two rows."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    start = summary["startup_s"] or 0.0
    late = [r for r in rows if r["time_s"] >= start + (rows[-1]["time_s"] - start) / 2] if rows else []
    if len(late) < 2 or late[-1]["time_s"] <= late[0]["time_s"]:
        return math.nan
    return (late[-1]["env_steps"] - late[0]["env_steps"]) / (late[-1]["time_s"] - late[0]["time_s"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--sweep", default=f"{os.cpu_count()}x32,{os.cpu_count()}x16,{os.cpu_count()}x64",
                   help="comma separated ACTORSxENVS pairs")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--env-backend", default="auto")
    p.add_argument("--backend", default="local", choices=("local", "ray"),
                   help="ray: each configuration on the local backend and on Ray, in the same run")
    p.add_argument("--out", default="bench_out")
    a = p.parse_args()
    ceilings = {b: ceiling(a.env, os.cpu_count(), 5.0, backend=b) for b in backends_for(a.env)}
    fastest = max(ceilings, key=ceilings.get)
    ceil = ceilings[fastest]
    for b, c in ceilings.items():
        print(f"ceiling ({a.env}, env only, {b} backend, {os.cpu_count()} processes x 32 envs): {c:,.0f} steps/s")

    def measure_capacity() -> float:
        with mp.get_context("spawn").Pool(1) as pool:  # TensorFlow in a child: this process stays light
            return pool.apply(learner_capacity, ([64], 5.0))[0]["samples_per_s"]

    capacity = before = measure_capacity()
    print(f"learner capacity (default MLP, batch 64 unrolls, one core): {capacity:,.0f} samples/s")
    rows = []
    runs = [(item, backend) for item in a.sweep.split(",")
            for backend in (["local", "ray"] if a.backend == "ray" else ["local"])]
    env_backend = next(iter(ceilings)) if a.env_backend == "auto" else a.env_backend  # backends_for: auto's first
    for item, backend in runs:
        actors, envs = (int(x) for x in item.lower().split("x"))
        alone = actor_alone(a.env, env_backend, envs)
        with tempfile.TemporaryDirectory() as d:
            s = run_train(["--env", a.env, "--env-backend", a.env_backend, "--num-actors", str(actors),
                           "--envs-per-actor", str(envs), "--backend", backend,
                           "--max-seconds", str(a.seconds), "--no-stop-at-target", "--eval-every-s", "0"],
                          os.path.join(d, "run"))
            late = second_half_rate(os.path.join(d, "run"), s)
        procs = s["processes"].values()
        actor_rss = [r["peak_rss_mb"] for r in procs if r["role"] == "actor"]
        learner = next(r for r in procs if r["role"] == "learner")
        train_s = s["wall_s"] - s["startup_s"]
        after = measure_capacity()
        bracket = (before + after) / 2
        row = {"backend": backend, "actors": actors, "envs_per_actor": envs,
               "env_steps_per_s": s["train_env_steps_per_s"],
               "ratio_to_ceiling": s["train_env_steps_per_s"] / ceil,
               "learner_capacity_before": before, "learner_capacity_after": after,
               "ratio_to_learner": s["train_env_steps_per_s"] / bracket, "second_half_ratio": late / bracket,
               "actor_alone": alone, "ratio_to_actors_alone": s["train_env_steps_per_s"] / (actors * alone),
               "learner_steps_per_s": s["learner_steps"] / max(1e-9, train_s),
               "samples_per_s_consumed": s["train_env_steps_per_s"],
               "policy_lag_mean": s["policy_lag_mean"], "policy_lag_p95": s["policy_lag_p95"],
               "startup_s": s["startup_s"], "learner_cpu": learner["cpu_frac"],
               "actor_cpu_mean": statistics.mean(r["cpu_frac"] for r in procs if r["role"] == "actor"),
               "learner_peak_rss_mb": learner["peak_rss_mb"], "actor_peak_rss_mb_max": max(actor_rss),
               "total_peak_rss_mb": learner["peak_rss_mb"] + sum(actor_rss),
               "ray_cpu": sum(r["cpu_frac"] for r in procs if r["role"] == "ray")}
        rows.append(row)
        before = after  # the next configuration's "before"
        if backend == "ray":
            local = rows[-2]
            row["ray_to_local"] = row["env_steps_per_s"] / local["env_steps_per_s"]
            row["startup_extra_s"] = row["startup_s"] - local["startup_s"]
            print(f"{item}: ray/local training throughput {row['ray_to_local']:.2f} ({row['env_steps_per_s']:,.0f} / "
                  f"{local['env_steps_per_s']:,.0f} env steps/s); start-up {row['startup_s']:.1f} s against "
                  f"{local['startup_s']:.1f} s (+{row['startup_extra_s']:.1f} s); policy lag "
                  f"{row['policy_lag_mean']:.2f} against {local['policy_lag_mean']:.2f}")
    cols = [("backend", "{}"), ("actors", "{:d}"), ("envs_per_actor", "{:d}"), ("env_steps_per_s", "{:,.0f}"),
            ("ratio_to_ceiling", "{:.2f}"), ("learner_capacity_before", "{:,.0f}"),
            ("learner_capacity_after", "{:,.0f}"), ("ratio_to_learner", "{:.2f}"), ("second_half_ratio", "{:.2f}"),
            ("actor_alone", "{:,.0f}"),
            ("ratio_to_actors_alone", "{:.2f}"), ("learner_steps_per_s", "{:.0f}"),
            ("policy_lag_mean", "{:.2f}"),
            ("policy_lag_p95", "{:.0f}"), ("startup_s", "{:.2f}"), ("learner_cpu", "{:.2f}"),
            ("actor_cpu_mean", "{:.2f}"), ("learner_peak_rss_mb", "{:.0f}"), ("actor_peak_rss_mb_max", "{:.0f}"),
            ("total_peak_rss_mb", "{:.0f}"), ("ray_cpu", "{:.2f}")]
    print("| " + " | ".join(c for c, _ in cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f.format(r[c]) for c, f in cols) + " |")

    def plot(plt):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        labels = [f"{r['actors']}x{r['envs_per_actor']}" + (" ray" if r["backend"] == "ray" else "") for r in rows]
        ax.bar(labels, [r["env_steps_per_s"] for r in rows], label="training")
        ax.axhline(ceil, color="k", linestyle="--", label=f"env-only ceiling ({fastest})")
        ax.axhline(capacity, color="C3", linestyle=":", label="learner capacity (one core)")
        ax.set_xlabel("actors x envs per actor")
        ax.set_ylabel("env steps/s")
        ax.legend()
        return fig

    write_outputs("throughput" if a.backend == "local" else "throughput_ray", a.out,
                  {"env": a.env, "env_backend": a.env_backend, "ceilings_steps_per_s": ceilings,
                                        "fastest_backend": fastest, "learner_capacity_samples_per_s": capacity,
                                        "rows": rows}, plot)


if __name__ == "__main__":
    main()
