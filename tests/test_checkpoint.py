"""Checkpoints: atomic, kept-last-N, loaded without pickle, corrupt files named and skipped, and a resumed
run continues its counters, metrics and optimizer state."""

import json
import subprocess
import sys

import numpy as np
import pytest

from actorlearner import Config, train
from actorlearner import checkpoint
from actorlearner.config import ConfigError
from actorlearner.config_sources import resume_config
from actorlearner.preflight import resume_point
from conftest import BACKENDS, ROOT, spawned_pids, with_small_tmpfs

MODEL = [("dense/kernel", np.arange(6, dtype=np.float32).reshape(2, 3)), ("dense/bias", np.ones(3, np.float32))]
OPTIM = [("adam/iteration", np.array(7, np.int64)), ("adam/m", np.zeros((2, 3), np.float32))]


def save(run_dir, step, keep=3):
    return checkpoint.save(str(run_dir), step, {"note": "x"}, MODEL, OPTIM, keep=keep)


def test_round_trip_and_keep_last_n(tmp_path):
    for step in (5, 10, 15, 20):
        save(tmp_path, step, keep=2)
    paths = checkpoint.list_checkpoints(str(tmp_path))
    assert [p.rsplit("/", 1)[1] for p in paths] == ["ckpt-000000015.npz", "ckpt-000000020.npz"]
    ckpt = checkpoint.load(paths[-1])
    assert ckpt.meta["step"] == 20 and ckpt.meta["note"] == "x"
    for (p, v), (q, w) in zip(ckpt.model + ckpt.optim, MODEL + OPTIM):
        assert p == q
        np.testing.assert_array_equal(v, w)
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))


def test_non_finite_weights_are_never_checkpointed(tmp_path):
    bad = [("dense/kernel", np.array([1.0, np.nan], np.float32))]
    with pytest.raises(ValueError, match="non-finite"):
        checkpoint.save(str(tmp_path), 1, {}, bad, [], keep=3)
    assert checkpoint.list_checkpoints(str(tmp_path)) == []


def test_corrupt_checkpoint_is_named_and_the_previous_one_used(tmp_path):
    save(tmp_path, 1)
    newest = save(tmp_path, 2)
    with open(newest, "r+b") as f:  # truncate it, as a crash of a non-atomic writer would
        f.truncate(100)
    with pytest.raises(checkpoint.CheckpointError, match=r"ckpt-000000002\.npz is corrupt or truncated"):
        checkpoint.load(newest)
    warnings = []
    ckpt = checkpoint.load_latest(str(tmp_path), warn=warnings.append)
    assert ckpt.meta["step"] == 1
    assert len(warnings) == 1 and "ckpt-000000002.npz" in warnings[0]


def test_flipped_byte_and_pickled_arrays_are_rejected(tmp_path):
    path = save(tmp_path, 1)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 3] ^= 0xFF  # a flipped bit inside an array: zip's CRC catches it
    open(path, "wb").write(bytes(data))
    with pytest.raises(checkpoint.CheckpointError, match="corrupt"):
        checkpoint.load(path)
    with open(path, "wb") as f:  # an object array would need unpickling: refused
        np.savez(f, meta=np.array(json.dumps({"format": 1, "model_paths": [["x", []]], "optim_paths": []})),
                 **{"model/0": np.array([{"evil": 1}], dtype=object)})
    with pytest.raises(checkpoint.CheckpointError, match="corrupt"):
        checkpoint.load(path)


