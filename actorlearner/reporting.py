"""Counting what a run did, and saying so: the run's counters (RunStats: metrics and summary records), the
progress line, the console (say, warn, Repeats). The files they go to are run_files.py's."""

from __future__ import annotations

import collections
import math
import os
import shutil
import sys
import time
from typing import Optional

from .health import CollapseWatch


def process_age_s() -> float:
    """Seconds since this process started (so "time to solve" includes interpreter start and imports)."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


class RunStats:
    """Counters of a run. Times are seconds since `t0` (a time.monotonic() value)."""

    # What a checkpoint keeps of a run, so a resumed run continues its counters and curves.
    _STATE = ("env_steps", "learner_steps", "episodes", "solved_at_s", "solved_at_steps", "lag_sum",
              "lag_count", "last_eval", "best_eval", "actor_restarts", "env_errors", "nonfinite_skips",
              "stale_dropped", "nonfinite_unrolls", "actor_stalls", "window_reached_at_s",
              "confirmations_failed", "confirm_return", "spread_peak", "policy_collapses")

    def __init__(self, t0: float, target_return: Optional[float]):
        self.t0 = t0
        self.time_offset = 0.0  # seconds the run had already trained before a resume
        self.target = target_return
        self.env_steps = 0
        self.learner_steps = 0
        self.episodes = 0
        self.recent_returns: collections.deque = collections.deque(maxlen=100)
        self.recent_lengths: collections.deque = collections.deque(maxlen=100)
        self.solved_at_s: Optional[float] = None
        self.solved_at_steps: Optional[int] = None
        self.first_step_s: Optional[float] = None
        self.train_end_s: Optional[float] = None  # when the learner loop stopped (before the final evaluation)
        self.first_step_env_steps = 0
        self.lag_sum = 0.0
        self.lag_count = 0
        self.recent_lags: collections.deque = collections.deque(maxlen=20_000)
        self.last_eval: Optional[float] = None
        self.best_eval: Optional[float] = None
        self.actor_restarts = 0
        self.env_errors = 0
        self.nonfinite_skips = 0
        self.stale_dropped = 0  # unrolls given back unused for being older than --max-policy-lag
        self.nonfinite_unrolls = 0  # unrolls dropped for a NaN/Inf observation or reward
        self.actor_stalls = 0  # actors killed for delivering nothing for too long
        self.updates_per_step = 1  # optimizer updates in one learner step (APPO: epochs x minibatches)
        self.window_reached_at_s: Optional[float] = None  # the training window first reached the target
        self.confirmations_failed = 0
        self.confirm_return: Optional[float] = None  # the mean return of the confirmation that passed
        self.collapse = CollapseWatch()  # fed each learner step's policy_spread (health.py)
        self.policy_collapses = 0  # collapse warnings given
        self.evaluation_s = 0.0  # seconds the periodic evaluations held the learner (policy_checks.EVAL_SHARE)
        self.last_losses: dict = {}

    @property
    def spread_peak(self) -> float:
        """The highest policy_spread so far: the watch's own, kept in checkpoints through _STATE."""
        return self.collapse.peak

    @spread_peak.setter
    def spread_peak(self, value: float) -> None:
        self.collapse.peak = value

    def now(self) -> float:
        return self.time_offset + time.monotonic() - self.t0

    def state(self) -> dict:
        """The counters as JSON-ready values (for checkpoints)."""
        return {**{k: getattr(self, k) for k in self._STATE}, "elapsed_s": self.now(),
                "recent_returns": list(self.recent_returns), "recent_lengths": list(self.recent_lengths)}

    def restore(self, state: dict) -> None:
        """Continues from `state()` of an earlier run: counters, the last 100 episodes, and its clock."""
        for k in self._STATE:
            setattr(self, k, state.get(k, getattr(self, k)))  # a counter added later starts at its default
        self.recent_returns.extend(state["recent_returns"])
        self.recent_lengths.extend(state["recent_lengths"])
        self.time_offset = float(state["elapsed_s"])

    def add_episodes(self, returns: list, lengths: list) -> None:
        self.episodes += len(returns)
        self.recent_returns.extend(returns)
        self.recent_lengths.extend(lengths)

    def mean_return_100(self) -> Optional[float]:
        return float(sum(self.recent_returns) / len(self.recent_returns)) if self.recent_returns else None

    def window_reached(self) -> bool:
        """The training window (100 finished episodes) has a mean return at or above the target now; records
        the first time it had."""
        if self.target is None or len(self.recent_returns) < 100 or self.mean_return_100() < self.target:
            return False
        if self.window_reached_at_s is None:
            self.window_reached_at_s = self.now()
        return True

    def mark_solved(self, confirm_return: Optional[float]) -> None:
        """The task is solved now (confirm_return: the confirmation's mean, or None without one). Once."""
        if self.solved_at_s is None:
            self.solved_at_s, self.solved_at_steps = self.now(), self.env_steps
            self.confirm_return = confirm_return

    def add_learner_step(self, env_steps: int, lags: list, losses: dict) -> None:
        if self.first_step_s is None:
            self.first_step_s = self.now()
            self.first_step_env_steps = self.env_steps
        self.learner_steps += 1
        self.env_steps += env_steps
        self.lag_sum += sum(lags)
        self.lag_count += len(lags)
        self.recent_lags.extend(lags)
        self.last_losses = losses

    def policy_lag_mean(self) -> Optional[float]:
        return self.lag_sum / self.lag_count if self.lag_count else None

    def record(self) -> dict:
        """One metrics.jsonl line."""
        t = self.now()
        return {"time_s": round(t, 3), "env_steps": self.env_steps, "learner_steps": self.learner_steps,
                "episodes": self.episodes, "mean_return_100": self.mean_return_100(),
                "env_steps_per_s": self.env_steps / t if t > 0 else 0.0,
                "policy_lag_mean": self.policy_lag_mean(), "eval_return": self.last_eval,
                "actor_restarts": self.actor_restarts, "env_errors": self.env_errors,
                "nonfinite_skips": self.nonfinite_skips, "stale_dropped": self.stale_dropped,
                "nonfinite_unrolls": self.nonfinite_unrolls, "actor_stalls": self.actor_stalls,
                "policy_collapses": self.policy_collapses,
                **{f"loss_{k}": v for k, v in self.last_losses.items()}}

    def summary(self, env_id: str, seed: int, status: str) -> dict:
        wall = self.now()
        mr = self.mean_return_100()
        # Training throughput: from the first learner step to the loop's end; the final checkpoint and
        # evaluation after it consume no env steps.
        end = self.train_end_s if self.train_end_s is not None else wall
        train_s = end - self.first_step_s if self.first_step_s is not None else 0.0
        return {
            "env_id": env_id, "seed": seed, "status": status, "wall_s": wall,
            "env_steps": self.env_steps, "env_steps_per_s": self.env_steps / wall if wall > 0 else 0.0,
            "learner_steps": self.learner_steps, "episodes": self.episodes, "mean_return_100": mr,
            "target_return": self.target,
            "solved": self.solved_at_s is not None,
            "solved_at_s": self.solved_at_s, "solved_at_steps": self.solved_at_steps,
            "window_reached_at_s": self.window_reached_at_s, "confirmations_failed": self.confirmations_failed,
            "confirm_return_mean": self.confirm_return,
            "eval_return_mean": self.last_eval, "best_eval_return": self.best_eval,
            # Lags count learner steps (batches); with APPO each is updates_per_step optimizer updates.
            "policy_lag_mean": self.policy_lag_mean(), "updates_per_step": self.updates_per_step,
            "policy_lag_p95": (float(sorted(self.recent_lags)[int(0.95 * (len(self.recent_lags) - 1))])
                               if self.recent_lags else None),
            "startup_s": self.first_step_s - self.time_offset if self.first_step_s is not None else None,
            "train_env_steps_per_s": ((self.env_steps - self.first_step_env_steps) / train_s
                                      if train_s > 0 else 0.0),
            "actor_restarts": self.actor_restarts, "env_errors": self.env_errors,
            "nonfinite_skips": self.nonfinite_skips, "stale_dropped": self.stale_dropped,
            "nonfinite_unrolls": self.nonfinite_unrolls, "actor_stalls": self.actor_stalls,
            "policy_collapses": self.policy_collapses, "evaluation_s": round(self.evaluation_s, 3),
            "resumed_from_s": self.time_offset or None,
        }


