"""The env-batch seam, on every backend that is installed: the same valid transitions whatever the autoreset
mode, truncations bootstrapped from their final observation, seeding, and error recovery."""

import importlib.util

import gymnasium as gym
import numpy as np
import pytest

import custom_envs  # noqa: F401 - registers CountNext-v0 / CountSame-v0
from actorlearner.config import ConfigError
from actorlearner.env_backends import EnvBatchFactory, resolve_backend
from actorlearner.env_batch import GymEnvBatch, VectorEnvBatch
from actorlearner.envs import make_env_fn

K = 3


def count_batch(kind: str):
    """A batch of K counting envs: single envs in a loop, or a vector env of either autoreset mode."""
    if kind == "gymnasium":
        spec = EnvBatchFactory("gymnasium", K, env_fn=custom_envs.CountEnv).spec()
        return EnvBatchFactory("gymnasium", K, env_fn=custom_envs.CountingSingles())(0, 0, 1, spec)
    factory = EnvBatchFactory("vector", K, env_id=f"Count{kind}-v0")
    return factory(0, 0, 1, factory.spec())


def valid_transitions(batch, steps: int):
    """Per env: the list of (obs, reward, terminated, truncated, final obs or None, first) of the valid steps,
    and all (return, length) of the episodes that ended."""
    obs, first = batch.reset(), np.ones(K, bool)
    out, episodes = [[] for _ in range(K)], []
    for _ in range(steps):
        step = batch.step(np.ones(K, np.int64))
        finals = dict(zip(step.final_idx, step.final_obs if step.final_idx else []))
        for i in range(K):
            if step.valid is None or step.valid[i]:
                final = finals.get(i)
                out[i].append((float(obs[i, 0]), float(step.rewards[i]), bool(step.terminated[i]),
                               bool(step.truncated[i]), None if final is None else float(final[0]), bool(first[i])))
            else:  # a reset step: nothing happened but the env starting its next episode
                assert step.rewards[i] == 0 and not step.terminated[i] and not step.truncated[i]
        episodes += list(zip(step.ended_returns, step.ended_lengths))
        obs, first = step.obs, step.first
    return out, sorted(episodes)


@pytest.mark.parametrize("kind", ["Next", "Same"])
def test_vector_backends_give_the_same_transitions_as_single_envs(kind):
    want, want_eps = valid_transitions(count_batch("gymnasium"), 40)
    got, got_eps = valid_transitions(count_batch(kind), 40 if kind == "Same" else 60)
    n = min(len(g) for g in got + want)  # NEXT_STEP spends steps on resets: compare the common prefix
    assert n >= 30
    for i in range(K):
        assert got[i][:n] == want[i][:n]
    # Episode 0 of env 1: obs 1000..1002, rewards 1+2+3, terminated; episode 1 truncated after 4 steps with
    # final obs 1014 kept for the bootstrap.
    assert want[1][:7] == [(1000.0, 1.0, False, False, None, True), (1001.0, 2.0, False, False, None, False),
                           (1002.0, 3.0, True, False, None, False), (1010.0, 1.0, False, False, None, True),
                           (1011.0, 2.0, False, False, None, False), (1012.0, 3.0, False, False, None, False),
                           (1013.0, 4.0, False, True, 1014.0, False)]
    assert (6.0, 3) in got_eps and (10.0, 4) in got_eps
    assert set(got_eps) == set(want_eps)


def test_next_step_reset_steps_are_marked_invalid():
    batch = count_batch("Next")
    batch.reset()
    valid = [batch.step(np.ones(K, np.int64)).valid for _ in range(4)]
    assert valid[:3] == [None, None, None]  # episode 0 ends at its 3rd step...
    assert not valid[3].any()  # ...and the 4th call only resets every env


