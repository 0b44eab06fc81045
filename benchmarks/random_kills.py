"""Kills `actorlearner train` runs at random moments and checks what each leaves behind.

Each run (a random env, backend and signal, sent 0.2-7 s after the start, in start-up or in training) is checked
for: its processes all gone (every process seen in its tree), its /dev/shm segments gone once the next start's
clean-up has run (a SIGKILLed launcher leaves them to it), its exit status (130 / 143 for a stop signal, -9 for a
kill, 0 when it finished first), and, where it wrote a checkpoint, `eval --which latest` playing it and
`train --resume` going on from it. One JSON line per run, then the problems; the exit status is 1 if any.

    python benchmarks/random_kills.py [--runs 16] [--seed 0] [--max-at 7] [--kinds actor-SIGSTOP,actor-SIGKILL]
        [--backends ray]

Needs psutil (the bench extra); Ray runs need the ray extra and Pong the atari extra (left out where missing).
"""

import argparse
import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

import psutil

KINDS = ("launcher-SIGINT", "launcher-SIGINT-twice", "launcher-SIGTERM", "launcher-SIGKILL", "group-SIGKILL",
         "actor-SIGKILL", "actor-SIGSTOP")
COMMAND = [sys.executable, "-m", "actorlearner"]


def our_segments() -> set:
    return {s for s in os.listdir("/dev/shm") if s.startswith("al_")} if os.path.isdir("/dev/shm") else set()


def tree(pid: int) -> set:
    try:
        return {c.pid for c in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def alive(pids) -> list:
    """(pid, command line) of those still running (zombies are dead: their parent has not reaped them yet)."""
    out = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            if p.status() != psutil.STATUS_ZOMBIE:
                out.append((pid, " ".join(p.cmdline())[:100]))
        except psutil.NoSuchProcess:
            pass
    return out


def strike(proc, kind: str, rng) -> str:
    """Sends kind's signal; returns what was done."""
    if kind.startswith("launcher"):
        proc.send_signal(getattr(signal, kind.split("-")[1]))
        if kind.endswith("twice"):
            time.sleep(rng.uniform(0.05, 1.0))
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        return kind
    if kind == "group-SIGKILL":
        os.killpg(proc.pid, signal.SIGKILL)
        return kind
    # An actor process, or with --backend ray the worker process of one of our Ray actors (its title).
    actors = [pid for pid, cmd in alive(tree(proc.pid)) if "spawn_main" in cmd or cmd.startswith("ray::ActorHost")]
    if not actors:
        proc.send_signal(signal.SIGINT)  # no actor process yet (or Ray's): a Ctrl-C instead
        return "launcher-SIGINT (no actor process yet)"
    os.kill(rng.choice(actors), signal.SIGKILL if kind == "actor-SIGKILL" else signal.SIGSTOP)
    time.sleep(25)  # --wait-timeout-s 10: a stalled actor is replaced well within this; then the run is stopped
    proc.send_signal(signal.SIGINT)
    return kind


def tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:160] if lines else ""


