"""Shared pieces of the benchmarks: the env-only ceiling of each env backend, process sampling (psutil, so they run
on macOS too), and output files."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def parse_seeds(text: str) -> list[int]:
    """--seeds of the benchmarks: a range "1-10" or a list "1,2,3"."""
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def _step_env_only(env_id: str, backend: str, envs: int, seconds: float, out) -> None:
    import numpy as np

    from actorlearner.env_backends import EnvBatchFactory
    from actorlearner.envs import make_env_fn

    factory = EnvBatchFactory(backend, envs, env_fn=make_env_fn(env_id), env_id=env_id)
    spec = factory.spec()
    batch = factory(0, 0, os.getpid(), spec)
    batch.reset()
    # Actions drawn in advance: a numpy draw per step costs about as much as a CartPole step.
    rng = np.random.default_rng(0)
    if spec.discrete:
        actions = list(rng.integers(0, spec.action_dim, (64, envs)))
    else:
        actions = list(rng.uniform(spec.action_low, spec.action_high, (64, envs, spec.action_dim)).astype(np.float32))
    n, deadline = 0, time.perf_counter() + seconds
    t0 = time.perf_counter()
    while True:
        for a in actions:
            batch.step(a)
        n += len(actions) * envs
        if time.perf_counter() >= deadline:
            break
    out.put(n / (time.perf_counter() - t0))
    batch.close()


def _act_alone(env_id: str, backend: str, envs: int, seconds: float) -> float:
    import numpy as np

    from actorlearner.config import Config
    from actorlearner.config_sources import with_preset
    from actorlearner.env_backends import EnvBatchFactory
    from actorlearner.envs import make_env_fn
    from actorlearner.layout import default_layout, layout_size
    from actorlearner.policies import make_policy

    cfg = with_preset(Config(), {"env": env_id, "envs_per_actor": envs})  # the run's preset, by the id
    factory = EnvBatchFactory(backend, envs, env_fn=make_env_fn(env_id), env_id=env_id)
    spec = factory.spec()
    policy = make_policy(cfg, spec, None, acting=True)
    rng = np.random.default_rng(0)
    versions = [rng.normal(scale=0.1, size=layout_size(default_layout(spec, cfg))).astype(np.float32)
                for _ in range(2)]
    batch = factory(0, 0, os.getpid(), spec)
    obs, state = batch.reset(), policy.initial_state(envs)
    n, deadline = 0, time.perf_counter() + seconds
    t0 = time.perf_counter()
    while time.perf_counter() < deadline:
        policy.load(versions[n % 2])  # a new version every unroll, as a running actor loads at most
        for _ in range(cfg.unroll_length):
            actions, _, state = policy.act(obs, state, rng)
            obs = batch.step(actions if spec.discrete else np.clip(actions, spec.action_low, spec.action_high)).obs
        n += 1
    rate = n * cfg.unroll_length * envs / (time.perf_counter() - t0)
    batch.close()
    return rate


def actor_alone(env_id: str, backend: str, envs: int, seconds: float = 5.0) -> float:
    """Env steps/s of one actor's work in one process on a core of its own: K = envs envs of `backend` stepped
    with actions the default model of the env's preset samples (numpy), a new weight version each unroll; no
    transport, no learner. With one actor, training cannot outrun it."""
    with mp.get_context("spawn").Pool(1) as pool:  # a fresh process, as an actor's
        return float(pool.apply_async(_act_alone, (env_id, backend, envs, seconds)).get(timeout=seconds + 120))


def ceiling(env_id: str = "CartPole-v1", processes: int | None = None, seconds: float = 5.0,
            backend: str = "gymnasium", envs: int = 32) -> float:
    """Env-only steps/s over all cores: one process per core stepping an env batch of `backend` (K = envs, as
    an actor's, through the same EnvBatch code the actors use) with random actions; no policy, no learning.
    Steps a NEXT_STEP vector env spends on resets are counted as steps (they cost a call like any other)."""
    ctx = mp.get_context("spawn")
    processes = processes or os.cpu_count() or 1
    out = ctx.Queue()
    procs = [ctx.Process(target=_step_env_only, args=(env_id, backend, envs, seconds, out))
             for _ in range(processes)]
    for p in procs:
        p.start()
    rates = [out.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join(10)
    return float(sum(rates))


def backends_for(env_id: str) -> list[str]:
    """Every env backend that is installed and serves `env_id` (auto's choice first)."""
    from actorlearner.config import ConfigError
    from actorlearner.config import ENV_BACKENDS
    from actorlearner.env_backends import resolve_backend

    found = []
    auto, _ = resolve_backend("auto", env_id, custom_env_fn=False)
    for name in [auto] + [b for b in ENV_BACKENDS if b not in ("auto", auto)]:
        try:
            found.append(resolve_backend(name, env_id, custom_env_fn=False)[0])
        except ConfigError:
            pass
    return found


def psutil_or_exit():
    try:
        import psutil
    except ImportError:
        sys.exit("this benchmark samples processes with psutil: pip install -e '.[bench]'")
    return psutil


def _proc_stat(proc) -> tuple[float, float] | None:
    """(cpu seconds, peak RSS MB so far) of a live psutil.Process, or None. Peak RSS is the kernel's
    high-water mark where the platform has one (Linux), else the largest RSS sampled."""
    psutil = psutil_or_exit()
    try:
        with proc.oneshot():
            t = proc.cpu_times()
            mem = proc.memory_info()
        peak = getattr(mem, "peak_wset", None) or _linux_hwm(proc.pid) or mem.rss
        return t.user + t.system, peak / 2**20
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def _linux_hwm(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))
    except (OSError, StopIteration, ValueError):
        return None


def children(pid: int) -> list:
    """The psutil.Process of every descendant of `pid` (a Ray run's actors are its raylet's children)."""
    psutil = psutil_or_exit()
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _role(p, learner_pid: int) -> str:
    """learner, actor (an actor process or a Ray actor's worker) or ray (Ray's servers and idle workers)."""
    if p.pid == learner_pid:
        return "learner"
    try:
        cmd = " ".join(p.cmdline())
    except Exception:  # noqa: BLE001 - gone
        return "actor"
    if "ray::ActorHost" in cmd or "spawn_main" in cmd:
        return "actor"
    return "ray" if "ray" in cmd else "actor"


def run_train(flags: list[str], run_dir: str, timeout: float = 600) -> dict:
    """Runs `actorlearner train` as a command, sampling every process's CPU time and peak RSS.

    Returns the summary plus `processes`: {pid: {"role", "cpu_s", "peak_rss_mb", "cpu_frac"}}."""
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "actorlearner", "train", "--run-dir", run_dir, *flags],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    psutil = psutil_or_exit()
    seen: dict[int, dict] = {}
    while proc.poll() is None:
        try:
            me = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:
            break
        for p in [me] + children(proc.pid):
            st = _proc_stat(p)
            pid = p.pid
            if st:
                rec = seen.setdefault(pid, {"first_seen": time.monotonic()})
                if rec.get("role") != "actor":  # looked at again: an idle Ray worker becomes an actor
                    rec["role"] = _role(p, proc.pid)
                # The largest seen: a process on its way out reads as 0 MB.
                rec["cpu_s"], rec["peak_rss_mb"] = st[0], max(st[1], rec.get("peak_rss_mb", 0.0))
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
    summary["processes"] = {pid: r for pid, r in seen.items() if r["role"] != "actor" or r["peak_rss_mb"] > 20}
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
