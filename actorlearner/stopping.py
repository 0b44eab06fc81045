"""Stopping a run by signal: the first SIGINT/SIGTERM/SIGHUP asks for a graceful stop, a second SIGINT for an
immediate one (the run still removes its processes and shared memory). SIGHUP is what a run gets when its
terminal goes away (an ssh connection that drops): by default it killed the process on the spot, with no final
checkpoint and its shared memory left behind. Where SIGHUP is ignored (`nohup`), it stays ignored.

User code that runs in the learner process (evaluation episodes, serial-mode stepping) can hang, and a
hung env never returns to the loop that would see the request. Such code runs inside
`StopSignals.user_code(deadline, step_s)`: a stop signal, its deadline, or a stretch of over step_s seconds
without a finished env step (SIGALRM) raises `UserCodeStopped` in it.
Both exceptions are BaseExceptions, so no `except Exception` around an env's call can swallow them as an
env error."""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from typing import Optional

from .reporting import say


# SIGHUP where the platform has it (not Windows).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM) + ((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ())

# How many runs' signal handling (StopSignals blocks in the main thread) has ended in this process: the command
# line's own SIGINT handler, which a block puts back at its end, tells by it a Ctrl-C before the run's handling
# (planning, Ray's start: it interrupts) from a late second one after it (the teardown: ignored).
_blocks_ended = 0


def blocks_ended() -> int:
    return _blocks_ended


class Interrupted(BaseException):
    """Raised inside the loop on a second Ctrl-C: stop now, still cleaning up."""


class UserCodeStopped(BaseException):
    """Raised inside user code run under `StopSignals.user_code`: `why` is the signal's name, "deadline" or
    "stalled" (no env step finished for step_s seconds)."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


class StopSignals:
    """First SIGINT/SIGTERM/SIGHUP asks for a graceful stop; a second SIGINT stops at once (still cleaning up)."""

    def __init__(self):
        self.requested: Optional[str] = None
        self.cleaning = False  # set once cleanup starts: it is short and must finish, so no raising then
        self._saved = {}
        self._in_user_code = False
        self._ends_at = math.inf  # the monotonic time of the running user code's deadline
        self._at_once = False  # a stop signal raises Interrupted at once (see at_once)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                if sig not in (signal.SIGINT, signal.SIGTERM) and signal.getsignal(sig) is signal.SIG_IGN:
                    continue  # nohup: the user asked for the run to outlive its terminal
                self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.cleaning:
            say("already stopping: removing processes and shared memory")
            return
        if self.requested is not None and signum == signal.SIGINT:
            raise Interrupted("second interrupt")
        self.requested = signal.Signals(signum).name
        if self._at_once:
            say(f"{self.requested}: stopping")
            raise Interrupted(self.requested)
        # A SIGTERM or SIGHUP comes from a process manager or a lost terminal, which cannot press Ctrl-C.
        again = "press Ctrl-C again" if signum == signal.SIGINT else "Ctrl-C or a SIGINT"
        say(f"{self.requested}: stopping ({again} to stop at once)")
        if self._in_user_code:
            raise UserCodeStopped(self.requested)

    @contextlib.contextmanager
    def at_once(self):
        """A block in which a stop signal stops at once (Interrupted), as a second Ctrl-C does: the run's
        start-up (TensorFlow's import, ~3 s), when nothing is learned yet that a graceful stop would save. A
        stop asked for before the block raises at its start."""
        if self.requested:
            raise Interrupted(self.requested)
        self._at_once = True
        try:
            yield
        finally:
            self._at_once = False

    @contextlib.contextmanager
    def user_code(self, deadline_s: Optional[float], step_s: Optional[float] = None):
        """Runs a block of user code that may hang. A stop signal raises UserCodeStopped in it at once, and so
        does the deadline (seconds from now for the whole block; None: none). With step_s, the block gets a
        function to call after every env step, and going over step_s seconds between two calls raises it too
        ("stalled"): a hung env is told apart from a slow one whose episodes are long (CarRacing: 7 ms a step,
        ~7 s an episode), which a deadline on the whole block would cut every time. Outside the main thread
        signals cannot be used: the block then runs as it is."""
        if not self._saved:
            yield no_step_limit
            return
        if self.requested:
            raise UserCodeStopped(self.requested)
        ends_at = math.inf if deadline_s is None else time.monotonic() + max(deadline_s, 0.001)
        step_s = math.inf if step_s is None else step_s

        def arm():  # the alarm at the nearer of the deadline and step_s from now; ~2 µs a call
            left = ends_at - time.monotonic()
            if left <= 0.0:
                # Past the deadline: stop here. Re-arming with a floor (it was 1 ms) pushed the alarm past the
                # next step of an env that steps faster than that, so a 5-s deadline ran on for 7-40 s.
                raise UserCodeStopped("deadline")
            signal.setitimer(signal.ITIMER_REAL, min(left, step_s))

        saved_alarm = None
        if ends_at < math.inf or step_s < math.inf:
            saved_alarm = signal.signal(signal.SIGALRM, self._alarm)
            self._ends_at = ends_at
            arm()
        self._in_user_code = True
        try:
            yield arm if step_s < math.inf else no_step_limit
        finally:
            self._in_user_code = False
            if saved_alarm is not None:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, saved_alarm)

    def _alarm(self, signum, frame):
        if self._in_user_code:
            raise UserCodeStopped("deadline" if time.monotonic() >= self._ends_at - 0.01 else "stalled")

    def __exit__(self, *exc):
        global _blocks_ended
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        if self._saved:
            _blocks_ended += 1
        return False


@contextlib.contextmanager
def interrupts_held():
    """A block of cleanup that a stop signal must not break: SIGINT, SIGTERM and SIGHUP are ignored in it (a run's
    own handling is not in place yet, or any more): a second Ctrl-C must not break ray.shutdown midway after a
    first one has stopped a run's start."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


class TimedOut(BaseException):
    """Raised inside a `time_limit` block when its time is up (a BaseException: an env's `except Exception`
    around the hung call cannot swallow it)."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raises TimedOut in the block once `seconds` have passed (SIGALRM): for user code run outside a run's
    StopSignals (the launcher's first look at its env, `actorlearner eval`), which would otherwise hang without
    a word. The block gets a function that starts the `seconds` again (call it after every env step to bound
    each step, not the whole block). Python code is interrupted; a call stuck in C code that never returns to
    Python is not. Outside the main thread (no signals there) the block runs as it is."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield no_step_limit
        return

    def alarm(signum, frame):
        raise TimedOut(f"over {seconds:g} s")

    saved = signal.signal(signal.SIGALRM, alarm)
    t0 = time.monotonic()
    theirs, _ = signal.setitimer(signal.ITIMER_REAL, seconds)  # a script's own alarm is put back afterwards
    try:
        yield lambda: signal.setitimer(signal.ITIMER_REAL, seconds)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, saved)
        if theirs:
            signal.setitimer(signal.ITIMER_REAL, max(theirs - (time.monotonic() - t0), 0.001))


def no_step_limit() -> None:
    """The step callback where no step limit is kept."""
