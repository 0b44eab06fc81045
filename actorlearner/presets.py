"""Named, tuned hyperparameters for the classic-control tasks, the MuJoCo tasks, and starting points for Atari
(`--preset NAME`).

A preset is a partial config: the fields it sets, the env among them. It is applied over the defaults and
under any flag the user gives. `actorlearner train --env ID` uses the preset of that env when there is one
(`--preset none` turns that off), so the plain command is the tuned one. The figures each preset reached
are in the README's learning table (benchmarks/learning.py).
"""

from __future__ import annotations

from typing import Optional

# Atari: APPO with PPO's update density (rl-baselines3-zoo's Atari PPO: 16 updates of 256 samples per 1,024 new
# ones): batches of 32 unrolls of 32 steps, 4 epochs x 4 minibatches. Pong seed 1 reached -15.2 at 1.56 M agent
# steps with it, against -19 at 1.51 M with 2 x 2 passes over 32 unrolls of 20 (one run each, same machine).
# A lost life is terminal for the value, as in the Atari baselines (EpisodicLifeEnv): Breakout seed 2 reached 4.9
# at 5 min and 11.7 at 10 min with it, 4.0 and 9.7 without (Adam 2.5e-4, one run each, back to back). Pong has
# no lives. Adam 7.5e-4 (was rl-baselines3-zoo's 2.5e-4), one run each, seed 2: Pong was at -12.3 and -12.4 after
# 1.15 M agent steps, where 2.5e-4 took 1.77 M to reach -12.0; Breakout had 9.9 at 5 min and 19.1 at 10,
# against 4.9 and 11.7 (and 3.6 and 10.6 in a second run) at 2.5e-4 on the same day.
# Adam epsilon 1e-5 and gradients clipped to norm 0.5, as every PPO for Atari has them (SB3, CleanRL): with
# 1e-7 and no effective clip (norm 40), a Pong seed-2 run at 7.5e-4 collapsed at ~0.65 M steps: its policy
# stopped depending on the frame (the same logits for every Pong frame, 95 % of the torso's 256 units never
# active; learning runs have 6-22 % by 1.5 M) and it stayed at -20.2 to 2.6 M, while seed 1 reached 0 at
# 1.26 M. With them, seeds 2 and 3 (one run each) learned: -10 at 1.15 M and 1.23 M steps.
# Actors' CNN kernels in int8 (--actor-precision; LiteRT only): the torso 37 against 74-79 us an observation, the actor
# side 0.76-0.84 of env-only stepping (median 0.82, five benchmark runs) against 0.69-0.75 and training
# 1.04-1.08x in 60-s Pong runs (2-core AMD EPYC, 2026-12-06). Pong, 26-min runs, int8 then float32: seed 1 reached 0
# at 1.48 M agent steps with int8 actors where float32 had -7.8 at 2.15 M; seed 2 0 at 1.33 M against -2.7 at 2.27 M.
# Runs of one seed differ by that much: no harm shown, no gain claimed. That CPU had AVX512-VNNI; on an AVX2-only
# one the int8 torso was the slower (290 against 198 us), hence auto: int8 only with VNNI (precision.int8_hardware).
_ATARI = {"loss": "appo", "epochs": 4, "minibatches": 4, "learning_rate": 7.5e-4, "adam_epsilon": 1e-5,
          "max_grad_norm": 0.5, "normalize_advantages": True,
          "clip_ratio": 0.1, "vtrace_lambda": 0.95, "reward_scale": 1.0, "reward_clip": 1.0, "episodic_life": True,
          "batch_size": 32, "unroll_length": 32, "envs_per_actor": 16, "eval_every_s": 0.0, "confirm_episodes": 10,
          "max_steps": 10_000_000, "actor_precision": "auto"}

