"""Atari from pixels: where the time goes, as ratios measured in the same run.

1. env-only ceiling: ale-py's AtariVectorEnv (16 envs, the preset's), random actions, one process per core;
2. actor side: the same env batch plus the default CNN choosing every action and a new weight version loaded
   every unroll (the preset's length: a running actor loads at most one a unroll), one process, one thread, for
   each engine actors can run it in (numpy; LiteRT where ai-edge-litert is installed, with float32 kernels and
   with int8 ones, --actor-precision int8), in blocks of 4 unrolls
   alternated with blocks of env-only stepping in the same process: the ratio of the two is what inference
   costs the actors, free of the machine's drift (on these VMs the env alone ran at 323 and 429 µs an agent
   step minutes apart, which moved a ratio taken against the separately measured ceiling from 0.80 to 0.63);
3. learner capacity: the learner's per-batch work with the preset's settings, with every core to itself (as
   training gives it every core's threads for Atari ids) and on one core, in a run's default number format
   (float32), and in bfloat16 too where the CPU has AMX-BF16 or AVX512-BF16 (--learner-precision auto would
   pick it);
4. training throughput: `actorlearner train --env ID` for --seconds, env steps/s consumed from the first
   learner step on, against (1) and against (3)'s capacity on every core, measured again after the training:
   the ratio is to the mean of the two, as the VM's speed can move by the ratio's margin in a minute.
5. the CPU bound of training: the agent steps/s the cores would give were each step to cost the training's actor
   engine its (2) time and the learner its 1-core (3) time, and no core ever idle; training's ratio to it is
   how much of what the cores allow the scheduling gets.

    python benchmarks/atari.py [--env ALE/Pong-v5] [--seconds 60] [--actor-precision int8]

The return-against-time curves against stable-baselines3 PPO are curves.py's.
"""

import argparse
import multiprocessing as mp
import os
import tempfile
import time

from broadcast import learner_capacity
from common import ceiling, run_train, write_outputs

from actorlearner import litert_cnn  # light: no TensorFlow
from actorlearner.precision import bf16_hardware

ENVS = 16  # the Atari presets' envs_per_actor
BLOCK_UNROLLS = 4  # unrolls of the batch in each alternated block


def _actor_side(env_id: str, preset: str, model: str, engine: str, seconds: float) -> tuple[float, float]:
    """(env-only, actor-side) agent steps/s, in alternated blocks of BLOCK_UNROLLS unrolls: random actions, then
    one actor's work (step the batch, choose the next actions with the CNN under `engine`, numpy, litert or
    litert-int8, a new weight version at the start of every unroll of the preset's length: the most a running
    actor loads). numpy's BLAS at one thread, as an actor's (actor_pool sets OPENBLAS_NUM_THREADS before it starts;
    here numpy is loaded already, so the limit goes through threadpoolctl)."""
    import numpy as np

    from actorlearner.blas import one_blas_thread
    from actorlearner.config import Config
    from actorlearner.config_sources import with_preset
    from actorlearner.env_backends import EnvBatchFactory
    from actorlearner.envs import make_env_fn
    from actorlearner.layout import default_layout, layout_size
    from actorlearner.policies import make_policy

    factory = EnvBatchFactory("ale", ENVS, env_fn=make_env_fn(env_id), env_id=env_id)
    spec = factory.spec()
    inference, _, precision = engine.partition("-")
    cfg = with_preset(Config(), {"env": env_id, "preset": preset, "model": model, "actor_inference": inference,
                                 "actor_precision": precision or "float32"})
    unroll, block = cfg.unroll_length, BLOCK_UNROLLS * cfg.unroll_length
    policy = make_policy(cfg, spec, None, acting=True)
    rng = np.random.default_rng(0)
    versions = [rng.normal(scale=0.01, size=layout_size(default_layout(spec, cfg))).astype(np.float32)
                for _ in range(2)]
    batch = factory(0, 0, os.getpid(), spec)
    obs = batch.reset()
    env_s = act_s = 0.0
    blocks = unrolls = 0
    with one_blas_thread():
        while env_s + act_s < seconds or blocks < 2:
            t0 = time.perf_counter()
            for _ in range(block):
                obs = batch.step(rng.integers(0, spec.action_dim, ENVS)).obs
            t1 = time.perf_counter()
            for i in range(block):
                if i % unroll == 0:
                    policy.load(versions[unrolls % 2])
                    unrolls += 1
                actions, _ = policy.sample(obs, rng)
                obs = batch.step(actions).obs
            env_s, act_s, blocks = env_s + t1 - t0, act_s + time.perf_counter() - t1, blocks + 1
    batch.close()
    return blocks * block * ENVS / env_s, blocks * block * ENVS / act_s


