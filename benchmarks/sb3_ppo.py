"""stable-baselines3 PPO (sb3-contrib's RecurrentPPO for actorlearner/CartPoleNoVel-v1, its MaskablePPO with
--action-masks) with rl-baselines3-zoo's tuned hyperparameters (SB3's defaults where the zoo has none), timed to
the same criterion as actorlearner: the mean return of
the last 100 finished training episodes reaches the target and then the current policy, on
--confirm-episodes fresh episodes (sampled actions, as in training; all played at once in a vector env, the
way actorlearner plays its confirmation), reaches it too, by --confirm-margin-se standard errors of its mean
(actorlearner's rule, `evaluation.confirmation_passes`); a failed confirmation is counted and the next is
tried after the next rollout. Time is counted from this process's start, confirmations included.
Benchmark-only (`pip install -e .[bench]`): torch, stable-baselines3 and sb3-contrib are never runtime
dependencies of actorlearner.

    python benchmarks/sb3_ppo.py --env CartPole-v1 --seed 1 --target 475 --max-seconds 120 [--confirm-episodes 20]

Prints one JSON line: solved_at_s, solved_at_steps (at the passed confirmation), window_reached_at_s,
confirmations_failed, confirm_return_mean, mean_return_100, env_steps, curve [(time_s, env_steps,
mean return of the last (up to) 100 episodes, episodes)], a point a second from the first finished episode.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from actorlearner.evaluation import confirmation_passes  # noqa: E402  (ours, so both sides share the rule)
from actorlearner.reporting import process_age_s  # noqa: E402  (no TensorFlow: a light import)
from peer_criterion import peer_parser  # noqa: E402

START = time.monotonic() - process_age_s()

# The zoo's policy for its tuned MuJoCo entries: two ReLU layers of 256 per side, log std -2 at the start.
_ZOO_MUJOCO_NET = dict(log_std_init=-2, ortho_init=False, activation="relu",
                       net_arch=dict(pi=[256, 256], vf=[256, 256]))

# rl-baselines3-zoo, hyperparams/ppo.yml (n_envs and normalize are used to build the vectorized env;
# "lin_X" is a linear schedule from X to 0 over n_timesteps).
ZOO = {
    "CartPole-v1": dict(n_envs=8, n_timesteps=1e5, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98,
                        n_epochs=20, ent_coef=0.0, learning_rate="lin_0.001", clip_range="lin_0.2"),
    "Acrobot-v1": dict(n_envs=16, n_timesteps=1e6, normalize=True, n_steps=256, gae_lambda=0.94, gamma=0.99,
                       n_epochs=4, ent_coef=0.0),
    "Pendulum-v1": dict(n_envs=4, n_timesteps=1e5, n_steps=1024, gae_lambda=0.95, gamma=0.9, n_epochs=10,
                        ent_coef=0.0, learning_rate=1e-3, clip_range=0.2, use_sde=True, sde_sample_freq=4),
    "MountainCar-v0": dict(n_envs=16, n_timesteps=1e6, normalize=True, n_steps=16, gae_lambda=0.98, gamma=0.99,
                           n_epochs=4, ent_coef=0.0),
    "MountainCarContinuous-v0": dict(n_envs=1, n_timesteps=2e4, normalize=True, batch_size=256, n_steps=8,
                                     gamma=0.9999, learning_rate=7.77e-5, ent_coef=0.00429, clip_range=0.1,
                                     n_epochs=10, gae_lambda=0.9, max_grad_norm=5, vf_coef=0.19, use_sde=True,
                                     policy_kwargs=dict(log_std_init=-3.29, ortho_init=False)),
    # The zoo's LunarLanderContinuous-v2 entry (v3 fixed bugs of v2's physics and rendering).
    "LunarLanderContinuous-v3": dict(n_envs=16, n_timesteps=1e6, n_steps=1024, batch_size=64, gae_lambda=0.98,
                                     gamma=0.999, n_epochs=4, ent_coef=0.01),
    "LunarLander-v3": dict(n_envs=16, n_timesteps=1e6, n_steps=1024, batch_size=64, gae_lambda=0.98,
                           gamma=0.999, n_epochs=4, ent_coef=0.01),
    # rl-baselines3-zoo, hyperparams/ppo_lstm.yml: sb3-contrib's RecurrentPPO on the velocity-free CartPole.
    "actorlearner/CartPoleNoVel-v1": dict(recurrent=True, n_envs=8, n_timesteps=1e5, normalize=True, n_steps=32,
                                          batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
                                          learning_rate="lin_0.001", clip_range="lin_0.2",
                                          policy_kwargs=dict(ortho_init=False, activation="relu",
                                                             lstm_hidden_size=64, enable_critic_lstm=True,
                                                             net_arch=dict(pi=[64], vf=[64]))),
    "BipedalWalker-v3": dict(n_envs=32, n_timesteps=5e6, normalize=True, n_steps=2048, batch_size=64,
                             gae_lambda=0.95, gamma=0.999, n_epochs=10, ent_coef=0.0, learning_rate=3e-4,
                             clip_range=0.18),
    # No zoo entry (learning.py runs it as taxi-masked, with --action-masks: sb3-contrib's MaskablePPO): SB3's own
    # defaults (n_steps 2048, batch 64, 10 epochs, Adam 3e-4, gamma 0.99, GAE 0.95, no entropy bonus) on 8 envs.
    "Taxi-v4": dict(n_envs=8, n_timesteps=2e6),
    # rl_zoo3 2.x's minigrid defaults (after rl-starter-files): observations normalized, 8 envs. The zoo wraps the
    # env in minigrid's FlatObsWrapper (the view and the mission's characters one-hot, a uint8 Box of 2,835); with it
    # SB3 PPO stayed at return(100) 0-0.004 on seeds 1-3 in the zoo's 100 K steps, and at 0 for 400 K on seed 1 (also
    # with Adam 1e-3 and entropy 0.01): SB3 2.9's rollout buffer keeps observations in their space's dtype, so the
    # normalized values were cast back to uint8. Here it sees what actorlearner's MLP sees, float32
    # (env_wrappers.MiniGridVector): seed 1 solved in 26 s.
    "MiniGrid-DoorKey-5x5-v0": dict(env_wrapper="minigrid_vector", normalize=True, n_envs=8, n_timesteps=1e5,
                                    n_steps=128, batch_size=64, gae_lambda=0.95, gamma=0.99, n_epochs=10,
                                    ent_coef=0.0, learning_rate=2.5e-4, clip_range=0.2),
    # The zoo's tuned MuJoCo entries (HalfCheetah-v3, Hopper-v3, Walker2d-v3; v5 has the same dynamics and
    # rewards), on gymnasium's v5 ids.
    "HalfCheetah-v5": dict(n_envs=1, n_timesteps=1e6, normalize=True, batch_size=64, n_steps=512, gamma=0.98,
                           learning_rate=2.0633e-05, ent_coef=0.000401762, clip_range=0.1, n_epochs=20,
                           gae_lambda=0.92, max_grad_norm=0.8, vf_coef=0.58096, policy_kwargs=_ZOO_MUJOCO_NET),
    "Hopper-v5": dict(n_envs=1, n_timesteps=1e6, normalize=True, batch_size=32, n_steps=512, gamma=0.999,
                      learning_rate=9.80828e-05, ent_coef=0.00229519, clip_range=0.2, n_epochs=5, gae_lambda=0.99,
                      max_grad_norm=0.7, vf_coef=0.835671, policy_kwargs=_ZOO_MUJOCO_NET),
    # Walker2d's entry names no policy_kwargs: SB3's default network (64x64 tanh, log std 0), not _ZOO_MUJOCO_NET.
    "Walker2d-v5": dict(n_envs=1, n_timesteps=1e6, normalize=True, batch_size=32, n_steps=512, gamma=0.99,
                        learning_rate=5.05041e-05, ent_coef=0.000585045, clip_range=0.1, n_epochs=20,
                        gae_lambda=0.95, max_grad_norm=1, vf_coef=0.871923),
}


class _Solved(Exception):
    """Raised from the callback to end learn() once a confirmation passed."""


def info_masks(env):
    """env with sb3-contrib's action_masks() answered from its last reset's or step's info["action_mask"] (gymnasium's
    convention, which actorlearner's --action-masks reads; MaskablePPO calls the method)."""
    import gymnasium as gym

    class InfoMasks(gym.Wrapper):
        def reset(self, **kwargs):
            obs, info = self.env.reset(**kwargs)
            self.mask = info["action_mask"]
            return obs, info

        def step(self, action):
            out = self.env.step(action)
            self.mask = out[4]["action_mask"]
            return out

        def action_masks(self):
            return self.mask.astype(bool)

    return InfoMasks(env)


