"""Validation of a Config: every value checked before any process starts, each fault one line naming the flag."""

from __future__ import annotations

import importlib.util
import math

from .config import Config, ConfigError, config_fields, flag_name


def validate(cfg: Config) -> Config:
    """Checks every value; raises ConfigError with a one-line message. Returns cfg for chaining."""
    for name in config_fields():  # a NaN or an infinity is meaningless in every float setting
        value = getattr(cfg, name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"--{flag_name(name)} must be a finite number, got {value}")
    if not 0 <= cfg.seed < 2**31:
        raise ConfigError(f"--seed must be in [0, 2**31), got {cfg.seed}")
    positive_int = ("envs_per_actor", "unroll_length", "batch_size", "eval_episodes", "actor_threads",
                    "keep_checkpoints", "epochs", "minibatches")
    for name in positive_int:
        if getattr(cfg, name) < 1:
            raise ConfigError(f"--{flag_name(name)} must be >= 1, got {getattr(cfg, name)}")
    for name in ("num_actors", "max_steps", "learner_threads", "confirm_episodes"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"--{flag_name(name)} must be >= 0, got {getattr(cfg, name)}")
    for name in ("max_seconds", "eval_every_s", "entropy_cost", "baseline_cost", "checkpoint_every",
                 "reward_clip", "max_policy_lag", "actor_stall_s", "confirm_margin_se", "target_kl"):
        if not getattr(cfg, name) >= 0:
            raise ConfigError(f"--{flag_name(name)} must be >= 0, got {getattr(cfg, name)}")
    for name in ("learning_rate", "max_grad_norm", "reward_scale", "log_every_s", "wait_timeout_s", "solved_lr_scale",
                 "adam_epsilon", "clip_rho", "clip_pg_rho"):
        if not getattr(cfg, name) > 0:
            raise ConfigError(f"--{flag_name(name)} must be > 0, got {getattr(cfg, name)}")
    if not 0.0 <= cfg.gamma <= 1.0:
        raise ConfigError(f"--gamma must be in [0, 1], got {cfg.gamma}")
    if not 0.0 < cfg.vtrace_lambda <= 1.0:
        raise ConfigError(f"--vtrace-lambda must be in (0, 1], got {cfg.vtrace_lambda}")
    if cfg.loss == "impala" and (cfg.epochs > 1 or cfg.minibatches > 1):
        raise ConfigError("--epochs/--minibatches > 1 need --loss appo: IMPALA's policy gradient is not safe to "
                          "reuse a sample with")
    if cfg.quiet and cfg.verbose:
        raise ConfigError("--quiet and --verbose contradict each other: pick one")
    if cfg.batch_size % cfg.minibatches:
        raise ConfigError(f"--batch-size ({cfg.batch_size}) must be a multiple of --minibatches ({cfg.minibatches})")
    if not 0.0 < cfg.clip_ratio < 1.0:
        raise ConfigError(f"--clip-ratio must be in (0, 1), got {cfg.clip_ratio}")
    if cfg.target_kl and (cfg.loss != "appo" or cfg.epochs * cfg.minibatches == 1):
        raise ConfigError("--target-kl ends a batch's passes early: it needs --loss appo with --epochs or "
                          "--minibatches above 1")
    if cfg.init_which != "latest" and not cfg.init_from:
        raise ConfigError(f"--init-which {cfg.init_which} picks the weights of the run --init-from names: it needs "
                          f"--init-from RUN_DIR")
    if "linear" in (cfg.lr_schedule, cfg.entropy_schedule) and not cfg.max_steps:
        raise ConfigError("a linear schedule decays to 0 at --max-steps, so it needs --max-steps > 0")
    if cfg.batch_size % cfg.envs_per_actor:
        raise ConfigError(f"--batch-size ({cfg.batch_size}) must be a multiple of --envs-per-actor "
                          f"({cfg.envs_per_actor}): a batch is made of whole actor unrolls")
    if cfg.actor_nice is not None and not 0 <= cfg.actor_nice <= 19:
        raise ConfigError(f"--actor-nice must be in [0, 19] (Unix niceness above the learner's), got {cfg.actor_nice}")
    cfg.env_kwargs_dict  # noqa: B018 - parsed here for its one-line error, before any env is made
    if not 1 <= cfg.frame_stack <= 64:
        raise ConfigError(f"--frame-stack must be in [1, 64] (observations stacked), got {cfg.frame_stack}")
    if cfg.core_size < 1:
        raise ConfigError(f"--core-size must be >= 1, got {cfg.core_size}")
    if cfg.model_fn:
        from .model_fns import model_module

        model_module(cfg.model_fn)  # its form; the module is imported when the run is planned
        if cfg.model != "auto":
            raise ConfigError(f"--model {cfg.model} picks a default model and --model-fn builds your own: give one")
    if not cfg.hidden_sizes or any(int(h) < 1 for h in cfg.hidden_sizes):
        raise ConfigError(f"--hidden-sizes must be positive widths, got {cfg.hidden_sizes}")
    if cfg.backend == "ray":
        if cfg.serial:
            raise ConfigError("--serial runs the actors in this process: it does not go with --backend ray")
        if cfg.reproducible:
            raise ConfigError("--reproducible works with local actors only (it orders their unrolls through "
                              "shared memory), not with --backend ray")
        if importlib.util.find_spec("ray") is None:
            raise ConfigError("--backend ray needs Ray: pip install 'actorlearner[ray]'")
        host, _, port = cfg.ray_address.rpartition(":")
        if cfg.ray_address not in ("", "auto") and not (host and port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError(f"--ray-address must be 'auto' or HOST:PORT of the cluster's head, got "
                              f"{cfg.ray_address!r}")
    elif cfg.ray_address:
        raise ConfigError("--ray-address goes with --backend ray")
    for name, f in config_fields().items():
        choices = f.metadata.get("choices")
        if choices and getattr(cfg, name) is not None and getattr(cfg, name) not in choices:
            raise ConfigError(f"--{flag_name(name)} must be one of {', '.join(choices)}, got {getattr(cfg, name)!r}")
    return cfg
