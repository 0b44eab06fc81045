"""A Sample Factory 2 run as the benchmarks make one (sf_appo.py, sf_atari.py): the env registered, a runner built
from command-line settings, its checkpoints and logs in a temporary directory that is removed at the end (a benchmark
keeps only its figures). Runs in the Sample Factory virtual environment, not actorlearner's."""

from __future__ import annotations

import shutil
import tempfile
from typing import Callable, Optional


def sample_factory_runner(env: str, make_env: Callable, args: list, override_defaults: Optional[Callable] = None):
    """(cfg, runner) for `env` (made by make_env, a module-level function: it is pickled to the workers) with the
    settings `args` (`--name=value` strings); override_defaults(env, parser) sets an example's defaults first.
    `run` removes the runner's temporary directory."""
    from sample_factory.cfg.arguments import parse_full_cfg, parse_sf_args
    from sample_factory.envs.env_utils import register_env
    from sample_factory.train import make_runner

    register_env(env, make_env)
    argv = [*args, f"--env={env}", "--experiment=bench", f"--train_dir={tempfile.mkdtemp(prefix='sample_factory_')}"]
    parser, partial = parse_sf_args(argv=argv)
    if override_defaults is not None:
        override_defaults(partial.env, parser)
    return make_runner(parse_full_cfg(parser, argv))


def run(cfg, runner, observer, episodic_stats_handler: Callable) -> None:
    """Runs to its end (the observer stops it, or --train_for_seconds) with the observer and the handler registered,
    then removes cfg.train_dir."""
    runner.register_observer(observer)
    runner.register_episodic_stats_handler(episodic_stats_handler)
    try:
        if runner.init() == 0:  # ExperimentStatus.SUCCESS
            runner.run()
    finally:
        shutil.rmtree(cfg.train_dir, ignore_errors=True)
