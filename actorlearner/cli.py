"""The `actorlearner` command: `actorlearner train [flags]` (see `actorlearner train --help`)."""

from __future__ import annotations

import argparse
import difflib
import errno
import os
import signal
import sys
import time
from typing import Optional

from .config import ConfigError
from .config_sources import add_config_arguments, config_from_args, parse_int
from .envs import make_env_fn
from .export import FORMATS
from .loading import WHICH
from .reporting import Console, isatty, fmt_return, process_age_s, write_line

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)  # a run directory that cannot take more


class OneLineErrors(argparse.ArgumentParser):
    """argparse whose usage errors are one line that points to --help: `train`'s usage runs to ~55 lines, which
    buried the line that said what was wrong."""

    commands: dict = {}  # the subcommands' parsers by name, which build_parser sets; none for any other parser

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")

    def parse_args(self, args=None, namespace=None):
        """An unknown flag is named by its command (`actorlearner train: error: ...`, not the top level's) with
        the nearest known flag, `--max_seconds` -> `--max-seconds`."""
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:
            command = self.commands.get(getattr(parsed, "command", None), self)
            command.error(f"unrecognized arguments: {' '.join(unknown)}{nearest_flag(unknown, command)}")
        return parsed


def nearest_flag(unknown: list, parser: argparse.ArgumentParser) -> str:
    """' (did you mean --x?)' for the first unknown flag that is close to one of parser's, else ''. Only close
    spellings (difflib ratio >= 0.75): a guess from a prefix would repeat what allow_abbrev=False prevents."""
    known = [flag for action in parser._actions for flag in action.option_strings]
    for arg in unknown:
        if arg.startswith("-"):
            close = difflib.get_close_matches(arg.split("=", 1)[0], known, n=1, cutoff=0.75)
            if close:
                return f" (did you mean {close[0]}?)"
    return ""


def build_parser() -> argparse.ArgumentParser:
    # allow_abbrev=False everywhere: with abbreviations, `--lr nan` was read as --lr-schedule.
    parser = OneLineErrors(
        prog="actorlearner", allow_abbrev=False,
        description="Asynchronous actor-learner (IMPALA with V-trace) training for gymnasium environments.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = sub.add_parser(
        "train", help="train an agent", allow_abbrev=False,
        usage="actorlearner train [--env ENV] [--preset NAME] [--config FILE] [options: by group below]",
        description="Train an agent: actor processes step the envs, one learner applies V-trace corrected "
                    "updates. Stops when solved (mean return of the last 100 episodes reaches the target), "
                    "or at --max-seconds / --max-steps, or on Ctrl-C. Results go to the run directory: "
                    "config.json, metrics.jsonl, summary.json.")
    train.add_argument("--config", metavar="FILE", action="append", help="settings from a .yaml or .json file "
                       "(keys are the flag names, with - or _); flags given on the command line override them; "
                       "given more than once, later files override earlier ones")
    add_config_arguments(train)
    ev = sub.add_parser(
        "eval", help="play a trained policy", allow_abbrev=False,
        description="Play episodes with a run's trained policy and print the mean and spread of the return "
                    "and episode length; --render shows them in a window, --video records one more episode.")
    ev.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (holds config.json)")
    ev.add_argument("--episodes", type=parse_int, default=10, help="episodes to play [default: 10]")
    ev.add_argument("--deterministic", action="store_true",
                    help="act greedily (argmax / Gaussian mean) instead of sampling the policy")
    ev.add_argument("--which", choices=WHICH, default="final",
                    help="weights: final (when the run stopped), best (best evaluation), latest (newest "
                         "checkpoint) [default: final]")
    ev.add_argument("--video", metavar="PATH", help="write an episode to PATH (.mp4 or .gif)")
    ev.add_argument("--env-kwargs", metavar="KWARGS", help="play on a variant of the run's env: these gym.make "
                    "arguments over the run's own (key=value pairs or a JSON object, as in train; "
                    "max_episode_steps=1000, say); its observations and actions must stay the run's")
    ev.add_argument("--render", action="store_true", help="show the episodes in a window as they are played (the "
                    "env's render_mode='human', at its own frame rate; Ctrl-C stops with the episodes so far); "
                    "needs a display")
    ev.add_argument("--seed", type=parse_int, default=0, help="seed of the first episode [default: 0]")
    ex = sub.add_parser(
        "export", help="export a trained policy (SavedModel or TFLite)", allow_abbrev=False,
        description="Write a run's policy as a TensorFlow SavedModel or a TFLite (LiteRT) model that runs without "
                    "actorlearner: obs [N, *obs_shape] in the env's dtype -> params, value and the greedy "
                    "action. The README shows how to load and call both.")
    ex.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (holds config.json)")
    ex.add_argument("--format", choices=FORMATS, required=True, help="savedmodel (a directory) or tflite (a file)")
    ex.add_argument("-o", "--out", metavar="PATH", help="the file or SavedModel directory to write; an existing "
                    "directory (not an earlier SavedModel) gets the default name inside it [default: "
                    "RUN_DIR/policy_savedmodel or RUN_DIR/policy.tflite]")
    ex.add_argument("--which", choices=WHICH, default="final", help="which weights, as for eval [default: final]")
    pl = sub.add_parser("plot", help="plot learning curves", allow_abbrev=False,
                        description="Plot the mean return of the last 100 episodes against env steps and wall "
                                    "time for one or more runs (overlaid, named by their directories), their "
                                    "evaluations (evals.jsonl) as points with their standard deviation, and "
                                    "the solved threshold.")
    pl.add_argument("run_dirs", metavar="RUN_DIR", nargs="+", help="run directories (hold metrics.jsonl)")
    pl.add_argument("-o", "--out", default="curves.png", help="PNG to write (a .png path, or a directory to "
                    "write curves.png in) [default: curves.png]")
    sub.add_parser("info", help="print versions, CPU and cores (for a bug report)", allow_abbrev=False,
                   description="Print the Python, platform, CPU (cores usable, bfloat16 hardware), /dev/shm space and "
                               "the versions of the packages that decide a run's results and speed, as a run records "
                               "them in summary.json (\"system\"). Imports no TensorFlow.")
    parser.commands = dict(sub.choices)
    return parser