# MuJoCo: BipedalWalker's APPO recipe at lr 1e-3, unclipped, and a narrower starting policy (log std -0.5).
# 100-s runs, seeds 1-2, return(100) at the end (2-core Zen 4 VM, 2026-12-04): the defaults (IMPALA, tuned on
# CartPole) left Hopper at ~450; this recipe at log std 0 had Hopper 1,648 and 2,026, HalfCheetah 1,448 and
# 1,718; at -0.5, Hopper 1,661 and 1,537, and HalfCheetah reached gymnasium's 4,800 (confirmed) in 86 s on both;
# at -1, HalfCheetah sooner but Hopper 944 and 1,396. Hopper at 300 s, seed 1: 2,044 with this, 1,969 at lr
# 3e-4, 2,417 with the rate decayed linearly to 0 at 3.5 M steps: each swung between ~900-1,300 and 2,300-2,600
# in its last 150 s, so neither steadied it; nor did --clip-ratio 0.1 or --max-grad-norm 0.5 (240-s runs, seeds
# 1-2: each still swung by ~1,000 in its last 120 s). Evaluations every 30 s, not the default 5: five 1,000-step
# episodes take the learner ~0.5 s (~10 % of its time at 5 s, ~2 % at 30), and they keep best.npz, the best policy
# of a task whose return swings (Hopper). --target-kl 0.02 ends a batch's 16 updates once the policy is that far
# from the actors' (3-6 updates a batch). 2-core Zen 4 VM, 2026-12-05, alternated runs, without -> with:
# - Walker2d-v5, return(100) at 240 s, seeds 1-4: 1,790/1,996/1,795/2,605 -> 3,461/3,926/2,702/3,766;
# - HalfCheetah (its preset), time to 4,800, seeds 1-6: 84/50/54/25/27/44 s -> 41/26/28/26/26/27 s;
# - Hopper at 240 s, seeds 1-6: 1,088/1,437/1,508/1,850/994/1,777 -> 1,872/2,117/1,946/1,175/2,736/1,545 (mean
#   1,442 -> 1,899, still swinging); Ant-v5 at 120 s, seed 1: 1,262 -> 1,508.
# The bipedalwalker, lunarlander and pendulum presets solved later or less often with it (CHANGELOG): not there.
# --target-kl-from batch (the KL from the learner's policy at the batch's start, PPO's reference) at 0.02: HalfCheetah
# reached 4,800 sooner on seeds 1-8 (19.1-31.3 s against 22.2-45.7), so its preset has it; Hopper ended lower
# (mean 1,408 against 1,816, seeds 1-4) and Walker2d within its spread, so `mujoco` keeps the actors' policy.
# 8 passes of 16 minibatches (lunarlander's, pendulum's) lost (2-core AMD EPYC VM, 2026-12-06, alternated):
# HalfCheetah (its preset) reached 4,800 in 124/37/125/47 s against 24.5/24.5/29.5/24.8 s, seeds 1-4; Hopper's best
# evaluation in 240 s was 1,842 and 1,262 against 3,275 and 3,191, return(100) at 120 s 986 and 727 against 2,179
# and 1,378, seeds 1-2. --target-kl still ends a batch after ~5 updates, each now on a 16th of it.
_MUJOCO = {"loss": "appo", "epochs": 4, "minibatches": 4, "normalize_advantages": True, "normalize_obs": True,
           "learning_rate": 1e-3, "reward_scale": 0.1, "vtrace_lambda": 0.95, "entropy_cost": 0.0,
           "init_log_std": -0.5, "envs_per_actor": 16, "batch_size": 64, "eval_every_s": 30.0, "target_kl": 0.02}

# Tasks whose episode returns spread widely (a LunarLander crash, a Pendulum swing-up that fails) confirm a solve
# on 100 episodes, not 20: a confirmation is retried every few learner steps, and over 20 episodes a policy just
# below the target passes one of its many tries by luck. With 20, seeds 1-10 left 9 of 10 saved Pendulum
# policies and 9 of 10 LunarLander ones at the target over 100 episodes afterwards (worst -226 and 188); with
# 100, LunarLander 10 of 10 (worst 206.8, median solve 42.4 s).
_WIDE_SPREAD = {"confirm_episodes": 100}

