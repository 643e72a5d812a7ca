# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Max, average and adaptive average pooling, forward and backward.

Every kernel works on image planes: the caller views (N, C, H, W) arrays as (N*C, H, W), and
the loops run in parallel over planes. The window of output (i, j) starts at input cell

    h0 = i * stride_h - pad_h,   w0 = j * stride_w - pad_w

and, for max pooling, reads the cells h0 + p * dilation_h, w0 + q * dilation_w. Padding is
never read: for max pooling it counts as -inf, for average pooling as 0. The arguments were
checked in Python (cyconv.kernels.pool); nothing is checked here.

Max and average pooling run tap by tap along a whole output row, as the direct convolution
does (``_conv_direct.pyx``): for each tap (p, q) of the window, the innermost loop goes over
the outputs j of row i. ``inside_ranges`` computes once per call which rows i (columns j)
read inside the input under tap p (q), so the hot loops test nothing. The sums add the same
numbers in the same order as the loops over one window at a time did, so the results are the
same to the last bit.

The most common pooling, 2x2 windows with stride 2 and no padding, has loops of its own
when the windows tile the plane (H and W even): with the window fixed at compile time, the
compiler vectorises the loop over a row, and in the backward pass every input cell lies in
exactly one window, so it is written once and nothing needs zeroing. They give the same
results as the general loops.
"""

import numpy as np

from libc.math cimport INFINITY
from libc.string cimport memset
from cython cimport floating
from cython.parallel cimport parallel, threadid

from ._common cimport inside_ranges
from ._threads cimport join_threads, new_team, share_start, share_stop, Team


cdef inline bint tiles_2x2(Py_ssize_t kH, Py_ssize_t kW, Py_ssize_t stride_h, Py_ssize_t stride_w,
                           Py_ssize_t pad_h, Py_ssize_t pad_w, Py_ssize_t H, Py_ssize_t W,
                           Py_ssize_t H_out, Py_ssize_t W_out) noexcept nogil:
    """True for 2x2 windows, stride 2, no padding, that tile the (H, W) plane exactly."""
    return (kH == 2 and kW == 2 and stride_h == 2 and stride_w == 2 and pad_h == 0 and pad_w == 0
            and H == 2 * H_out and W == 2 * W_out)


cdef inline void keep_max(floating value, long long at, floating* best, long long* best_at) noexcept nogil:
    """(best, best_at) = (value, at) if value is larger than best or is a NaN: a select, no branch."""
    cdef bint take = (value > best[0]) | (value != value)
    best[0] = value if take else best[0]
    best_at[0] = at if take else best_at[0]


cdef void max_pool_2x2(const floating[:, :, ::1] x, floating[:, :, ::1] y, long long[:, :, ::1] argmax,
                       int num_threads) noexcept nogil:
    """max_pool2d_forward for 2x2 windows, stride 2, no padding, H and W even.

    Window (i, j) holds top[2j], top[2j+1], bottom[2j], bottom[2j+1], where top is input row
    2i and bottom row 2i+1; its first cell starts as the best and the other three follow in
    that (row-major) order.
    """
    cdef Py_ssize_t S = x.shape[0], W = x.shape[2], H_out = y.shape[1], W_out = y.shape[2]
    cdef Py_ssize_t s, i, j, top_at
    cdef floating best
    cdef long long best_at
    cdef const floating* top
    cdef const floating* bottom
    cdef floating* y_row
    cdef long long* at_row

    cdef Team team = new_team()
    with parallel(num_threads=num_threads):
        for s in range(share_start(S), share_stop(S)):
            for i in range(H_out):
                top = &x[s, 2 * i, 0]
                bottom = top + W
                top_at = 2 * i * W              # h * W + w of top[0]
                y_row = &y[s, i, 0]
                at_row = &argmax[s, i, 0]
                for j in range(W_out):
                    best = top[2 * j]
                    best_at = top_at + 2 * j
                    keep_max(top[2 * j + 1], top_at + 2 * j + 1, &best, &best_at)
                    keep_max(bottom[2 * j], top_at + W + 2 * j, &best, &best_at)
                    keep_max(bottom[2 * j + 1], top_at + W + 2 * j + 1, &best, &best_at)
                    y_row[j] = best
                    at_row[j] = best_at
        join_threads(&team)


def max_pool2d_forward(const floating[:, :, ::1] x, floating[:, :, ::1] y, long long[:, :, ::1] argmax,
                       Py_ssize_t kH, Py_ssize_t kW, Py_ssize_t stride_h, Py_ssize_t stride_w,
                       Py_ssize_t pad_h, Py_ssize_t pad_w, Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                       int num_threads):
    """y[s, i, j] = max over p, q of x[s, h0 + p*dh, w0 + q*dw]; argmax[s, i, j] = h * W + w of it.

    The first maximum in row-major window order wins, and a NaN wins over numbers (as in
    PyTorch). A window with no input cell at all (possible with a large dilation) gives -inf
    and argmax -1. A cell replaces the best so far through a select, not a branch: on random
    data a branch would be mispredicted at about every other window.
    """
    cdef Py_ssize_t S = x.shape[0], H = x.shape[1], W = x.shape[2]
    cdef Py_ssize_t H_out = y.shape[1], W_out = y.shape[2]
    cdef Py_ssize_t[::1] row_lo = np.empty(kH, np.intp), row_hi = np.empty(kH, np.intp)
    cdef Py_ssize_t[::1] col_lo = np.empty(kW, np.intp), col_hi = np.empty(kW, np.intp)
    cdef Py_ssize_t s, i, j, p, q, h, w0
    cdef bint take
    cdef floating value
    cdef const floating* x_row
    cdef floating* y_row
    cdef long long* at_row

    if dilation_h == 1 and dilation_w == 1 and tiles_2x2(kH, kW, stride_h, stride_w, pad_h, pad_w,
                                                         H, W, H_out, W_out):
        with nogil:
            max_pool_2x2(x, y, argmax, num_threads)
        return
    inside_ranges(row_lo, row_hi, dilation_h, pad_h, stride_h, H, H_out)
    inside_ranges(col_lo, col_hi, dilation_w, pad_w, stride_w, W, W_out)
    cdef Team team = new_team()
    with nogil, parallel(num_threads=num_threads):
        for s in range(share_start(S), share_stop(S)):
            for i in range(H_out):
                y_row = &y[s, i, 0]
                at_row = &argmax[s, i, 0]
                for j in range(W_out):
                    y_row[j] = -INFINITY
                    at_row[j] = -1
                for p in range(kH):
                    if i < row_lo[p] or i >= row_hi[p]:     # row p of the window is padding
                        continue
                    h = i * stride_h - pad_h + p * dilation_h
                    x_row = &x[s, h, 0]
                    for q in range(kW):
                        w0 = q * dilation_w - pad_w     # the window of j reads column j*stride_w + w0
                        for j in range(col_lo[q], col_hi[q]):
                            value = x_row[j * stride_w + w0]
                            # the window's first cell, a larger value or a NaN takes the place
                            take = (at_row[j] < 0) | (value > y_row[j]) | (value != value)
                            y_row[j] = value if take else y_row[j]
                            at_row[j] = h * W + j * stride_w + w0 if take else at_row[j]
        join_threads(&team)


def max_pool2d_backward(const floating[:, :, ::1] grad_y, const long long[:, :, ::1] argmax,
                        floating[:, ::1] grad_x, int num_threads):
    """grad_x[s, argmax[s, i, j]] += grad_y[s, i, j]: the gradient goes to the winner only.

    grad_x is viewed as (N*C, H*W); its contents on entry do not matter: each plane is zeroed
    here, by the thread that then adds into it, while it is in that core's cache.

    Returns (smallest, largest) of the indices, found on the way, so that the caller checks
    them without a second pass over the array. An index outside [0, H*W) (-1, or one the
    caller will refuse) writes nothing.
    """
    cdef Py_ssize_t S = grad_y.shape[0], H_out = grad_y.shape[1], W_out = grad_y.shape[2]
    cdef Py_ssize_t HW = grad_x.shape[1]
    cdef Py_ssize_t s, i, j, t
    cdef long long at, low, high
    # each thread's smallest and largest index so far, 8 entries (a cache line) apart: two
    # threads writing into one line at every plane would pass it back and forth
    cdef long long[::1] lows = np.full(8 * max(num_threads, 1), np.iinfo(np.int64).max, np.int64)
    cdef long long[::1] highs = np.full(8 * max(num_threads, 1), np.iinfo(np.int64).min, np.int64)

    cdef Team team = new_team()
    with nogil, parallel(num_threads=num_threads):
        for s in range(share_start(S), share_stop(S)):
            t = 8 * threadid()
            low = lows[t]
            high = highs[t]
            memset(&grad_x[s, 0], 0, HW * sizeof(floating))
            for i in range(H_out):
                for j in range(W_out):
                    at = argmax[s, i, j]
                    low = min(low, at)
                    high = max(high, at)
                    if 0 <= at < HW:
                        grad_x[s, at] += grad_y[s, i, j]
            lows[t] = low
            highs[t] = high
        join_threads(&team)
    return int(np.min(lows)), int(np.max(highs))


cdef void avg_divisor_factors(floating[::1] count, Py_ssize_t k, Py_ssize_t stride,
                              Py_ssize_t pad, Py_ssize_t size, bint count_include_pad) noexcept nogil:
    """count[o] = the length of window o along one dimension, PyTorch's way.

    The window [o*stride - pad, o*stride - pad + k) is first clipped to the padded input
    (its length then is the factor with count_include_pad), then to the input itself (the
    factor without). The divisor of window (i, j) is count_h[i] * count_w[j]: a product of
    small whole numbers, exact in floating point, so the division loops vectorise.
    """
    cdef Py_ssize_t o, lo, hi
    for o in range(count.shape[0]):
        lo = o * stride - pad
        hi = min(lo + k, size + pad)
        if count_include_pad:
            count[o] = hi - lo
        else:
            count[o] = min(hi, size) - max(lo, 0)


cdef void avg_pool_2x2(const floating[:, :, ::1] x, floating[:, :, ::1] y, int num_threads) noexcept nogil:
    """avg_pool2d_forward for 2x2 windows, stride 2, no padding, H and W even: divisor 4.

    y[s, i, j] = (top[2j] + top[2j+1] + bottom[2j] + bottom[2j+1]) / 4, top being input row
    2i and bottom row 2i+1; summed from +0 in row-major order, as the general loop does, so
    that the results are the same to the last bit (and four -0.0 give +0.0).
    """
    cdef Py_ssize_t S = x.shape[0], W = x.shape[2], H_out = y.shape[1], W_out = y.shape[2]
    cdef Py_ssize_t s, i, j
    cdef floating total
    cdef const floating* top
    cdef const floating* bottom
    cdef floating* y_row

    cdef Team team = new_team()
    with parallel(num_threads=num_threads):
        for s in range(share_start(S), share_stop(S)):
            for i in range(H_out):
                top = &x[s, 2 * i, 0]
                bottom = top + W
                y_row = &y[s, i, 0]
                for j in range(W_out):
                    total = 0
                    total = total + top[2 * j] + top[2 * j + 1] + bottom[2 * j] + bottom[2 * j + 1]
                    y_row[j] = total / <floating> 4
        join_threads(&team)


cdef void avg_pool_2x2_backward(const floating[:, :, ::1] grad_y, floating[:, :, ::1] grad_x,
                                int num_threads) noexcept nogil:
    """avg_pool2d_backward for 2x2 windows, stride 2, no padding, H and W even.

    Every input cell lies in exactly one window, so it is written once, not added to:
    the four cells of window (i, j) in rows 2i (top) and 2i+1 (bottom) get grad_y[s, i, j] / 4,
    added to 0 as in the general loop (so that a share of -0.0 is stored as +0.0 there too).
    """
    cdef Py_ssize_t S = grad_x.shape[0], W = grad_x.shape[2]
    cdef Py_ssize_t H_out = grad_y.shape[1], W_out = grad_y.shape[2]
    cdef Py_ssize_t s, i, j
    cdef floating share
    cdef const floating* gy_row
    cdef floating* top
    cdef floating* bottom

    cdef Team team = new_team()
    with parallel(num_threads=num_threads):
        for s in range(share_start(S), share_stop(S)):
            for i in range(H_out):
                gy_row = &grad_y[s, i, 0]
                top = &grad_x[s, 2 * i, 0]
                bottom = top + W
                for j in range(W_out):
                    share = 0
                    share = share + gy_row[j] / <floating> 4
                    top[2 * j] = share
                    top[2 * j + 1] = share
                    bottom[2 * j] = share
                    bottom[2 * j + 1] = share
        join_threads(&team)


def avg_pool2d_forward(const floating[:, :, ::1] x, floating[:, :, ::1] y,
                       Py_ssize_t kH, Py_ssize_t kW, Py_ssize_t stride_h, Py_ssize_t stride_w,
                       Py_ssize_t pad_h, Py_ssize_t pad_w, bint count_include_pad, int num_threads):
    """y[s, i, j] = (sum of x[s, h, w] over the window inside the input) / divisor."""
    cdef Py_ssize_t S = x.shape[0], H = x.shape[1], W = x.shape[2]
    cdef Py_ssize_t H_out = y.shape[1], W_out = y.shape[2]
    cdef Py_ssize_t[::1] row_lo = np.empty(kH, np.intp), row_hi = np.empty(kH, np.intp)
    cdef Py_ssize_t[::1] col_lo = np.empty(kW, np.intp), col_hi = np.empty(kW, np.intp)
    dtype = np.float32 if floating is float else np.float64
    cdef floating[::1] count_h = np.empty(H_out, dtype), count_w = np.empty(W_out, dtype)
    cdef Py_ssize_t s, i, j, p, q, w0
    cdef const floating* x_row
    cdef floating* y_row

    if tiles_2x2(kH, kW, stride_h, stride_w, pad_h, pad_w, H, W, H_out, W_out):
        with nogil:
            avg_pool_2x2(x, y, num_threads)
        return
    inside_ranges(row_lo, row_hi, 1, pad_h, stride_h, H, H_out)
    inside_ranges(col_lo, col_hi, 1, pad_w, stride_w, W, W_out)
    avg_divisor_factors(count_h, kH, stride_h, pad_h, H, count_include_pad)
    avg_divisor_factors(count_w, kW, stride_w, pad_w, W, count_include_pad)
    cdef Team team = new_team()
    with nogil, parallel(num_threads=num_threads):
        for s in range(share_start(S), share_stop(S)):
            for i in range(H_out):
                y_row = &y[s, i, 0]
                for j in range(W_out):
                    y_row[j] = 0
                for p in range(kH):
                    if i < row_lo[p] or i >= row_hi[p]:     # row p of the window is padding
                        continue
                    x_row = &x[s, i * stride_h - pad_h + p, 0]
                    for q in range(kW):
                        w0 = q - pad_w
                        for j in range(col_lo[q], col_hi[q]):   # y[s, i, j] += x[s, h, j*stride_w + w0]
                            y_row[j] += x_row[j * stride_w + w0]
                for j in range(W_out):
                    y_row[j] = y_row[j] / (count_h[i] * count_w[j])
        join_threads(&team)


def avg_pool2d_backward(const floating[:, :, ::1] grad_y, floating[:, :, ::1] grad_x,
                        floating[:, ::1] rows, Py_ssize_t kH, Py_ssize_t kW,
                        Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h,
                        Py_ssize_t pad_w, bint count_include_pad, int num_threads):
    """grad_x[s, h, w] += grad_y[s, i, j] / divisor for every window (i, j) holding (h, w).

    rows (threads, >= W_out + W) is a workspace: thread t's shares and spread row, each
    thread's on cache lines of its own (cyconv.kernels.conv._workspace; two threads adding
    into one line would pass it back and forth between their cores at every addition).

    The windows are rectangles, so the scatter is done one dimension at a time: for each
    window row i, the shares of its windows are first spread along a row of W columns
    (spread[w] = sum of the shares of the windows j holding column w), and that row is then
    added to every input row the windows of row i cover, a contiguous loop. (Spreading every
    share straight into kH input rows would take kH times as many strided additions.)

    The contents of grad_x on entry do not matter: each plane is zeroed here, by the thread
    that then adds into it, while it is in that core's cache. The taps q go from right to
    left, so that a column under several windows of row i gets their shares in the order of
    j, as with one window at a time (the sums round like the reference's up to the grouping
    of each row's shares).
    """
    cdef Py_ssize_t S = grad_x.shape[0], H = grad_x.shape[1], W = grad_x.shape[2]
    cdef Py_ssize_t H_out = grad_y.shape[1], W_out = grad_y.shape[2]
    cdef Py_ssize_t[::1] row_lo = np.empty(kH, np.intp), row_hi = np.empty(kH, np.intp)
    cdef Py_ssize_t[::1] col_lo = np.empty(kW, np.intp), col_hi = np.empty(kW, np.intp)
    dtype = np.float32 if floating is float else np.float64
    cdef floating[::1] count_h = np.empty(H_out, dtype), count_w = np.empty(W_out, dtype)
    cdef Py_ssize_t s, i, j, p, q, w, w0
    cdef const floating* gy_row
    cdef floating* share
    cdef floating* spread
    cdef floating* gx_row

    if tiles_2x2(kH, kW, stride_h, stride_w, pad_h, pad_w, H, W, H_out, W_out):
        with nogil:
            avg_pool_2x2_backward(grad_y, grad_x, num_threads)
        return
    inside_ranges(row_lo, row_hi, 1, pad_h, stride_h, H, H_out)
    inside_ranges(col_lo, col_hi, 1, pad_w, stride_w, W, W_out)
    avg_divisor_factors(count_h, kH, stride_h, pad_h, H, count_include_pad)
    avg_divisor_factors(count_w, kW, stride_w, pad_w, W, count_include_pad)
    cdef Team team = new_team()
    with nogil, parallel(num_threads=num_threads):
        for s in range(share_start(S), share_stop(S)):
            memset(&grad_x[s, 0, 0], 0, H * W * sizeof(floating))
            share = &rows[threadid(), 0]
            spread = share + W_out
            for i in range(H_out):
                gy_row = &grad_y[s, i, 0]
                for j in range(W_out):      # the share of every cell of window (i, j)
                    share[j] = gy_row[j] / (count_h[i] * count_w[j])
                memset(spread, 0, W * sizeof(floating))
                for q in range(kW - 1, -1, -1):         # right to left: see the docstring
                    w0 = q - pad_w
                    for j in range(col_lo[q], col_hi[q]):   # spread[j*stride_w + w0] += share[j]
                        spread[j * stride_w + w0] += share[j]
                for p in range(kH):
                    if i < row_lo[p] or i >= row_hi[p]:     # row p of the window is padding
                        continue
                    gx_row = &grad_x[s, i * stride_h - pad_h + p, 0]
                    for w in range(W):                      # grad_x[s, h, :] += spread
                        gx_row[w] += spread[w]
        join_threads(&team)


cdef inline Py_ssize_t window_start(Py_ssize_t o, Py_ssize_t in_size, Py_ssize_t out_size) noexcept nogil:
    """Adaptive pooling: output o starts at floor(o * in / out)."""
    return (o * in_size) // out_size


cdef inline Py_ssize_t window_stop(Py_ssize_t o, Py_ssize_t in_size, Py_ssize_t out_size) noexcept nogil:
    """Adaptive pooling: output o stops at ceil((o + 1) * in / out)."""
    return ((o + 1) * in_size + out_size - 1) // out_size


def adaptive_avg_pool2d_forward(const floating[:, :, ::1] x, floating[:, :, ::1] y, int num_threads):
    """y[s, i, j] = mean of x[s, h, w] over h in [floor(i*H/Ho), ceil((i+1)*H/Ho)), same for w."""
    cdef Py_ssize_t S = x.shape[0], H = x.shape[1], W = x.shape[2]
    cdef Py_ssize_t H_out = y.shape[1], W_out = y.shape[2]
    cdef Py_ssize_t s, i, j, h, w, h_lo, h_hi, w_lo, w_hi
    cdef floating total

    cdef Team team = new_team()
    with nogil, parallel(num_threads=num_threads):
        for s in range(share_start(S), share_stop(S)):
            for i in range(H_out):
                h_lo = window_start(i, H, H_out)
                h_hi = window_stop(i, H, H_out)
                for j in range(W_out):
                    w_lo = window_start(j, W, W_out)
                    w_hi = window_stop(j, W, W_out)
                    total = 0
                    for h in range(h_lo, h_hi):
                        for w in range(w_lo, w_hi):
                            total = total + x[s, h, w]
                    y[s, i, j] = total / <floating> ((h_hi - h_lo) * (w_hi - w_lo))
        join_threads(&team)


def adaptive_avg_pool2d_backward(const floating[:, :, ::1] grad_y, floating[:, :, ::1] grad_x,
                                 int num_threads):
    """grad_x[s, h, w] += grad_y[s, i, j] / window area, for every window (i, j) holding (h, w).

    grad_x must be zero on entry.
    """
    cdef Py_ssize_t S = grad_x.shape[0], H = grad_x.shape[1], W = grad_x.shape[2]
    cdef Py_ssize_t H_out = grad_y.shape[1], W_out = grad_y.shape[2]
    cdef Py_ssize_t s, i, j, h, w, h_lo, h_hi, w_lo, w_hi
    cdef floating share

    cdef Team team = new_team()
    with nogil, parallel(num_threads=num_threads):
        for s in range(share_start(S), share_stop(S)):
            for i in range(H_out):
                h_lo = window_start(i, H, H_out)
                h_hi = window_stop(i, H, H_out)
                for j in range(W_out):
                    w_lo = window_start(j, W, W_out)
                    w_hi = window_stop(j, W, W_out)
                    share = grad_y[s, i, j] / <floating> ((h_hi - h_lo) * (w_hi - w_lo))
                    for h in range(h_lo, h_hi):
                        for w in range(w_lo, w_hi):
                            grad_x[s, h, w] += share
        join_threads(&team)