@pytest.mark.parametrize("mode", ["NextStep", "SameStep"])
def test_vector_env_error_cuts_every_episode_and_recovers(mode):
    make = lambda seed: custom_envs.CountVectorEnv(K, mode, fail_at=2)  # noqa: E731
    batch = VectorEnvBatch(make, K, seed=1, backend="vector", label="0")
    obs0 = batch.reset()
    batch.step(np.ones(K, np.int64))
    step = batch.step(np.ones(K, np.int64))  # raises inside: the vector env is recreated
    assert len(step.errors) == 1
    assert "simulated vector env failure" in step.errors[0] and "vector env 0" in step.errors[0]
    assert step.truncated.all() and step.first.all() and step.final_idx == list(range(K))
    np.testing.assert_array_equal(step.final_obs[:, 0], obs0[:, 0] + 1)  # bootstrapped from the last good obs
    assert step.ended_returns == []  # a cut episode's return is not the env's
    after = batch.step(np.ones(K, np.int64))  # the new env steps on
    assert not after.errors and after.rewards.tolist() == [1.0] * K


# Real envs on every installed backend: seeding and episode bookkeeping.
REAL = [("vector", "CartPole-v1", True)]
REAL.append(("ale", "ALE/Pong-v5", importlib.util.find_spec("ale_py") is not None))
REAL.append(("envpool", "CartPole-v1", importlib.util.find_spec("envpool") is not None))
REAL.append(("gymnasium", "CartPole-v1", True))


def real_batch(backend, env_id, seed, n=2):
    factory = EnvBatchFactory(backend, n, env_fn=make_env_fn(env_id), env_id=env_id)
    return factory(0, 0, seed, factory.spec()), factory.spec()


@pytest.mark.parametrize("backend, env_id, installed", REAL, ids=[r[0] for r in REAL])
def test_real_backend_seeding_and_episode_bookkeeping(backend, env_id, installed):
    if not installed:
        pytest.skip(f"{backend} is not installed (pip install 'actorlearner[atari]' or envpool)")
    steps = 60 if backend == "ale" else 300

    def play(seed):
        batch, spec = real_batch(backend, env_id, seed)
        rng = np.random.default_rng(0)
        obs = [batch.reset()]
        assert obs[0].shape == (2, *spec.obs_shape) and obs[0].dtype == np.dtype(spec.obs_dtype)
        ret, length, ended = np.zeros(2), np.zeros(2, int), []
        for _ in range(steps):
            step = batch.step(rng.integers(0, spec.action_dim, 2))
            valid = np.ones(2, bool) if step.valid is None else step.valid
            ret += np.where(valid, step.rewards, 0)
            length += valid
            done = step.terminated | step.truncated
            for i in np.flatnonzero(done):
                ended.append((ret[i], length[i]))
                ret[i], length[i] = 0, 0
            obs.append(step.obs)
        batch.close()
        return np.stack(obs), ended, step

    a, ended, _ = play(5)
    b, _, _ = play(5)
    c, _, _ = play(6)
    np.testing.assert_array_equal(a, b)  # the same seed replays the same episodes
    assert not np.array_equal(a, c)
    if backend != "ale":  # a Pong episode outlasts this test
        assert ended, "no episode ended"
    _, reported, _ = play_reported(backend, env_id, 5, steps)
    assert sorted(reported) == sorted((float(r), int(n)) for r, n in ended)


def play_reported(backend, env_id, seed, steps):
    """The (return, length) the batch itself reports, for the same actions as `play`."""
    batch, spec = real_batch(backend, env_id, seed)
    rng = np.random.default_rng(0)
    batch.reset()
    reported = []
    for _ in range(steps):
        step = batch.step(rng.integers(0, spec.action_dim, 2))
        reported += [(float(r), int(n)) for r, n in zip(step.ended_returns, step.ended_lengths)]
    batch.close()
    return None, reported, None


def test_ale_backend_gives_uint8_images_channels_last():
    if importlib.util.find_spec("ale_py") is None:
        pytest.skip("ale-py is not installed (pip install 'actorlearner[atari]')")
    _, spec = real_batch("ale", "ALE/Pong-v5", 1)
    assert spec.obs_shape == (84, 84, 4) and spec.obs_dtype == "uint8" and spec.discrete