def main(argv: Optional[list] = None) -> int:
    start = time.monotonic() - process_age_s()
    for stream in (sys.stdout, sys.stderr):  # an ASCII-only terminal gets '?' for a '±', not a UnicodeEncodeError
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    args = build_parser().parse_args(argv)
    if args.command == "train":
        return _train(args, start)
    if args.command == "eval":
        from .blas import one_blas_thread

        with one_blas_thread():
            return _eval(args)
    if args.command == "info":
        from .system_info import describe, system_info

        print("\n".join(describe(system_info())))
        return EXIT_OK
    try:
        if args.command == "export":
            return _export(args)
        if args.command == "plot":
            return _plot(args)
    except KeyboardInterrupt:  # nothing half-written is left (export and plot write through temporary files)
        write_line("actorlearner: interrupted", sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_USAGE


def _plot(args: argparse.Namespace) -> int:
    from .plotting import plot_runs

    def plot() -> str:
        check_out_path("--out", args.out)
        return f"wrote {plot_runs(args.run_dirs, args.out)}"

    return _one_line_errors(plot)


def check_out_path(flag: str, path: Optional[str]) -> None:
    """ConfigError where `path` (a file or directory to write) cannot be made: its directory is missing or not
    writable. Checked before the work, which otherwise ended in a traceback after it."""
    if not path:
        return
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ConfigError(f"{flag} {path}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"{flag} {path}: the directory {parent} is not writable")


def _export(args: argparse.Namespace) -> int:
    from .export import export_policy

    def export() -> str:
        check_out_path("--out", args.out)
        return f"wrote {export_policy(args.run_dir, args.format, args.out, which=args.which)}"

    return _one_line_errors(export)


def _one_line_errors(action) -> int:
    """Prints what `action()` returns; bad input (ConfigError) is one line on stderr and exit status 2."""
    try:
        print(action())
    except ConfigError as e:
        print(f"actorlearner: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _eval(args: argparse.Namespace) -> int:
    from .envs import env_time_limit
    from .evaluation import check_renders, play_episodes, record_video
    from .loading import playing
    from .run_files import trained_on_custom_env

    played = []
    try:
        if args.episodes < 1:
            raise ConfigError(f"--episodes must be >= 1, got {args.episodes}")
        if args.video and not args.video.lower().endswith((".mp4", ".gif")):
            raise ConfigError(f"--video {args.video}: the file name must end in .mp4 or .gif")
        check_out_path("--video", args.video)
        missing_display = args.render and no_display(os.environ, sys.platform)
        if missing_display:
            raise ConfigError(missing_display)
        if args.video:
            headless_mujoco_rendering(os.environ, sys.platform)
        asked = [flag for flag, given in (("--video", args.video), ("--render", args.render),
                                          ("--env-kwargs", args.env_kwargs is not None)) if given]
        if asked and trained_on_custom_env(args.run_dir):
            raise ConfigError(f"{args.run_dir} trained on an env factory (env_fn), which makes its env its own way: "
                              f"{' and '.join(asked)} {'needs' if len(asked) == 1 else 'need'} a run on an env id")
        # With --env-kwargs, a variant of the run's env, its spaces checked as the run's.
        cfg, spec, env_fn, policy = playing(args.run_dir, which=args.which, env_kwargs=args.env_kwargs)
        variant = f" (env kwargs {cfg.env_kwargs})" if args.env_kwargs is not None and cfg.env_kwargs else ""
        if args.video:
            check_renders(cfg.env)
        if args.render:  # the episodes on an env that draws as it steps (gymnasium's human mode)
            check_renders(cfg.env, "human", "--render")
            env_fn = make_env_fn(cfg.env, "human", cfg.env_modules, cfg.env_kwargs_dict, cfg.frame_stack,
                                 cfg.action_masks)
        greedy = args.deterministic
        mode = "deterministic" if greedy else "sampled actions"
        # On a terminal a live line tells how far it is (ten Pong episodes take half an hour); elsewhere the
        # output stays the one result line.
        live = Console(stream=sys.stderr) if isatty(sys.stderr) else None
        # Every env step (and the env's making) within the run's --wait-timeout-s, as in training.
        def step_limit():
            return env_time_limit(cfg.env, cfg.wait_timeout_s, "made, reset or stepped", trained=True)

        try:
            with step_limit() as step_done:
                for episode in play_episodes(policy, env_fn, spec, episodes=args.episodes, seed=args.seed,
                                             greedy=greedy, on_step=step_done):
                    played.append(episode)
                    if live:
                        live.progress(f"{len(played)}/{args.episodes} episodes: {_episode_figures(played)}")
        finally:
            if live:
                live.close()
        if not played:
            write_line(f"actorlearner: error: no episode of {cfg.env} finished: its env raised in every one "
                       "(see above)", sys.stderr)
            return EXIT_ERROR
        which = f"{args.which} weights"
        if args.which == "final" and not os.path.exists(os.path.join(args.run_dir, "policy.npz")):
            which = "the newest checkpoint's weights (no final ones: the run goes on, or was killed)"
        print(f"{cfg.env}{variant}, {which}, {mode}: {_episode_figures(played)}")
        if args.video:
            video_env = make_env_fn(cfg.env, "rgb_array", cfg.env_modules, cfg.env_kwargs_dict, cfg.frame_stack,
                                    cfg.action_masks)
            total, n, frames = record_video(policy, video_env, spec, args.video, seed=args.seed + args.episodes,
                                            greedy=greedy, step_limit=step_limit())
            print(f"video: {args.video} ({frames} frames, an episode of return {fmt_return(total)}, length {n})")
    except ConfigError as e:
        print(f"actorlearner: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # the episodes played so far are still worth a line; a video in the making is not
        done = f" after {len(played)} of {args.episodes} episodes: {_episode_figures(played)}" if played else ""
        write_line(f"actorlearner: interrupted{done}", sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK


def no_display(environ, platform: str) -> Optional[str]:
    """Why `eval --render` cannot open a window here (Linux with neither an X nor a Wayland display: ssh without
    -X, a container, CI); None where it can, or may (macOS and Windows always have one). Without this, SDL drew
    CartPole's frames nowhere and the episodes played on at the env's frame rate, showing nothing."""
    if platform.startswith("linux") and not environ.get("DISPLAY") and not environ.get("WAYLAND_DISPLAY"):
        return ("--render shows the episodes in a window, and there is no display here (DISPLAY and "
                "WAYLAND_DISPLAY are unset: ssh without -X, a container?): --video PATH records an episode to watch")
    return None


def headless_mujoco_rendering(environ, platform: str) -> None:
    """MuJoCo draws through GLFW unless MUJOCO_GL says otherwise, and GLFW needs a display: without one,
    `eval --video` of a MuJoCo task failed with a traceback. EGL draws off-screen (Mesa's, or a GPU driver's).
    Set before MuJoCo is imported (it reads the variable once); a user's own MUJOCO_GL is kept."""
    if platform.startswith("linux") and not environ.get("DISPLAY") and not environ.get("MUJOCO_GL"):
        environ["MUJOCO_GL"] = "egl"


def _episode_figures(played: list) -> str:
    """'return M ± S over N episodes, length L ± D' of (return, length) pairs."""
    import numpy as np

    returns, lengths = np.array([r for r, _ in played]), np.array([n for _, n in played])
    return (f"return {fmt_return(float(returns.mean()))} ± {fmt_return(float(returns.std()))} over {len(played)} "
            f"episodes, length {lengths.mean():.0f} ± {lengths.std():.0f}")


def _train(args: argparse.Namespace, start: float) -> int:
    from . import tf_start
    from .actor_pool import ActorCrashLoop
    from .runner import train_to_summary

    tf_start.LEAN_IMPORT = True

    # The run handles the stop signals while it is on (stopping.StopSignals) and gives these handlers back when it
    # is over. Before that (the input's checks, the env's first look, Ray's start: seconds) a stop signal ends the
    # command with its status: a flag set when train() was called had Ctrl-C ignored there (two during Ray's
    # start were lost and the run trained on), and SIGTERM killed the process on the spot (a half-started Ray
    # instance lost its agents that way). After it, a Ctrl-C reaching this handler is a late second one after the
    # cleanup (the second-SIGINT test hit that window) and must not turn the clean exit into a traceback. Once
    # train() is over SIGINT is ignored outright: Python resets signals that have a Python handler to SIG_DFL
    # when it finalizes, and a Ctrl-C landing during TensorFlow's teardown after that killed the process (status
    # -2 instead of 130; seen in CI).
    from .stopping import STOP_SIGNALS, Interrupted, blocks_ended

    ended = blocks_ended()

    def on_signal(signum, frame):
        if blocks_ended() == ended:
            raise KeyboardInterrupt if signum == signal.SIGINT else Interrupted(signal.Signals(signum).name)

    for sig in STOP_SIGNALS:
        if sig == signal.SIGINT or signal.getsignal(sig) is signal.SIG_DFL:  # nohup's SIG_IGN stays
            signal.signal(sig, on_signal)
    try:
        cfg = config_from_args(args)
        try:
            summary = train_to_summary(cfg, start_time=start)
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            if hasattr(signal, "SIGHUP"):  # likewise a hangup during the teardown, the run being over
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a process manager can still end a teardown that hangs
    except KeyboardInterrupt:  # Ctrl-C before the run installed its own handling: nothing to clean up yet
        write_line("actorlearner: interrupted before training started", sys.stderr)
        return _stopped_before_training(EXIT_INTERRUPTED)
    except Interrupted as e:  # SIGTERM or SIGHUP then, from on_signal or (Ray's start) runner._run; a second
        # Ctrl-C inside a run never gets here
        write_line(f"actorlearner: stopped by {e} before training started", sys.stderr)
        return _stopped_before_training(128 + getattr(signal, str(e), signal.SIGTERM))
    except ConfigError as e:
        write_line(f"actorlearner: error: {e}", sys.stderr)
        return EXIT_USAGE
    except (ActorCrashLoop, RuntimeError, TimeoutError) as e:
        write_line(f"actorlearner: error: {e}", sys.stderr)
        return EXIT_ERROR
    except OSError as e:
        if e.errno not in DISK_ERRORS:
            raise
        # A full or read-only disk under the run directory: the traceback says nothing more than this line.
        write_line(f"actorlearner: error: could not write {e.filename or 'to the run directory'}: {e.strerror}",
                   sys.stderr)
        return EXIT_ERROR
    if summary["status"] == "interrupted":  # the shell's convention: 128 + the signal's number
        return 128 + getattr(signal, summary.get("stop_signal", "SIGINT"), signal.SIGINT)
    return EXIT_OK


def _stopped_before_training(status: int) -> int:
    """status, for a command stopped before training started. Where Ray's start was stopped midway (its processes
    are gone by now, and nothing else had started), the process ends here without Python's finalization, which
    crashed in about one such exit in six (status -11 after the line was written): after TensorFlow's import
    thread, whose capture of stderr holds what was written meanwhile, has passed it on."""
    if "ray" not in sys.modules:
        return status
    from .tf_start import wait_for_early_start

    wait_for_early_start()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    sys.exit(main())
