"""Stopping a run by signal: the first SIGINT/SIGTERM asks for a graceful stop, a second SIGINT for an
immediate one (the run still removes its processes and shared memory)."""

from __future__ import annotations

import signal
import threading
from typing import Optional

from .reporting import say


class Interrupted(Exception):
    """Raised inside the loop on a second Ctrl-C: stop now, still cleaning up."""


class StopSignals:
    """First SIGINT/SIGTERM asks for a graceful stop; a second SIGINT stops at once (still cleaning up)."""

    def __init__(self):
        self.requested: Optional[str] = None
        self.cleaning = False  # set once cleanup starts: it is short and must finish, so no raising then
        self._saved = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
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

    def __exit__(self, *exc):
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        return False
