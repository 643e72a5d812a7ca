"""How many threads the kernels use.

The Cython kernels run their parallel loops (``prange``, or the task sharing of
``_threads.pxd``) on ``get_num_threads()`` OpenMP threads.
NumPy's BLAS (used by the references and by the matrix products of the layers above) has
its own thread pool; ``set_num_threads`` sets it too, so that "2 threads" means 2 threads
everywhere.

The im2col kernels call SciPy's BLAS from inside their OpenMP threads, every thread on its
own piece of the batch: each of those calls must run on one thread, or the BLAS threads
would compete with the OpenMP ones. So SciPy's BLAS is kept at one thread when it is a
library of its own, as in the PyPI wheels. A BLAS shared with NumPy (some conda builds) is
left alone; there, OpenMP-aware BLAS libraries (MKL, OpenMP OpenBLAS) run single-threaded
inside our threads by themselves, but a pthreads OpenBLAS may oversubscribe the cores.
"""

from __future__ import annotations

import numbers
import os

from ._parallel import openmp_enabled, openmp_num_procs

__all__ = ["set_num_threads", "get_num_threads", "threads_for", "openmp_enabled"]


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


def _blas_controllers():
    """(NumPy's BLAS controllers, the kernels' own BLAS controllers) from threadpoolctl."""
    import scipy.linalg.cython_blas  # noqa: F401  (load the kernels' BLAS before looking)
    from threadpoolctl import ThreadpoolController

    blas = [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]
    kernel_blas = [lib for lib in blas if "scipy" in lib.filepath and "numpy" not in lib.filepath]
    return [lib for lib in blas if lib not in kernel_blas], kernel_blas


_numpy_blas, _kernel_blas = _blas_controllers()
for _lib in _kernel_blas:
    _lib.set_num_threads(1)


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
    for lib in _numpy_blas:
        lib.set_num_threads(n)


def get_num_threads() -> int:
    """The number of threads the kernels use (see set_num_threads)."""
    return _num_threads


def threads_for(items: int, items_per_thread: int) -> int:
    """The threads for a loop over ``items`` cheap items: get_num_threads(), but no more
    than one thread per ``items_per_thread`` items, and at least one.

    Waking a second thread for a parallel region costs a few tens of microseconds on the
    project's machine (bench/RESULTS.md), more than it saves on a short loop: ReLU and its
    gradient on 2**16 values took 20 us on 1 thread and 86 us on 2. The kernels whose
    outputs are each computed by one thread (ReLU, batch norm, pooling, the bias gradient)
    give the same bits on any number of threads, so this changes their speed only.
    """
    if items_per_thread < 1:
        raise ValueError(f"items_per_thread must be at least 1, got {items_per_thread}")
    return max(1, min(get_num_threads(), items // items_per_thread))

