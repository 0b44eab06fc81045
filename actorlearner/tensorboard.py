"""TensorBoard event files for a run (`tensorboard --logdir runs`), written by the learner process.

One scalar per tag at every progress line, with the env step count as the step, so runs of different
speeds line up. metrics.jsonl keeps the same figures for scripts.

The events are written with TensorBoard's own writer (a protobuf per line, written by its thread), not
with `tf.summary` ops: those cost ~2.5 ms a scalar in eager mode, ~35 ms of the learner's time at every
progress line.
"""

from __future__ import annotations

import os
import time

TAGS = ("episode/return_mean_100", "episode/length_mean_100", "eval/return", "loss/total", "loss/policy",
        "loss/baseline", "loss/entropy", "loss/grad_norm", "loss/clip_frac", "loss/approx_kl", "loss/update_kl",
        "train/updates",
        "train/learning_rate",
        "speed/env_steps_per_s", "speed/learner_steps_per_s", "train/policy_lag_mean", "train/queue_fill",
        "train/policy_spread")


def progress_scalars(stats, env_rate: float, learner_rate: float, learning_rate: float, queue_fill: float) -> dict:
    """The scalars of one progress line, by TAGS; stats: reporting.RunStats."""
    losses = stats.last_losses
    lengths = stats.recent_lengths
    return {"episode/return_mean_100": stats.mean_return_100(),
            "episode/length_mean_100": sum(lengths) / len(lengths) if lengths else None,
            "eval/return": stats.last_eval, "loss/total": losses.get("total"), "loss/policy": losses.get("policy"),
            "loss/baseline": losses.get("baseline"), "loss/entropy": losses.get("entropy"),
            "loss/grad_norm": losses.get("grad_norm"), "loss/clip_frac": losses.get("clip_frac"),
            "loss/approx_kl": losses.get("approx_kl"), "loss/update_kl": losses.get("update_kl"),
            "train/updates": losses.get("updates"),
            "train/learning_rate": learning_rate,
            "speed/env_steps_per_s": env_rate, "speed/learner_steps_per_s": learner_rate,
            "train/policy_lag_mean": stats.policy_lag_mean(), "train/queue_fill": queue_fill,
            "train/policy_spread": losses.get("policy_spread")}


class Board:
    def __init__(self, run_dir: str):
        self.path = os.path.join(run_dir, "tb")
        self.writer = None  # opened at the first write: its import stays off the start-up path

    def write(self, step: int, values: dict) -> None:
        """values: tag -> float (None is skipped: e.g. no eval yet). Tags outside TAGS are an error."""
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        unknown = set(values) - set(TAGS)
        if unknown:
            raise KeyError(f"unknown TensorBoard tag(s) {sorted(unknown)}")
        if self.writer is None:
            from tensorboard.summary.writer.event_file_writer import EventFileWriter

            self.writer = EventFileWriter(self.path)
        summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(value))
                                 for tag, value in values.items() if value is not None])
        self.writer.add_event(Event(wall_time=time.time(), step=step, summary=summary))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()  # flushes
            self.writer = None
