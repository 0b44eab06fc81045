"""Unroll alignment on a tiny deterministic env, with an episode boundary and a truncation inside."""

import gymnasium as gym
import numpy as np

from actorlearner.actor import Actor
from actorlearner.config import Config
from actorlearner.env_batch import GymEnvBatch
from actorlearner.envs import EnvSpec
from actorlearner.protocol import EnvError, UnrollReady
from actorlearner.policies import FeedForward
from actorlearner.trajectory import learner_inputs, unroll_fields
from actorlearner.transport import SlotPool, WeightStore, local_channel_pair


class CountEnv(gym.Env):
    """obs = [10 * episode + t]; reward t + 1 at step t; even episodes terminate after 3 steps, odd
    ones are truncated after 4."""

    observation_space = gym.spaces.Box(-1e6, 1e6, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self):
        self.episode, self.t = -1, 0

    def reset(self, *, seed=None, options=None):
        self.episode += 1
        self.t = 0
        return self._obs(), {}

    def _obs(self):
        return np.array([10 * self.episode + self.t], np.float32)

    def step(self, action):
        self.t += 1
        reward = float(self.t)
        even = self.episode % 2 == 0
        return self._obs(), reward, even and self.t == 3, (not even) and self.t == 4, {}


class ValueIsObs(FeedForward):
    """Stub policy: action 1 with log-prob -0.5, value = the observation itself (so final_value is checkable)."""

    def load(self, flat):
        pass

    def sample(self, obs, rng, mask=None):
        n = len(obs)
        return np.ones(n, np.int64), np.full(n, -0.5, np.float32)

    def value(self, obs):
        return obs[:, 0].copy()


def make_actor(env_cls, n_slots):
    """One actor with one env and T = 5, in process; returns (actor, its slots, the learner's channel end)."""
    cfg = Config(unroll_length=5, envs_per_actor=1, batch_size=1)
    spec = EnvSpec((1,), "float32", True, 2, None, None, None, None)
    slots = SlotPool(unroll_fields(spec, cfg.unroll_length, cfg.envs_per_actor), n_slots, None)
    weights = WeightStore(1, None)
    weights.publish(np.zeros(1, np.float32))
    ours, theirs = local_channel_pair()
    envs = GymEnvBatch(env_cls, 1, lambda n: n, spec.obs_shape, spec.obs_dtype, spec.discrete, label="0")
    return Actor(0, cfg, spec, envs, ValueIsObs(), slots, theirs, weights), slots, ours


def test_unroll_alignment_exact():
    actor, slots, ours = make_actor(CountEnv, 2)

    actor.produce(0)
    actor.produce(1)
    first, second = ours.recv(), ours.recv()
    assert isinstance(first, UnrollReady) and isinstance(second, UnrollReady)
    assert first.returns == [6.0] and first.lengths == [3]  # episode 0: 1 + 2 + 3, three steps
    assert second.returns == [10.0, 6.0] and second.lengths == [4, 3]

    a = slots.arrays  # [slot, t, env]
    obs = slots.arrays["obs"][:, :, 0, 0]
    np.testing.assert_array_equal(obs[0], [0, 1, 2, 10, 11, 12])
    np.testing.assert_array_equal(a["rewards"][0, :, 0], [1, 2, 3, 1, 2])
    np.testing.assert_array_equal(a["terminated"][0, :, 0], [0, 0, 1, 0, 0])
    np.testing.assert_array_equal(a["truncated"][0, :, 0], [0, 0, 0, 0, 0])
    np.testing.assert_array_equal(a["final_value"][0, :, 0], [0, 0, 0, 0, 0])
    # The second unroll starts where the first ended (overlap by one observation).
    np.testing.assert_array_equal(obs[1], [12, 13, 20, 21, 22, 30])
    np.testing.assert_array_equal(a["rewards"][1, :, 0], [3, 4, 1, 2, 3])
    np.testing.assert_array_equal(a["terminated"][1, :, 0], [0, 0, 0, 0, 1])
    np.testing.assert_array_equal(a["truncated"][1, :, 0], [0, 1, 0, 0, 0])
    np.testing.assert_array_equal(a["final_value"][1, :, 0], [0, 14, 0, 0, 0])  # V(final obs 14)
    np.testing.assert_array_equal(a["first"][1, :, 0], [0, 0, 1, 0, 0, 1])  # obs 20 and 30 start episodes
    np.testing.assert_array_equal(a["valid"][1, :, 0], [1] * 5)
    np.testing.assert_array_equal(a["actions"][1, :, 0], [1] * 5)
    np.testing.assert_array_equal(a["behaviour_logp"][1, :, 0], [-0.5] * 5)
    assert slots.meta[1, 0] == 1  # the policy version that acted

    batch = slots.gather([1])
    inputs = learner_inputs(batch, gamma=0.9, reward_scale=0.5)
    np.testing.assert_allclose(inputs["discounts"][:, 0], [0.9, 0.0, 0.9, 0.9, 0.0])
    # Truncated step: scaled reward plus gamma * V(final obs); the others just scaled.
    np.testing.assert_allclose(inputs["rewards"][:, 0], [1.5, 2.0 + 0.9 * 14, 0.5, 1.0, 1.5])
    slots.close()
    actor.weights.close()


def test_env_error_is_reported_and_env_recreated():
    class Flaky(CountEnv):
        steps = 0

        def step(self, action):
            type(self).steps += 1
            if type(self).steps == 7:
                raise RuntimeError("boom")
            return super().step(action)

    actor, slots, ours = make_actor(Flaky, 1)
    actor.produce(0)
    actor.produce(0)
    msgs = [ours.recv() for _ in range(3)]
    assert [type(m) for m in msgs] == [UnrollReady, EnvError, UnrollReady]
    assert "env 0.0" in msgs[1].text and "RuntimeError: boom" in msgs[1].text
    # The failed step (2nd of the unroll) is cut like a time limit and bootstrapped from the last good obs.
    assert slots.arrays["truncated"][0, 1, 0] == 1
    assert slots.arrays["final_value"][0, 1, 0] == slots.arrays["obs"][0, 1, 0, 0]
    assert np.isfinite(slots.arrays["obs"][0]).all()
    slots.close()
    actor.weights.close()
