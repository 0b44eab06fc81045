"""The sample-efficiency options, one by one: APPO's clipped surrogate, advantage normalization,
several passes per batch, schedules, reward clipping, the policy-lag bound, and presets."""

import argparse
import importlib.util
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from actorlearner import Config, vtrace
from actorlearner.config import ConfigError
from actorlearner.config_checks import validate
from actorlearner.config_sources import add_config_arguments, config_from_args
from actorlearner.learner import Learner, scheduled
from actorlearner.losses import appo_loss
from actorlearner.presets import PRESETS
from actorlearner.trajectory import learner_inputs

T, B = 5, 3


def on_policy_case(seed=0):
    rng = np.random.default_rng(seed)
    logp = np.log(rng.uniform(0.2, 0.9, (T, B))).astype(np.float32)
    values = rng.normal(size=(T + 1, B)).astype(np.float32)
    rewards = rng.normal(size=(T, B)).astype(np.float32)
    discounts = (0.9 * (rng.random((T, B)) > 0.2)).astype(np.float32)
    return logp, values, rewards, discounts


def returns_reference(values, rewards, discounts):
    """On-policy, lambda 1: V-trace targets are the discounted returns bootstrapped from V(x_T)."""
    vs = np.zeros((T, B), np.float32)
    nxt = values[-1]
    for t in reversed(range(T)):
        nxt = vs[t] = rewards[t] + discounts[t] * nxt
    return vs


def appo(logp_target, logp_behaviour, values, rewards, discounts, **kw):
    args = dict(baseline_cost=0.5, entropy_cost=0.0, clip_rho=1.0, lambda_=1.0, clip_ratio=0.2,
                normalize_advantages=False)
    args.update(kw)
    return appo_loss(target_logp=logp_target, behaviour_logp=tf.constant(logp_behaviour),
                     entropy=tf.zeros((T, B)), values=tf.constant(values), rewards=tf.constant(rewards),
                     discounts=tf.constant(discounts), **args)


def test_appo_on_policy_equals_the_advantage_of_the_returns():
    logp, values, rewards, discounts = on_policy_case()
    out = appo(tf.constant(logp), logp, values, rewards, discounts)
    vs = returns_reference(values, rewards, discounts)
    vs_tp1 = np.concatenate([vs[1:], values[-1:]])
    advantages = rewards + discounts * vs_tp1 - values[:-1]
    np.testing.assert_allclose(out["policy"].numpy(), -advantages.mean(), rtol=1e-5)
    np.testing.assert_allclose(out["baseline"].numpy(), 0.5 * ((vs - values[:-1]) ** 2).mean(), rtol=1e-5)


def test_appo_clipping_stops_the_gradient_where_the_ratio_left_the_trust_region():
    logp, values, rewards, discounts = on_policy_case(1)
    shift = np.zeros((T, B), np.float32)
    shift[0, 0], shift[1, 1] = 0.5, -0.5  # ratios e^0.5 = 1.65 and e^-0.5 = 0.61: outside [0.8, 1.2]
    target = tf.Variable(logp + shift)
    with tf.GradientTape() as tape:
        out = appo(target, logp, values, rewards, discounts)
    grad = tape.gradient(out["policy"], target).numpy()
    # Off-policy now: the targets are V-trace's (tested against reference data in test_vtrace.py).
    vs = vtrace.from_importance_weights(log_rhos=shift, discounts=discounts, rewards=rewards, values=values[:-1],
                                        bootstrap_value=values[-1]).vs.numpy()
    adv = rewards + discounts * np.concatenate([vs[1:], values[-1:]]) - values[:-1]
    # Clipped (no gradient) exactly where the ratio moved past the clip in the advantage's direction.
    for (t, b), ratio in (((0, 0), np.exp(0.5)), ((1, 1), np.exp(-0.5))):
        clipped = (adv[t, b] > 0 and ratio > 1.2) or (adv[t, b] < 0 and ratio < 0.8)
        assert (grad[t, b] == 0) == clipped
    untouched = shift == 0
    np.testing.assert_allclose(grad[untouched], -adv[untouched] / (T * B), rtol=1e-4, atol=1e-7)


