"""The env's own speed limit: env-only steps/s on all cores (no policy, no learning).

    python benchmarks/ceiling.py [--env CartPole-v1] [--seconds 5] [--processes N]
"""

import argparse
import os

from common import ceiling, write_outputs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--processes", type=int, default=os.cpu_count())
    p.add_argument("--out", default="bench_out")
    a = p.parse_args()
    per_count = {}
    for n in sorted({1, a.processes}):
        per_count[n] = ceiling(a.env, n, a.seconds)
        print(f"{a.env}: {n} process(es): {per_count[n]:,.0f} env steps/s")

    def plot(plt):
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.bar([str(k) for k in per_count], list(per_count.values()))
        ax.set_xlabel("processes")
        ax.set_ylabel("env steps/s")
        ax.set_title(f"{a.env} env-only ceiling")
        return fig

    write_outputs("ceiling", a.out, {"env": a.env, "steps_per_s_by_processes": per_count,
                                     "cpu_count": os.cpu_count()}, plot)


if __name__ == "__main__":
    main()
