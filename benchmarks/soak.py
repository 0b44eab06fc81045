"""Soak test: a long training run with a fault every --kill-every seconds, on a random actor, cycling through
--faults: kill (SIGKILL), freeze (SIGSTOP: the stall watch must kill and replace it) and hang (its env sleeps
inside step: the same). The run trains benchmarks/soak_envs.py's CartPole, which hangs on demand.

Samples every process's resident memory and the run's env steps/s over time, and fails (exit 1) if
- the total RSS (learner + actors) grows more than --max-mem-growth after warm-up (compared: the mean of
  the first and of the last sampling window after warm-up),
- throughput after a recovery falls more than --max-rate-drop below the throughput before the fault (windows
  of --window seconds, before the fault and from 3 s after the replacement),
- a fault is not recovered from (its actor replaced) within --max-recovery-s; recovery times are reported,
- the run does not end cleanly: exit status 0, every kill counted as a restart, no process or /dev/shm
  segment of the run left behind.

    python benchmarks/soak.py                     # 10 minutes, a kill a minute
    python benchmarks/soak.py --minutes 240       # hours
"""

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from common import ROOT, children, psutil_or_exit, write_outputs


def rss_mb(pid: int):
    psutil = psutil_or_exit()
    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def read_metrics(path: str) -> list[dict]:
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except OSError:
        return []


