"""The `actorlearner` command: `actorlearner train [flags]` (see `actorlearner train --help`)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Optional

from .config import ConfigError, add_config_arguments, config_from_args
from .reporting import process_age_s

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="actorlearner",
        description="Asynchronous actor-learner (IMPALA with V-trace) training for gymnasium environments.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = sub.add_parser(
        "train", help="train an agent",
        description="Train an agent: actor processes step the envs, one learner applies V-trace corrected "
                    "updates. Stops when solved (mean return of the last 100 episodes reaches the target), "
                    "or at --max-seconds / --max-steps, or on Ctrl-C. Results go to the run directory: "
                    "config.json, metrics.jsonl, summary.json.")
    add_config_arguments(train)
    return parser


def main(argv: Optional[list] = None) -> int:
    start = time.monotonic() - process_age_s()
    args = build_parser().parse_args(argv)
    if args.command == "train":
        return _train(args, start)
    return EXIT_USAGE


def _train(args: argparse.Namespace, start: float) -> int:
    from . import runner
    from .actor_pool import ActorCrashLoop
    from .runner import train

    runner.LEAN_IMPORT = True

    try:
        cfg = config_from_args(args)
        summary = train(cfg, start_time=start)
    except ConfigError as e:
        print(f"actorlearner: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (ActorCrashLoop, RuntimeError, TimeoutError) as e:
        print(f"actorlearner: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_INTERRUPTED if summary["status"] == "interrupted" else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
