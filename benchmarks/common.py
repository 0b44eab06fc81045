"""Shared pieces of the benchmarks: the env-only ceiling, process sampling, and output files."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _step_env_only(env_id: str, seconds: float, out) -> None:
    import numpy as np

    from actorlearner.envs import make_env_fn

    env = make_env_fn(env_id)()
    env.reset(seed=os.getpid())
    # Actions drawn in advance: a numpy draw per step costs about as much as a CartPole step.
    actions = [env.action_space.sample() for _ in range(4096)]
    if isinstance(actions[0], np.integer):
        actions = [int(a) for a in actions]
    step, reset = env.step, env.reset
    n, deadline = 0, time.perf_counter() + seconds
    t0 = time.perf_counter()
    while True:
        for a in actions:
            _, _, terminated, truncated, _ = step(a)
            if terminated or truncated:
                reset()
        n += len(actions)
        if time.perf_counter() >= deadline:
            break
    out.put(n / (time.perf_counter() - t0))


def ceiling(env_id: str = "CartPole-v1", processes: int | None = None, seconds: float = 5.0) -> float:
    """Env-only steps/s over all cores: one process per core stepping one env with random actions, the
    same env construction the actors use, no learning."""
    ctx = mp.get_context("spawn")
    processes = processes or os.cpu_count() or 1
    out = ctx.Queue()
    procs = [ctx.Process(target=_step_env_only, args=(env_id, seconds, out)) for _ in range(processes)]
    for p in procs:
        p.start()
    rates = [out.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join(10)
    return float(sum(rates))


def _proc_stat(pid: int):
    """(cpu seconds, peak RSS MB) of a live process, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        with open(f"/proc/{pid}/status") as f:
            hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
        return cpu, hwm / 1024
    except (OSError, StopIteration, ValueError):
        return None


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except OSError:
                pass
    return out


def run_train(flags: list[str], run_dir: str, timeout: float = 600) -> dict:
    """Runs `actorlearner train` as a command, sampling every process's CPU time and peak RSS.

    Returns the summary plus `processes`: {pid: {"role", "cpu_s", "peak_rss_mb", "cpu_frac"}}."""
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "actorlearner", "train", "--run-dir", run_dir, *flags],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    seen: dict[int, dict] = {}
    while proc.poll() is None:
        for pid in [proc.pid] + _children(proc.pid):
            st = _proc_stat(pid)
            if st:
                rec = seen.setdefault(pid, {"role": "learner" if pid == proc.pid else "actor",
                                            "first_seen": time.monotonic()})
                rec["cpu_s"], rec["peak_rss_mb"] = st
                rec["last_seen"] = time.monotonic()
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise TimeoutError(f"train {flags} took over {timeout} s")
        time.sleep(0.25)
    if proc.returncode != 0:
        raise RuntimeError(f"train {flags} failed ({proc.returncode}): {proc.stderr.read()[-2000:]}")
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    for rec in seen.values():
        alive = max(1e-9, rec["last_seen"] - rec.pop("first_seen"))
        rec["cpu_frac"] = rec["cpu_s"] / alive
        rec.pop("last_seen")
    # Tracker helpers (multiprocessing's resource tracker) are neither actor nor learner.
    summary["processes"] = {pid: r for pid, r in seen.items() if r["role"] == "learner" or r["peak_rss_mb"] > 20}
    return summary


def write_outputs(name: str, out_dir: str, data: dict, plot=None) -> None:
    """Writes NAME.json and, when matplotlib is installed (`pip install -e .[bench]`), NAME.png."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        json.dump(data, f, indent=2, default=str)
    if plot is not None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print(f"(matplotlib not installed: no {name}.png; pip install -e .[bench])")
            return
        fig = plot(plt)
        fig.savefig(os.path.join(out_dir, f"{name}.png"), dpi=100, bbox_inches="tight")
        plt.close(fig)
    print(f"wrote {os.path.join(out_dir, name)}.json" + (" and .png" if plot else ""))