def rate_between(metrics: list[dict], t0: float, t1: float):
    """Env steps/s between run times t0 and t1 (from metrics.jsonl records), or None."""
    inside = [m for m in metrics if t0 <= m["time_s"] <= t1]
    if len(inside) < 2:
        return None
    a, b = inside[0], inside[-1]
    return (b["env_steps"] - a["env_steps"]) / max(1e-9, b["time_s"] - a["time_s"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0, help="length of the run [10]")
    p.add_argument("--kill-every", type=float, default=60.0, help="seconds between faults [60]")
    p.add_argument("--faults", default="kill,freeze,hang", help="fault kinds, used in turn [kill,freeze,hang]")
    p.add_argument("--max-recovery-s", type=float, default=30.0)
    p.add_argument("--warmup", type=float, default=60.0, help="seconds before memory is judged [60]")
    p.add_argument("--window", type=float, default=20.0, help="seconds of each comparison window [20]")
    p.add_argument("--max-mem-growth", type=float, default=0.10)
    p.add_argument("--max-rate-drop", type=float, default=0.20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="bench_out")
    p.add_argument("train_flags", nargs="*", help="extra flags for actorlearner train (after --)")
    a = p.parse_args()
    rng = random.Random(a.seed)
    seconds = a.minutes * 60
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = os.path.join(tmp, "run")
        trigger = os.path.join(tmp, "hang")
        cmd = [sys.executable, "-m", "actorlearner", "train", "--run-dir", run_dir, "--max-seconds", str(seconds),
               "--max-steps", "0", "--no-stop-at-target", "--eval-every-s", "0", "--seed", str(a.seed),
               "--env", "soak_envs:CartPoleHangOnDemand-v0", "--num-actors", str(os.cpu_count() or 1),
               "--actor-stall-s", "5", *a.train_flags]
        print("running:", " ".join(cmd[2:]))
        env = {**os.environ, "SOAK_HANG_TRIGGER": trigger,
               "PYTHONPATH": os.pathsep.join([os.path.join(ROOT, "benchmarks"), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
        kinds = a.faults.split(",")
        t_start = time.monotonic()
        samples, kills = [], []
        next_kill = a.kill_every
        last_print = 0.0
        all_pids = set()
        while proc.poll() is None:
            t = time.monotonic() - t_start
            kids = [c.pid for c in children(proc.pid) if (rss_mb(c.pid) or 0) > 20]  # not the resource tracker
            all_pids.update(kids)
            learner = rss_mb(proc.pid)
            actors = {c: rss_mb(c) for c in kids}
            actors = {c: r for c, r in actors.items() if r is not None}
            if learner is not None:
                samples.append({"t": t, "learner_mb": learner, "actors_mb": actors,
                                "total_mb": learner + sum(actors.values())})
            metrics = read_metrics(os.path.join(run_dir, "metrics.jsonl"))
            run_t = metrics[-1]["time_s"] if metrics else None
            if run_t is not None and run_t >= next_kill and kids and run_t < seconds - 2 * a.window:
                victim = rng.choice(kids)
                kind = kinds[len(kills) % len(kinds)]
                if kind == "kill":
                    os.kill(victim, signal.SIGKILL)
                elif kind == "freeze":
                    os.kill(victim, signal.SIGSTOP)
                else:
                    with open(trigger, "w") as f:
                        f.write(str(victim))
                kills.append({"run_time_s": run_t, "pid": victim, "kind": kind,
                              "restarts_before": metrics[-1].get("actor_restarts", 0)})
                next_kill = run_t + a.kill_every
            if t - last_print >= 30 and metrics:
                last_print = t
                rate = rate_between(metrics, run_t - 10, run_t)
                print(f"[{run_t:6.0f}s] env steps/s {rate or 0:,.0f} | learner {learner or 0:.0f} MB | actors "
                      f"{sum(actors.values()):.0f} MB ({len(actors)}) | kills {len(kills)}", flush=True)
            time.sleep(0.5)
        err = proc.stderr.read()
        metrics = read_metrics(os.path.join(run_dir, "metrics.jsonl"))
        summary_path = os.path.join(run_dir, "summary.json")
        summary = json.load(open(summary_path)) if os.path.exists(summary_path) else {}

    failures = []
    if proc.returncode != 0:
        failures.append(f"the run exited with status {proc.returncode}: {err.strip()[-500:]}")
    if summary.get("actor_restarts") != len(kills):
        failures.append(f"{len(kills)} faults but {summary.get('actor_restarts')} restarts counted")
    stalled = sum(k["kind"] != "kill" for k in kills)
    if summary.get("actor_stalls") != stalled:
        failures.append(f"{stalled} freeze/hang faults but {summary.get('actor_stalls')} stalls counted")
    leftover = [pid for pid in all_pids if psutil_or_exit().pid_exists(pid)]
    if leftover:
        failures.append(f"processes left behind: {leftover}")
    shm = os.listdir("/dev/shm") if os.path.isdir("/dev/shm") else []
    segments = [n for n in shm if n.startswith(f"al_{proc.pid}_")]
    if segments:
        failures.append(f"/dev/shm segments left behind: {segments}")

    # Memory: first vs last window after warm-up.
    judged = [s for s in samples if s["t"] >= a.warmup]
    growth = None
    if judged and judged[-1]["t"] - judged[0]["t"] >= 2 * a.window:
        first = statistics.mean(s["total_mb"] for s in judged if s["t"] < judged[0]["t"] + a.window)
        last = statistics.mean(s["total_mb"] for s in judged if s["t"] > judged[-1]["t"] - a.window)
        growth = last / first - 1
        if growth > a.max_mem_growth:
            failures.append(f"total RSS grew {growth:+.1%} after warm-up ({first:.0f} -> {last:.0f} MB)")
    # Recovery (the actor replaced: the restart counter moves) and throughput around each fault.
    for k in kills:
        kt = k["run_time_s"]
        replaced = next((m["time_s"] for m in metrics
                         if m["time_s"] >= kt and m.get("actor_restarts", 0) > k["restarts_before"]), None)
        k["recovery_s"] = None if replaced is None else replaced - kt
        if k["recovery_s"] is None or k["recovery_s"] > a.max_recovery_s:
            failures.append(f"the {k['kind']} fault at {kt:.0f} s was not recovered from within {a.max_recovery_s} s")
        back = (replaced or kt) + 3
        before = rate_between(metrics, kt - 3 - a.window, kt - 3)
        after = rate_between(metrics, back, back + a.window)
        k["rate_before"], k["rate_after"] = before, after
        if before and after is not None and after < (1 - a.max_rate_drop) * before:
            failures.append(f"throughput fell {after / before - 1:+.1%} after the {k['kind']} fault at {kt:.0f} s")

    print("\n| fault at (s) | kind | recovered after (s) | env steps/s before | after | change |\n"
          "|---|---|---|---|---|---|")
    for k in kills:
        b, f = k["rate_before"], k["rate_after"]
        change = f"{f / b - 1:+.1%}" if b and f is not None else "-"
        rec = f"{k['recovery_s']:.1f}" if k["recovery_s"] is not None else "never"
        print(f"| {k['run_time_s']:.0f} | {k['kind']} | {rec} | {b or 0:,.0f} | {f or 0:,.0f} | {change} |")
    peak_actor = max((r for s in samples for r in s["actors_mb"].values()), default=0)
    print(f"\nrun: {summary.get('wall_s', 0):.0f} s, {summary.get('env_steps', 0):,} env steps, "
          f"{summary.get('train_env_steps_per_s', 0):,.0f} env steps/s, restarts {summary.get('actor_restarts')}, "
          f"env errors {summary.get('env_errors')}")
    print(f"memory: total RSS growth after warm-up {growth:+.1%}" if growth is not None else
          "memory: run too short to judge growth")
    print(f"peak RSS: learner {max((s['learner_mb'] for s in samples), default=0):.0f} MB, "
          f"largest actor {peak_actor:.0f} MB, total {max((s['total_mb'] for s in samples), default=0):.0f} MB")
    print("PASS" if not failures else "FAIL:\n  " + "\n  ".join(failures))

    def plot(plt):
        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
        ts = [m["time_s"] for m in metrics][1:]
        rates = [(b["env_steps"] - a_["env_steps"]) / max(1e-9, b["time_s"] - a_["time_s"])
                 for a_, b in zip(metrics, metrics[1:])]
        ax1.plot(ts, rates, lw=0.8)
        for k in kills:
            ax1.axvline(k["run_time_s"], color="r", lw=0.6, ls="--")
        ax1.set_ylabel("env steps/s")
        ax1.set_title("soak: actor kills (red) and throughput")
        st = [s["t"] for s in samples]
        ax2.plot(st, [s["total_mb"] for s in samples], label="total")
        ax2.plot(st, [s["learner_mb"] for s in samples], label="learner")
        ax2.plot(st, [sum(s["actors_mb"].values()) for s in samples], label="actors")
        ax2.set_ylabel("RSS (MB)")
        ax2.set_xlabel("seconds (kills: run time; RSS: wall time since launch)")
        ax2.legend()
        return fig

    write_outputs("soak", a.out, {"minutes": a.minutes, "kills": kills, "memory_growth": growth,
                                  "samples": samples, "summary": summary, "failures": failures}, plot)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