# Box actions on vector observations, where no preset names the env (MountainCarContinuous, LunarLanderContinuous,
# a user's own env): what the continuous presets share. 60-s runs, seeds 1-2, return(100) at the end (2-core Zen 4
# VM, 2026-12-04): with the defaults (IMPALA, tuned on CartPole) MountainCarContinuous stayed at -43 and -55, its
# actions clipped (health.ClipWatch), and LunarLanderContinuous at -117 and -91; with APPO 4 x 4 and normalized
# advantages alone, -99.9 twice (every action at the bound) and 90 and 69; with this, both solved in 4.5 and 4.6 s
# and in 54 and 44 s (target 200). MountainCarContinuous seeds 3-5: solved in 4.2-4.3 s.
# Gradients clipped to norm 0.5, as every PPO has them: on a task with one best action (a 1-D Box, reward
# -(a - 3)^2, zero observations) the policy's std shrinks without an entropy bonus, the gradient's norm grows as
# 1/std (1 -> 50), and Adam's steps with it, until one update moved the mean so many stds that every sample of
# the next batch was clipped (importance weights ~0, clip fraction 1.0) and the return fell from -0.01 to -36 on
# seed 1 (by 11 s) and to -14 on seed 2 (by 15 s); with entropy cost 0.01, on seed 2 only. With the clip, seeds
# 1-3 held -0.007 to -0.07 at 15 s, and MountainCarContinuous (4.3, 4.6 s) and LunarLanderContinuous (38, 56 s)
# solved as fast. It slows the collapse, it does not end it: seed 2 run for 60 s fell once, to -20 at 34 s, and
# was back at -0.1 by 60 s.
_CONTINUOUS = {"loss": "appo", "epochs": 4, "minibatches": 4, "normalize_advantages": True, "normalize_obs": True,
               "learning_rate": 1e-3, "entropy_cost": 0.0, "max_grad_norm": 0.5}

# MiniGrid (sparse rewards, 1 - 0.9 * steps / max_steps at the goal, else 0): with the defaults (IMPALA, rewards
# x0.1) DoorKey-5x5 was at return(100) 0.06-0.10 after 40 s; APPO 4 x 4 with normalized advantages, Adam 1e-3 and
# rewards unscaled reached 0.96 (about the optimum) by 10 s. --normalize-obs scales the view's codes (0-10).
_MINIGRID = {"loss": "appo", "epochs": 4, "minibatches": 4, "normalize_advantages": True, "learning_rate": 1e-3,
             "reward_scale": 1.0, "normalize_obs": True}

