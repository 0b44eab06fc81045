"""The one typed run configuration (config_checks.py: its validation; config_sources.py: flags, files, presets,
resume).

Everything a run needs is a field of `Config`; the help text of each flag is the field's `help` metadata,
so `--help` and the code cannot drift apart. A Config is validated once (config_checks.validate) before any process
starts and is never mutated afterwards (it is frozen).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Optional

from .layout import MODELS
from .presets import PRESETS

# --env-backend's choices (env_backends.py implements them).
ENV_BACKENDS = ("auto", "gymnasium", "vector", "ale", "envpool")


class ConfigError(ValueError):
    """Bad user input: reported as one line, exit status 2, before any process starts."""


def _f(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help, **kw})


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, as taskset or a container's cpuset sets it
    (os.cpu_count() counts the host's, so a 2-core container on a 16-core host would start 15 actors)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass(frozen=True)
class Config:
    # --- the task ---
    env: str = _f("CartPole-v1", "gymnasium environment id: any registered id with a Box observation (a vector "
                  "or an H x W x C image; other spaces that flatten to a vector are flattened, and MiniGrid's view "
                  "and direction made one vector) and Discrete, MultiDiscrete, MultiBinary or 1-D Box actions; "
                  "ALE/ ids need the atari extra, MiniGrid-/BabyAI- ids the minigrid extra; 'module:Env-v0' "
                  "imports the module first (its "
                  "registration runs), in this process and in every actor; a module is looked for on sys.path, "
                  "then in the working directory")
    env_module: Optional[str] = _f(None, "modules to import before any env is made (comma separated), in this "
                                   "process and in every actor: for envs a module registers on "
                                   "import (looked for as --env's module is)")
    env_kwargs: Optional[str] = _f(None, "keyword arguments of the env's constructor, as gym.make takes them: "
                                   "key=value pairs, comma separated (a value is read as JSON where it is: 8, 0.5, "
                                   "true; else as text), or a JSON object; e.g. map_name=8x8,is_slippery=false. "
                                   "The run keeps them (eval, export and --resume make the same env). They go to "
                                   "gym.make's single envs, or to the id's vector entry point where it takes "
                                   "them (auto falls back to single envs where it does not); not with ale, "
                                   "envpool or an env factory")
    env_backend: str = _f("auto", "how an actor steps its envs: gymnasium (single envs in a loop; any env), vector "
                          "(the id's gymnasium vector entry point, all envs in one call), ale (ale-py's "
                          "AtariVectorEnv for ALE/ ids), envpool (if installed: its C++ pool), or auto (the "
                          "fastest that exists for the id and matches gymnasium's: vector, then ale, else "
                          "gymnasium)",
                          choices=ENV_BACKENDS)
    frame_stack: int = _f(1, "observations of the last N env steps given as one, for a policy without memory to "
                          "see motion: a vector's N copies side by side, an image's N frames as N x C channels (at "
                          "an episode's start its first observation is repeated); for an env id on the gymnasium "
                          "backend (ALE games are stacked 4 by their preprocessing already)")
    action_masks: bool = _f(False, "sample only the actions the env allows in each observation: its "
                            "info['action_mask'] from reset and step (gymnasium's convention, e.g. Taxi-v4), its "
                            "action_masks() method (sb3-contrib's), or an 'action_mask' entry of a Dict "
                            "observation (PettingZoo's), one flag per action (MultiDiscrete: the "
                            "components' flags side by side); the learner's log-probs and entropies are the masked "
                            "policy's too. Categorical actions, single envs (the gymnasium backend)")
    seed: int = _f(1, "random seed for the model, the actors' envs and action sampling")
    reproducible: bool = _f(False, "the same config and seed give the same weights and the same metrics (times "
                            "aside), actor processes and all: every batch takes a fixed number of unrolls from "
                            "each actor in actor order, each unroll is acted by the policy version fixed for it "
                            "(the actors wait for the learner, as synchronous A2C does, so it is slower), and "
                            "TensorFlow's ops are deterministic. Stop with --max-steps, not --max-seconds; an "
                            "actor that crashes and is replaced breaks the sameness")
    preset: Optional[str] = _f(None, "tuned hyperparameters for a task: " + ", ".join(PRESETS) + "; sets the env "
                               "too (atari, mujoco and continuous: the settings for an ALE/ game, a MuJoCo task, or an "
                               "env with Box actions given by --env), explicit flags still win (default: the preset of "
                               "--env if it has one, atari for other ALE/ games, mujoco for gymnasium's MuJoCo tasks, "
                               "continuous for other envs with Box actions and vector observations; 'none': plain "
                               "defaults)",
                               choices=(*PRESETS, "none"))
    # --- when to stop ---
    max_seconds: float = _f(0.0, "stop after this many seconds of wall time (0: no limit)")
    max_steps: int = _f(20_000_000, "stop after this many env steps (0: no limit)")
    target_return: Optional[float] = _f(None, "solved when the mean return of the last 100 training episodes "
                                        "reaches this (default: the env spec's reward_threshold)")
    stop_at_target: bool = _f(True, "stop once solved (--no-stop-at-target keeps training)")
    # --- actors ---
    num_actors: int = _f(0, "actor processes (0: one per CPU core where the actors are the limit: single envs, "
                         "Atari; one less than the cores with vectorized cheap envs (--env-backend vector), whose "
                         "actors outrun the learner, so the learner keeps a core of its own. Cores: those this "
                         "process may run on, as taskset or a container's cpuset limits them)")
    envs_per_actor: int = _f(32, "envs stepped by each actor, their policy inference batched together")
    unroll_length: int = _f(20, "env steps per unroll (T); unrolls overlap by one step for bootstrapping")
    actor_inference: str = _f("auto", "how actors run the policy: numpy (the default models, no TensorFlow in "
                              "actors), litert (the default CNNs under LiteRT's XNNPack kernels, ~2.5x numpy's "
                              "speed; needs ai-edge-litert, in the atari extra), tensorflow (any model), or auto "
                              "(litert for the default CNNs where it is installed, else numpy; tensorflow for a "
                              "custom model)", choices=("auto", "numpy", "litert", "tensorflow"))
    actor_precision: str = _f("float32", "number format of the actors' CNN kernels under LiteRT: float32 (the "
                              "learner's model exactly) or int8 (a scale per output channel, activations "
                              "quantized as they run: ~2x the float32 torso's speed with VNNI; the actors' policy then "
                              "differs from the learner's by ~1-2 percent, which V-trace corrects as it does policy "
                              "lag), or auto (int8 where the CPU has int8 dot products, AVX512-VNNI or AVX-VNNI: "
                              "without them LiteRT's int8 kernels are slower than its float32 ones). Evaluation, "
                              "confirmation and export stay float32", choices=("float32", "int8", "auto"))
    actor_threads: int = _f(1, "threads each actor process gives its numeric libraries")
    actor_nice: Optional[int] = _f(None, "how far below the learner's the actor processes' CPU priority is (Unix "
                                   "niceness, 0-19; 0: the same). Where they share cores, the learner's threads "
                                   "then run as soon as they are ready and the actors take the rest (default: where "
                                   "the learner is the limit, 19 for Atari ids, 10 for vectorized envs: Pong 1.1x "
                                   "the agent steps/s on 2 cores at 10, 1.05x more at 19; else 0, as actors that "
                                   "are the limit lose by it)")
    # --- the model ---
    model: str = _f("auto", "the default model: mlp (two tanh torsos, vectors or flattened images), impala-shallow "
                    "(IMPALA's 2-conv CNN, images only), impala-deep (its 15-layer ResNet, images only), or auto "
                    "(impala-shallow for H x W x C images, else mlp); actors run all of them in numpy",
                    choices=MODELS)
    model_fn: str = _f("", "a custom Keras model instead of the default ones: MODULE:FUNCTION, FUNCTION(spec) -> "
                       "keras.Model as model.py's contract says, in a module importable from the working directory "
                       "or PYTHONPATH; eval, export and --resume build it again from there. Actors run it in "
                       "TensorFlow")
    core: str = _f("none", "a recurrent core between the default model's torso and its heads: none, or lstm (the "
                   "actors carry each env's state, reset at episode starts; the learner re-runs the core over "
                   "each unroll from the state the actor had at its first step); with lstm the MLP has one "
                   "torso shared by both heads", choices=("none", "lstm"))
    core_size: int = _f(128, "units of the recurrent core (--core lstm)")
    hidden_sizes: tuple = _f((64, 64), "hidden layer widths of the default MLP (comma separated)")
    activation: str = _f("tanh", "activation of the default MLP's hidden layers", choices=("tanh", "relu"))
    init_log_std: float = _f(0.0, "initial log standard deviation of the Gaussian policy (Box actions)")
    # --- the learner ---
    batch_size: int = _f(64, "env unrolls per learner batch (a multiple of --envs-per-actor)")
    learning_rate: float = _f(3e-3, "Adam learning rate")
    adam_epsilon: float = _f(1e-7, "Adam epsilon")
    gamma: float = _f(0.99, "discount factor")
    reward_scale: float = _f(0.1, "rewards are multiplied by this before learning (returns are reported "
                             "unscaled); keeps value targets near 1-10, which the default learning rate needs")
    entropy_cost: float = _f(0.01, "weight of the entropy bonus")
    baseline_cost: float = _f(0.5, "weight of the value (baseline) loss")
    max_grad_norm: float = _f(40.0, "clip gradients to this global norm")
    vtrace_lambda: float = _f(1.0, "lambda of V-trace (1.0 as in IMPALA)")
    clip_rho: float = _f(1.0, "V-trace clip of importance weights for the value targets (rho bar)")
    clip_pg_rho: float = _f(1.0, "V-trace clip of importance weights for the policy gradient")
    loss: str = _f("impala", "impala: one V-trace policy-gradient pass per sample; appo: PPO's clipped surrogate "
                   "on V-trace advantages, which allows several passes (--epochs, --minibatches)",
                   choices=("impala", "appo"))
    epochs: int = _f(1, "passes over each batch (appo)")
    minibatches: int = _f(1, "minibatches each pass is split into, along the env axis (appo)")
    clip_ratio: float = _f(0.2, "PPO clip epsilon of the appo surrogate")
    normalize_advantages: bool = _f(False, "normalize the appo advantages per minibatch (mean 0, std 1)")
    target_kl: float = _f(0.0, "appo: end a batch's passes early, after the minibatch whose approximate KL divergence "
                          "from the reference policy (--target-kl-from), measured before its update, is above this "
                          "(0: off)")
    target_kl_from: str = _f("actors", "--target-kl's reference: actors (the policy that acted: bounds how far the "
                             "learner leaves the actors behind, policy lag included) or batch (the learner's policy at "
                             "the batch's start, as PPO's target_kl: bounds one batch's move; costs a forward pass "
                             "over the batch)", choices=("actors", "batch"))
    max_policy_lag: int = _f(0, "drop unrolls whose policy is more than this many learner steps old when the "
                             "batch is formed (0: keep all); counted as stale_dropped. A learner step is one batch: "
                             "with --loss appo, epochs x minibatches optimizer updates")
    reward_clip: float = _f(0.0, "clip scaled rewards to [-c, c] (0: no clipping)")
    episodic_life: bool = _f(False, "a lost life is terminal for the value (no bootstrap across it), while the "
                             "episode and its reported return go on to the game's end (ALE/ ids)")
    lr_schedule: str = _f("constant", "learning rate over the run: constant, or linear decay to 0 at --max-steps",
                          choices=("constant", "linear"))
    entropy_schedule: str = _f("constant", "entropy cost over the run: constant, or linear decay to 0 at "
                               "--max-steps", choices=("constant", "linear"))
    normalize_obs: bool = _f(False, "normalize observations by their running mean and std (default MLP only; the "
                             "statistics are model variables, so they reach the actors with the weights)")
    orthogonal_init: bool = _f(True, "orthogonal initialization of the default MLP (else Glorot uniform)")
    learner_precision: str = _f("float32", "number format of the learner's CNN torso (the default image models): "
                                "bfloat16 runs its convolutions and dense layer in bfloat16 with float32 weights, "
                                "gradients and heads (with AMX or AVX512-BF16: the Pong learner's samples/s 1.2-1.5x, "
                                "but Pong needed more steps for each return in it, two seeds); auto: bfloat16 where "
                                "the CPU has AMX-BF16 or AVX512-BF16 and the model is a default CNN, else float32 (the "
                                "MLP is faster in float32: its casts cost more than its small matmuls save)",
                                choices=("float32", "bfloat16", "auto"))
    learner_threads: int = _f(0, "threads for TensorFlow in the learner (0: the cores the actors leave, at least "
                              "1: more threads than free cores spin and slow the actors; but every core for Atari "
                              "ids, whose learner is the limit while their actors wait for free slots)")
    # --- evaluation and the solved test ---
    eval_every_s: float = _f(5.0, "evaluate the greedy policy every this many seconds after the last one ended "
                             "(0: only at the end); an evaluation is played between learner steps, at most "
                             "10 %% of the time")
    eval_episodes: int = _f(5, "episodes per evaluation")
    eval_greedy: bool = _f(True, "evaluations act greedily (argmax / Gaussian mean); --no-eval-greedy samples the "
                           "policy as training and the confirmation do")
    solved_lr_scale: float = _f(0.1, "once the task is solved and training goes on (--no-stop-at-target), the "
                                "learning rate is multiplied by this (a solved policy has less to gain from big "
                                "steps than to lose: benchmarks/stability.py, CartPole seeds 1-10, 100 %% of the "
                                "evaluations after solving at the target with 0.1, 93 %% with 0.33, 72-83 %% "
                                "(seeds 1-5) with 1)")
    confirm_episodes: int = _f(20, "when the last 100 training episodes reach the target, the current weights play "
                               "this many fresh episodes (sampled actions, as in training): the task counts as "
                               "solved, and those weights as the final policy, only if their mean reaches the "
                               "target too (0: the training window alone decides)")
    confirm_margin_se: float = _f(1.0, "the confirmation's mean must reach the target by this many standard errors "
                                  "of that mean (0: the mean alone). Seeds 1-10, saved policies at Pendulum's "
                                  "-200 over 100 episodes afterwards: 7 with 0, 9 with 1 (benchmarks/learning.py "
                                  "--final-eval 100)")
    # --- output, checkpoints and resuming ---
    log_every_s: float = _f(1.0, "seconds between progress lines and metrics records")
    quiet: bool = _f(False, "print only the start-up lines, warnings, errors and the final line")
    verbose: bool = _f(False, "progress lines also show the loss terms, gradient norm and mean importance "
                       "weight")
    run_dir: Optional[str] = _f(None, "where results go (default: runs/<env>-<timestamp>)")
    checkpoint_every: float = _f(60.0, "write a checkpoint (weights, optimizer state, counters) every this many "
                                 "seconds; one is always written at the end (0: only at the end)")
    keep_checkpoints: int = _f(3, "how many of the newest checkpoints to keep (older ones are deleted)")
    resume: Optional[str] = _f(None, "continue the run in this directory from its newest good checkpoint: its "
                               "config is the base, flags given now override it (not the env or model shape)")
    init_from: Optional[str] = _f(None, "start this new run from the weights of the run in this directory (its "
                                  "newest good checkpoint: the model's weights and --normalize-obs statistics; "
                                  "the optimizer, schedules and counters start afresh), e.g. to fine-tune on a "
                                  "variant of its env: the observations, actions and model must be the same")
    init_which: str = _f("latest", "--init-from: which of that run's weights: 'latest' (its newest good "
                         "checkpoint), 'best' (best.npz: those of its best evaluation, where a run declined later) "
                         "or 'final' (policy.npz: those it ended with)", choices=("latest", "best", "final"))
    # --- failures, processes and machines ---
    on_nonfinite: str = _f("stop", "what a NaN/Inf does, in an observation or reward (found in the actor, named "
                           "with its env) or in the loss or gradients: stop the run with an error, or skip "
                           "(the unroll dropped, the batch skipped; counted; 20 bad batches in a row still "
                           "stop); such data never reaches the normalizer or the weights",
                           choices=("stop", "skip"))
    serial: bool = _f(False, "run actors and learner in this one process (debugging, tests)")
    backend: str = _f("local", "where actors run: local (processes on this machine) or ray (Ray actors spread "
                      "over a Ray cluster's nodes; the learner stays here; pip install 'actorlearner[ray]')",
                      choices=("local", "ray"))
    ray_address: str = _f("", "--backend ray: the cluster to join ('auto': the one `ray start` made on this "
                          "machine, or HOST:PORT of its head); empty: start a Ray instance on this machine for the "
                          "run and shut it down at the end (RAY_ADDRESS and a `ray start` instance are not joined "
                          "unless named here)")
    wait_timeout_s: float = _f(30.0, "a wait on the other side that takes longer than this is an error, and so "
                               "is an env step in the learner process (evaluation, confirmation) and the launcher's "
                               "first look at the env (made, reset and stepped once before anything starts); also "
                               "an actor's allowance for its first unroll (--actor-stall-s)")
    actor_stall_s: float = _f(0.0, "an actor that holds work and delivers nothing for this long (a hung env, a "
                              "frozen process) is reported, killed and replaced; 0: 10 s or 5 times its slowest "
                              "unroll so far, whichever is longer, counted from the learner's first weights. A "
                              "newly started actor gets --wait-timeout-s more for its first unroll (imports, env "
                              "creation); its second start in a row that delivers nothing ends the run")

    # ---------------------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        # "~/runs/x" from a config file or the Python API: only a shell expands "~", and a run went to a
        # directory named "~" in the working directory.
        for name in ("run_dir", "resume", "init_from"):
            value = getattr(self, name)
            if isinstance(value, str) and value.startswith("~"):
                object.__setattr__(self, name, os.path.expanduser(value))
        # Config(batch_size=64.0, max_steps=1e6) from a script: a float count failed deep inside TensorFlow
        # ("Dimension value must be integer"), after the banner. A whole one is taken as the int.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if str(f.type) in ("int", "Optional[int]") and isinstance(value, float):
                whole = whole_number(value)
                if whole is None:
                    raise ConfigError(f"{f.name} must be a whole number, got {value!r}")
                object.__setattr__(self, f.name, whole)

    @property
    def slots_per_batch(self) -> int:
        return self.batch_size // self.envs_per_actor

    @property
    def env_kwargs_dict(self) -> dict:
        return parse_env_kwargs(self.env_kwargs)

    @property
    def env_modules(self) -> tuple:
        return tuple(m.strip() for m in (self.env_module or "").split(",") if m.strip())

    def resolved_num_actors(self, cheap_envs: bool = False) -> int:
        """cheap_envs: the actors step a vectorized backend of cheap envs, which outruns the learner.
        Measured on 2 cores (CartPole, vector backend): one actor of 64 envs trained at 0.70 of the learner's
        capacity, two of 32 at 0.52."""
        cores = usable_cores()
        return self.num_actors or max(1, cores - 1 if cheap_envs else cores)

    def resolved_learner_threads(self) -> int:
        return self.learner_threads or max(1, usable_cores() - self.resolved_num_actors())

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["hidden_sizes"] = list(self.hidden_sizes)
        return json.dumps(d, indent=2, sort_keys=True)

    def describe_changes(self) -> str:
        """The fields that differ from the defaults, as `name=value, ...` (run_dir left out)."""
        base = Config()
        changed = [f"{name}={show_value(getattr(self, name))}" for name in config_fields()
                   if name != "run_dir" and getattr(self, name) != getattr(base, name)]
        return ", ".join(changed) or "the defaults"

    def replace(self, **kw: Any) -> "Config":
        return dataclasses.replace(self, **kw)


def whole_number(v) -> Optional[int]:
    """v as an int where it is a whole number written as a float or float text (1e6, 2.0, "3e6"); else None."""
    if isinstance(v, bool) or not isinstance(v, (float, str)):
        return None
    try:
        x = float(v)
    except ValueError:
        return None
    return int(x) if math.isfinite(x) and x == int(x) else None


def parse_env_kwargs(text: Optional[str]) -> dict:
    """--env-kwargs as a dict: a JSON object, or key=value pairs comma separated, each value read as JSON where
    it is JSON and as text otherwise: 'map_name=8x8,is_slippery=false' -> {'map_name': '8x8', 'is_slippery': False}.
    Raises ConfigError naming what does not parse."""
    text = (text or "").strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError as e:
            raise ConfigError(f"--env-kwargs {text!r} is not a JSON object ({e})") from None
        if not all(isinstance(k, str) and k.isidentifier() for k in value):
            raise ConfigError(f"--env-kwargs {text!r}: every key must be an argument name")
        return value
    kwargs = {}
    for part in text.split(","):
        key, sep, raw = (x.strip() for x in part.partition("="))
        if not sep or not key.isidentifier():
            raise ConfigError(f"--env-kwargs: {part.strip()!r} is not key=value (give key=value pairs, comma "
                              f"separated, or a JSON object)")
        try:
            kwargs[key] = json.loads(raw)
        except ValueError:  # Python's spellings of the JSON words too, else the text itself
            kwargs[key] = {"True": True, "False": False, "None": None}.get(raw, raw)
    return kwargs


def config_fields() -> dict:
    return {f.name: f for f in dataclasses.fields(Config)}


def flag_name(name: str) -> str:
    return name.replace("_", "-")


def show_value(v: Any) -> str:
    if isinstance(v, tuple):
        return ",".join(str(x) for x in v)
    return str(v)
