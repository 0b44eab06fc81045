"""train(cfg, callback=...): each metrics row handed to the script as it is written; a true return stops the run
as a limit does, and an exception in it stops the run with its work kept."""

import json
import os

import pytest

from actorlearner import Config, train
from actorlearner.config import ConfigError


def test_a_callback_sees_every_metrics_row_and_can_stop_the_run(tmp_path, no_leaks):
    rows = []

    def enough(row):
        rows.append(row)
        return row["env_steps"] >= 20_000

    run = tmp_path / "run"
    summary = train(Config(serial=True, seed=1, max_steps=2_000_000, log_every_s=0.1, eval_every_s=0,
                           run_dir=str(run)), callback=enough)
    assert summary["status"] == "callback" and 20_000 <= summary["env_steps"] < 2_000_000, summary
    written = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows == written  # the rows as metrics.jsonl has them, the final one included
    assert rows[-2]["env_steps"] >= 20_000 > rows[-3]["env_steps"]  # stopped at the row that said so
    assert {"time_s", "mean_return_100", "eval_return", "loss_total"} <= set(rows[-2])
    assert (run / "policy.npz").exists() and summary["eval_return_mean"] is not None  # a finished run's files


def test_a_callback_that_raises_stops_the_run_with_its_checkpoint_and_is_raised(tmp_path, no_leaks):
    class Broken(Exception):
        pass

    def broken(row):
        if row["learner_steps"] >= 5:
            raise Broken("the logging service is down")

    run = tmp_path / "run"
    with pytest.raises(Broken, match="the logging service is down"):
        train(Config(serial=True, seed=1, max_steps=2_000_000, log_every_s=0.1, eval_every_s=0,
                     run_dir=str(run)), callback=broken)
    assert os.listdir(run / "checkpoints")  # the work done is kept: --resume goes on from it
    with pytest.raises(ConfigError, match="callback must be a function of a metrics row"):
        train(Config(serial=True, run_dir=str(tmp_path / "other")), callback="wandb")
    assert not (tmp_path / "other").exists()  # refused before anything was made
