# cython: language_level=3
"""Which build is this, and how many OpenMP threads can it use?

The OpenMP calls are wrapped so that the module also compiles without OpenMP (the serial
fallback build): there ``prange`` runs serially and these functions report one thread.
"""

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define CYCONV_OPENMP 1
    #else
    #define CYCONV_OPENMP 0
    static int omp_get_num_procs(void) { return 1; }
    #endif
    """
    int CYCONV_OPENMP
    int omp_get_num_procs() nogil


def openmp_enabled():
    """True if the kernels were compiled with OpenMP (parallel), False for the serial build."""
    return bool(CYCONV_OPENMP)


def openmp_num_procs():
    """Processors OpenMP sees (1 in the serial build)."""
    return omp_get_num_procs()