def actor_side(env_id: str, preset: str, model: str, engine: str, seconds: float) -> tuple[float, float]:
    """_actor_side's rates, in a fresh process (an actor's own), through a one-process spawn Pool as capacity()."""
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply_async(_actor_side, (env_id, preset, model, engine, seconds)).get(timeout=seconds + 120)


def capacity(env_id: str, preset: str, cores: int, precision: str | None = None) -> dict:
    """broadcast.learner_capacity's row for the preset's batch (32 unrolls, 10 s), in a fresh child process:
    TensorFlow's threads are set once a process, and this process stays light."""
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(learner_capacity, ([32], 10.0, env_id, preset, cores, precision))[0]


def training_engine(env_id: str, preset: str, model: str, precision: str | None) -> str:
    """The actor-side row's engine that the training run's actors use: litert-int8, litert or numpy."""
    from actorlearner.config_sources import preset_config
    from actorlearner.envs import inspect_env, make_env_fn
    from actorlearner.layout import model_kind

    cfg = preset_config(preset, env=env_id, model=model, **({"actor_precision": precision} if precision else {}))
    kind = model_kind(inspect_env(make_env_fn(env_id)), model)
    if litert_cnn.engine_for(cfg, kind) != "litert":
        return "numpy"
    return "litert-int8" if litert_cnn.int8_for(cfg, kind) else "litert"


