"""What numpy's BLAS threads cost an Atari frame's resize beside busy cores: the reason `actorlearner/blas.py` holds
BLAS at one thread in the learner's run, `evaluate()` and `eval`.

The resize is `atari.GreyFrames._resize` (two float32 matmuls, 84x210 @ 210x160 @ 160x84). OpenBLAS starts a thread
per core for that size, and its threads spin while they wait for each other; when another process holds a core
they wait for a time slice instead. Timed here at 1 and at all cores' BLAS threads (threadpoolctl), with 0 and
with `cores - 1` busy processes beside (pure-Python loops, as a run's actors would be), in alternated blocks.

    python benchmarks/blas_threads.py [--frames 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time

from common import write_outputs


def _busy(stop) -> None:
    while not stop.is_set():
        for _ in range(100_000):
            pass


def resize_us(frames: int, threads: int) -> float:
    """Microseconds a 210x160 grey frame takes to become 84x84 under `threads` BLAS threads (median of 5 blocks)."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    from actorlearner.atari import SIZE, area_matrix

    ry, rx = area_matrix(210, SIZE), area_matrix(160, SIZE).T
    frame = np.random.default_rng(0).integers(0, 256, (210, 160)).astype(np.uint8)
    blocks = []
    with threadpool_limits(threads, user_api="blas"):
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(frames // 5):
                np.rint(ry @ frame.astype(np.float32) @ rx).astype(np.uint8)
            blocks.append((time.perf_counter() - t) / (frames // 5) * 1e6)
    return float(np.median(blocks))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=3000, help="resizes a measurement")
    p.add_argument("--rounds", type=int, default=3, help="alternated rounds of every case")
    p.add_argument("--out", default="bench_out")
    a = p.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if cores < 2:
        raise SystemExit("blas_threads.py: one core: there are no BLAS threads to compare")
    ctx = mp.get_context("spawn")
    cases = [(busy, threads) for busy in (0, cores - 1) for threads in (1, cores)]
    results: dict[tuple, list] = {case: [] for case in cases}
    for _ in range(a.rounds):
        for busy, threads in cases:
            stop = ctx.Event()
            hogs = [ctx.Process(target=_busy, args=(stop,), daemon=True) for _ in range(busy)]
            for h in hogs:
                h.start()
            time.sleep(0.5 if hogs else 0)  # the busy processes running before the timing starts
            try:
                results[(busy, threads)].append(resize_us(a.frames, threads))
            finally:
                stop.set()
                for h in hogs:
                    h.join(10)
    print(f"Atari frame resize (210x160 -> 84x84, float32 matmuls), {cores} cores, median of {a.rounds} rounds")
    print("| busy processes beside | BLAS threads | us a frame | against 1 thread |")
    print("|---|---|---|---|")
    median = {case: statistics.median(times) for case, times in results.items()}
    rows = []
    for busy, threads in cases:
        us, one = median[(busy, threads)], median[(busy, 1)]
        rows.append({"busy": busy, "blas_threads": threads, "us_per_frame": us, "ratio_to_one_thread": us / one,
                     "rounds": results[(busy, threads)]})
        print(f"| {busy} | {threads} | {us:.0f} | {us / one:.2f} |")
    write_outputs("blas_threads", a.out, {"cores": cores, "frames": a.frames, "rows": rows})


if __name__ == "__main__":
    main()