def test_auto_picks_the_vector_entry_point_and_says_why():
    backend, why = resolve_backend("auto", "CartPole-v1", custom_env_fn=False)
    assert backend == "vector" and "vector entry point" in why
    assert resolve_backend("auto", "CartPole-v1", custom_env_fn=True)[0] == "gymnasium"
    with pytest.raises(ConfigError, match="registers no gymnasium vector entry point"):
        resolve_backend("vector", "MountainCar-v0", custom_env_fn=False)
    with pytest.raises(ConfigError, match="ALE/"):
        resolve_backend("ale", "CartPole-v1", custom_env_fn=False)


def test_env_kwargs_go_to_the_vector_entry_point_where_it_takes_them():
    """CartPoleVectorEnv takes max_episode_steps and sutton_barto_reward: a run with them keeps the vector backend
    (~3x the env steps/s of single envs), its episodes cut where asked; arguments it does not take fall back to
    single envs under auto and are one line under --env-backend vector."""
    kwargs = {"max_episode_steps": 30, "sutton_barto_reward": True}
    backend, why = resolve_backend("auto", "CartPole-v1", False, kwargs)
    assert backend == "vector" and why.startswith("the env's gymnasium vector entry point takes the --env-kwargs")
    factory = EnvBatchFactory("vector", 2, env_fn=make_env_fn("CartPole-v1", kwargs=kwargs), env_id="CartPole-v1",
                              env_kwargs=kwargs)
    spec = factory.spec()
    assert spec.max_episode_steps == 30
    batch = factory(0, 0, 1, spec)
    obs, rewards, lengths = batch.reset(), set(), []
    for _ in range(80):  # a balancing policy: its episodes last until the limit cuts them
        step = batch.step(np.array([int(o[2] + 0.5 * o[3] > 0) for o in obs]))
        obs = step.obs
        rewards.update(step.rewards.tolist())
        lengths += step.ended_lengths
    batch.close()
    assert rewards == {0.0} and lengths and set(lengths) == {30}  # Sutton and Barto's reward: 0 a step, -1 a fall
    backend, why = resolve_backend("auto", "CartPole-v1", False, {"gravity": 1.0})
    assert backend == "gymnasium" and "vector entry point does not take" in why and "TypeError" in why
    with pytest.raises(ConfigError, match="vector entry point does not take these --env-kwargs"):
        resolve_backend("vector", "CartPole-v1", False, {"gravity": 1.0})
    assert resolve_backend("auto", "Acrobot-v1", False, {"max_episode_steps": 30})[0] == "gymnasium"


def test_ale_ids_resolve_in_a_fresh_process_to_the_ale_backend():
    """gymnasium registers ALE/ ids only once ale_py is imported: an actor process (or the launcher) that
    has not imported it must still find them, and auto must not take ale-py's channels-first vector entry."""
    if importlib.util.find_spec("ale_py") is None:
        pytest.skip("ale-py is not installed (pip install 'actorlearner[atari]')")
    import subprocess
    import sys

    code = ("from actorlearner.env_backends import resolve_backend; from actorlearner.envs import make_env_fn; "
            "print(resolve_backend('auto', 'ALE/Pong-v5', False)[0], make_env_fn('ALE/Pong-v5')().spec.id)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ale", "ALE/Pong-v5"]
    assert "Powered by Stella" not in proc.stderr  # ALE's banner is not printed by every process


def test_vector_env_wrong_shape_is_an_error_and_recreates_it():
    class Truncating(custom_envs.CountVectorEnv):
        def step(self, actions):
            obs, *rest = super().step(actions)
            return (np.zeros((K, 2), np.float32) if self.calls == 2 else obs), *rest

    batch = VectorEnvBatch(lambda seed: Truncating(K), K, seed=1, backend="vector", label="0", obs_shape=(1,))
    batch.reset()
    batch.step(np.ones(K, np.int64))
    step = batch.step(np.ones(K, np.int64))
    assert len(step.errors) == 1 and "BadObservation" in step.errors[0]
    assert "step() returned an observation of shape (3, 2) float32, expected (3, 1) float32" in step.errors[0]
    assert step.truncated.all() and not batch.step(np.ones(K, np.int64)).errors


