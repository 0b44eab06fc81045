"""Weight broadcast cost, policy lag in training, and the learner's capacity on one core.

1. Publish and read of the shared-memory weight vector (`transport.WeightStore`, a seqlock) for 10 K to
   10 M float32 parameters: median µs over repeats. The reader is another process, as an actor is.
2. Policy lag (learner steps an actor's weights trail, per unroll) in a short default CartPole run.
3. Learner capacity: samples (env steps) per second one learner process consumes on one core with the
   default model, fed from full slots, at several batch sizes. The loop is the learner's per-batch work
   without any waiting: gather slots, build V-trace inputs, one update, publish. Divided by what one
   actor produces, it says how many actors one learner can serve. Beside it, the time of the network's own
   forward and backward pass on the same batch, compiled and called the same way: the floor under the step.

    python benchmarks/broadcast.py [--sizes 10000,100000,1000000,10000000] [--batches 32,64,128,256]
"""

import argparse
import multiprocessing as mp
import os
import statistics
import tempfile
import time

import numpy as np

from common import run_train, write_outputs

from actorlearner.transport import WeightStore, attach_weights, new_run_token


def reader(spec, repeats, conn):
    store = attach_weights(spec)
    known, times = 0, []
    conn.send("ready")
    while len(times) < repeats:
        t = time.perf_counter()
        got = store.read_if_newer(known)
        if got is not None:
            times.append(time.perf_counter() - t)
            known = got[0]
            conn.send("read")
    store.close()
    conn.send(times)


def broadcast_cost(size: int, repeats: int) -> dict:
    ctx = mp.get_context("spawn")
    store = WeightStore(size, new_run_token())
    here, there = ctx.Pipe()
    proc = ctx.Process(target=reader, args=(store.spec(), repeats, there))
    proc.start()
    try:
        assert here.poll(60) and here.recv() == "ready"
        vec = np.random.default_rng(0).normal(size=size).astype(np.float32)
        publish = []
        for _ in range(repeats):
            t = time.perf_counter()
            store.publish(vec)
            publish.append(time.perf_counter() - t)
            assert here.poll(60) and here.recv() == "read"  # one read per version, so reads are timed whole
        assert here.poll(60)
        reads = here.recv()
        proc.join(10)
    finally:
        if proc.is_alive():
            proc.kill()
        store.close()
    pub, rd = statistics.median(publish) * 1e6, statistics.median(reads) * 1e6
    return {"floats": size, "publish_us": pub, "read_us": rd, "total_us": pub + rd}


def learner_capacity(batch_sizes: list[int], seconds: float, env_id: str = "CartPole-v1",
                     preset: str | None = None, cores: int = 1, precision: str | None = None) -> list[dict]:
    """Samples/s of the learner's per-batch work on `cores` cores (that many threads), for each batch size
    (env unrolls), with the default model for env_id and the settings of `preset` (None: the defaults), in the
    number format `precision` (None: a run's default; see actorlearner/precision.py)."""
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cores]))  # the cores the figure says
    from actorlearner.config import Config
    from actorlearner.config_sources import preset_config
    from actorlearner.envs import inspect_env, make_env_fn
    from actorlearner.layout import state_size
    from actorlearner.tf_start import choose_onednn, start_tensorflow_quietly
    from actorlearner.trajectory import learner_inputs, unroll_fields

    from actorlearner.layout import model_kind
    from actorlearner.precision import learner_precision

    spec = inspect_env(make_env_fn(env_id))
    base = preset_config(preset) if preset else Config()
    base = base.replace(learner_precision=precision or base.learner_precision)
    kind = model_kind(spec, base.model)
    fmt = learner_precision(base, kind, custom_model=False)[0]  # as a run resolves it, and its kernels too
    choose_onednn(custom_model=False)
    start_tensorflow_quietly(cores)
    from actorlearner.learner import Learner
    from actorlearner.model import build_default_model
    from actorlearner.transport import SlotPool
    rows = []
    for batch_size in batch_sizes:
        cfg = base.replace(batch_size=batch_size, learner_threads=cores)
        T, K = cfg.unroll_length, cfg.envs_per_actor
        slots = SlotPool(unroll_fields(spec, T, K, state_size(cfg)), cfg.slots_per_batch, None)
        rng = np.random.default_rng(0)
        for arr in slots.arrays.values():  # full slots of plausible data
            arr[...] = rng.integers(0, 2, arr.shape) if arr.dtype.kind in "ui" else rng.normal(size=arr.shape)
        for name in ("terminated", "truncated"):
            slots.arrays[name][...] = rng.random(slots.arrays[name].shape) < 0.02
        slots.arrays["behaviour_logp"][...] = np.log(0.5)
        model = build_default_model(spec, cfg, fmt)
        learner = Learner(cfg, spec, model)
        learner.trace()
        store = WeightStore(learner.flat_weights().size, None)
        idx = list(range(cfg.slots_per_batch))

        def one_batch():
            batch = slots.gather(idx)
            _, flat = learner.step(learner_inputs(batch, gamma=cfg.gamma, reward_scale=cfg.reward_scale))
            store.publish(flat)

        for _ in range(5):
            one_batch()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            one_batch()
            n += 1
        dt = time.perf_counter() - t0
        # Each of the batch's epochs passes every sample through the network once, minibatched or not.
        net_ms = cfg.epochs * network_ms(learner, learner_inputs(slots.gather(idx), gamma=cfg.gamma,
                                                                 reward_scale=cfg.reward_scale), min(seconds, 2.0))
        rows.append({"batch_unrolls": batch_size, "samples_per_batch": batch_size * T,
                     "learner_steps_per_s": n / dt, "samples_per_s": n * batch_size * T / dt,
                     "ms_per_step": dt / n * 1e3, "network_ms": net_ms, "precision": fmt})
        slots.close()
        store.close()
    return rows


