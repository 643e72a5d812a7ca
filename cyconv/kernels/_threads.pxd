# How the fast kernels share their tasks between threads: one OpenMP parallel region a
# call, opened with ``with nogil, parallel(num_threads=...)``, its tasks handed out by the
# helpers below, and ``join_threads`` as the region's last statement.
#
#     cdef Team team = new_team()                   # shared by the region's threads
#     with nogil, parallel(num_threads=num_threads):
#         # "static": the same tasks to the same thread on every run (for partial sums
#         # that must round the same way each time)
#         for task in range(share_start(tasks), share_stop(tasks)):
#             ...
#         join_threads(&team)
#
#     with nogil, parallel(num_threads=num_threads):
#         # "dynamic": each task to whichever thread is free (tasks of unequal cost)
#         while True:
#             task = take_task(&team)
#             if task >= tasks:
#                 break
#             ...
#         join_threads(&team)
#
# Why not ``for task in prange(...)``? Cython makes every variable a prange body assigns
# (the loop index included) both firstprivate and lastprivate on an ``omp for``, and for
# such variables GCC puts a barrier at the start of the loop: no thread may copy its last
# values out before every thread has copied its first ones in. With idle threads asleep
# (OMP_WAIT_POLICY=PASSIVE, cyconv's default) that barrier is one more sleep and wake-up
# of the other threads at every call. On the 2-core virtual machine this was measured on,
# whose idle cores halt at once, it cost 20-40 us a call: 5-6% of a grouped4 forward
# pass, 10-25% of a pooling or LeNet-sized call. A plain loop inside ``parallel()`` has
# no such barrier.
#
# Why join_threads? At the region's closing barrier a thread that has finished its share
# goes to sleep, and waking it again takes 20-30 us here. When that thread is thread 0,
# the one that returns to Python, the call waits for it. So thread 0 waits for the others
# in join_threads instead, calling sched_yield() in a loop: it stays awake, yet gives its
# core to any thread that needs it. (The system sometimes queues a woken OpenMP thread on
# thread 0's core, when the other core is busy. A plain spin then kept that thread from
# running: with NumPy's BLAS threads still spinning after a matrix product, a LeNet
# training step ran 13% slower.) It waits at most JOIN_SECONDS, then sleeps at the
# barrier as before. Nothing waits like this outside the kernels' regions.
#
# Variables a parallel block assigns are private to each thread. Cython declares them
# firstprivate, which copies each one, still unset, into every thread; GCC then warns
# that they are used uninitialised, although every thread sets them before reading them.
# Those two warnings are turned off in the modules that cimport this file (in the whole
# module: a pragma cannot be scoped to a Cython block).
#
# Without OpenMP (the serial build) there is one thread, and it gets every task.

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define CYCONV_THREAD() omp_get_thread_num()
    #define CYCONV_TEAM_SIZE() omp_get_num_threads()
    #if defined(_WIN32)
    #include <windows.h>
    #define CYCONV_YIELD() SwitchToThread()
    #else
    #include <sched.h>
    #define CYCONV_YIELD() sched_yield()
    #endif
    #else
    #define CYCONV_THREAD() 0
    #define CYCONV_TEAM_SIZE() 1
    #endif
    #if defined(__GNUC__)
    #pragma GCC diagnostic ignored "-Wuninitialized"
    #if !defined(__clang__)
    #pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
    #endif
    #endif

    /* What the threads of one region share: tasks handed out, threads done with theirs. */
    typedef struct { Py_ssize_t handed_out; int finished; } cyconv_team;

    static inline cyconv_team cyconv_new_team(void) {
        cyconv_team team = {0, 0};
        return team;
    }

    /* The next task nobody has taken yet (0, 1, 2, ...). */
    static inline Py_ssize_t cyconv_take_task(cyconv_team *team) {
        Py_ssize_t task;
    #ifdef _OPENMP
        #pragma omp atomic capture
    #endif
        task = team->handed_out++;
        return task;
    }

    /* Thread t's share of tasks 0 .. tasks-1 is [share_start, share_stop): contiguous,
       the same on every run, q = tasks / threads tasks each and one more for the first
       tasks % threads threads (thread 0, which starts first, is among them). */
    static inline Py_ssize_t cyconv_share_begin(Py_ssize_t tasks, Py_ssize_t t) {
        Py_ssize_t threads = CYCONV_TEAM_SIZE(), r = tasks % threads;
        return t * (tasks / threads) + (t < r ? t : r);
    }
    static inline Py_ssize_t cyconv_share_start(Py_ssize_t tasks) {
        return cyconv_share_begin(tasks, CYCONV_THREAD());
    }
    static inline Py_ssize_t cyconv_share_stop(Py_ssize_t tasks) {
        return cyconv_share_begin(tasks, CYCONV_THREAD() + 1);
    }

    /* The other threads count themselves done; thread 0 waits until all have, yielding
       its core (to them, or to anyone) meanwhile, for at most CYCONV_JOIN_SECONDS. */
    #define CYCONV_JOIN_SECONDS 1e-4
    static inline void cyconv_join_threads(cyconv_team *team) {
    #ifdef _OPENMP
        int others = omp_get_num_threads() - 1, done;
        double give_up;
        if (omp_get_thread_num() != 0) {
            #pragma omp atomic update
            team->finished++;
            return;
        }
        if (others == 0)
            return;
        give_up = omp_get_wtime() + CYCONV_JOIN_SECONDS;
        for (;;) {
            #pragma omp atomic read
            done = team->finished;
            if (done == others || omp_get_wtime() > give_up)
                return;
            CYCONV_YIELD();
        }
    #else
        (void)team;
    #endif
    }
    """
    ctypedef struct Team "cyconv_team":
        Py_ssize_t handed_out
        int finished
    Team new_team "cyconv_new_team"() noexcept nogil
    Py_ssize_t take_task "cyconv_take_task"(Team* team) noexcept nogil
    Py_ssize_t share_start "cyconv_share_start"(Py_ssize_t tasks) noexcept nogil
    Py_ssize_t share_stop "cyconv_share_stop"(Py_ssize_t tasks) noexcept nogil
    void join_threads "cyconv_join_threads"(Team* team) noexcept nogil
    double JOIN_SECONDS "CYCONV_JOIN_SECONDS"
