"""Sample Factory 2 APPO on CartPole-v1 with the settings of its own CartPole example (sf_examples/train_gym_env.py's
docstring), timed to the same criterion as actorlearner: the mean return of the last 100 finished training episodes
reaches the target, then the current policy, on --confirm-episodes fresh episodes (sampled actions, all played at
once), reaches it too by --confirm-margin-se standard errors (actorlearner's rule,
`evaluation.confirmation_passes`); a failed confirmation is counted and the next is tried after the next training
step. Time is counted from this process's start, confirmations included.

Sample Factory runs in its default asynchronous mode: rollout workers, inference workers and the learner in their
own processes. The window is read and the confirmation played in the runner's process, between its reports of
the learner's steps, from the learner's shared-memory weights (as Sample Factory's inference workers read them);
its workers go on sampling and learning meanwhile, so a confirmation costs Sample Factory less time than it costs
actorlearner (whose learner waits for it).

Benchmark-only, in a virtual environment of its own (torch and sample-factory are never dependencies of
actorlearner; Sample Factory 2.1.1 declares gymnasium<1.0 but runs CartPole with gymnasium 1.x, which this file
needs to import actorlearner's rule):

    python3 -m venv sfvenv && sfvenv/bin/pip install sample-factory==2.1.1 && sfvenv/bin/pip install gymnasium==1.4.0
    sfvenv/bin/python benchmarks/sf_appo.py --seed 1 --target 475 --max-seconds 120

Prints one JSON line last, as benchmarks/sb3_ppo.py does: solved_at_s, solved_at_steps, window_reached_at_s,
confirmations_failed, confirm_return_mean, mean_return_100, env_steps, curve [(time_s, env_steps, mean return of the
last (up to) 100 episodes, episodes)], a point a second from the first finished episode.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from actorlearner.evaluation import confirmation_passes  # noqa: E402  (ours, so both sides share the rule)
from actorlearner.reporting import process_age_s  # noqa: E402  (no TensorFlow: a light import)
from peer_criterion import one_episode_each, peer_parser  # noqa: E402
from sample_factory_run import run, sample_factory_runner  # noqa: E402

START = time.monotonic() - process_age_s()

ENV = "CartPole-v1"
# sf_examples/train_gym_env.py: "Example command line for CartPole-v1" (Sample Factory 2.1.1), on the CPU.
EXAMPLE_ARGS = ["--algo=APPO", "--use_rnn=False", "--num_envs_per_worker=20", "--policy_workers_per_policy=2",
                "--recurrence=1", "--with_vtrace=False", "--batch_size=512", "--reward_scale=0.1",
                "--save_every_sec=10", "--experiment_summaries_interval=10", "--device=cpu"]


def make_env(name, cfg=None, env_config=None, render_mode=None):
    """Sample Factory's env factory (at module level: it is pickled to its spawned workers)."""
    import gymnasium as gym

    return gym.make(name, render_mode=render_mode)


def main() -> None:
    p = peer_parser(__doc__, [ENV], "the one env Sample Factory's examples tune", default_env=ENV)
    a = p.parse_args()

    sys.modules["tensorflow"] = None  # its TensorBoard writer would import TensorFlow where it is installed
    import numpy as np
    import torch
    from sample_factory.algo.runners.runner import AlgoObserver
    from sample_factory.algo.utils.rl_utils import prepare_and_normalize_obs
    from sample_factory.model.actor_critic import create_actor_critic
    from signal_slot.signal_slot import EventLoopObject

    cfg, runner = sample_factory_runner(ENV, make_env, EXAMPLE_ARGS + [f"--seed={a.seed}",
                                                                      f"--train_for_seconds={int(a.max_seconds)}"])

    class Weights(EventLoopObject):
        """Receives the learner's initial model data: its state dict lives in shared memory, so it stays the
        learner's current weights (Sample Factory's inference workers read it the same way)."""
        state_dict = lock = None

        def on_model(self, init_model_data) -> None:
            if init_model_data is not None:
                self.state_dict = init_model_data[1]

    curve = []
    result = dict(solved_at=None, window_at=None, confirm_mean=None, failed=0, episodes=0)

    def count_episodes(runner, msg, policy_id) -> None:
        finished = msg["episodic"]["reward"]
        result["episodes"] += int(np.size(finished))

    def confirm(policy, k: int) -> list:
        """Returns of the current policy over a.confirm_episodes fresh episodes, one env each, sampled actions."""
        rnn = torch.zeros([a.confirm_episodes, 1])  # a feed-forward model's (unused) recurrent state

        def act(obs):
            with torch.no_grad():
                out = policy(prepare_and_normalize_obs(policy, {"obs": torch.as_tensor(obs)}), rnn)
            return out["actions"].reshape(-1).numpy()

        return one_episode_each(ENV, a.confirm_episodes, a.seed + 10_000 * (k + 1), act)

    class Criterion(AlgoObserver):
        policy = None

        def on_connect_components(self, runner) -> None:
            self.weights = Weights(runner.event_loop, "bench_weights")
            self.weights.lock = runner.learners[0].param_server.policy_lock
            runner.learners[0].model_initialized.connect(self.weights.on_model)

        def on_training_step(self, runner, training_iteration_since_resume: int) -> None:
            now = time.monotonic() - START
            window = runner.policy_avg_stats.get("reward", [[]])[0]
            steps = runner.env_steps.get(0, 0)
            if window and (not curve or now - curve[-1][0] >= 1.0):
                curve.append((now, steps, float(np.mean(window)), result["episodes"]))
            if result["solved_at"] or len(window) < 100 or np.mean(window) < a.target:
                return
            if result["window_at"] is None:
                result["window_at"] = now
            if a.confirm_episodes and self.weights.state_dict is not None:
                if self.policy is None:
                    self.policy = create_actor_critic(cfg, runner.env_info.obs_space, runner.env_info.action_space)
                    self.policy.eval()
                with self.weights.lock:
                    self.policy.load_state_dict(self.weights.state_dict)
                passed, result["confirm_mean"], _ = confirmation_passes(
                    confirm(self.policy, result["failed"]), a.target, a.confirm_margin_se)
                if not passed:
                    result["failed"] += 1
                    return
            elif a.confirm_episodes:
                return  # the learner's weights have not arrived yet
            result["solved_at"] = (time.monotonic() - START, steps, float(np.mean(window)))
            runner._stop_training()  # what Sample Factory's own end of training (train_for_seconds) calls

    run(cfg, runner, Criterion(), count_episodes)
    window = runner.policy_avg_stats.get("reward", [[]])[0]
    solved = result["solved_at"]
    print(json.dumps({"env": ENV, "seed": a.seed, "solved_at_s": solved and solved[0],
                      "solved_at_steps": solved and solved[1], "window_reached_at_s": result["window_at"],
                      "confirmations_failed": result["failed"], "confirm_return_mean": result["confirm_mean"],
                      "env_steps": runner.env_steps.get(0, 0),
                      "mean_return_100": float(np.mean(window)) if window else None,
                      "wall_s": time.monotonic() - START, "curve": curve}))


if __name__ == "__main__":
    main()
