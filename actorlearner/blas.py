"""numpy's BLAS at one thread in the processes that step envs beside other work (the learner, eval).

Why: numpy's OpenBLAS starts a thread per core for a matmul the size of an Atari frame's resize (atari.py), and
its threads spin while they wait for each other. When another process holds a core, which in a run is always
(the actors, the learner's TensorFlow), they wait for a time slice instead: a resize took 560 us against 146 us
at one thread beside one busy process on 2 cores (128 us at two threads on an idle machine). The actors already
get `--actor-threads` through OPENBLAS_NUM_THREADS (actor_pool.py); this is for the learner's evaluation
episodes and serial mode, and for `eval`."""

from __future__ import annotations

from threadpoolctl import threadpool_limits


def one_blas_thread() -> threadpool_limits:
    """A context in which the BLAS libraries loaded in this process (numpy's, at least) use one thread; their own
    setting comes back at its end, so a script that calls train() or evaluate() keeps its own."""
    import numpy  # noqa: F401  (its BLAS is loaded by then: the limit applies only to libraries already loaded)

    return threadpool_limits(limits=1, user_api="blas")
