"""stable-baselines3 PPO on an Atari game with rl-baselines3-zoo's Atari hyperparameters, for a fixed wall
clock, recording the mean return of the last (up to) 100 finished training episodes once a second.

The game is the same ALE v5 environment actorlearner trains on (sticky actions 0.25, 108 K frames at most an
episode), made with frameskip 1 so that SB3's own `AtariWrapper` does the frame skipping, max-pooling, 84x84
grey resize, no-op starts, life-loss terminals and reward clipping, as the zoo runs it; 4-frame stack; 8 envs.
Returns are the Monitor's (under the wrappers): whole games, unclipped, as actorlearner reports them. Time
counts from this process's start. Benchmark-only (`pip install -e .[bench]` plus ale-py and opencv).

    python benchmarks/sb3_atari.py --env ALE/Pong-v5 --seed 1 --max-seconds 1200

Prints one JSON line: env, seed, env_steps (agent steps, as ours count them), wall_s, curve
[(time_s, env_steps, mean_return_last_100, episodes)].
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from actorlearner.reporting import process_age_s  # noqa: E402  (no TensorFlow: a light import)
from peer_criterion import atari_parser  # noqa: E402

START = time.monotonic() - process_age_s()

# rl-baselines3-zoo, hyperparams/ppo.yml, "atari" ("lin_X": linear from X to 0 over n_timesteps).
ZOO_ATARI = dict(n_envs=8, frame_stack=4, n_timesteps=1e7, n_steps=128, n_epochs=4, batch_size=256,
                 learning_rate="lin_2.5e-4", clip_range="lin_0.1", vf_coef=0.5, ent_coef=0.01)


class _TimeUp(Exception):
    """Raised from the callback to end learn() at the wall-clock budget."""


def main() -> None:
    a = atari_parser(__doc__).parse_args()

    sys.modules["tensorflow"] = None  # SB3's logger would import TF via TensorBoard; torch + TF segfault here
    import ale_py
    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.atari_wrappers import AtariWrapper
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecFrameStack, VecTransposeImage

    gym.register_envs(ale_py)
    hp = dict(ZOO_ATARI)
    n_envs, frame_stack, n_timesteps = hp.pop("n_envs"), hp.pop("frame_stack"), int(hp.pop("n_timesteps"))
    for key in ("learning_rate", "clip_range"):
        start = float(hp[key].split("_")[1])
        hp[key] = lambda progress, start=start: progress * start  # SB3 passes 1 -> 0
    env = make_vec_env(a.env, n_envs=n_envs, seed=a.seed, wrapper_class=AtariWrapper,
                       env_kwargs={"frameskip": 1})
    env = VecTransposeImage(VecFrameStack(env, n_stack=frame_stack))  # as the zoo builds it
    curve = []

    class Clock(BaseCallback):
        episodes = 0

        def _on_step(self) -> bool:
            Clock.episodes += sum(1 for info in self.locals["infos"] if "episode" in info)
            now = time.monotonic() - START
            if not curve or now - curve[-1][0] >= 1.0:
                buf = self.model.ep_info_buffer  # the last 100 finished episodes (stats_window_size)
                mean = sum(e["r"] for e in buf) / len(buf) if buf else None
                curve.append((round(now, 2), self.num_timesteps, mean, Clock.episodes))
            if now >= a.max_seconds:
                raise _TimeUp  # at once: the budget is the same wall clock for both sides
            return True

    model = PPO("CnnPolicy", env, seed=a.seed, device="cpu", verbose=0, **hp)
    try:
        model.learn(total_timesteps=n_timesteps, callback=Clock())
    except _TimeUp:
        pass
    print(json.dumps({"env": a.env, "seed": a.seed, "env_steps": model.num_timesteps,
                      "wall_s": time.monotonic() - START, "curve": curve}))


if __name__ == "__main__":
    main()
