"""Trajectory transport cost per unroll: actorlearner's shared-memory slots against the naive baseline.

Two processes, as in training: a producer (the actor) hands over N unrolls, a consumer (the learner)
takes each one out as its own numpy arrays. Timed at the consumer over N unrolls after a warm-up, with
the producer running ahead as far as the channel lets it, so the figure is the per-unroll cost of a
pipelined stream.

- ours: the producer copies the unroll into a free shared-memory slot and sends a small message
  (the slot index) over its pipe; the consumer copies the slot out (`SlotPool.gather`) and hands the
  slot back. 4 slots in flight.
- naive: the producer puts a dict of the numpy arrays on a `multiprocessing.Queue` (pickled through a
  pipe); the consumer gets it.

Cases: CartPole-sized (obs 4 float32, T=20, 16 envs) and Atari-sized (84x84x4 uint8 obs, T=20, 4 envs).

    python benchmarks/transport.py [--unrolls 2000]
"""

import argparse
import multiprocessing as mp
import pickle
import time

import numpy as np

from common import write_outputs

from actorlearner.envs import EnvSpec
from actorlearner.protocol import UnrollReady
from actorlearner.trajectory import unroll_fields
from actorlearner.transport import SlotPool, attach_slots, new_run_token

CASES = {
    "cartpole (4 float32, T=20, K=16)": ((4,), np.float32, 20, 16),
    "atari (84x84x4 uint8, T=20, K=4)": ((84, 84, 4), np.uint8, 20, 4),
}
SLOTS = 4


def fields(obs_shape, obs_dtype, T, K) -> dict:
    """The training unroll's fields for a discrete-action env with this observation."""
    spec = EnvSpec(tuple(obs_shape), np.dtype(obs_dtype).name, True, 6, None, None, None, None)
    return unroll_fields(spec, T, K)


def example(f: dict) -> dict:
    rng = np.random.default_rng(0)
    return {k: (rng.integers(0, 255, shape) if np.dtype(dt).kind in "ui" else rng.normal(size=shape)).astype(dt)
            for k, (shape, dt) in f.items()}


def slot_producer(spec, conn, n):
    slots = attach_slots(spec)
    data = example(slots.fields)
    for _ in range(n):
        slot = conn.recv()
        for k, v in data.items():
            slots.arrays[k][slot][...] = v  # the actor's writes into shared memory
        conn.send(UnrollReady(0, slot, [], []))
    slots.close()


def queue_producer(f, q, n):
    data = example(f)
    for _ in range(n):
        q.put({k: v.copy() for k, v in data.items()})  # an actor makes new arrays for every unroll


def run_ours(f: dict, n: int, warmup: int) -> tuple[float, int]:
    ctx = mp.get_context("spawn")
    slots = SlotPool(f, SLOTS, new_run_token())
    here, there = ctx.Pipe()
    p = ctx.Process(target=slot_producer, args=(slots.spec(), there, n + warmup))
    p.start()
    try:
        for s in range(SLOTS):
            here.send(s)
        msg_bytes = 0
        for i in range(n + warmup):
            if i == warmup:
                t0 = time.perf_counter()
            if not here.poll(60):
                raise TimeoutError("producer stalled")
            msg = here.recv()
            msg_bytes = len(pickle.dumps(msg))
            batch = slots.gather([msg.slot])  # the learner's copy out
            assert batch["obs"].shape[1] == f["obs"][0][1]
            if i + SLOTS < n + warmup:
                here.send(msg.slot)
        elapsed = time.perf_counter() - t0
        p.join(30)
    finally:
        if p.is_alive():
            p.kill()
        slots.close()
    return elapsed / n * 1e6, msg_bytes


def run_naive(f: dict, n: int, warmup: int) -> tuple[float, int]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue(maxsize=SLOTS)
    p = ctx.Process(target=queue_producer, args=(f, q, n + warmup))
    p.start()
    try:
        for i in range(n + warmup):
            if i == warmup:
                t0 = time.perf_counter()
            item = q.get(timeout=60)
            assert item["obs"].shape[1] == f["obs"][0][1]
        elapsed = time.perf_counter() - t0
        p.join(30)
    finally:
        if p.is_alive():
            p.kill()
    return elapsed / n * 1e6, len(pickle.dumps(example(f), protocol=pickle.HIGHEST_PROTOCOL))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--unrolls", type=int, default=2000, help="timed unrolls per case (CartPole; Atari: /10)")
    p.add_argument("--out", default="bench_out")
    a = p.parse_args()
    rows = []
    for name, (shape, dt, T, K) in CASES.items():
        f = fields(shape, dt, T, K)
        n = a.unrolls if "cartpole" in name else max(50, a.unrolls // 10)
        unroll_bytes = sum(int(np.prod(s)) * np.dtype(d).itemsize for s, d in f.values())
        ours_us, ours_bytes = run_ours(f, n, warmup=max(10, n // 10))
        naive_us, naive_bytes = run_naive(f, n, warmup=max(10, n // 10))
        rows.append({"case": name, "unroll_bytes": unroll_bytes, "unrolls": n, "ours_us": ours_us,
                     "ours_queue_bytes": ours_bytes, "naive_us": naive_us, "naive_queue_bytes": naive_bytes,
                     "naive_over_ours": naive_us / ours_us})
    print("| case | unroll size | ours µs/unroll | ours bytes through the pipe | naive mp.Queue µs/unroll "
          "| naive bytes through the queue | naive / ours |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['unroll_bytes'] / 1024:,.0f} KiB | {r['ours_us']:,.0f} | {r['ours_queue_bytes']} "
              f"| {r['naive_us']:,.0f} | {r['naive_queue_bytes']:,} | {r['naive_over_ours']:.1f}x |")

    def plot(plt):
        fig, ax = plt.subplots(figsize=(7, 3.5))
        x = np.arange(len(rows))
        ax.bar(x - 0.2, [r["ours_us"] for r in rows], 0.4, label="shared-memory slots (ours)")
        ax.bar(x + 0.2, [r["naive_us"] for r in rows], 0.4, label="numpy dict on mp.Queue")
        ax.set_xticks(x, [r["case"] for r in rows], fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("µs per unroll")
        ax.legend()
        return fig

    write_outputs("transport", a.out, {"rows": rows}, plot)


if __name__ == "__main__":
    main()