def network_ms(learner, batch: dict, seconds: float) -> float:
    """ms for the model's forward and backward pass alone on a batch (params and values of every row, the gradient
    of their sum with respect to every weight), compiled and called as the learner's step is: the floor under the
    step's time, which adds V-trace, the losses, clipping, Adam and the weights' flattening to it."""
    import tensorflow as tf

    from actorlearner.model import apply_time_major
    from actorlearner.tf_calls import flat_caller, to_tensor

    model = learner.model

    def net(obs, first):
        with tf.GradientTape() as tape:
            params, values, _ = apply_time_major(model, obs, first)  # a recurrent model from zeros
            total = tf.reduce_sum(params) + tf.reduce_sum(values)
        return tape.gradient(total, model.trainable_variables)

    obs, first = to_tensor(batch["obs"]), to_tensor(batch["first"])
    call = flat_caller(tf.function(net, autograph=False).get_concrete_function(obs, first))
    with tf.experimental.function_executor_type(learner._executor):
        for _ in range(5):
            call(obs, first)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            call(obs, first)
            n += 1
    return (time.perf_counter() - t0) / n * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000,100000,1000000,10000000")
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--batches", default="32,64,128,256", help="learner batch sizes (env unrolls)")
    p.add_argument("--seconds", type=float, default=5.0, help="per learner batch size, and per lag run x2")
    p.add_argument("--out", default="bench_out")
    a = p.parse_args()

    weights = [broadcast_cost(int(s), a.repeats) for s in a.sizes.split(",")]
    print("| parameters (float32) | publish µs | read µs | publish + read µs |\n|---|---|---|---|")
    for r in weights:
        print(f"| {r['floats']:,} | {r['publish_us']:,.0f} | {r['read_us']:,.0f} | {r['total_us']:,.0f} |")

    with tempfile.TemporaryDirectory() as d:
        s = run_train(["--max-seconds", str(2 * a.seconds + 4), "--no-stop-at-target", "--eval-every-s", "0"],
                      os.path.join(d, "run"))
    lag = {"policy_lag_mean": s["policy_lag_mean"], "policy_lag_p95": s["policy_lag_p95"],
           "train_env_steps_per_s": s["train_env_steps_per_s"], "actors": os.cpu_count()}
    print(f"\npolicy lag in a default CartPole run: mean {lag['policy_lag_mean']:.2f}, "
          f"p95 {lag['policy_lag_p95']:.0f} learner steps ({lag['train_env_steps_per_s']:,.0f} env steps/s)")

    ctx = mp.get_context("spawn")  # TensorFlow in a child: this process stays light for the tables
    with ctx.Pool(1) as pool:
        capacity = pool.apply(learner_capacity, ([int(b) for b in a.batches.split(",")], a.seconds))
    per_actor = lag["train_env_steps_per_s"] / max(1, os.cpu_count())
    print("\n| batch (env unrolls) | samples per step | ms per step | of which the network's forward + backward "
          "| learner steps/s | samples/s on one core | actors one learner can serve |\n|---|---|---|---|---|---|---|")
    for r in capacity:
        r["actors_served"] = r["samples_per_s"] / per_actor
        print(f"| {r['batch_unrolls']} | {r['samples_per_batch']:,} | {r['ms_per_step']:.2f} | "
              f"{r['network_ms']:.2f} ({r['network_ms'] / r['ms_per_step']:.0%}) | "
              f"{r['learner_steps_per_s']:,.0f} | {r['samples_per_s']:,.0f} | {r['actors_served']:.1f} |")
    print(f"(one actor produced {per_actor:,.0f} env steps/s in the run above, sharing {os.cpu_count()} cores "
          f"with the learner)")

    def plot(plt):
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
        ax1.loglog([r["floats"] for r in weights], [r["publish_us"] for r in weights], "o-", label="publish")
        ax1.loglog([r["floats"] for r in weights], [r["read_us"] for r in weights], "o-", label="read")
        ax1.set_xlabel("parameters")
        ax1.set_ylabel("µs")
        ax1.legend()
        ax2.plot([r["batch_unrolls"] for r in capacity], [r["samples_per_s"] for r in capacity], "o-")
        ax2.set_xlabel("batch (env unrolls)")
        ax2.set_ylabel("samples/s, one learner core")
        return fig

    write_outputs("broadcast", a.out, {"weights": weights, "lag": lag, "learner_capacity": capacity}, plot)


if __name__ == "__main__":
    main()