def test_appo_normalized_advantages_have_zero_mean():
    logp, values, rewards, discounts = on_policy_case(2)
    out = appo(tf.constant(logp), logp, values, rewards, discounts, normalize_advantages=True)
    assert abs(out["policy"].numpy()) < 1e-6  # ratio 1: the loss is minus the mean advantage


def test_appo_clip_fraction_counts_the_ratios_outside_the_clip():
    logp, values, rewards, discounts = on_policy_case(3)
    shift = np.zeros((T, B), np.float32)
    shift[0, 0], shift[2, 1], shift[3, 2] = 0.5, -0.5, 0.1  # e^0.1 = 1.105 stays inside [0.8, 1.2]
    out = appo(tf.constant(logp + shift), logp, values, rewards, discounts)
    assert out["clip_frac"].numpy() == pytest.approx(2 / (T * B))
    # KL(behaviour || target) estimated per sample as ratio - 1 - log ratio: 0 where the policies agree.
    assert out["approx_kl"].numpy() == pytest.approx(np.mean(np.exp(shift) - 1 - shift), rel=1e-5)
    assert "update_kl" not in out  # only with the batch's starting policy given
    # --target-kl's figure: the same estimate from the policy at the batch's start, not the actors'.
    start = logp + 0.5 * shift
    out = appo(tf.constant(logp + shift), logp, values, rewards, discounts, start_logp=tf.constant(start))
    assert out["update_kl"].numpy() == pytest.approx(np.mean(np.exp(0.5 * shift) - 1 - 0.5 * shift), rel=1e-5)
    assert out["approx_kl"].numpy() == pytest.approx(np.mean(np.exp(shift) - 1 - shift), rel=1e-5)
    mask = np.ones((T, B), np.float32)
    mask[0, 0] = 0  # a left-out step is not counted, clipped or not
    out = appo(tf.constant(logp + shift), logp, values, rewards, discounts, mask=tf.constant(mask))
    assert out["clip_frac"].numpy() == pytest.approx(1 / (T * B - 1))


def test_schedules():
    assert scheduled(3e-3, "constant", 0.7) == 3e-3
    assert scheduled(1.0, "linear", 0.0) == 1.0
    assert scheduled(1.0, "linear", 0.25) == pytest.approx(0.75)
    assert scheduled(1.0, "linear", 1.5) == 0.0


def test_reward_clip_leaves_the_truncation_bootstrap_alone():
    batch = {"obs": np.zeros((2, 1, 1), np.float32), "actions": np.zeros((1, 1), np.int32),
             "behaviour_logp": np.zeros((1, 1), np.float32), "rewards": np.array([[50.0]], np.float32),
             "terminated": np.zeros((1, 1), np.uint8), "truncated": np.ones((1, 1), np.uint8),
             "final_value": np.array([[20.0]], np.float32), "first": np.zeros((2, 1), np.uint8),
             "valid": np.ones((1, 1), np.uint8)}
    out = learner_inputs(batch, gamma=0.5, reward_scale=0.1, reward_clip=1.0)
    assert out["rewards"][0, 0] == pytest.approx(1.0 + 0.5 * 20.0)


