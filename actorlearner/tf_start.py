"""Starting TensorFlow in the learner process: its threads set, its C++ start-up notices filtered out."""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import tempfile
import threading

# Set by the `actorlearner` command: this process is ours alone, so imports may be trimmed for start-up.
LEAN_IMPORT = False

# Packages Keras imports at import time for helpers a run never calls (_start).
_LEAN_SKIPS = ("matplotlib", "cv2")

# Namespaces of TensorFlow's public API that its __init__ imports eagerly and a run does not use (the v1 API,
# test helpers, feature columns, TPU): _start makes them load on first use instead. They are ~400 of the ~2,850
# modules `import tensorflow` loads here, ~0.25 s of its ~2 s (import, model, compiled step and 20 steps end to
# end, 5 alternated processes each: medians 2.38 against 2.66 s, 2-core AMD EPYC VM, TF 2.21). Not tf.lite nor
# tf.distribute: each shares its name with a package of TensorFlow's own (tensorflow/lite, tensorflow/distribute)
# which, imported first when the namespace loads late, takes the `tf.lite` name over (then "no attribute
# 'TFLiteConverter'").
_LAZY_TF_API = frozenset(f"tensorflow._api.v2.{name}" for name in (
    "compat", "feature_column", "test", "tpu", "__internal__.distribute", "__internal__.feature_column",
    "__internal__.test"))


class _LazyTensorFlowAPI(importlib.abc.MetaPathFinder):
    """Finds _LAZY_TF_API's modules as the usual path finder does, with their loader wrapped in importlib's
    LazyLoader: the module object is made now and runs its code at its first attribute access. A name the
    installed TensorFlow lacks is left to the usual import (and fails or not as it would)."""

    def find_spec(self, name, path, target=None):
        if name not in _LAZY_TF_API:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or not hasattr(spec.loader, "exec_module"):
            return None
        spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec

# What TensorFlow's C++ side prints at import on a CPU-only machine, before its log level applies.
TF_IMPORT_NOISE = ("All log messages before absl::InitializeLog()", "oneDNN custom operations are on",
                    "Could not find cuda drivers", "failed call to cuInit", "This TensorFlow binary is optimized",
                    "To enable the following instructions", "Unable to register cu")


@contextlib.contextmanager
def native_stderr_filtered(noise: tuple[str, ...]):
    """Captures file descriptor 2 for the block (C++ libraries write there directly, past sys.stderr), then
    passes on every line that contains none of `noise`: everything, if the block failed (an Exception; a stop
    by Ctrl-C, a BaseException, is not a failure whose cause the noise might hold)."""
    with tempfile.TemporaryFile(mode="w+b") as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        failed = False
        try:
            yield
        except Exception:
            failed = True
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode(errors="replace")
            keep = text if failed else "".join(
                line for line in text.splitlines(keepends=True) if not any(n in line for n in noise))
            if keep.strip():
                os.write(2, keep.encode())


_early: list = []  # [thread, errors] while start_tensorflow_early's thread is pending


@contextlib.contextmanager
def tf_notices_filtered():
    """For a block that may import TensorFlow or start its runtime (a user's model module, a model_fn unpickled
    or called): its start-up notices filtered out as the learner's are, ~7 lines a process otherwise."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_stderr_filtered(TF_IMPORT_NOISE):
        yield


def start_tensorflow_early(threads: int, deterministic: bool = False) -> None:
    """Starts TensorFlow (start_tensorflow_quietly) in a background thread now; the next
    start_tensorflow_quietly waits for it. --backend ray: the import (~4 s) overlaps ray.init (~2.5 s), which
    must run in the main thread and mostly waits for Ray's processes to come up."""
    if "tensorflow" in sys.modules:
        return  # started already (a custom model is built while planning the run)
    errors: list = []

    def work():
        try:
            _start(threads, deterministic)
        except BaseException as e:  # noqa: BLE001 - raised again in the thread that asks for TensorFlow
            errors.append(e)

    # Not a daemon: while it runs, stderr goes to its capture, so the process must not end before it has
    # passed on what the main thread wrote meanwhile (a failing ray.init's error, say).
    thread = threading.Thread(target=work, name="tensorflow-start")
    thread.start()
    _early[:] = [thread, errors]


def wait_for_early_start() -> None:
    """Waits for start_tensorflow_early's thread, if one is pending (its errors are dropped: the run is over)."""
    if _early:
        _early[0].join()
        _early.clear()


def start_tensorflow_quietly(threads: int, deterministic: bool = False):
    """Imports the learner (and TensorFlow), sets its threads and starts its runtime, with the C++ start-up
    noise filtered out of stderr; any other line, and everything if this fails, is passed through.
    deterministic: TensorFlow's op determinism (--reproducible). Waits for start_tensorflow_early's thread
    instead, if one is pending."""
    if _early:
        thread, errors = _early
        _early.clear()
        thread.join()
        if errors:
            raise errors[0]
        from . import learner

        return learner
    return _start(threads, deterministic)


