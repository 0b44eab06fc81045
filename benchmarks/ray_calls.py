"""The fixed CPU cost of one Ray actor call shaped like a --backend ray fill call, on each side.

A fill call carries the newest weights (the CartPole MLP's 36 KB ride inside the call) and returns one unroll's
arrays (CartPole, 64 envs x 20 steps: ~46 KB in 8 arrays). With the cartpole preset one unroll is one learner
batch and one weight version, so every unroll costs a call: this is the transport's share of the CPU that the
learner, the actor and Ray's own servers share on one machine (on a cluster the actor's side is elsewhere).

    python benchmarks/ray_calls.py [--calls 2000]

Prints calls/s with two calls in flight (as RaySource keeps them) and the CPU time per call of the calling
process (the learner's side) and of the actor process, for the unroll as 8 arrays and as one.
"""

import argparse
import os
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=2000)
    a = p.parse_args()
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only, as the trainer's own instance
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import logging

    import numpy as np
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)

    @ray.remote(num_cpus=1)
    class Host:
        def __init__(self):
            shapes = [(21, 64, 4)] + [(20, 64, 1)] * 7  # obs [T+1, B, 4] and seven [T, B] fields
            self.arrays = {f"field{i}": np.zeros(s, np.float32) for i, s in enumerate(shapes)}
            self.one = np.zeros(sum(x.size for x in self.arrays.values()), np.float32)

        def many(self, version, weights):
            return [("UnrollReady", 0, 0)], self.arrays, version

        def single(self, version, weights):
            return [("UnrollReady", 0, 0)], self.one, version

        def cpu_s(self):
            return time.process_time()

    host = Host.remote()
    ray.get(host.cpu_s.remote())
    weights = np.zeros(9_000, np.float32)  # 36 KB
    try:
        for name in ("many", "single", "many", "single"):
            call = getattr(host, name)
            actor0, wall0, own0 = ray.get(host.cpu_s.remote()), time.perf_counter(), time.process_time()
            pending = [call.remote(0, weights), call.remote(1, weights)]
            for n in range(a.calls):
                done, pending = ray.wait(pending, num_returns=1)
                ray.get(done[0])
                pending.append(call.remote(n, weights))
            ray.get(pending)
            wall, own = time.perf_counter() - wall0, time.process_time() - own0
            actor = ray.get(host.cpu_s.remote()) - actor0
            what = "8 arrays" if name == "many" else "one array"
            print(f"unroll as {what}: {a.calls / wall:,.0f} calls/s; CPU per call: caller {1e3 * own / a.calls:.2f} "
                  f"ms, actor {1e3 * actor / a.calls:.2f} ms", flush=True)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
