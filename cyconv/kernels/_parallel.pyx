# cython: language_level=3
"""Which build is this, and how many OpenMP threads can it use?

The OpenMP calls are wrapped so that the module also compiles without OpenMP (the serial
fallback build): there the parallel loops run serially and these functions report one
thread.
It also holds the probe of the machine's multiply-add peak (``multiply_adds``), against
which the benchmarks measure the convolutions' inner loops, and ``task_owners``, which shows
the tests how the kernels share their tasks between threads.
"""

import numpy as np
from cython.parallel cimport parallel, prange, threadid

from ._threads cimport join_threads, new_team, share_start, share_stop, take_task, Team

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define CYCONV_OPENMP 1
    #else
    #define CYCONV_OPENMP 0
    static int omp_get_num_procs(void) { return 1; }
    static int omp_get_num_threads(void) { return 1; }
    #endif
    """
    int CYCONV_OPENMP
    int omp_get_num_procs() nogil
    int openmp_team_size "omp_get_num_threads"() noexcept nogil


def openmp_enabled():
    """True if the kernels were compiled with OpenMP (parallel), False for the serial build."""
    return bool(CYCONV_OPENMP)


def openmp_num_procs():
    """Processors OpenMP sees (1 in the serial build)."""
    return omp_get_num_procs()


# --- the machine's multiply-add peak: what a loop of vector FMAs can reach ------------------

cdef extern from *:
    """
    #if defined(__AVX512F__)
    #define CYCONV_PEAK_VEC 16
    #else
    #define CYCONV_PEAK_VEC 8
    #endif
    #define CYCONV_PEAK_ACCUMULATORS 12
    typedef float cyconv_peakv __attribute__((vector_size(CYCONV_PEAK_VEC * 4)));
    /* 12 independent accumulators, acc = acc * a + b, one fused multiply-add each a step:
       enough to keep both FMA units busy through the 4-cycle latency of each. Returns the
       sum of every lane of every accumulator, so that the compiler keeps the work. */
    static double cyconv_multiply_adds(long steps, float a, float b) {
        cyconv_peakv acc[CYCONV_PEAK_ACCUMULATORS];
        double total = 0;
        long s;
        int i, l;
        for (i = 0; i < CYCONV_PEAK_ACCUMULATORS; i++)
            for (l = 0; l < CYCONV_PEAK_VEC; l++)
                acc[i][l] = (float)i;
        for (s = 0; s < steps; s++) {
            #pragma GCC unroll 12
            for (i = 0; i < CYCONV_PEAK_ACCUMULATORS; i++)
                acc[i] = acc[i] * a + b;
        }
        for (i = 0; i < CYCONV_PEAK_ACCUMULATORS; i++)
            for (l = 0; l < CYCONV_PEAK_VEC; l++)
                total += acc[i][l];
        return total;
    }
    """
    enum: CYCONV_PEAK_VEC
    enum: CYCONV_PEAK_ACCUMULATORS
    double cyconv_multiply_adds(long steps, float a, float b) noexcept nogil


#: float32 lanes of one vector of the build (16 with AVX-512, else 8), and vector
#: multiply-adds a step of multiply_adds does (12): 2 * PEAK_ACCUMULATORS * PEAK_LANES FLOPs.
PEAK_LANES = CYCONV_PEAK_VEC
PEAK_ACCUMULATORS = CYCONV_PEAK_ACCUMULATORS


def multiply_adds(long steps, int threads, float a=1.0, float b=0.5):
    """Run ``steps`` x 12 independent float32 vector multiply-adds (acc = acc * a + b) on
    each of ``threads`` threads: 2 * 12 * PEAK_LANES * steps FLOPs a thread, the peak a
    convolution's inner loop could reach. Returns the sum of all accumulators (each starts
    at its index, 0 to 11, in every lane), so that the work cannot be left out."""
    cdef double[::1] totals = np.zeros(max(threads, 1))
    cdef Py_ssize_t t
    if steps < 0 or threads < 1:
        raise ValueError(f"steps must be >= 0 and threads >= 1, got {steps} and {threads}")
    for t in prange(threads, nogil=True, num_threads=threads, schedule="static", chunksize=1):
        totals[t] = cyconv_multiply_adds(steps, a, b)
    return float(np.sum(totals))


# --- how the kernels share their tasks (_threads.pxd), for the tests ------------------------

def task_owners(Py_ssize_t tasks, int threads, bint dynamic):
    """Run ``tasks`` empty tasks on ``threads`` threads the way the kernels do (take_task if
    ``dynamic``, else share_start/share_stop; then join_threads). Returns (ran, team): ran
    an int8 matrix (threads, tasks) with a 1 where that thread ran that task (a column
    summing to anything but 1 would be a task lost or run twice), team the threads the
    region really had (OpenMP may give fewer than asked for; 1 in the serial build)."""
    if tasks < 0 or threads < 1:
        raise ValueError(f"tasks must be >= 0 and threads >= 1, got {tasks} and {threads}")
    ran = np.zeros((threads, tasks), np.int8)
    cdef signed char[:, ::1] ran_view = ran
    cdef Py_ssize_t task
    cdef int[::1] team_size = np.zeros(1, np.intc)
    cdef Team team = new_team()
    with nogil, parallel(num_threads=threads):
        if threadid() == 0:
            team_size[0] = openmp_team_size()
        if dynamic:
            while True:
                task = take_task(&team)
                if task >= tasks:
                    break
                ran_view[threadid(), task] += 1
        else:
            for task in range(share_start(tasks), share_stop(tasks)):
                ran_view[threadid(), task] += 1
        join_threads(&team)
    return ran, int(team_size[0])
