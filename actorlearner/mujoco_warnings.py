"""MuJoCo's warnings, each said once on the console instead of once per env and into a file.

MuJoCo prints every warning and appends it to MUJOCO_LOG.TXT in the working directory. MuJoCo 4.0 warns
"compiler attribute 'settotalmass' is deprecated" each time HalfCheetah's model is compiled, so a run printed
it 34 times (once per env: 2 actors x 16, and the launcher's) and left the file behind. With MuJoCo's
warning callback set, each kind of warning (its numbers aside) is said once per process, and a process started
after it was said (an actor) does not say it again: the kinds said so far travel to it in the environment.
Warnings from stepping (an unstable simulation) are still said, once per actor process.
"""

from __future__ import annotations

import os

from .reporting import line_kind, say

# The kinds already said, in this process or in the one that started it; joined by \x1f.
SAID_VAR = "ACTORLEARNER_MUJOCO_WARNED"
_said: set[str] | None = None  # None: the callback is not set in this process


def say_mujoco_warnings_once() -> None:
    """Sets MuJoCo's warning callback in this process (once; where mujoco is not installed, nothing)."""
    global _said
    if _said is not None:
        return
    try:
        import mujoco
    except ImportError:
        return
    _said = set(filter(None, os.environ.get(SAID_VAR, "").split("\x1f")))
    mujoco.set_mju_user_warning(_warning)


def _warning(text: str) -> None:
    kind = line_kind(text.strip())  # "... at DOF 3. Time = 0.52" and "... at DOF 5 ..." are one kind
    if kind in _said:
        return
    _said.add(kind)
    os.environ[SAID_VAR] = "\x1f".join(sorted(_said))  # inherited by the processes started from now on
    say(f"MuJoCo warning: {text.strip()} (each kind said once)")