PRESETS: dict[str, dict] = {
    # The defaults were tuned on CartPole: unroll 20, batch 64, Adam 3e-3, rewards x0.1. On its vector env one
    # actor of 64 envs (one unroll a batch) keeps the learner busy: seeds 1-5 solved in a median 4.8 s against
    # 5.4 s with 32 envs (same run; training at 0.65 of the learner's capacity against 0.41).
    "cartpole": {"env": "CartPole-v1", "envs_per_actor": 64},
    # Acrobot learns from few samples: smaller, more frequent updates at a higher rate. Seeds 1-15 reached
    # -100 in 2.9-4.1 s (median 3.1 s, ~20 K env steps); with the defaults, 3.5-4.0 s (~50 K steps). The rate
    # is 5e-3, not 1e-2: seeds 1-30 alternated seed by seed (2-core Zen 4 VM, 2026-12-04) solved 30/30 within
    # 30 s (median 5.22 s, at most 7.8 s, 25.6 K steps) against 28/30 (5.41 s, at most 13.6 s, 21.1 K steps):
    # both misses at 1e-2 were policies gone deterministic (health.EntropyWatch warned), return -500.
    "acrobot": {"env": "Acrobot-v1", "learning_rate": 5e-3, "envs_per_actor": 16, "batch_size": 32},
    # APPO as for Pendulum, rewards x0.05 (returns reach the hundreds), and observation normalization:
    # seeds 1-5 solved in 25-36 s with it (38-47 s in a later run), seeds 1-3 in 82-116 s without.
    # Needs `pip install -e .[box2d]`. 8 passes of 16 minibatches, as Pendulum, not 4 of 4 (2-core AMD EPYC VM,
    # 2026-12-06, seeds 1-5 alternated seed by seed): 5/5 in 18.8-26.6 s (median 22.3 s), 195-276 K env steps,
    # against 5/5 in 28.3-42.9 s (median 32.1 s), 824 K-1.23 M steps.
    "lunarlander": {"env": "LunarLander-v3", "loss": "appo", "epochs": 8, "minibatches": 16,
                    "normalize_advantages": True, "normalize_obs": True, "learning_rate": 1e-3,
                    "reward_scale": 0.05, "envs_per_actor": 16, "batch_size": 64, **_WIDE_SPREAD},
    # A reward of -1 a step until the car, pushed back and forth, reaches the hilltop: observations of very
    # different scales (position ~1, velocity ~0.07) and no signal before the first success. With the defaults
    # seed 1 stayed at -200 for 60 s (7.3 M steps); normalized observations alone solved it (-110, confirmed)
    # in 46.9 s; APPO with LunarLander's recipe (rewards as the defaults) in 14.8-19.5 s, seeds 1-4 (2-core Zen 4
    # VM, 2026-12-05). Without the entropy bonus and with gradients clipped (the continuous preset): 14.2-27.4 s.
    # 8 passes of 16 minibatches, as LunarLander and Pendulum, not 4 of 4 (2-core AVX2-only AMD EPYC VM, 2026-12-07,
    # seeds 1-6 alternated seed by seed, a slow day): 6/6 in 27.8-34.6 s (median 32.2 s), 166-221 K env steps,
    # against 6/6 in 26.8-58.0 s (median 34.4 s), 581 K-1.40 M: as fast at the median, no long tail (the 4 x 4
    # policies hovered at the target and failed up to 8 confirmations), and the actors, waiting on the learner,
    # leave a core mostly free. (12-06, seeds 1-3: 12.8-17.4 s against 14.9-17.2 s.)
    "mountaincar": {"env": "MountainCar-v0", "loss": "appo", "epochs": 8, "minibatches": 16,
                    "normalize_advantages": True, "normalize_obs": True, "learning_rate": 1e-3},
    # Continuous: APPO, 4 passes of 4 minibatches over each batch, normalized advantages, a short horizon
    # and a wide starting policy. Plain IMPALA at lr 5e-3 did not learn here in 25 s; lr 1e-3 did, slower.
    # Target -200, confirmed (rl-baselines3-zoo's PPO reaches about -172; -250 let weak policies pass). Its
    # confirmations fail 3-10 times a seed before one passes, so the one that passes is the luckiest of many:
    # with 100 episodes and a margin of one standard error, 8 of 10 saved policies held -200 over 100 episodes
    # afterwards (-202.8, -200.8 missed); with two, 10 of 10 (worst -198.4), median solve 15.1 s against 13.3 s.
    # Batches of 128 unrolls, not 64 (2-core Intel Xeon VM, 2026-12-06, seeds 1-10 each, 1.5 M steps at most): 9
    # of 10 confirmed, in 517-881 K env steps and 16-24 s, against 6 of 10 in 394 K-1.21 M and 20-46 s, where the
    # policies hovered at -190 to -290 and failed confirmations by a few points (CI failed on it that day).
    # 8 passes of 16 minibatches (160 samples each; PPO's zoo recipe takes 10 passes of 64 samples), not 4 of 4
    # (2-core AMD EPYC VM, 2026-12-06, seeds 1-10 alternated with the 4 x 4): 10 of 10 confirmed in 87-351 K env
    # steps (median 187 K) and 7.6-21.8 s (median 13.2 s), against 10 of 10 in 527-868 K (median 640 K) and
    # 13.5-20.8 s (median 15.3 s). 16 x 4 and 8 x 8 took 200-450 K steps, 32 x 4 270-420 K.
    "pendulum": {"env": "Pendulum-v1", "target_return": -200.0, "loss": "appo", "epochs": 8, "minibatches": 16,
                 "normalize_advantages": True, "learning_rate": 1e-3, "gamma": 0.9, "envs_per_actor": 16,
                 "batch_size": 128, "entropy_cost": 0.0, "init_log_std": 0.5, **_WIDE_SPREAD,
                 "confirm_margin_se": 2.0},
    # LunarLander's recipe with lr 3e-4, V-trace lambda 0.95, and scaled rewards clipped to [-1, 1]: that
    # turns the -100 of a fall into -10 (scaled -1), which would otherwise swamp a step's ~0.3. The target
    # is 250 (the suite's criterion); gymnasium's own threshold is 300 (`--target-return 300`). Seeds 1-5
    # reached 250 in 49-160 s (median 96 s, 0.5-1.6 M env steps). Needs `pip install -e .[box2d]`. 8 passes of
    # 16 minibatches, not 4 of 4 (2-core AMD EPYC VM, 2026-12-06, seeds 1-4 alternated seed by seed): 4/4 in
    # 56.5, 60.5, 121.7 and 164.2 s (0.33-1.06 M env steps), against 123.3 s, not by 150 s, not by 240 s, 230.7 s.
    "bipedalwalker": {"env": "BipedalWalker-v3", "target_return": 250.0, "loss": "appo", "epochs": 8,
                      "minibatches": 16, "normalize_advantages": True, "normalize_obs": True,
                      "learning_rate": 3e-4, "reward_scale": 0.1, "reward_clip": 1.0, "vtrace_lambda": 0.95,
                      "envs_per_actor": 16, "batch_size": 64},
    # Discrete observations, one-hot (env_wrappers.flat_observations); slippery, rewarded only at the goal. With the
    # default entropy cost 0.01 the policy stayed near uniform (seeds 1-3: return(100) 0.00-0.02 after 60 s,
    # 0.16-0.32 with 0.003); with 0.001 and unscaled rewards seeds 1-5 confirmed 0.7 in 4.3-5.2 s, and their
    # saved policies play 0.698-0.724 sampled and 0.729-0.733 greedy over 2,000 episodes (the optimum is ~0.74).
    "frozenlake": {"env": "FrozenLake-v1", "entropy_cost": 0.001, "reward_scale": 1.0},
    # The 8x8 map (200 steps; the optimum is 0.913, by value iteration): with the defaults seeds 1-2 were at
    # return(100) 0.01 and 0 after 60 s; with 4x4's settings seeds 1-5 confirmed 0.85 in 4.8-43 s (seed 1 went
    # deterministic twice first); with entropy 0.003 in 5.2-8.6 s (median 6.0), saved policies 0.81-0.86 sampled
    # and 0.83-0.87 greedy over 2,000 episodes. Confirming over 100 episodes took 9-36 s and played no better.
    "frozenlake8x8": {"env": "FrozenLake8x8-v1", "entropy_cost": 0.003, "reward_scale": 1.0},
    # Taxi: -1 a step, +20 for a delivery, -10 for a pickup or drop-off in the wrong place. Unclipped, the -10s
    # teach the policy to never pick up or drop off, before any delivery is seen: return(100) stayed at -200 (no
    # illegal moves, no deliveries) with the defaults, with APPO and entropy 0.001-0.1, with rewards x0.1 or x1
    # (60-120 s runs; wider torsos and entropy 0.05 learned on 1 seed of 4). Clipped to [-1, 1], a wrong pickup
    # costs what a move does, so the policy keeps trying them, and a delivery (+1, and no more -1s) is found in
    # seconds. APPO, Adam 1e-3, an entropy cost of at least 0.01: with 0.002 (as fast in actor processes, 11 of 12
    # seeds) a serial run's policy turned near-deterministic before any delivery (seed 2: entropy 1.7 -> 0.1,
    # return(100) -500 to -1,000 for 60 s): with every reward clipped to -1 the normalized advantages are noise.
    # The target is 7.0: gymnasium's 8 is above the optimum (a mean of 7.93 over its start states, by value
    # iteration), so no policy confirms it.
    # 8 passes of 16 minibatches (MountainCar's): 3 of seeds 1-4 in 120 s (22.8-33.4 s) against 4 of 4 (16.5-29.7 s)
    # with 4 x 4, alternated (2-core Intel VM, 2026-12-08): not taken.
    # Entropy 0.015, not the default 0.01: with 0.01 the training window reached 7 in ~10 s, but the confirmations
    # (100 fresh episodes, sampled) could hover at 6.4-7.0 for a minute and more (seed 1: 29 failed, solved at 72 s;
    # seed 4 beside a 1-core busy loop: 52 failed, unsolved in 180 s, the policy falling back to -7.6). 0.02 fixed
    # that (19 runs within 21.3 s) but with --action-masks left seed 3 of 3 hovering at 6.5-7.0 for 60 s, where 0.01
    # solved 3/3 in 7.3-7.8 s. 0.015 solved all 13 runs tried: seeds 1-6 (benchmarks/learning.py) in 9.9-21.4 s,
    # seeds 1, 7, seed 4 beside the busy loop twice (11.9, 12.4 s), and masked seeds 1-3 in 7.9-22.3 s. 0.003 was
    # worse (2 of seeds 1-5 unsolved in 90 s). 2-core AVX512-VNNI Intel VM, 2026-12-08.
    "taxi": {"env": "Taxi-v4", "target_return": 7.0, "loss": "appo", "epochs": 4, "minibatches": 4,
             "normalize_advantages": True, "learning_rate": 1e-3, "reward_scale": 1.0, "reward_clip": 1.0,
             "entropy_cost": 0.015, **_WIDE_SPREAD},
    # Memory tasks (actorlearner/memory_envs.py): an LSTM core on a shared MLP torso. CartPoleNoVel with an
    # LSTM of 32: seeds 1-3 solved (confirmed) in 8.2-10.1 s against 10.4-12.8 s with 64 in the same run; the
    # learner's capacity is 1.6x (its step is bound by the LSTM's matmuls, 4 x core_size^2 a sample).
    "cartpole-novel": {"env": "actorlearner/CartPoleNoVel-v1", "core": "lstm", "core_size": 32,
                       "hidden_sizes": (64,), "envs_per_actor": 64},
    # The cue (step 0) and the query (step 20) must fall in one unroll for the gradient to join them: 40 steps.
    "cue-memory": {"env": "actorlearner/CueMemory-v0", "core": "lstm", "core_size": 32, "hidden_sizes": (32,),
                   "unroll_length": 40, "reward_scale": 1.0, "envs_per_actor": 32, "batch_size": 32},
    # Atari from pixels (the default model is then IMPALA's shallow CNN, run by the actors in LiteRT or numpy):
    # rewards clipped to [-1, 1] and not scaled, no periodic evaluation (an Atari episode takes the learner
    # seconds to minutes to play). Starting points, not tuned results (the README's Atari section has the figures).
    "pong": {"env": "ALE/Pong-v5", **_ATARI, "target_return": 18.0},
    "breakout": {"env": "ALE/Breakout-v5", **_ATARI},
    # gymnasium's MuJoCo tasks, every one (is_mujoco; `pip install -e .[mujoco]`); HalfCheetah-v5 its own.
    "mujoco": dict(_MUJOCO),
    # HalfCheetah at log std -0.5 settles on a slow gait (return ~1,800-1,900) on some seeds: seeds 1-8, one run
    # each, 150 s (2-core Zen 4 VM, 2026-12-04) reached 4,800 on 4 (seeds 2, 6, 7, 8 in 49-95 s), not seeds 1
    # (1,760 at 200 s; 58.7 s in another run), 3 and 4 (1,754-1,918 at 150 s, with and without periodic
    # evaluation) or 5 (4,292). At -1: seeds 3-8 on 5 (32-127 s; seeds 3 and 4 in 32 and 47 s), seed 6 at 4,598;
    # seeds 1 and 2 in 72 and 34 s earlier. Hopper is better at -0.5 (at -1: 944 and 1,396 against 1,661 and
    # 1,537 at 100 s), so -1 is HalfCheetah's alone.
    "halfcheetah": {"env": "HalfCheetah-v5", **_MUJOCO, "init_log_std": -1.0, "target_kl_from": "batch"},
    # Every env id with Box actions and vector observations that no preset above names (found by making one env).
    "continuous": dict(_CONTINUOUS),
    # MiniGrid and BabyAI ids (is_minigrid; `pip install -e .[minigrid]`): MiniGridVector's codes, scaled.
    "minigrid": dict(_MINIGRID),
    # Every other ALE game: the same settings (the defaults were tuned on CartPole: rewards x0.1 and unclipped,
    # Adam 3e-3, which an Atari game does not learn from). The one preset that names no env: it is for ALE ids.
    "atari": dict(_ATARI),
}


