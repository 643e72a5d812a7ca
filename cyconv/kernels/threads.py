"""How many threads the kernels use.

The Cython kernels run their ``prange`` loops on ``get_num_threads()`` OpenMP threads, and
the matrix products of the im2col algorithm run in NumPy's BLAS, which has its own thread
pool; ``set_num_threads`` sets both, so that "2 threads" means 2 threads everywhere.
"""

from __future__ import annotations

import numbers
import os

from ._parallel import openmp_enabled, openmp_num_procs

__all__ = ["set_num_threads", "get_num_threads", "openmp_enabled"]


def _default_num_threads() -> int:
    """OMP_NUM_THREADS if it is set to a positive int, otherwise the cores we may run on."""
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or openmp_num_procs())


_num_threads = _default_num_threads()


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in the kernels and in NumPy's BLAS from now on.

    In the serial build (``openmp_enabled()`` is False) the Cython loops stay on one thread
    whatever ``n`` is; BLAS still follows ``n``.
    """
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"number of threads must be an int, got {n!r}")
    n = int(n)
    if n < 1:
        raise ValueError(f"number of threads must be at least 1, got {n}")
    _num_threads = n
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n, user_api="blas")


def get_num_threads() -> int:
    """The number of threads the kernels use (see set_num_threads)."""
    return _num_threads
