"""RLlib PPO or APPO on CartPole-v1 with the settings of RLlib's tuned examples (new API stack, RLlib's defaults
otherwise): PPO as rllib/tuned_examples/ppo/cartpole_ppo.py (lr 3e-4, 6 epochs, value-loss coefficient 0.01, one
linear hidden layer of 32 shared by the policy and the value function); APPO, RLlib's IMPALA-style asynchronous PPO
and the closest to actorlearner's own, as rllib/tuned_examples/appo/cartpole_appo.py (2 passes over each batch in
its circular buffer, value-loss coefficient 0.05, no entropy bonus, the default network shared by the policy and
the value function). Timed to the same criterion as actorlearner: the mean
return of the last 100 finished training episodes reaches the target (gathered here from an episode-end callback:
RLlib's own `episode_return_mean` covered fewer episodes than its 100-episode setting says, one iteration's 8
episodes where the 100 before them were at 387), then the current policy, on --confirm-episodes fresh episodes
(sampled actions, all played at once), reaches it too by --confirm-margin-se standard errors (actorlearner's rule,
`evaluation.confirmation_passes`), played with the learner's current weights; a failed confirmation is counted and
the next is tried after the next training iteration. Time is counted from this process's start (Ray's start
included), confirmations included.

Benchmark-only, in a virtual environment of its own (torch and RLlib are never dependencies of actorlearner):

    python3 -m venv rlvenv && rlvenv/bin/pip install "ray[rllib]==2.60.0" torch
    rlvenv/bin/python benchmarks/rllib_cartpole.py --algo ppo --seed 1 --target 475 --max-seconds 300

Prints one JSON line last, as benchmarks/sb3_ppo.py does: solved_at_s, solved_at_steps, window_reached_at_s,
confirmations_failed, confirm_return_mean, mean_return_100, env_steps, curve [(time_s, env_steps, mean return of the
last (up to) 100 episodes, episodes)], a point each training iteration.
"""

import collections
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from actorlearner.evaluation import confirmation_passes  # noqa: E402  (ours, so both sides share the rule)
from actorlearner.reporting import process_age_s  # noqa: E402  (no TensorFlow: a light import)
from peer_criterion import one_episode_each, peer_parser  # noqa: E402

START = time.monotonic() - process_age_s()
ENV = "CartPole-v1"


def main() -> None:
    p = peer_parser(__doc__, [ENV], "the env of RLlib's tuned examples used here", default_env=ENV)
    p.add_argument("--algo", default="ppo", choices=["ppo", "appo"])
    a = p.parse_args()

    sys.modules["tensorflow"] = None  # RLlib imports TensorFlow where it is installed; it uses torch here
    import numpy as np
    import ray
    import torch
    from ray.rllib.algorithms.appo import APPOConfig
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.callbacks.callbacks import RLlibCallback
    from ray.rllib.core import DEFAULT_MODULE_ID
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    class EpisodeReturns(RLlibCallback):
        """Every finished episode's return, in the env runners; each iteration's result lists the new ones."""

        def on_episode_end(self, *, episode, metrics_logger=None, **kwargs) -> None:
            metrics_logger.log_value("bench_episode_returns", episode.get_return(), reduce="item_series")

    temp_dir = tempfile.mkdtemp(prefix="rl")  # Ray's session files, removed at the end (not left in /tmp/ray)
    # APPO's learner runs as a Ray actor of its own (below), beside its two env runners: twice the cores as Ray's
    # logical CPUs lets the three be placed on a 2-core machine (they share the cores, as ours do).
    cpus = os.cpu_count() * (2 if a.algo == "appo" else 1)
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, _temp_dir=temp_dir)
    if a.algo == "ppo":
        config = (PPOConfig().training(lr=0.0003, num_epochs=6, vf_loss_coeff=0.01)
                  .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[32], fcnet_activation="linear",
                                                             vf_share_layers=True)))
    else:
        config = (APPOConfig().training(circular_buffer_iterations_per_batch=2, vf_loss_coeff=0.05, entropy_coeff=0.0)
                  .rl_module(model_config=DefaultModelConfig(vf_share_layers=True)))
    # APPO with RLlib's default local learner (num_learners=0) returned no result from its first train() in 3
    # minutes here (RLlib 2.60, 2 cores); with a learner actor it trains.
    config = config.learners(num_learners=1 if a.algo == "appo" else 0)
    algo = config.environment(ENV).debugging(seed=a.seed).callbacks(EpisodeReturns).build_algo()

    def current_module():
        """The learner's own module where the learner runs in this process (PPO: RLlib's default, num_learners=0);
        else (APPO's learner actor) the local env runner's module given the learner's current weights."""
        learner = getattr(algo.learner_group, "_learner", None)
        if learner is not None:
            return learner.module[DEFAULT_MODULE_ID]
        module = algo.get_module()
        module.set_state(algo.learner_group.get_weights([DEFAULT_MODULE_ID])[DEFAULT_MODULE_ID])
        return module

    def confirm(k: int) -> list:
        """Returns of the current policy over a.confirm_episodes fresh episodes, one env each, sampled actions."""
        module = current_module()

        def act(obs):
            with torch.no_grad():
                logits = module.forward_exploration({"obs": torch.as_tensor(obs)})["action_dist_inputs"]
            return torch.distributions.Categorical(logits=logits).sample().numpy()

        return one_episode_each(ENV, a.confirm_episodes, a.seed + 10_000 * (k + 1), act)

    curve, solved, window_at, confirm_mean, failed, steps, mean = [], None, None, None, 0, 0, None
    window, episodes = collections.deque(maxlen=100), 0
    try:
        while time.monotonic() - START < a.max_seconds:
            result = algo.train()
            runners = result.get("env_runners", {})
            new = runners.get("bench_episode_returns", [])
            new = new if isinstance(new, list) else []  # only a list carries this iteration's returns
            window.extend(new)
            episodes += len(new)
            steps = result.get("num_env_steps_sampled_lifetime", runners.get("num_env_steps_sampled_lifetime", 0))
            now = time.monotonic() - START
            if not window:
                continue
            mean = float(np.mean(window))
            curve.append((now, steps, mean, episodes))
            if len(window) < 100 or mean < a.target:
                continue
            window_at = window_at or now
            if a.confirm_episodes:
                passed, confirm_mean, _ = confirmation_passes(confirm(failed), a.target, a.confirm_margin_se)
                if not passed:
                    failed += 1
                    continue
            solved = (time.monotonic() - START, steps)
            break
    finally:
        algo.stop()
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
    print(json.dumps({"env": ENV, "seed": a.seed, "solved_at_s": solved and solved[0],
                      "solved_at_steps": solved and solved[1], "window_reached_at_s": window_at,
                      "confirmations_failed": failed, "confirm_return_mean": confirm_mean, "env_steps": steps,
                      "mean_return_100": mean, "wall_s": time.monotonic() - START, "curve": curve}))


if __name__ == "__main__":
    main()
