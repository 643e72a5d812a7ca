# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""ReLU, batch normalisation and sums over channels: simple loops over memory, run in parallel.

These are cheap per element, so they are limited by memory traffic: one pass over the data
where NumPy would make several (a mask, a product, a temporary), spread over the threads.
The arguments were checked in Python (cyconv.kernels.elementwise; cyconv.kernels.conv for
channel_sums, a convolution's bias gradient); nothing is checked here.
"""

from libc.math cimport sqrt
from cython cimport floating
from cython.parallel cimport parallel

from ._threads cimport join_threads, new_team, share_start, share_stop, Team

# elements per parallel task for the flat loops: large enough that scheduling is free
cdef enum:
    BLOCK = 16384


def relu_forward(const floating[::1] x, floating[::1] y, int num_threads):
    """y[i] = max(x[i], 0); a NaN stays NaN (as in PyTorch), so a diverging run shows."""
    cdef Py_ssize_t n = x.shape[0], blocks = (n + BLOCK - 1) // BLOCK, b, i
    cdef Team team = new_team()
    with nogil, parallel(num_threads=num_threads):
        for b in range(share_start(blocks), share_stop(blocks)):
            for i in range(b * BLOCK, min(b * BLOCK + BLOCK, n)):
                y[i] = 0 if x[i] <= 0 else x[i]
        join_threads(&team)


def relu_backward(const floating[::1] grad_y, const floating[::1] y, floating[::1] grad_x,
                  int num_threads):
    """grad_x[i] = grad_y[i] where the output was positive, else 0 (d max(x, 0)/dx)."""
    cdef Py_ssize_t n = y.shape[0], blocks = (n + BLOCK - 1) // BLOCK, b, i
    cdef Team team = new_team()
    with nogil, parallel(num_threads=num_threads):
        for b in range(share_start(blocks), share_stop(blocks)):
            for i in range(b * BLOCK, min(b * BLOCK + BLOCK, n)):
                grad_x[i] = grad_y[i] if y[i] > 0 else 0
        join_threads(&team)


cdef inline double row_sum(const floating* row, Py_ssize_t S, double shift) noexcept nogil:
    """sum over s of (row[s] - shift), in double, with 4 running sums.

    One running sum waits for every addition before the next (4 cycles each); 4 independent
    ones let the additions overlap, and the compiler can put them in one vector.
    """
    cdef double t0 = 0, t1 = 0, t2 = 0, t3 = 0
    cdef Py_ssize_t s, S4 = S - S % 4
    for s in range(0, S4, 4):
        t0 = t0 + (row[s] - shift)
        t1 = t1 + (row[s + 1] - shift)
        t2 = t2 + (row[s + 2] - shift)
        t3 = t3 + (row[s + 3] - shift)
    for s in range(S4, S):
        t0 = t0 + (row[s] - shift)
    return (t0 + t1) + (t2 + t3)


cdef inline double row_sum_squares(const floating* row, Py_ssize_t S, double shift) noexcept nogil:
    """sum over s of (row[s] - shift)^2, in double, with 4 running sums."""
    cdef double t0 = 0, t1 = 0, t2 = 0, t3 = 0, d0, d1, d2, d3
    cdef Py_ssize_t s, S4 = S - S % 4
    for s in range(0, S4, 4):
        d0 = row[s] - shift
        d1 = row[s + 1] - shift
        d2 = row[s + 2] - shift
        d3 = row[s + 3] - shift
        t0 = t0 + d0 * d0
        t1 = t1 + d1 * d1
        t2 = t2 + d2 * d2
        t3 = t3 + d3 * d3
    for s in range(S4, S):
        d0 = row[s] - shift
        t0 = t0 + d0 * d0
    return (t0 + t1) + (t2 + t3)


cdef inline double row_dot(const floating* a, const floating* b, Py_ssize_t S,
                           double shift) noexcept nogil:
    """sum over s of a[s] * (b[s] - shift), in double, with 4 running sums."""
    cdef double t0 = 0, t1 = 0, t2 = 0, t3 = 0
    cdef Py_ssize_t s, S4 = S - S % 4
    for s in range(0, S4, 4):
        t0 = t0 + a[s] * (b[s] - shift)
        t1 = t1 + a[s + 1] * (b[s + 1] - shift)
        t2 = t2 + a[s + 2] * (b[s + 2] - shift)
        t3 = t3 + a[s + 3] * (b[s + 3] - shift)
    for s in range(S4, S):
        t0 = t0 + a[s] * (b[s] - shift)
    return (t0 + t1) + (t2 + t3)


cdef inline double channel_sum(const floating[:, :, ::1] x, Py_ssize_t c) noexcept nogil:
    """sum over n, s of x[n, c, s], in double."""
    cdef double total = 0
    cdef Py_ssize_t n
    for n in range(x.shape[0]):
        total = total + row_sum(&x[n, c, 0], x.shape[2], 0)
    return total


def channel_sums(const floating[:, :, ::1] x, floating[::1] sums, int num_threads):
    """sums[c] = sum over n, s of x[n, c, s], added up in double (row_sum); one channel per
    task. With x the output gradient viewed as (N, C_out, H_out*W_out), it is the gradient
    of a convolution's bias."""
    cdef Py_ssize_t C = x.shape[1], c
    cdef Team team = new_team()
    with nogil, parallel(num_threads=num_threads):
        for c in range(share_start(C), share_stop(C)):
            sums[c] = <floating> channel_sum(x, c)
        join_threads(&team)


def batch_norm_forward(const floating[:, :, ::1] x, const floating[::1] weight,
                       const floating[::1] bias, floating[:, :, ::1] y, double[::1] mean,
                       double[::1] var, double eps, bint affine, int num_threads):
    """Normalise every channel c of x (N, C, S) with its own batch statistics.

        mean[c] = sum over n, s of x[n, c, s] / m                 (m = N * S)
        var[c]  = sum over n, s of (x[n, c, s] - mean[c])^2 / m   (biased)
        y[n, c, s] = (x[n, c, s] - mean[c]) / sqrt(var[c] + eps) * weight[c] + bias[c]

    Parallel over channels; sums in double precision.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], S = x.shape[2]
    cdef Py_ssize_t c, n, s
    cdef double m = N * S, squares, mu, scale, shift

    cdef Team team = new_team()
    with nogil, parallel(num_threads=num_threads):
        for c in range(share_start(C), share_stop(C)):
            mu = channel_sum(x, c) / m
            squares = 0
            for n in range(N):
                squares = squares + row_sum_squares(&x[n, c, 0], S, mu)
            mean[c] = mu
            var[c] = squares / m
            scale = 1 / sqrt(var[c] + eps)                 # y = x * scale + shift
            if affine:
                scale = scale * weight[c]
            shift = -mu * scale
            if affine:
                shift = shift + bias[c]
            for n in range(N):
                for s in range(S):
                    y[n, c, s] = <floating> (x[n, c, s] * scale + shift)
        join_threads(&team)


def batch_norm_backward(const floating[:, :, ::1] grad_y, const floating[:, :, ::1] x,
                        const floating[::1] weight, const double[::1] mean, const double[::1] var,
                        double eps, floating[:, :, ::1] grad_x, double[::1] grad_weight,
                        double[::1] grad_bias, bint affine, bint needs_grad_x, int num_threads):
    """Gradients of batch_norm_forward (training mode: the statistics depend on x too).

    With x_hat = (x - mean) * inv_std, inv_std = 1 / sqrt(var + eps), for each channel:
        grad_bias   = sum g                  grad_weight = sum g * x_hat
        grad_x      = weight * inv_std / m * (m * g - grad_bias - x_hat * grad_weight)
    Parallel over channels.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], S = x.shape[2]
    cdef Py_ssize_t c, n, s
    cdef double m = N * S, sum_g, sum_gx, inv_std, k, x_hat

    cdef Team team = new_team()
    with nogil, parallel(num_threads=num_threads):
        for c in range(share_start(C), share_stop(C)):
            inv_std = 1 / sqrt(var[c] + eps)
            sum_g = 0
            sum_gx = 0
            for n in range(N):
                sum_g = sum_g + row_sum(&grad_y[n, c, 0], S, 0)
                sum_gx = sum_gx + row_dot(&grad_y[n, c, 0], &x[n, c, 0], S, mean[c])
            sum_gx = sum_gx * inv_std
            grad_bias[c] = sum_g
            grad_weight[c] = sum_gx
            if needs_grad_x:
                k = inv_std / m
                if affine:
                    k = k * weight[c]
                for n in range(N):
                    for s in range(S):
                        x_hat = (x[n, c, s] - mean[c]) * inv_std
                        grad_x[n, c, s] = <floating> (k * (m * grad_y[n, c, s] - sum_g - x_hat * sum_gx))
        join_threads(&team)