def test_learner_restore_brings_back_weights_and_adam_state():
    from actorlearner.envs import inspect_env, make_env_fn
    from actorlearner.learner import Learner
    from actorlearner.model import build_default_model

    spec = inspect_env(make_env_fn("CartPole-v1"))
    T, B = 4, 2
    rng = np.random.default_rng(0)
    batch = {"obs": rng.normal(size=(T + 1, B, 4)).astype(np.float32),
             "actions": rng.integers(0, 2, (T, B)).astype(np.int32),
             "behaviour_logp": np.full((T, B), -0.69, np.float32),
             "rewards": rng.normal(size=(T, B)).astype(np.float32),
             "discounts": np.full((T, B), 0.99, np.float32), "first": np.zeros((T + 1, B), np.uint8),
             "mask": np.ones((T, B), np.float32)}

    def new_learner(seed):
        cfg = Config(unroll_length=T, envs_per_actor=2, batch_size=B, seed=seed)
        model = build_default_model(spec, cfg)
        return Learner(cfg, spec, model)

    a = new_learner(1)
    for _ in range(3):
        a.step(batch)
    model_vars, optim_vars = a.state()
    ckpt = checkpoint.Checkpoint("mem", {"stats": {"learner_steps": 3}}, model_vars, optim_vars)
    b = new_learner(2)  # different initial weights
    b.restore(ckpt)
    assert int(b.optimizer.iterations.numpy()) == 3
    np.testing.assert_array_equal(b.flat_weights(), a.flat_weights())
    # Same state, same batch: the next update is identical only if Adam's moments came back too.
    np.testing.assert_allclose(b.step(batch)[1], a.step(batch)[1], rtol=1e-6, atol=1e-7)


def test_resumed_run_continues_counters_metrics_and_optimizer(tmp_path, no_leaks):
    run_dir = str(tmp_path / "run")
    base = Config(serial=True, num_actors=1, max_steps=6_400, stop_at_target=False, eval_every_s=0,
                  log_every_s=0.2, seed=3, run_dir=run_dir)
    first = train(base)
    assert first["status"] == "max_steps"
    ckpt1 = checkpoint.load(checkpoint.list_checkpoints(run_dir)[-1])
    assert ckpt1.meta["stats"]["learner_steps"] == first["learner_steps"]

    with pytest.raises(ConfigError, match=r"^--resume .*/run: the run has \d+ env steps already, and --max-steps "
                                          r"\(6400\) counts from its start: raise it"):
        resume_point(resume_config(run_dir))  # it would stop at once: said before anything starts
    with pytest.raises(ConfigError, match=r"--max-seconds \(0.001\) counts from its start"):
        resume_point(resume_config(run_dir, {"max_steps": 0, "max_seconds": 0.001}))
    cfg = resume_config(run_dir, {"max_steps": 12_800})
    assert cfg.seed == 3 and cfg.log_every_s == 0.2  # the run's own config, with the override
    second = train(cfg)
    assert second["status"] == "max_steps"
    assert second["env_steps"] >= 12_800 and second["learner_steps"] > first["learner_steps"]
    assert second["episodes"] > first["episodes"] and second["resumed_from_s"] > 0
    ckpt2 = checkpoint.load(checkpoint.list_checkpoints(run_dir)[-1])
    iteration = dict(ckpt2.optim)[next(p for p, _ in ckpt2.optim if p.endswith("iteration"))]
    assert int(iteration) == second["learner_steps"]  # Adam's step count went on, not restarted
    # Versions go on too (the resumed run publishes its restored weights once, then one per step).
    assert ckpt2.meta["policy_version"] == (ckpt1.meta["policy_version"] + 1
                                            + second["learner_steps"] - first["learner_steps"])
    assert ckpt2.meta["rng"]["generation"] == 1
    records = [json.loads(line) for line in open(f"{run_dir}/metrics.jsonl")]
    steps = [r["env_steps"] for r in records]
    times = [r["time_s"] for r in records]
    assert steps == sorted(steps) and times == sorted(times)  # one curve, not two that restart at zero
    assert max(steps) == second["env_steps"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_resume_with_actor_processes_learns_on(tmp_path, backend):
    """Actors of a resumed run must wait for the restored weights: they once read the store's NaN placeholder,
    and the first batch after every process-mode resume stopped the run with a non-finite loss."""
    import subprocess
    import sys

    run_dir = str(tmp_path / "run")
    common = ["--eval-every-s", "0", "--no-stop-at-target", "--backend", backend]
    for args in (["--env", "CartPole-v1", "--max-steps", "40000", "--run-dir", run_dir], ["--resume", run_dir,
                                                                                         "--max-steps", "80000"]):
        proc = subprocess.run([sys.executable, "-m", "actorlearner", "train", *args, *common],
                              capture_output=True, text=True, timeout=180, cwd=ROOT)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads(open(f"{run_dir}/summary.json").read())
    assert summary["status"] == "max_steps" and summary["env_steps"] >= 80_000 and summary["resumed_from_s"] > 0


def test_resume_refuses_another_env():
    with pytest.raises(ConfigError, match="cannot change on --resume"):
        resume_config(str(ROOT / "tests" / "data" / "resume_run"), {"env": "Acrobot-v1"})
    # A flag says how the run trained, not "the run has False".
    with pytest.raises(ConfigError, match=r"--action-masks cannot change on --resume \(it trained without "
                                          r"--action-masks\)"):
        resume_config(str(ROOT / "tests" / "data" / "resume_run"), {"action_masks": True})


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "actorlearner", "train", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)


