"""The line a run starts with: what runs where (actors, env backend and why, observations, actions, the
learner's threads and precision, where actors run the policy, the unroll slots' size) and the target."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import litert_cnn
from .layout import model_kind
from .preflight import slot_bytes
from .reporting import say

if TYPE_CHECKING:
    from .runner import Plan


def startup_line(plan: Plan) -> None:
    """The start-up line: what runs where, and why that env backend."""
    cfg, spec = plan.cfg, plan.spec
    n = cfg.num_actors
    nice = f", nice +{cfg.actor_nice}" if cfg.actor_nice else ""  # build_actor applies it, Ray actors too
    where = {"ray": f" (Ray actors{nice})", "local": " (serial mode, in this process)" if cfg.serial
             else f" (processes{nice})"}[cfg.backend]
    preset = f" (preset {cfg.preset})" if cfg.preset not in (None, "none") else ""
    obs = spec.describe_observations()
    if spec.obs_note:
        obs += f" ({spec.obs_note})"
    slot_mb = slot_bytes(cfg, spec, plan.state_size) / n / 2**20
    core = " + LSTM core" if cfg.core == "lstm" else ""
    kind = model_kind(spec, cfg.model)
    engine = litert_cnn.engine_for(cfg, kind)
    hint = ("; pip install ai-edge-litert runs it ~2.5x faster" if kind != "mlp" and engine == "numpy"
            and cfg.actor_inference == "auto" else "")
    actions = spec.describe_actions() + (", masked by the env" if spec.action_masks else
                                         " (the env gives action masks: --action-masks samples only the allowed "
                                         "ones)" if spec.masks_offered else "")
    int8 = litert_cnn.precision_note(cfg, kind)
    model = (f"{'LiteRT' if engine == 'litert' else 'numpy'} (the default {kind}{core} model{int8}, no TensorFlow in "
             f"actors{hint})" if plan.actor_model_fn is None else
             f"TensorFlow (the model of --model-fn {cfg.model_fn})" if cfg.model_fn else "TensorFlow")
    say(f"actorlearner: {cfg.env}{preset} | {n} actor{'s' if n > 1 else ''}{where} x "
        f"{cfg.envs_per_actor} envs, {plan.make_batch.backend} backend ({plan.backend_why}), observations {obs}, "
        f"{actions}, unroll {cfg.unroll_length}, batch {cfg.batch_size}, learner threads "
        f"{cfg.resolved_learner_threads()} in {plan.precision} ({plan.precision_why})"
        f"{', ' + plan.kernels if plan.kernels else ''} | "
        f"actors run the policy in {model}; unroll slots {slot_mb:.1f} MB per actor | "
        f"{target_text(plan)} | run dir {plan.run_dir.path}")


def target_text(plan: Plan) -> str:
    if plan.target is None:
        return "no target return (the env registers none; --target-return sets one)"
    return f"target return {plan.target:g}" + ("" if plan.cfg.stop_at_target else " (not stopping there)")