def cpu_bound(cores: int, actor_rate: float, learner_rate_one_core: float) -> float:
    """The most agent steps/s `cores` cores allow when each agent step costs an actor 1/actor_rate CPU-seconds
    (its env and inference, one process on one core) and the learner 1/learner_rate_one_core (its 1-core
    cost: more threads cost more CPU a sample): cores / (the two summed). Training shares the cores between the
    two, so the learner's capacity with every core to itself is out of its reach; this bound is not, were the
    cores never idle and no other work done."""
    return cores / (1.0 / actor_rate + 1.0 / learner_rate_one_core)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="ALE/Pong-v5")
    p.add_argument("--preset", default="pong", help="the preset whose settings the learner uses")
    p.add_argument("--model", default="impala-shallow")
    p.add_argument("--seconds", type=float, default=60.0, help="training run length")
    p.add_argument("--actor-precision", choices=("float32", "int8", "auto"),
                   help="the training run's --actor-precision (default: the preset's; the actor-side rows measure "
                        "both)")
    p.add_argument("--out", default="bench_out")
    a = p.parse_args()
    cores = os.cpu_count() or 1
    ceil_one = ceiling(a.env, 1, 8.0, backend="ale", envs=ENVS)
    ceil_all = ceiling(a.env, cores, 8.0, backend="ale", envs=ENVS)
    engines = ["numpy"] + (["litert", "litert-int8"] if litert_cnn.available() else [])
    actor = {engine: actor_side(a.env, a.preset, a.model, engine, 16.0) for engine in engines}  # (env only, actor side)
    cap = capacity(a.env, a.preset, cores)
    cap_one = capacity(a.env, a.preset, 1)
    other = None  # the other number format's capacity where this CPU multiplies bfloat16 in hardware
    if bf16_hardware():
        fmt = "float32" if cap["precision"] == "bfloat16" else "bfloat16"
        other = capacity(a.env, a.preset, cores, fmt)
    with tempfile.TemporaryDirectory() as d:
        s = run_train(["--env", a.env, "--preset", a.preset, "--model", a.model, "--max-seconds", str(a.seconds),
                       "--no-stop-at-target", *(["--actor-precision", a.actor_precision] if a.actor_precision
                                                 else [])], os.path.join(d, "run"), timeout=a.seconds + 300)
    # The capacity again, after the training: the VM's speed drifts by as much as the ratio's margin within
    # minutes, so training is divided by the mean of the capacities measured either side of it.
    cap_after = capacity(a.env, a.preset, cores)
    train = s["train_env_steps_per_s"]
    acting = a.actor_precision or "the preset's precision"
    around = (cap["samples_per_s"] + cap_after["samples_per_s"]) / 2
    engine = training_engine(a.env, a.preset, a.model, a.actor_precision)
    bound = cpu_bound(cores, actor[engine][1], cap_one["samples_per_s"])
    rows = [
        ("env-only ceiling, 1 process", ceil_one, "1.00"),
        (f"env-only ceiling, {cores} processes", ceil_all, f"{ceil_all / ceil_one:.2f}"),
        *((f"actor side (env + {engine} CNN), 1 process", rate,
           f"{rate / env:.2f} of env-only stepping alternated with it ({env:,.0f}/s)")
          for engine, (env, rate) in actor.items()),
        (f"learner capacity ({cores} cores to itself, {cap['precision']})", cap["samples_per_s"],
         f"{cap['ms_per_step']:.0f} ms a batch"),
        *(((f"learner capacity ({cores} cores, {other['precision']})", other["samples_per_s"],
            f"{other['ms_per_step']:.0f} ms a batch; {other['samples_per_s'] / cap['samples_per_s']:.2f}x "
            f"the {cap['precision']} one"),) if other else ()),
        (f"learner capacity (1 core, {cap_one['precision']})", cap_one["samples_per_s"],
         f"{cap_one['ms_per_step']:.0f} ms a batch"),
        (f"learner capacity ({cores} cores, {cap_after['precision']}), again after the training",
         cap_after["samples_per_s"], f"{cap_after['ms_per_step']:.0f} ms a batch"),
        (f"training ({s['learner_steps']} learner steps, actors in {acting})", train,
         f"{train / around:.2f} of the learner's {cores}-core capacity (the mean of before and after; "
         f"{train / cap['samples_per_s']:.2f} and {train / cap_after['samples_per_s']:.2f}), "
         f"{train / ceil_all:.2f} of the ceiling"),
        (f"CPU bound of training on {cores} cores (actors in {engine}, learner at its 1-core cost)", bound,
         f"training {train / bound:.2f} of it; the {cores}-core capacity {around / bound:.2f}x it"),
    ]
    print(f"{a.env}, {a.model}, {cores} cores (training: --actor-inference auto); startup {s['startup_s']:.1f} s, "
          f"policy lag mean {s['policy_lag_mean']:.2f}, learner's oneDNN kernels {s.get('learner_onednn')}")
    print("| what | agent steps/s | ratio |\n|---|---|---|")
    for what, rate, ratio in rows:
        print(f"| {what} | {rate:,.0f} | {ratio} |")
    write_outputs("atari", a.out, {"env": a.env, "model": a.model, "ceiling_1": ceil_one, "ceiling_all": ceil_all,
                                   "actor_side": {e: {"env_only": v[0], "actor_side": v[1]} for e, v in actor.items()},
                                   "learner_capacity": cap, "learner_capacity_1_core": cap_one,
                                   "learner_capacity_other_format": other,
                                   "learner_capacity_after_training": cap_after,
                                   "train_env_steps_per_s": train, "cpu_bound": bound,
                                   "training_actor_engine": engine,
                                   "summary": {k: v for k, v in s.items() if k != "processes"}})


if __name__ == "__main__":
    main()