def after_the_kill(run: str, rc) -> tuple[str, list]:
    """Plays and resumes the run's newest checkpoint; (what happened, problems)."""
    if not os.path.exists(os.path.join(run, "config.json")):
        return "no run directory", []
    ev = subprocess.run(COMMAND + ["eval", run, "--which", "latest", "--episodes", "1"], capture_output=True,
                        text=True, timeout=300)
    if ev.returncode != 0:
        said = tail(ev.stderr)
        ok = "no checkpoint in" in said  # stopped before its first checkpoint: said so, in one line
        return f"eval: {said}", [] if ok else [f"eval failed: {said}"]
    if rc == 0:
        return f"eval: {tail(ev.stdout)}", []
    resumed = subprocess.Popen(COMMAND + ["train", "--resume", run], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    time.sleep(8)
    resumed.send_signal(signal.SIGINT)
    out, err = resumed.communicate(timeout=120)
    problems = [] if resumed.returncode == 130 else [f"resume exited {resumed.returncode}: {tail(err)}"]
    return f"eval: {tail(ev.stdout)} | resume: {resumed.returncode}", problems


def one_run(i: int, rng, envs: list, backends: list, kinds: list, max_at: float, base: str) -> dict:
    env, backend, kind = rng.choice(envs), rng.choice(backends), rng.choice(kinds)
    if backend == "serial" and kind.startswith("actor"):
        kind = "launcher-SIGINT"
    at = rng.uniform(0.2, max_at)
    run = os.path.join(base, f"run{i}")
    flags = {"processes": [], "serial": ["--serial"], "ray": ["--backend", "ray"], "3 actors": ["--num-actors", "3"]}
    before = our_segments()
    proc = subprocess.Popen(COMMAND + ["train", *flags[backend], "--env", env, "--max-steps", "50000000",
                                       "--no-stop-at-target", "--checkpoint-every", "1", "--wait-timeout-s", "10",
                                       "--seed", str(i), "--run-dir", run],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    seen, t0 = set(), time.monotonic()
    while time.monotonic() - t0 < at and proc.poll() is None:
        seen |= tree(proc.pid)
        time.sleep(0.05)
    seen |= tree(proc.pid)
    did = "finished first" if proc.poll() is not None else strike(proc, kind, rng)
    problems = []
    try:
        _, err = proc.communicate(timeout=120)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        rc = "hung"
        problems.append("still running 120 s after the signal")
    # An actor's kill or stop is followed by a Ctrl-C to the run once it has been replaced (strike).
    expected = {"SIGINT": 130, "SIGTERM": 143, "SIGKILL": -9}
    want = (0 if did == "finished first" else 130 if did.startswith("actor") else
            expected[did.split("-")[1].split(" ")[0]])
    if rc != want:
        problems.append(f"exit status {rc}, expected {want}: {tail(err)}")
    # A SIGKILLed Ray run's two node agents live on, reparented, for 40-75 s (they then see their raylet gone), or
    # until the next run that starts Ray removes them; the rest goes at once.
    wait_s = 90 if backend == "ray" and "SIGKILL" in did else 5
    deadline = time.monotonic() + wait_s
    while alive(seen) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = alive(seen)
    if left:
        problems.append(f"processes left: {left}")
    from actorlearner.transport import remove_stale_segments

    remove_stale_segments()  # what the next start does
    segments = sorted(our_segments() - before)
    if segments:
        problems.append(f"segments left after the next start's clean-up: {segments[:3]}...")
    after, more = after_the_kill(run, rc)
    return {"run": i, "env": env, "backend": backend, "did": did, "at_s": round(at, 2), "status": rc,
            "after": after, "problems": problems + more}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-at", type=float, default=7.0, help="latest moment of the kill, seconds after the start")
    p.add_argument("--kinds", default=",".join(KINDS),
                   help=f"the kills to choose from, comma-separated: {', '.join(KINDS)}")
    p.add_argument("--backends", default="", help="the backends to choose from, comma-separated: processes, "
                   "serial, '3 actors', ray (default: all installed, processes twice as often)")
    a = p.parse_args()
    kinds = a.kinds.split(",")
    if not set(kinds) <= set(KINDS):
        p.error(f"--kinds: {', '.join(sorted(set(kinds) - set(KINDS)))} unknown; known: {', '.join(KINDS)}")
    rng = random.Random(a.seed)
    envs = ["CartPole-v1", "Acrobot-v1", "Pendulum-v1"]
    if importlib.util.find_spec("ale_py"):
        envs.append("ALE/Pong-v5")
    backends = ["processes", "processes", "serial", "3 actors"]
    if importlib.util.find_spec("ray"):
        backends.append("ray")
    if a.backends:
        unknown = set(a.backends.split(",")) - set(backends)
        if unknown:
            p.error(f"--backends: {', '.join(sorted(unknown))} unknown or not installed; there are "
                    f"{', '.join(sorted(set(backends)))}")
        backends = a.backends.split(",")
    problems = 0
    with tempfile.TemporaryDirectory(prefix="random_kills_") as base:
        for i in range(a.runs):
            result = one_run(i, rng, envs, backends, kinds, a.max_at, base)
            problems += bool(result["problems"])
            print(json.dumps(result), flush=True)
    print(f"{a.runs} runs, {problems} with problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