def test_cli_resume_of_a_corrupt_checkpoint_names_the_file(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(Config(run_dir=str(run_dir)).to_json())
    path = save(run_dir, 1)
    with open(path, "r+b") as f:
        f.truncate(50)
    out = run_cli("--resume", str(run_dir))
    assert out.returncode == 2, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("actorlearner: error: checkpoint ") and "ckpt-000000001.npz is corrupt" in last
    assert "no earlier checkpoint is usable" in last
    assert not (run_dir / "summary.json").exists()  # it failed before starting anything


def test_cli_resume_without_a_run_dir(tmp_path):
    out = run_cli("--resume", str(tmp_path / "nowhere"))
    assert out.returncode == 2
    assert "config.json not found" in out.stderr.strip().splitlines()[-1]


def test_a_full_disk_stops_the_run_in_one_line_and_keeps_the_last_checkpoint(tmp_path):
    """The run directory on a 300 KB file system: the first checkpoint (~180 KB) fits, the next does not. The run
    stops with one line naming the checkpoint it could not write and the newest one kept, no traceback; that
    checkpoint loads, no temporary file is left, and neither are processes or shared memory."""
    code = """
import glob, json, os, subprocess, sys
from actorlearner import checkpoint
run = sys.argv[1]
p = subprocess.Popen([sys.executable, "-m", "actorlearner", "train", "--env", "CartPole-v1", "--max-seconds", "30",
                      "--checkpoint-every", "1", "--no-stop-at-target", "--run-dir", run], stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True)
err = p.communicate()[1]  # Popen, not run: the learner's pid names its segments
kept = checkpoint.list_checkpoints(run)
print(json.dumps({"rc": p.returncode, "stderr": err, "kept": kept, "loads": bool(kept) and
                  checkpoint.load(kept[-1]).meta["step"] > 0, "tmp": glob.glob(run + "/**/*.tmp*", recursive=True),
                  "segments": [n for n in os.listdir("/dev/shm") if n.startswith(f"al_{p.pid}_")]}))
"""
    disk, before = tmp_path / "disk", spawned_pids()
    proc = with_small_tmpfs("300k", str(disk), ["-c", code, str(disk / "run")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    lines = out["stderr"].strip().splitlines()
    assert out["rc"] == 1 and "Traceback" not in out["stderr"], out["stderr"][-3000:]
    assert lines[-1].startswith("actorlearner: error: could not write checkpoint "), lines[-1]
    assert "No space left on device" in lines[-1] and f"(the newest one kept: {out['kept'][-1]})" in lines[-1]
    assert out["loads"] and out["tmp"] == [] and out["segments"] == [], out
    assert spawned_pids() - before == set(), "actor processes outlived the run"


def test_a_new_run_starts_from_another_runs_weights_with_a_fresh_optimizer(tmp_path, no_leaks):
    """--init-from RUN: the new run's first weights are RUN's newest checkpoint's; its counters and Adam start at 0.
    Weights that do not fit, or an env of other spaces, are one line before anything starts."""
    from actorlearner.layout import default_layout
    from actorlearner.preflight import prepare, starting_point

    first_dir, second_dir = str(tmp_path / "first"), str(tmp_path / "second")
    train(Config(serial=True, num_actors=1, max_steps=6_400, stop_at_target=False, eval_every_s=0, seed=3,
                 run_dir=first_dir))
    first = checkpoint.load(checkpoint.list_checkpoints(first_dir)[-1])
    # A learning rate too small to move the weights: the second run's final weights are the first run's.
    cfg = Config(serial=True, num_actors=1, max_steps=1_280, stop_at_target=False, eval_every_s=0, seed=4,
                 learning_rate=1e-12, init_from=first_dir, run_dir=second_dir)
    second = train(cfg)
    assert second["env_steps"] == 1_280 and second["learner_steps"] == 1  # counters from 0
    after = checkpoint.load(checkpoint.list_checkpoints(second_dir)[-1])
    np.testing.assert_allclose(after.policy_flat, first.policy_flat, atol=1e-6)
    iteration = dict(after.optim)[next(p for p, _ in after.optim if p.endswith("iteration"))]
    assert int(iteration) == 1  # Adam afresh
    # --resume of such a run goes on from its own checkpoint (its config keeps init_from).
    assert train(resume_config(second_dir, {"max_steps": 2_560}))["learner_steps"] == 2

    spec = prepare(Config(env="CartPole-v1"))[2]
    narrow = Config(init_from=first_dir, hidden_sizes=(32,))
    with pytest.raises(ConfigError, match=r"^--init-from .*first: its model has other weights than this run's "
                                          r"\([\d,]+ weights in \d+ arrays against [\d,]+ in \d+\): it needs the same"):
        starting_point(narrow, spec, default_layout(spec, narrow))
    assert starting_point(Config(init_from=first_dir), spec, default_layout(spec, Config())).path == first.path
    acrobot = prepare(Config(env="Acrobot-v1"))[2]
    with pytest.raises(ConfigError, match=r"^--init-from .*first: that run's env has other observations or actions "
                                          r"than this one's \(observations 4 float32 there, 6 float32 here"):
        starting_point(Config(env="Acrobot-v1", init_from=first_dir), acrobot, default_layout(acrobot, Config()))
    with pytest.raises(ConfigError, match=r"--init-from .*nowhere: no such directory"):
        starting_point(Config(init_from=str(tmp_path / "nowhere")), spec, [])


def test_a_new_run_starts_from_another_runs_best_or_final_weights(tmp_path, no_leaks):
    """--init-which best|final: best.npz's or policy.npz's weights (the published vector) go into the new model,
    in the order this run publishes them; a missing best.npz is one line."""
    import json
    import os

    from actorlearner.layout import default_layout
    from actorlearner.preflight import prepare, starting_point

    first_dir, second_dir = str(tmp_path / "first"), str(tmp_path / "second")
    train(Config(serial=True, num_actors=1, max_steps=3_200, stop_at_target=False, eval_every_s=0, seed=3,
                 run_dir=first_dir))
    spec = prepare(Config(env="CartPole-v1"))[2]
    layout = default_layout(spec, Config())
    os.remove(f"{first_dir}/best.npz")  # of its final evaluation
    with pytest.raises(ConfigError, match=r"--init-which best: .*best.npz not found: the run made no evaluation"):
        starting_point(Config(init_from=first_dir, init_which="best"), spec, layout)
    final = starting_point(Config(init_from=first_dir, init_which="final"), spec, layout)
    with np.load(f"{first_dir}/policy.npz") as saved:
        assert final.path.endswith("policy.npz") and np.array_equal(final.policy_flat, saved["flat"])
        # A best.npz of other weights than the run's last (half of them), to tell the two apart.
        np.savez(f"{first_dir}/best.npz", flat=saved["flat"] * 0.5, layout=saved["layout"])
        half = saved["flat"] * 0.5
        assert [tuple(s) for _, s in json.loads(str(saved["layout"]))] == [s for _, s in layout]
    # A learning rate too small to move the weights: the second run's final weights are best.npz's.
    train(Config(serial=True, num_actors=1, max_steps=1_280, stop_at_target=False, eval_every_s=0, seed=4,
                 learning_rate=1e-12, init_from=first_dir, init_which="best", run_dir=second_dir))
    after = checkpoint.load(checkpoint.list_checkpoints(second_dir)[-1])
    np.testing.assert_allclose(after.policy_flat, half, atol=1e-6)


def test_published_weights_are_put_in_this_runs_order():
    """best.npz/policy.npz of a run whose actors ran the model in TensorFlow (the model's order) start a run whose
    actors run it in numpy (the default layout's order), and the other way round: matched by path, else by
    position where the shapes line up."""
    from actorlearner.preflight import _in_order

    saved = [("a/kernel", (2, 3)), ("b/kernel", (3,)), ("a/bias", (3,))]
    flat = np.arange(12, dtype=np.float32)  # a/kernel 0-5, b/kernel 6-8, a/bias 9-11
    ours = [("a/kernel", (2, 3)), ("a/bias", (3,)), ("b/kernel", (3,))]
    np.testing.assert_array_equal(_in_order(flat, saved, ours), [0, 1, 2, 3, 4, 5, 9, 10, 11, 6, 7, 8])
    renamed = [("x/kernel", (2, 3)), ("y/kernel", (3,)), ("x/bias", (3,))]
    np.testing.assert_array_equal(_in_order(flat, saved, renamed), flat)  # other names, the same shapes in order
    assert _in_order(flat, saved, [("x/bias", (3,)), ("x/kernel", (2, 3)), ("y/kernel", (3,))]) is None


def test_weights_taken_by_position_are_warned_about(tmp_path, monkeypatch, capsys):
    """--init-which best/final from a run whose weights are named otherwise takes them in order by shape, which
    cannot tell two same-shaped arrays apart: the run says so. Matched by name, it says nothing."""
    from actorlearner import loading, preflight

    saved = [("a/kernel", (2, 3)), ("a/bias", (3,))]
    flat = np.arange(9, dtype=np.float32)
    monkeypatch.setattr(preflight, "env_differences", lambda *args: None)
    monkeypatch.setattr(loading, "saved_weights", lambda where, which: (flat, saved, f"{where}/best.npz"))
    cfg = Config(init_from=str(tmp_path), init_which="best")
    ckpt = preflight.starting_point(cfg, None, [("x/kernel", (2, 3)), ("x/bias", (3,))])
    np.testing.assert_array_equal(ckpt.policy_flat, flat)
    assert "named otherwise ('a/kernel' there, 'x/kernel' here)" in capsys.readouterr().err
    preflight.starting_point(cfg, None, [("a/bias", (3,)), ("a/kernel", (2, 3))])
    assert "named otherwise" not in capsys.readouterr().err
    # The same names, each with the other's shape: matched by position too, so it warns.
    swapped = [("a/bias", (2, 3)), ("a/kernel", (3,))]
    monkeypatch.setattr(loading, "saved_weights", lambda where, which: (flat, swapped, f"{where}/best.npz"))
    preflight.starting_point(cfg, None, [("a/kernel", (2, 3)), ("a/bias", (3,))])
    assert "named otherwise ('a/bias' there, 'a/kernel' here)" in capsys.readouterr().err