def test_epochs_and_minibatches_make_that_many_updates():
    from actorlearner.envs import inspect_env, make_env_fn
    from actorlearner.model import build_default_model

    cfg = Config(loss="appo", epochs=3, minibatches=2, unroll_length=4, envs_per_actor=2, batch_size=4)
    spec = inspect_env(make_env_fn("CartPole-v1"))
    model = build_default_model(spec, cfg)
    learner = Learner(cfg, spec, model)
    rng = np.random.default_rng(0)
    batch = {"obs": rng.normal(size=(5, 4, 4)).astype(np.float32), "actions": np.zeros((4, 4), np.int32),
             "behaviour_logp": np.full((4, 4), np.log(0.5), np.float32),
             "rewards": rng.normal(size=(4, 4)).astype(np.float32), "discounts": np.full((4, 4), 0.9, np.float32),
             "first": np.zeros((5, 4), np.uint8), "mask": np.ones((4, 4), np.float32)}
    before = learner.flat_weights()
    stats, _ = learner.step(batch)
    assert int(learner.optimizer.iterations.numpy()) == 6 and stats["updates"] == 6
    assert 0 <= stats["clip_frac"] <= 1
    assert not np.array_equal(learner.flat_weights(), before)
    # --target-kl ends the passes after the first minibatch whose KL from the actors' policy is over it: here
    # the actors' log-probabilities are far from the policy's (log 0.05 against ~log 0.5), so the first one is.
    far = {**batch, "behaviour_logp": np.full((4, 4), np.log(0.05), np.float32)}
    for target_kl, updates in ((0.05, 1), (1e6, 6)):
        stopping = Learner(cfg.replace(target_kl=target_kl), spec, build_default_model(spec, cfg))
        stats, _ = stopping.step(far)
        assert stats["updates"] == updates and int(stopping.optimizer.iterations.numpy()) == updates, stats
        assert (stats["approx_kl"] > target_kl) == (updates == 1) and "update_kl" not in stats
    # --target-kl-from batch: the KL from the learner's policy at the batch's start instead, which leaves that
    # policy lag alone. The first minibatch's KL is 0 (nothing has moved yet), the second's is the first update's
    # move: over 1e-9, far under 1e6.
    cfg = cfg.replace(target_kl_from="batch")
    probe = Learner(cfg.replace(target_kl=1e-9), spec, build_default_model(spec, cfg))
    probe.trace()
    first, _ = probe._update(probe._inputs(far), tf.constant(0.0), tf.constant([0, 1]))
    assert first["update_kl"] == pytest.approx(0.0, abs=1e-6) and first["approx_kl"] > 0.5, first
    for target_kl, updates in ((1e-9, 2), (1e6, 6)):
        stopping = Learner(cfg.replace(target_kl=target_kl), spec, build_default_model(spec, cfg))
        stats, _ = stopping.step(far)
        assert stats["updates"] == updates and int(stopping.optimizer.iterations.numpy()) == updates, stats
        assert (stats["update_kl"] > target_kl) == (updates == 2) and stats["approx_kl"] > 0.5, stats


@pytest.mark.parametrize("core", ["none", "lstm"])
def test_a_minibatch_gathered_in_the_graph_is_the_update_on_those_unrolls(core):
    # With several updates a batch the learner makes the whole batch into tensors once and gathers each
    # minibatch's unrolls in its compiled step: the update on unrolls [3, 1] must be the one a learner of batch 2
    # makes on a batch of just those unrolls, in that order (a gather along the wrong axis, or rows not gathered
    # with the rest, gives other numbers).
    from actorlearner.envs import inspect_env, make_env_fn
    from actorlearner.model import build_default_model

    cfg = Config(loss="appo", epochs=2, minibatches=2, unroll_length=4, envs_per_actor=2, batch_size=4, core=core,
                 core_size=8)
    spec = inspect_env(make_env_fn("CartPole-v1"))
    rng = np.random.default_rng(3)
    batch = {"obs": rng.normal(size=(5, 4, 4)).astype(np.float32), "actions": rng.integers(0, 2, (4, 4), np.int32),
             "behaviour_logp": np.log(rng.uniform(0.2, 0.8, (4, 4))).astype(np.float32),
             "rewards": rng.normal(size=(4, 4)).astype(np.float32), "discounts": np.full((4, 4), 0.9, np.float32),
             "first": (rng.random((5, 4)) < 0.2).astype(np.uint8), "mask": np.ones((4, 4), np.float32)}
    if core == "lstm":  # each unroll's state at its first step, [1, B, 2 * core_size] (h and c)
        batch["core_state"] = rng.normal(size=(1, 4, 16)).astype(np.float32)
    whole = Learner(cfg, spec, build_default_model(spec, cfg))
    single_cfg = cfg.replace(epochs=1, minibatches=1, batch_size=2)
    single = Learner(single_cfg, spec, build_default_model(spec, single_cfg))
    for v, w in zip(single.model.weights, whole.model.weights):
        v.assign(w)
    whole.trace()
    stats, flat = whole._update(whole._inputs(batch), tf.constant(0.01), tf.constant([3, 1]))
    want_stats, want_flat = single.step({k: v[:, [3, 1]] for k, v in batch.items()})
    np.testing.assert_allclose(flat, want_flat, rtol=1e-6, atol=1e-7)
    for k in ("total", "policy", "baseline", "entropy", "rho_mean", "approx_kl"):
        assert stats[k] == pytest.approx(want_stats[k], rel=1e-5, abs=1e-7), k