def main() -> None:
    p = peer_parser(__doc__, ZOO, max_seconds=600)
    p.add_argument("--action-masks", action="store_true", help="sb3-contrib's MaskablePPO, the masks from the env's "
                   "info['action_mask'] (as actorlearner's --action-masks)")
    a = p.parse_args()

    # SB3's logger imports TensorBoard, which imports TensorFlow when it is installed (it is, for
    # actorlearner), and torch and TensorFlow in one process segfault here. SB3 needs neither TF nor TB.
    sys.modules["tensorflow"] = None
    import numpy as np
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    torch.set_num_threads(1)  # zoo's default on CPU for these MLPs; more threads only contend on 2 cores
    hp = dict(ZOO[a.env])
    n_envs, n_timesteps, normalize = hp.pop("n_envs"), int(hp.pop("n_timesteps")), hp.pop("normalize", False)
    recurrent, masked = hp.pop("recurrent", False), a.action_masks
    grid_vector = hp.pop("env_wrapper", None) == "minigrid_vector"
    if "policy_kwargs" in hp:
        kwargs = dict(hp["policy_kwargs"])
        if "activation" in kwargs:
            kwargs["activation_fn"] = {"relu": torch.nn.ReLU}[kwargs.pop("activation")]
        hp["policy_kwargs"] = kwargs
    if a.env.startswith("actorlearner/"):
        from actorlearner import memory_envs  # registers the package's memory tasks (no TensorFlow)

        memory_envs.register()
    for key in ("learning_rate", "clip_range"):
        if isinstance(hp.get(key), str):
            start = float(hp[key].split("_")[1])
            hp[key] = lambda progress, start=start: progress * start  # SB3 passes 1 -> 0
    wrap = dict(wrapper_class=info_masks) if masked else {}
    if grid_vector:
        import minigrid  # noqa: F401 - registers its ids

        from actorlearner.env_wrappers import MiniGridVector

        wrap = dict(wrapper_class=MiniGridVector)
    env = make_vec_env(a.env, n_envs=n_envs, seed=a.seed, **wrap)
    if normalize:  # the zoo normalizes rewards too, except for the recurrent CartPole (norm_reward: False)
        env = VecNormalize(env, gamma=hp["gamma"], norm_reward=not recurrent)
    curve = []

    def confirm(model, k: int) -> list:
        """Returns of the current policy over a.confirm_episodes fresh episodes, one per env of a vector
        env, sampled actions; VecNormalize's statistics as training has them, frozen."""
        n = a.confirm_episodes
        venv = make_vec_env(a.env, n_envs=n, seed=a.seed + 10_000 * (k + 1), **wrap)
        if normalize:
            venv = VecNormalize(venv, gamma=hp["gamma"], training=False, norm_reward=False)
            venv.obs_rms = env.obs_rms
        obs, returns = venv.reset(), [None] * n
        state, starts = None, np.ones(n, bool)  # a recurrent policy's LSTM state (PPO ignores both)
        while any(r is None for r in returns):
            masks = dict(action_masks=np.stack(venv.env_method("action_masks"))) if masked else {}
            actions, state = model.predict(obs, state=state, episode_start=starts, deterministic=False, **masks)
            obs, _, dones, infos = venv.step(actions)
            starts = dones
            for i, (done, info) in enumerate(zip(dones, infos)):
                if done and returns[i] is None:
                    returns[i] = info["episode"]["r"]  # make_vec_env's Monitor: the unnormalized return
        venv.close()
        return returns

    class Criterion(BaseCallback):
        solved_at = window_at = confirm_mean = None
        failed = episodes = 0
        due = False  # the window reached the target: confirm at the end of this rollout

        def _on_step(self) -> bool:
            buf = self.model.ep_info_buffer  # the last 100 finished episodes (stats_window_size)
            now = time.monotonic() - START
            Criterion.episodes += int(sum(self.locals["dones"]))
            if buf and (not curve or now - curve[-1][0] >= 1.0):  # as ours: the mean of up to 100
                curve.append((now, self.num_timesteps, sum(e["r"] for e in buf) / len(buf), Criterion.episodes))
            if len(buf) == 100:
                mean = sum(e["r"] for e in buf) / 100
                if mean >= a.target:
                    if Criterion.window_at is None:
                        Criterion.window_at = now
                    if not a.confirm_episodes:
                        Criterion.solved_at = (now, self.num_timesteps, mean)
                        return False
                    Criterion.due = True
            return now < a.max_seconds

        def _on_rollout_end(self) -> None:
            # Between the rollout and its update, as actorlearner confirms between learner steps.
            if not Criterion.due:
                return
            Criterion.due = False
            passed, Criterion.confirm_mean, _ = confirmation_passes(confirm(self.model, Criterion.failed), a.target,
                                                                    a.confirm_margin_se)
            if passed:
                buf = self.model.ep_info_buffer
                Criterion.solved_at = (time.monotonic() - START, self.num_timesteps, sum(e["r"] for e in buf) / 100)
                raise _Solved  # before this rollout's update: the weights that passed are the final ones
            Criterion.failed += 1

    if masked:
        from sb3_contrib import MaskablePPO

        model = MaskablePPO("MlpPolicy", env, seed=a.seed, device="cpu", verbose=0, **hp)
    elif recurrent:
        from sb3_contrib import RecurrentPPO

        model = RecurrentPPO("MlpLstmPolicy", env, seed=a.seed, device="cpu", verbose=0, **hp)
    else:
        model = PPO("MlpPolicy", env, seed=a.seed, device="cpu", verbose=0, **hp)
    try:
        model.learn(total_timesteps=n_timesteps, callback=Criterion())
    except _Solved:
        pass
    buf = model.ep_info_buffer
    solved = Criterion.solved_at
    print(json.dumps({"env": a.env, "seed": a.seed, "solved_at_s": solved and solved[0],
                      "solved_at_steps": solved and solved[1], "window_reached_at_s": Criterion.window_at,
                      "confirmations_failed": Criterion.failed, "confirm_return_mean": Criterion.confirm_mean,
                      "env_steps": model.num_timesteps,
                      "mean_return_100": sum(e["r"] for e in buf) / len(buf) if buf else None,
                      "wall_s": time.monotonic() - START, "curve": curve}))


if __name__ == "__main__":
    main()
