"""The env's own speed limit: env-only steps/s of every env backend that serves the id (no policy, no learning).

Each backend is stepped through the same EnvBatch code the actors use, K envs per process (the default
--envs-per-actor), one process and one per core.

    python benchmarks/ceiling.py [--env CartPole-v1] [--seconds 5] [--processes N] [--envs 32]
"""

import argparse
import os

from common import backends_for, ceiling, write_outputs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--processes", type=int, default=os.cpu_count())
    p.add_argument("--envs", type=int, default=32, help="envs per process (an actor's batch)")
    p.add_argument("--out", default="bench_out")
    a = p.parse_args()
    backends = backends_for(a.env)
    rates = {}
    print(f"| backend ({a.env}, {a.envs} envs a process) | " +
          " | ".join(f"{n} process(es), steps/s" for n in sorted({1, a.processes})) + " |")
    print("|---|" + "---|" * len(sorted({1, a.processes})))
    for b in backends:
        rates[b] = {n: ceiling(a.env, n, a.seconds, backend=b, envs=a.envs) for n in sorted({1, a.processes})}
        print(f"| {b} | " + " | ".join(f"{r:,.0f}" for r in rates[b].values()) + " |", flush=True)
    base = rates.get("gymnasium", {}).get(a.processes)
    if base:
        for b in backends:
            print(f"{b}: {rates[b][a.processes] / base:.2f}x the gymnasium backend ({a.processes} processes)")

    def plot(plt):
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.bar(backends, [rates[b][a.processes] for b in backends])
        ax.set_ylabel(f"env steps/s, {a.processes} processes")
        ax.set_title(f"{a.env} env-only ceiling by backend")
        return fig

    write_outputs("ceiling", a.out, {"env": a.env, "envs_per_process": a.envs, "steps_per_s": rates,
                                     "cpu_count": os.cpu_count()}, plot)


if __name__ == "__main__":
    main()
