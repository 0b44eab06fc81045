"""TensorBoard event files for a run (`tensorboard --logdir runs`), written by the learner process.

One scalar per tag at every progress line, with the env step count as the step, so runs of different
speeds line up. metrics.jsonl keeps the same figures for scripts.
"""

from __future__ import annotations

import os

import tensorflow as tf

TAGS = ("episode/return_mean_100", "episode/length_mean_100", "eval/return", "loss/total", "loss/policy",
        "loss/baseline", "loss/entropy", "loss/grad_norm", "loss/clip_frac", "train/learning_rate",
        "speed/env_steps_per_s", "speed/learner_steps_per_s", "train/policy_lag_mean", "train/queue_fill",
        "train/policy_spread")


class Board:
    def __init__(self, run_dir: str):
        self.path = os.path.join(run_dir, "tb")
        self.writer = None  # opened at the first write: it imports TensorBoard, ~0.1 s off the start-up path

    def write(self, step: int, values: dict) -> None:
        """values: tag -> float (None is skipped: e.g. no eval yet). Tags outside TAGS are an error."""
        if self.writer is None:
            self.writer = tf.summary.create_file_writer(self.path)
        with self.writer.as_default(step=step):
            for tag, value in values.items():
                if tag not in TAGS:
                    raise KeyError(f"unknown TensorBoard tag {tag}")
                if value is not None:
                    tf.summary.scalar(tag, float(value))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
