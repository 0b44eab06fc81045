"""Stopping a run by signal: the first SIGINT/SIGTERM/SIGHUP asks for a graceful stop, a second SIGINT for an
immediate one (the run still removes its processes and shared memory). SIGHUP is what a run gets when its
terminal goes away (an ssh connection that drops): by default it killed the process on the spot, with no final
checkpoint and its shared memory left behind. Where SIGHUP is ignored (`nohup`), it stays ignored.

User code that runs in the learner process (evaluation episodes, serial-mode stepping) can hang, and a
hung env never returns to the loop that would see the request. Such code runs inside
`StopSignals.user_code(deadline)`: a stop signal, or its deadline (SIGALRM), raises `UserCodeStopped` in it.
Both exceptions are BaseExceptions, so no `except Exception` around an env's call can swallow them as an
env error."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Optional

from .reporting import say


# SIGHUP where the platform has it (not Windows).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM) + ((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ())


class Interrupted(BaseException):
    """Raised inside the loop on a second Ctrl-C: stop now, still cleaning up."""


class UserCodeStopped(BaseException):
    """Raised inside user code run under `StopSignals.user_code`: `why` is the signal's name or "deadline"."""

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
        say(f"{self.requested}: stopping (press Ctrl-C again to stop at once)")
        if self._in_user_code:
            raise UserCodeStopped(self.requested)

    @contextlib.contextmanager
    def user_code(self, deadline_s: Optional[float]):
        """Runs a block of user code that may hang. A stop signal raises UserCodeStopped in it at once, and so
        does the deadline (seconds from now; None: none). Outside the main thread signals cannot be used:
        the block then runs as it is."""
        if not self._saved:
            yield
            return
        if self.requested:
            raise UserCodeStopped(self.requested)
        saved_alarm = None
        if deadline_s is not None:
            saved_alarm = signal.signal(signal.SIGALRM, self._alarm)
            signal.setitimer(signal.ITIMER_REAL, max(deadline_s, 0.001))
        self._in_user_code = True
        try:
            yield
        finally:
            self._in_user_code = False
            if saved_alarm is not None:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, saved_alarm)

    def _alarm(self, signum, frame):
        if self._in_user_code:
            raise UserCodeStopped("deadline")

    def __exit__(self, *exc):
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        return False
