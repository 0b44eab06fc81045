"""Sample Factory 2 on an Atari game with the settings of its own Atari example (sf_examples/atari/atari_params.py:
PPO, 8 rollout workers of one env each, rollout 128, batch 256, 4 epochs x 4 minibatches, lr 2.5e-4 decaying, clip
0.1, entropy 0.01, normalized inputs and returns; on the CPU), for a fixed wall clock, recording the mean return of
the last (up to) 100 finished games once a second: the curve benchmarks/curves.py compares with ours.

The game is the same ALE v5 environment actorlearner trains on (sticky actions 0.25, 108 K frames at most a game),
made with frameskip 1 so that the wrapper chain of Sample Factory's example does the rest, in its order: no-op
starts, frame skip 4 with max-pooling, life-loss terminals, FIRE at reset, reward clipping, 84x84, grey, 4-frame
stack (the example names gymnasium 0.29's wrappers, here their gymnasium 1.x successors). Returns are
RecordEpisodeStatistics' under the wrappers, as Sample Factory reports them: whole games, unclipped. Steps are
agent steps (Sample Factory counts frames: 4 a step). Time counts from this process's start.

Benchmark-only, in the virtual environment of benchmarks/sf_appo.py with ale-py added:

    sfvenv/bin/pip install ale-py==0.12.1
    sfvenv/bin/python benchmarks/sf_atari.py --env ALE/Pong-v5 --seed 1 --max-seconds 1200

Prints one JSON line last: env, seed, env_steps, wall_s, curve [(time_s, env_steps, mean return of the last (up
to) 100 games, games)].
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from actorlearner.reporting import process_age_s  # noqa: E402  (no TensorFlow: a light import)
from peer_criterion import atari_parser  # noqa: E402
from sample_factory_run import run, sample_factory_runner  # noqa: E402

START = time.monotonic() - process_age_s()
FRAMESKIP = 4  # the example's env_frameskip


def make_env(name, cfg=None, env_config=None, render_mode=None):
    """sf_examples/atari/atari_utils.make_atari_env's chain on the ALE v5 id (module level: pickled to workers)."""
    import ale_py
    import gymnasium as gym
    from sample_factory.envs.env_wrappers import (ClipRewardEnv, EpisodicLifeEnv, FireResetEnv, MaxAndSkipEnv,
                                                  NoopResetEnv, NumpyObsWrapper)

    gym.register_envs(ale_py)
    env = gym.make(name, frameskip=1, render_mode=render_mode)
    env = gym.wrappers.RecordEpisodeStatistics(env)
    env = NoopResetEnv(env, noop_max=30)
    env = MaxAndSkipEnv(env, skip=FRAMESKIP)
    env = EpisodicLifeEnv(env)
    if "FIRE" in env.unwrapped.get_action_meanings():
        env = FireResetEnv(env)
    env = ClipRewardEnv(env)
    env = gym.wrappers.ResizeObservation(env, (84, 84))
    env = gym.wrappers.GrayscaleObservation(env)
    env = gym.wrappers.FrameStackObservation(env, 4)
    return NumpyObsWrapper(env)


def main() -> None:
    parser = atari_parser(__doc__)
    parser.epilog = ("Other --name=value arguments go to Sample Factory after its example's defaults, e.g. "
                     "--num_workers=2 --num_envs_per_worker=4 for a 2-core machine.")
    a, extra = parser.parse_known_args()
    for arg in extra:
        if not (arg.startswith("--") and "=" in arg):
            parser.error(f"{arg}: Sample Factory's settings are passed as --name=value")

    sys.modules["tensorflow"] = None  # its TensorBoard writer would import TensorFlow where it is installed
    import numpy as np
    from sample_factory.algo.runners.runner import AlgoObserver
    from sf_examples.atari.atari_params import atari_override_defaults

    cfg, runner = sample_factory_runner(a.env, make_env, [f"--seed={a.seed}", "--device=cpu", f"--env_frameskip="
                                        f"{FRAMESKIP}", f"--train_for_seconds={int(a.max_seconds)}", *extra],
                                        atari_override_defaults)
    curve, games = [], [0]

    def count_games(runner, msg, policy_id) -> None:
        games[0] += int("RecordEpisodeStatistics_reward" in msg["episodic"])

    class Clock(AlgoObserver):
        def on_training_step(self, runner, training_iteration_since_resume: int) -> None:
            now = time.monotonic() - START
            if curve and now - curve[-1][0] < 1.0:
                return
            window = runner.policy_avg_stats.get("RecordEpisodeStatistics_reward", [[]])[0]
            mean = float(np.mean(window)) if window else None
            curve.append((round(now, 2), runner.env_steps.get(0, 0) // FRAMESKIP, mean, games[0]))
            if now >= a.max_seconds:
                runner._stop_training()  # what Sample Factory's own end of training calls

    run(cfg, runner, Clock(), count_games)
    print(json.dumps({"env": a.env, "seed": a.seed, "env_steps": runner.env_steps.get(0, 0) // FRAMESKIP,
                      "wall_s": time.monotonic() - START, "curve": curve}))


if __name__ == "__main__":
    main()