@pytest.mark.parametrize("backend", ["ale", "gymnasium"])
def test_episodic_life_ends_the_value_horizon_at_each_lost_life_but_not_the_episode(backend):
    """Breakout has 5 lives: with episodic_life every finished game shows 4 mid-episode terminal steps (first
    stays False after them) and then its own end; the reported return still spans the whole game. Without it,
    terminated comes only at the game's end."""
    if importlib.util.find_spec("ale_py") is None:
        pytest.skip("ale-py is not installed (pip install 'actorlearner[atari]')")
    from actorlearner.envs import make_env_fn

    env_id = "ALE/Breakout-v5"
    for episodic in (True, False):
        factory = EnvBatchFactory(backend, 2, env_fn=make_env_fn(env_id), env_id=env_id, episodic_life=episodic)
        batch = factory(0, 0, 3, factory.spec())
        batch.reset()
        rng = np.random.default_rng(0)
        cuts, ret, games = np.zeros(2, int), np.zeros(2), []
        for _ in range(700):
            step = batch.step(rng.integers(0, 4, 2))
            ret += step.rewards
            for i in range(2):
                if step.first[i]:  # the game ended at this step (a new one starts)
                    assert step.terminated[i] and not step.truncated[i]
                    games.append((int(cuts[i]), float(ret[i])))
                    cuts[i], ret[i] = 0, 0.0
                else:
                    cuts[i] += step.terminated[i]
            assert sorted(step.ended_returns) == sorted(r for _, r in games[len(games) - len(step.ended_returns):])
        batch.close()
        assert len(games) >= 2, "no game of random Breakout ended in 700 steps"
        assert [c for c, _ in games] == [4 if episodic else 0] * len(games)


class _LifeEachStep(gym.Env):
    """3 lives, reported at reset (as ALE does); every step loses one, the last loss ends the game."""
    observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.lives = 3
        return np.zeros(1, np.float32), {"lives": self.lives}

    def step(self, action):
        self.lives -= 1
        return np.zeros(1, np.float32), 1.0, self.lives == 0, False, {"lives": self.lives}


def test_episodic_life_on_single_envs_counts_a_life_lost_at_a_games_first_step():
    """GymEnvBatch knows the lives from the reset, at the start and after each game's end."""
    batch = GymEnvBatch(_LifeEachStep, 1, seed_of=lambda n: n, obs_shape=(1,), obs_dtype="float32",
                        scalar_actions=True, episodic_life=True)
    batch.reset()
    steps = [batch.step(np.zeros(1, np.int64)) for _ in range(6)]
    assert [bool(s.terminated[0]) for s in steps] == [True] * 6
    assert [bool(s.first[0]) for s in steps] == [False, False, True] * 2
    assert [r for s in steps for r in s.ended_returns] == [3.0, 3.0]


@pytest.mark.parametrize("stack", [1, 2, 3, 4, 8])
def test_frames_last_is_the_transpose_of_the_frame_stack(stack):
    from actorlearner.atari import frames_last

    obs = np.random.default_rng(stack).integers(0, 256, (3, stack, 7, 5), dtype=np.uint8)
    got = frames_last(obs)
    assert got.flags.c_contiguous and got.dtype == np.uint8
    np.testing.assert_array_equal(got, obs.transpose(0, 2, 3, 1))


def test_vector_backend_checks_only_the_shape_of_sampled_actions_and_steps_as_gymnasium():
    ours = EnvBatchFactory("vector", 4, env_id="CartPole-v1").make_vec(4)
    theirs = gym.make_vec("CartPole-v1", num_envs=4, vectorization_mode="vector_entry_point")
    space = ours.action_space
    assert space.contains(np.zeros(4, np.int64)) and space.nvec.tolist() == [2] * 4
    assert not space.contains(np.zeros(3, np.int64)) and not space.contains(np.zeros(4, np.float32))
    assert not space.contains([0, 1, 0, 1])
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(ours.reset(seed=3)[0], theirs.reset(seed=3)[0])
    for _ in range(100):
        actions = rng.integers(0, 2, 4)
        for a, b in zip(ours.step(actions)[:4], theirs.step(actions)[:4]):
            np.testing.assert_array_equal(a, b)
    ours.close()
    theirs.close()