def test_policy_lag_bound_gives_stale_unrolls_back():
    from actorlearner.actor_pool import SlotSource
    from actorlearner.learner_loop import _drop_stale
    from actorlearner.protocol import UnrollReady
    from actorlearner.reporting import RunStats
    from actorlearner.transport import SlotPool

    slots = SlotPool({"x": ((1,), np.float32)}, 4, None)
    for slot, version in enumerate([10, 7, 9, 3]):  # versions that filled slots 0..3
        slots.set_version(slot, version)

    class Actors:
        given = []

        def give(self, actor, slot):
            self.given.append(slot)

    stats, actors = RunStats(0.0, None), Actors()
    source = SlotSource(actors, slots, num_actors=2, slots_per_actor=2)
    ready = [UnrollReady(a, s, [], []) for a, s in [(0, 0), (0, 1), (1, 2), (1, 3)]]
    kept = _drop_stale(ready, source, version=10, max_lag=2, stats=stats)
    assert [r.slot for r in kept] == [0, 2] and actors.given == [1, 3] and stats.stale_dropped == 2


def parse(*argv):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return config_from_args(parser.parse_args(list(argv)))


def test_presets_apply_by_env_and_explicit_flags_win():
    for name, fields in PRESETS.items():  # every preset is a valid config
        cfg = validate(Config().replace(**fields))
        if "env" in fields:
            assert parse("--preset", name).env == cfg.env
    acro = parse("--env", "Acrobot-v1")
    assert acro.preset == "acrobot"
    assert acro == Config().replace(**PRESETS["acrobot"], preset="acrobot")
    assert parse("--env", "Acrobot-v1", "--seed", "7").seed == 7
    assert parse("--env", "Acrobot-v1", "--preset", "none").preset == "none"
    assert parse("--env", "CliffWalking-v1").preset is None
    assert parse("--env", "FrozenLake8x8-v1").preset == "frozenlake8x8"  # its own map: the 4x4's would not do


def test_every_other_atari_game_gets_the_atari_settings():
    """An ALE game without a preset of its own learns with Pong's settings, not CartPole's (rewards x0.1)."""
    invaders = parse("--env", "ALE/SpaceInvaders-v5")
    assert invaders.preset == "atari" and invaders.env == "ALE/SpaceInvaders-v5"
    pong = parse("--env", "ALE/Pong-v5")
    assert pong.preset == "pong"
    differs = {"env", "preset", "target_return"}
    fields = [f.name for f in dataclasses.fields(Config) if f.name not in differs]
    assert [getattr(invaders, f) for f in fields] == [getattr(pong, f) for f in fields]
    assert invaders.reward_clip == 1.0 and invaders.loss == "appo"
    assert parse("--env", "ALE/SpaceInvaders-v5", "--preset", "none").reward_clip != 1.0
    assert parse("--env", "ALE/SpaceInvaders-v5", "--learning-rate", "1e-4").learning_rate == 1e-4
    with pytest.raises(ConfigError, match="--preset atari is for ALE ids"):
        parse("--preset", "atari")


