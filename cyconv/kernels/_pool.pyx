# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Max, average and adaptive average pooling, forward and backward.

Every kernel works on image planes: the caller views (N, C, H, W) arrays as (N*C, H, W), and
the loops run in parallel over planes. The window of output (i, j) starts at input cell

    h0 = i * stride_h - pad_h,   w0 = j * stride_w - pad_w

and, for max pooling, reads the cells h0 + p * dilation_h, w0 + q * dilation_w. Padding is
never read: for max pooling it counts as -inf, for average pooling as 0. The arguments were
checked in Python (cyconv.kernels.pool); nothing is checked here.
"""

from libc.math cimport INFINITY
from cython cimport floating
from cython.parallel cimport prange


def max_pool2d_forward(const floating[:, :, ::1] x, floating[:, :, ::1] y, long long[:, :, ::1] argmax,
                       Py_ssize_t kH, Py_ssize_t kW, Py_ssize_t stride_h, Py_ssize_t stride_w,
                       Py_ssize_t pad_h, Py_ssize_t pad_w, Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                       int num_threads):
    """y[s, i, j] = max over p, q of x[s, h0 + p*dh, w0 + q*dw]; argmax[s, i, j] = h * W + w of it.

    The first maximum in row-major window order wins, and a NaN wins over numbers (as in
    PyTorch). A window with no input cell at all (possible with a large dilation) gives -inf
    and argmax -1.
    """
    cdef Py_ssize_t S = x.shape[0], H = x.shape[1], W = x.shape[2]
    cdef Py_ssize_t H_out = y.shape[1], W_out = y.shape[2]
    cdef Py_ssize_t s, i, j, p, q, h, w, best_at
    cdef floating best, value
    cdef const floating* x_row

    for s in prange(S, nogil=True, schedule="static", num_threads=num_threads):
        for i in range(H_out):
            for j in range(W_out):
                best = -INFINITY
                best_at = -1
                for p in range(kH):
                    h = i * stride_h - pad_h + p * dilation_h
                    if h < 0 or h >= H:
                        continue
                    x_row = &x[s, h, 0]
                    for q in range(kW):
                        w = j * stride_w - pad_w + q * dilation_w
                        if w < 0 or w >= W:
                            continue
                        value = x_row[w]
                        if best_at < 0 or value > best or value != value:  # first, larger, NaN
                            best = value
                            best_at = h * W + w
                y[s, i, j] = best
                argmax[s, i, j] = best_at


def max_pool2d_backward(const floating[:, :, ::1] grad_y, const long long[:, :, ::1] argmax,
                        floating[:, ::1] grad_x, int num_threads):
    """grad_x[s, argmax[s, i, j]] += grad_y[s, i, j]: the gradient goes to the winner only.

    grad_x is viewed as (N*C, H*W) and must be zero on entry.
    """
    cdef Py_ssize_t S = grad_y.shape[0], H_out = grad_y.shape[1], W_out = grad_y.shape[2]
    cdef Py_ssize_t s, i, j
    cdef long long at

    for s in prange(S, nogil=True, schedule="static", num_threads=num_threads):
        for i in range(H_out):
            for j in range(W_out):
                at = argmax[s, i, j]
                if at >= 0:
                    grad_x[s, at] += grad_y[s, i, j]


cdef struct Window:
    Py_ssize_t h_lo, h_hi, w_lo, w_hi   # the cells of the input it covers
    Py_ssize_t divisor                  # what the sum is divided by


cdef inline Window avg_window(Py_ssize_t h0, Py_ssize_t w0, Py_ssize_t kH, Py_ssize_t kW,
                              Py_ssize_t H, Py_ssize_t W, Py_ssize_t pad_h, Py_ssize_t pad_w,
                              bint count_include_pad) noexcept nogil:
    """The average-pooling window starting at (h0, w0), with PyTorch's divisor.

    The window is first clipped to the padded input (that area is the divisor with
    count_include_pad), then to the input itself (the divisor without).
    """
    cdef Window win
    cdef Py_ssize_t h1 = min(h0 + kH, H + pad_h), w1 = min(w0 + kW, W + pad_w)
    win.h_lo = max(h0, 0)
    win.w_lo = max(w0, 0)
    win.h_hi = min(h1, H)
    win.w_hi = min(w1, W)
    if count_include_pad:
        win.divisor = (h1 - h0) * (w1 - w0)
    else:
        win.divisor = (win.h_hi - win.h_lo) * (win.w_hi - win.w_lo)
    return win


def avg_pool2d_forward(const floating[:, :, ::1] x, floating[:, :, ::1] y,
                       Py_ssize_t kH, Py_ssize_t kW, Py_ssize_t stride_h, Py_ssize_t stride_w,
                       Py_ssize_t pad_h, Py_ssize_t pad_w, bint count_include_pad, int num_threads):
    """y[s, i, j] = (sum of x[s, h, w] over the window inside the input) / divisor."""
    cdef Py_ssize_t S = x.shape[0], H = x.shape[1], W = x.shape[2]
    cdef Py_ssize_t H_out = y.shape[1], W_out = y.shape[2]
    cdef Py_ssize_t s, i, j, h, w
    cdef Window win
    cdef floating total

    for s in prange(S, nogil=True, schedule="static", num_threads=num_threads):
        for i in range(H_out):
            for j in range(W_out):
                win = avg_window(i * stride_h - pad_h, j * stride_w - pad_w, kH, kW, H, W,
                                 pad_h, pad_w, count_include_pad)
                total = 0
                for h in range(win.h_lo, win.h_hi):
                    for w in range(win.w_lo, win.w_hi):
                        total = total + x[s, h, w]
                y[s, i, j] = total / <floating> win.divisor


def avg_pool2d_backward(const floating[:, :, ::1] grad_y, floating[:, :, ::1] grad_x,
                        Py_ssize_t kH, Py_ssize_t kW, Py_ssize_t stride_h, Py_ssize_t stride_w,
                        Py_ssize_t pad_h, Py_ssize_t pad_w, bint count_include_pad, int num_threads):
    """grad_x[s, h, w] += grad_y[s, i, j] / divisor for every window (i, j) holding (h, w).

    grad_x must be zero on entry.
    """
    cdef Py_ssize_t S = grad_x.shape[0], H = grad_x.shape[1], W = grad_x.shape[2]
    cdef Py_ssize_t H_out = grad_y.shape[1], W_out = grad_y.shape[2]
    cdef Py_ssize_t s, i, j, h, w
    cdef Window win
    cdef floating share

    for s in prange(S, nogil=True, schedule="static", num_threads=num_threads):
        for i in range(H_out):
            for j in range(W_out):
                win = avg_window(i * stride_h - pad_h, j * stride_w - pad_w, kH, kW, H, W,
                                 pad_h, pad_w, count_include_pad)
                share = grad_y[s, i, j] / <floating> win.divisor
                for h in range(win.h_lo, win.h_hi):
                    for w in range(win.w_lo, win.w_hi):
                        grad_x[s, h, w] += share


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

    for s in prange(S, nogil=True, schedule="static", num_threads=num_threads):
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


def adaptive_avg_pool2d_backward(const floating[:, :, ::1] grad_y, floating[:, :, ::1] grad_x,
                                 int num_threads):
    """grad_x[s, h, w] += grad_y[s, i, j] / window area, for every window (i, j) holding (h, w).

    grad_x must be zero on entry.
    """
    cdef Py_ssize_t S = grad_x.shape[0], H = grad_x.shape[1], W = grad_x.shape[2]
    cdef Py_ssize_t H_out = grad_y.shape[1], W_out = grad_y.shape[2]
    cdef Py_ssize_t s, i, j, h, w, h_lo, h_hi, w_lo, w_hi
    cdef floating share

    for s in prange(S, nogil=True, schedule="static", num_threads=num_threads):
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