def _start(threads: int, deterministic: bool):
    with lean_tensorflow_import() if LEAN_IMPORT else contextlib.nullcontext(), tf_notices_filtered():
        from . import learner

        configure_tensorflow(threads, deterministic)
        learner.tf.constant(0.0)  # starts the runtime, which prints the rest of its notices
    return learner


@contextlib.contextmanager
def lean_tensorflow_import():
    """TensorFlow imported in the block loads less, for a process of ours alone (the command's learner, an actor
    process that runs TensorFlow). Keras imports matplotlib.pyplot (and OpenCV) at import time, when they are
    installed, for image-gallery and bounding-box helpers we never use: 0.5-0.7 s of start-up (2 cores, medians of
    4 alternated imports: 3.49 s as is, 3.04 with pyplot alone skipped, 2.77 with both packages). They are skipped
    in the block (`import matplotlib` raises ImportError, which Keras takes as "not installed") and import as usual
    after it; _LAZY_TF_API's namespaces load on first use."""
    skipped = [name for name in _LEAN_SKIPS if name not in sys.modules]
    for name in skipped:
        sys.modules[name] = None
    lazy = _LazyTensorFlowAPI() if "tensorflow" not in sys.modules else None
    if lazy:
        sys.meta_path.insert(0, lazy)
    try:
        yield
    finally:
        if lazy in sys.meta_path:
            sys.meta_path.remove(lazy)  # the modules it made stay lazy until used
        for name in skipped:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]  # later imports (actorlearner plot, a video) work as usual


def import_tensorflow_lean() -> None:
    """Imports TensorFlow lean (lean_tensorflow_import) before a user's module that would import it whole: in an
    actor that runs a custom model (its process runs TensorFlow for itself alone) and in the command's learner
    before a --model-fn module. The module's own imports (matplotlib included) then work as usual."""
    if "tensorflow" in sys.modules:
        return
    with lean_tensorflow_import():
        import tensorflow  # noqa: F401


def configure_tensorflow(threads: int, deterministic: bool = False) -> None:
    """Learner-process TF settings. Grappler's graph rewrites stay on: its remapper fuses each dense layer's
    MatMul, BiasAdd and activation into one kernel, 3-4 % of the default CartPole step (1.60 -> 1.55 ms in
    alternated runs on an Intel CPU with AMX), for ~0.05 s more on the first step; on an AMD CPU with oneDNN the
    default MLP is built without that fusion (precision.fuse_mlp_layers). deterministic: --reproducible, every
    op's result independent of thread timing."""
    import tensorflow as tf

    if deterministic:
        tf.config.experimental.enable_op_determinism()
    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            pass  # TensorFlow already runs in this process (a notebook, a test): its threads stay as they are
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            # Take GPU memory as the learner needs it, not nearly all of it at start: `actorlearner export` or a
            # second run on the same GPU can then start beside a training run.
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # the GPU was initialised before this call (a notebook, a test): its memory policy stays


def choose_onednn(custom_model: bool) -> str:
    """Sets TF_ENABLE_ONEDNN_OPTS=1 where precision.onednn_kernels says so (before TensorFlow is imported: it
    reads the variable once; actors that run TensorFlow inherit it). Returns the start-up line's note."""
    from .precision import onednn_kernels

    turn_on, note = onednn_kernels(custom_model, os.environ, "tensorflow" in sys.modules)
    if turn_on:
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"
    return note


def learner_device() -> str | None:
    """Where this process's TensorFlow runs the learner step: "CPU", or its GPUs, named ("GPU:0 NVIDIA H200"),
    for the run's summary and a line at start-up (TensorFlow places ops on the first GPU by itself); None when
    TensorFlow is not imported (imports nothing)."""
    tf = sys.modules.get("tensorflow")
    if tf is None or not hasattr(tf, "config"):
        return None
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU"
    names = []
    for gpu in gpus:
        try:
            detail = tf.config.experimental.get_device_details(gpu).get("device_name", "")
        except (RuntimeError, ValueError):
            detail = ""
        names.append(" ".join(filter(None, [gpu.name.split("physical_device:")[-1], detail])))
    return ", ".join(names)


def onednn_in_use() -> bool | None:
    """Whether this process's TensorFlow runs its oneDNN kernels (see precision.onednn_kernels); None when
    TensorFlow is not imported or its (private) check has moved. Imports nothing when TensorFlow is not imported;
    when it is, its small compiled module with the check (which TensorFlow's own import no longer brings in
    where _start left its test helpers to load on first use)."""
    if "tensorflow" not in sys.modules:
        return None
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:
        return None
    try:
        return bool(_pywrap_util_port.IsMklEnabled())
    except AttributeError:
        return None