def test_envs_with_box_actions_that_no_preset_names_get_the_continuous_settings(tmp_path):
    """IMPALA's defaults (tuned on CartPole) ran MountainCarContinuous's policy out of its action bounds; the
    continuous recipe solves it in ~5 s. The action space is found by making one env."""
    car = parse("--env", "MountainCarContinuous-v0")
    assert car == Config().replace(**PRESETS["continuous"], env="MountainCarContinuous-v0", preset="continuous")
    impala = parse("--env", "MountainCarContinuous-v0", "--loss", "impala")  # explicit flags win, and the
    assert (impala.loss, impala.epochs, impala.minibatches, impala.normalize_advantages) == ("impala", 1, 1, False)
    assert impala.normalize_obs and impala.max_grad_norm == PRESETS["continuous"]["max_grad_norm"]  # the rest stays
    hopper = validate(parse("--env", "Hopper-v5", "--loss", "impala"))
    assert (hopper.preset, hopper.epochs, hopper.target_kl) == ("mujoco", 1, 0.0)
    with pytest.raises(ConfigError, match="--epochs/--minibatches > 1 need --loss appo"):  # unless asked for
        validate(parse("--env", "Hopper-v5", "--loss", "impala", "--epochs", "2"))
    assert parse("--env", "MountainCarContinuous-v0", "--preset", "none").loss == Config().loss
    assert parse("--env", "Pendulum-v1").preset == "pendulum"  # its own preset first
    assert parse("--env", "CliffWalking-v1").preset is None  # discrete actions
    assert parse("--env", "custom_envs:MatchSign-v0").preset is None
    assert parse("--env", "NoSuchEnv-v0").preset is None  # the launcher's checks name it, with their hints
    assert parse("--env", "best-action-half:Half-v0").preset is None  # a module that does not import: the same
    with pytest.raises(ConfigError, match="was not made within 1 s"):
        parse("--env", "faulty_envs:HangsOnCreate-v0", "--wait-timeout-s", "1")
    if importlib.util.find_spec("Box2D") is not None:  # image observations go to the CNN: not these settings
        assert parse("--env", "CarRacing-v3").preset is None


def test_the_continuous_preset_refuses_discrete_actions_and_a_preset_names_itself(tmp_path):
    from actorlearner.preflight import prepare

    with pytest.raises(ConfigError, match="--preset continuous is for envs with Box actions; CartPole-v1's are"):
        prepare(parse("--env", "CartPole-v1", "--preset", "continuous", "--run-dir", str(tmp_path / "a")))
    cfg = Config(env="custom_envs:BrightSquare-v0", preset="lunarlander", normalize_obs=True)  # images: a CNN
    with pytest.raises(ConfigError, match="--preset lunarlander sets --normalize-obs, which works on the MLP only"):
        prepare(cfg)


def test_impala_refuses_several_passes():
    with pytest.raises(ConfigError, match="need --loss appo"):
        validate(Config(epochs=2))


def test_learning_rate_is_scaled_once_solved():
    from actorlearner.envs import inspect_env, make_env_fn
    from actorlearner.model import build_default_model

    cfg = Config(unroll_length=4, envs_per_actor=2, batch_size=4, learning_rate=1e-2)
    spec = inspect_env(make_env_fn("CartPole-v1"))
    learner = Learner(cfg, spec, build_default_model(spec, cfg))
    rng = np.random.default_rng(0)
    batch = {"obs": rng.normal(size=(5, 4, 4)).astype(np.float32), "actions": np.zeros((4, 4), np.int32),
             "behaviour_logp": np.full((4, 4), np.log(0.5), np.float32),
             "rewards": rng.normal(size=(4, 4)).astype(np.float32), "discounts": np.full((4, 4), 0.9, np.float32),
             "first": np.zeros((5, 4), np.uint8), "mask": np.ones((4, 4), np.float32)}
    learner.step(batch)
    assert float(learner.optimizer.learning_rate.numpy()) == pytest.approx(1e-2)
    assert cfg.solved_lr_scale < 1
    learner.step(batch, lr_scale=cfg.solved_lr_scale)  # what the loop passes once solved
    assert float(learner.optimizer.learning_rate.numpy()) == pytest.approx(1e-2 * cfg.solved_lr_scale)