def is_atari(env_id) -> bool:
    """An ALE game id, `ALE/Game-v5` (or `module:ALE/Game-v5`)."""
    return isinstance(env_id, str) and env_id.split(":", 1)[-1].startswith("ALE/")


def is_minigrid(env_id) -> bool:
    """One of the ids the minigrid package registers, `MiniGrid-Empty-5x5-v0` or `BabyAI-GoToLocal-v0` (a
    `module:` prefix allowed): env_registry imports minigrid for them, and the minigrid preset applies."""
    return isinstance(env_id, str) and env_id.split(":", 1)[-1].startswith(("MiniGrid-", "BabyAI-"))


# gymnasium's MuJoCo locomotion and manipulation tasks (`pip install -e .[mujoco]`), by name without the version.
MUJOCO_TASKS = frozenset({"Ant", "HalfCheetah", "Hopper", "Humanoid", "HumanoidStandup", "InvertedDoublePendulum",
                          "InvertedPendulum", "Pusher", "Reacher", "Swimmer", "Walker2d"})


def mujoco_task(env_id) -> Optional[str]:
    """The task's name ("Hopper") where env_id is one of gymnasium's MuJoCo tasks, `Hopper-v5` and the like (any
    version, `module:` prefix allowed); else None. Decided from the id alone, so the launcher needs no import to
    pick the preset."""
    if not isinstance(env_id, str):
        return None
    name, _, version = env_id.split(":", 1)[-1].rpartition("-v")
    return name if name in MUJOCO_TASKS and version.isdigit() else None


def is_mujoco(env_id) -> bool:
    return mujoco_task(env_id) is not None


def preset_for_env(env_id: str):
    """The name of the preset whose env is env_id; "atari" for any other ALE game, "minigrid" for a MiniGrid or
    BabyAI id, "mujoco" for a MuJoCo task; else None."""
    exact = next((name for name, p in PRESETS.items() if p.get("env") == env_id), None)
    if exact is None and is_atari(env_id):
        return "atari"
    if exact is None and is_minigrid(env_id):
        return "minigrid"
    return "mujoco" if exact is None and is_mujoco(env_id) else exact
