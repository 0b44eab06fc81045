"""The unroll: what an actor writes for each of its K envs over T steps, and how it lines up.

Alignment, written down once (index t = 0..T-1 is a step, arrays are time-major [T(+1), K, ...]):

    obs[t]            the observation in which action[t] was chosen; obs has T+1 rows, and obs[T] is the
                      observation the next unroll starts from (unrolls overlap by one step, to bootstrap);
                      each obs keeps the env's shape and dtype (uint8 images stay uint8)
    first[t]          1 if obs[t] is the first observation of an episode (T+1 rows; a recurrent model
                      resets its state there)
    actions[t]        the action taken in obs[t] (unclipped, for Box actions)
    behaviour_logp[t] log mu(actions[t] | obs[t]) under the policy that acted
    rewards[t]        the reward for that step (raw, unscaled)
    terminated[t]     1 if that step ended the episode in a terminal state (no bootstrap); with
                      --episodic-life also where it lost a life, though the episode goes on (first[t+1] 0)
    truncated[t]      1 if that step ended the episode by a time limit (bootstrap from the final obs)
    final_value[t]    where truncated[t]: V(final observation) under the acting policy; else 0
    valid[t]          0 where step t was no transition of the task: a NEXT_STEP vector env spends the step
                      after an episode's end on its reset (obs[t] is then the final observation, the action
                      is ignored, the reward 0); the learner masks such steps out of the loss. Else 1.
    action_mask[t]    --action-masks only: [T, K, A] uint8, the actions the env allowed in obs[t] (action_masks.py),
                      under which actions[t] was sampled and the learner computes its log-probs

When step t ends an episode (terminated or truncated), the env is reset at once and obs[t+1] is the first
observation of the next episode; the final observation itself is kept only through final_value[t]. So
in the learner the discount after step t is gamma * (1 - terminated[t] - truncated[t]), and a truncated
step gets gamma * final_value[t] added to its reward: the bootstrap without leaking into the next episode.
"""

from __future__ import annotations

import numpy as np

from .envs import EnvSpec


def unroll_fields(spec: EnvSpec, T: int, K: int, state_size: int = 0) -> dict[str, tuple[tuple, np.dtype]]:
    """name -> (shape of one unroll, dtype). state_size: floats of a recurrent policy's state per env; its
    state at the unroll's first step (before the reset of an episode starting there) is `core_state`
    [1, K, state_size] (the env axis second, as in every field, so slots join along it)."""
    action = ((T, K, *spec.action_shape), np.int32 if spec.discrete else np.float32)
    fields = {
        "obs": ((T + 1, K, *spec.obs_shape), np.dtype(spec.obs_dtype)),
        "first": ((T + 1, K), np.uint8),
        "actions": action,
        "behaviour_logp": ((T, K), np.float32),
        "rewards": ((T, K), np.float32),
        "terminated": ((T, K), np.uint8),
        "truncated": ((T, K), np.uint8),
        "final_value": ((T, K), np.float32),
        "valid": ((T, K), np.uint8),
    }
    if spec.action_masks:
        fields["action_mask"] = ((T, K, spec.action_dim), np.uint8)
    if state_size:
        fields["core_state"] = ((1, K, state_size), np.float32)
    return fields


def learner_inputs(batch: dict[str, np.ndarray], *, gamma: float, reward_scale: float,
                   reward_clip: float = 0.0) -> dict[str, np.ndarray]:
    """Unroll arrays [T(+1), B, ...] -> what the loss needs: discounts and bootstrapped rewards [T, B].

    rewards_out[t] = clip(reward_scale * rewards[t]) + gamma * truncated[t] * final_value[t]
    where clip(x) = x, or min(max(x, -reward_clip), reward_clip) if reward_clip > 0 (the bootstrap is a
    value, not a reward, so it is never clipped)
    discounts[t]   = gamma * (1 - done[t]),   done = terminated or truncated
    mask[t]        = valid[t] as float32: the weight of step t in the loss
    final_value is in units of the (scaled) value function already, so it is not scaled again.
    """
    done = np.maximum(batch["terminated"], batch["truncated"]).astype(np.float32)
    trunc = batch["truncated"].astype(np.float32)
    scaled = reward_scale * batch["rewards"]
    if reward_clip > 0:
        scaled = np.clip(scaled, -reward_clip, reward_clip)
    rewards = scaled + gamma * trunc * batch["final_value"]
    return {
        **{name: batch[name] for name in ("core_state", "action_mask") if name in batch},
        "obs": batch["obs"],
        "first": batch["first"],
        "mask": batch["valid"].astype(np.float32),
        "actions": batch["actions"],
        "behaviour_logp": batch["behaviour_logp"],
        "rewards": rewards.astype(np.float32),
        "discounts": (gamma * (1.0 - done)).astype(np.float32),
    }
