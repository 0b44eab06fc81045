"""Starting TensorFlow in the learner process: its threads set, its C++ start-up notices filtered out."""

from __future__ import annotations

import os
import sys

# Set by the `actorlearner` command: this process is ours alone, so imports may be trimmed for start-up.
LEAN_IMPORT = False

# What TensorFlow's C++ side prints at import on a CPU-only machine, before its log level applies.
_TF_IMPORT_NOISE = ("All log messages before absl::InitializeLog()", "oneDNN custom operations are on",
                    "Could not find cuda drivers", "failed call to cuInit", "This TensorFlow binary is optimized",
                    "To enable the following instructions", "Unable to register cu")


def start_tensorflow_quietly(threads: int, deterministic: bool = False):
    """Imports the learner (and TensorFlow), sets its threads and starts its runtime, with the C++ start-up
    noise filtered out of stderr; any other line, and everything if this fails, is passed through.
    deterministic: TensorFlow's op determinism (--reproducible)."""
    import tempfile

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Keras imports matplotlib.pyplot at import time, when matplotlib is installed, for one image-gallery
    # helper we never use: 0.5 s of start-up. The command (not a library user's process) skips it.
    skip_pyplot = LEAN_IMPORT and "matplotlib.pyplot" not in sys.modules
    if skip_pyplot:
        sys.modules["matplotlib.pyplot"] = None  # makes `import matplotlib.pyplot` raise ImportError
    with tempfile.TemporaryFile(mode="w+b") as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        failed = True
        try:
            from . import learner

            learner.configure_tensorflow(threads, deterministic)
            learner.tf.constant(0.0)  # starts the runtime, which prints the rest of its notices
            failed = False
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode(errors="replace")
            keep = text if failed else "".join(
                line for line in text.splitlines(keepends=True) if not any(n in line for n in _TF_IMPORT_NOISE))
            if keep.strip():
                os.write(2, keep.encode())
            if skip_pyplot and sys.modules.get("matplotlib.pyplot", 0) is None:
                del sys.modules["matplotlib.pyplot"]  # later imports work as usual
    return learner