def _fmt(x: Optional[float], spec: str = ".1f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def fmt_return(x: Optional[float]) -> str:
    """A return (or its spread) for the console: one decimal from 10 up (475.9, -19.9), three significant digits
    below (0.712, 5.25), where one decimal would print FrozenLake's 0.74 and 0.66 both as 0.7."""
    if x is None or math.isnan(x):
        return "-"
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.3g}"


def _si(n: float) -> str:
    for unit, scale in (("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


def progress_line(stats: RunStats, steps_per_s: float, *, max_steps: int = 0, max_seconds: float = 0.0,
                  verbose: bool = False) -> str:
    """One progress report: env steps, steps/s, episodes, mean return, lag, loss, elapsed and what is left
    against --max-steps / --max-seconds (the nearer of the two); verbose adds the loss terms."""
    now = stats.now()
    left = []
    if max_seconds:
        left.append(max(0.0, max_seconds - now))
    if max_steps and steps_per_s > 0:
        left.append(max(0.0, (max_steps - stats.env_steps) / steps_per_s))
    losses = stats.last_losses
    line = (f"[{now:7.1f}s] steps {_si(stats.env_steps):>7} ({_si(steps_per_s)}/s) | "
            f"episodes {stats.episodes} | return(100) {fmt_return(stats.mean_return_100())} | "
            f"lag {_fmt(stats.policy_lag_mean(), '.2f')} | loss {_fmt(losses.get('total'), '.4f')}")
    if verbose:
        line += (f" (policy {_fmt(losses.get('policy'), '.4f')}, baseline {_fmt(losses.get('baseline'), '.4f')}, "
                 f"entropy {_fmt(losses.get('entropy'), '.3f')}, grad norm {_fmt(losses.get('grad_norm'), '.3f')}, "
                 f"rho {_fmt(losses.get('rho_mean'), '.3f')}, spread {_fmt(losses.get('policy_spread'), '.3g')}")
        if "clip_frac" in losses:
            line += f", clipped {losses['clip_frac']:.1%}, kl {losses['approx_kl']:.3g}"
            if "update_kl" in losses:
                line += f" (the batch's updates {losses['update_kl']:.3g})"
        if "updates" in losses:
            line += f", {losses['updates']} updates"
        line += ")"
    if left:
        line += f" | left {_duration(min(left))}"
    return line


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    if seconds >= 60:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{seconds:.0f}s"


class Console:
    """Where a run's lines go. On a terminal the progress report is one live line rewritten in place;
    anywhere else (a file, a pipe, CI) each report is a plain line. Other messages always get their own
    line. quiet: no progress reports and no evaluation lines."""

    def __init__(self, quiet: bool = False, stream=None):
        self._stream = stream  # None: whatever sys.stdout is at the time (pytest swaps it)
        self.quiet = quiet
        self._line_open = False

    @property
    def stream(self):
        return self._stream or sys.stdout

    def progress(self, text: str) -> None:
        if self.quiet:
            return
        if isatty(self.stream):
            width = shutil.get_terminal_size((120, 20)).columns - 1
            try:
                self.stream.write("\r\033[K" + text[:width])
                self.stream.flush()
            except OSError:
                output_lost()
            self._line_open = True
        else:
            self.say(text)

    def detail(self, text: str) -> None:
        """A message --quiet leaves out (evaluations)."""
        if not self.quiet:
            self.say(text)

    def say(self, text: str) -> None:
        if self._line_open:
            text = "\r\033[K" + text
            self._line_open = False
        write_line(text, self.stream)

    def close(self) -> None:
        """Ends the live line, leaving the last report on screen."""
        if self._line_open:
            self._line_open = False
            write_line("", self.stream)


def write_line(text: str, stream=None) -> None:
    """Prints a line (to stdout unless `stream`), flushed; a terminal or pipe that has gone away silences the
    process's output (output_lost) instead of raising in the middle of a run or its cleanup."""
    try:
        print(text, file=stream or sys.stdout, flush=True)
    except OSError:
        output_lost()


def output_lost() -> None:
    """The terminal hung up (writes to it fail with EIO) or the reader of a pipe left (EPIPE): this process's
    stdout and stderr go to /dev/null from now on, so no later write fails, a library's or Python's own flush
    at exit included (which would turn the exit status into 120)."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            os.dup2(null, fd)
        os.close(null)
    except OSError:
        pass


def isatty(stream) -> bool:
    """Whether `stream` is a terminal (False for a stream without a file, or a closed one)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# The process's console: `train` sets its quietness for the length of a run.
console = Console()


def say(text: str) -> None:
    """A line for the user, which never lands inside the live progress line."""
    console.say(text)


def line_kind(text: str) -> str:
    """The text with its numbers replaced by #: lines that differ only in their numbers are one kind."""
    import re

    return re.sub(r"\d+(\.\d+)?", "#", text)


class Repeats:
    """Console lines that repeat (an env failing every reset, an actor failing at every start): the first
    `first` lines of a kind in `window_s` are printed, the rest counted and summed up in one line when the
    window is over. Lines of a kind differ only in their numbers."""

    def __init__(self, first: int = 3, window_s: float = 10.0, out=None):
        self.first, self.window_s = first, window_s
        self._out = out or say
        self._seen: dict[str, list] = {}  # kind -> [window start, shown, suppressed, example]

    def say(self, text: str) -> None:
        now = time.monotonic()
        kind = line_kind(text)
        rec = self._seen.get(kind)
        if rec is None or now - rec[0] > self.window_s:
            self._summarize(rec)
            rec = self._seen[kind] = [now, 0, 0, text]
        if rec[1] < self.first:
            rec[1] += 1
            self._out(text)
        else:
            rec[2] += 1

    def flush(self) -> None:
        for rec in self._seen.values():
            self._summarize(rec)
        self._seen.clear()

    def _summarize(self, rec) -> None:
        if rec and rec[2]:
            self._out(f"... repeated {rec[2]} more times in {self.window_s:.0f} s: {rec[3]}")
            rec[2] = 0


def warn(text: str) -> None:
    """A warning on stderr, prefixed like the command's errors."""
    write_line(f"actorlearner: warning: {text}", sys.stderr)
