"""Where a stalled actor is stuck. Each actor process has faulthandler write its Python stack to a file of its
own on SIGUSR1 (actor.actor_process_main); the pool asks a stalled actor for it before killing it, and names the
frame in the report. The files live in one temporary directory per run, named for the launcher's pid, so that a
later run removes the directory of a run that was killed (no cleanup runs on SIGKILL)."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time

from .transport import left_by_dead_processes

STACKS_PREFIX = "actorlearner-stacks-"


def make_stack_dir() -> str:
    """A new temporary directory for the actors' stack files (`where_stuck`). Its name carries this process's
    pid: if this process is killed (SIGKILL: no cleanup runs), a later run removes it (`remove_stale_stack_dirs`)."""
    return tempfile.mkdtemp(prefix=f"{STACKS_PREFIX}{os.getpid()}-")


def remove_stale_stack_dirs() -> list[str]:
    """Removes the stack directories of runs whose process is gone; returns their paths. Live runs' are left."""
    tmp = tempfile.gettempdir()
    removed = [os.path.join(tmp, name) for name in left_by_dead_processes(tmp, STACKS_PREFIX, "-")]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def where_stuck(pid: int, stack_path: str, wait_s: float = 0.3) -> str:
    """Asks a stalled actor for its stack (SIGUSR1, answered by faulthandler, even inside C code); returns its
    innermost frame outside actorlearner and the standard library, as "file.py:LINE in FUNCTION", or ""
    (no answer: a frozen process does not run its handler)."""
    if not stack_path:
        return ""
    try:
        size = os.path.getsize(stack_path)
        os.kill(pid, signal.SIGUSR1)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and os.path.getsize(stack_path) == size:
            time.sleep(0.02)
        with open(stack_path) as f:
            f.seek(size)
            text = f.read()
    except OSError:
        return ""
    frames = [line.strip() for line in text.splitlines() if line.strip().startswith("File ")]
    for frame in frames:  # most recent call first
        path = frame.split('"')[1] if '"' in frame else ""
        if "/actorlearner/" in path or "/lib/python" in path and "site-packages" not in path:
            continue
        line = frame.rsplit(", line ", 1)[-1]  # 'N in FUNCTION'
        number, _, function = line.partition(" in ")
        return f"{os.path.basename(path)}:{number} in {function}"
    return ""
