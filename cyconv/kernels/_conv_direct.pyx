# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Direct 2-D convolution: the blackboard formula as loops, run in parallel.

Notation (NCHW, as in PyTorch). Input x[n, c, h, w], weight w[co, c, p, q] with
c < C_in / groups, output y[n, co, i, j]. Output channel co belongs to group
g = co // (C_out / groups) and reads input channels g * (C_in / groups) + c. The input cell
under kernel tap (p, q) of output (i, j) is

    h = i * stride_h - pad_top  + p * dilation_h
    w = j * stride_w - pad_left + q * dilation_w

and cells outside the input are zeros (zero padding). The loops below skip those cells
rather than testing every one: ``inside_ranges`` computes, once per call, the output rows
[row_lo[p], row_hi[p]) (and columns [col_lo[q], col_hi[q])) whose input cell under tap p
(tap q) is inside the image.

The arguments were checked in Python (cyconv.kernels.conv); nothing is checked here.
Every output array must be zero (or hold the bias) on entry: the kernels accumulate.

The planes are shared between threads with ``prange``, the plainest way to say that they
do not depend on each other. The fast kernels share their tasks without it (see
``_threads.pxd``): prange starts with a hidden barrier, which costs each call a sleep
and a wake-up of the other threads.
"""

import numpy as np

from cython cimport floating
from cython.parallel cimport prange

from ._common cimport inside_ranges


def conv2d_forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] weight,
                   floating[:, :, :, ::1] y,
                   Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top, Py_ssize_t pad_left,
                   Py_ssize_t dilation_h, Py_ssize_t dilation_w, Py_ssize_t groups, int num_threads):
    """y[n, co, i, j] += sum over c, p, q of  w[co, c, p, q] * x[n, g*Cg + c, h, w].

    Parallel over the (n, co) output planes; the innermost loop runs along an output row.
    """
    cdef Py_ssize_t N = x.shape[0], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t C_out = y.shape[1], H_out = y.shape[2], W_out = y.shape[3]
    cdef Py_ssize_t Cg = weight.shape[1], kH = weight.shape[2], kW = weight.shape[3]
    cdef Py_ssize_t out_per_group = C_out // groups
    cdef Py_ssize_t[::1] row_lo = np.empty(kH, np.intp), row_hi = np.empty(kH, np.intp)
    cdef Py_ssize_t[::1] col_lo = np.empty(kW, np.intp), col_hi = np.empty(kW, np.intp)
    cdef Py_ssize_t plane, n, co, c, ci, p, q, i, j, w0
    cdef floating tap
    cdef floating* y_row
    cdef const floating* x_row

    inside_ranges(row_lo, row_hi, dilation_h, pad_top, stride_h, H, H_out)
    inside_ranges(col_lo, col_hi, dilation_w, pad_left, stride_w, W, W_out)
    for plane in prange(N * C_out, nogil=True, schedule="static", num_threads=num_threads):
        n = plane // C_out
        co = plane % C_out
        for c in range(Cg):
            ci = (co // out_per_group) * Cg + c
            for p in range(kH):
                for q in range(kW):
                    tap = weight[co, c, p, q]
                    w0 = q * dilation_w - pad_left
                    for i in range(row_lo[p], row_hi[p]):
                        y_row = &y[n, co, i, 0]
                        x_row = &x[n, ci, i * stride_h - pad_top + p * dilation_h, 0]
                        if stride_w == 1:  # the same loop; contiguous, so the compiler vectorises it
                            for j in range(col_lo[q], col_hi[q]):
                                y_row[j] += tap * x_row[j + w0]
                        else:
                            for j in range(col_lo[q], col_hi[q]):
                                y_row[j] += tap * x_row[j * stride_w + w0]


def conv2d_grad_input(const floating[:, :, :, ::1] grad_y, const floating[:, :, :, ::1] weight,
                      floating[:, :, :, ::1] grad_x,
                      Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top, Py_ssize_t pad_left,
                      Py_ssize_t dilation_h, Py_ssize_t dilation_w, Py_ssize_t groups, int num_threads):
    """grad_x[n, ci, h, w] += sum over co, p, q (with h, w as above) of  w[co, c, p, q] * grad_y[n, co, i, j].

    Each output cell y[n, co, i, j] read x[n, ci, h, w] with weight w[co, c, p, q], so the
    gradient flows back along the same edges. Parallel over the (n, ci) input planes, so
    that no two threads ever add into the same cell.
    """
    cdef Py_ssize_t N = grad_x.shape[0], C_in = grad_x.shape[1], H = grad_x.shape[2], W = grad_x.shape[3]
    cdef Py_ssize_t C_out = grad_y.shape[1], H_out = grad_y.shape[2], W_out = grad_y.shape[3]
    cdef Py_ssize_t Cg = weight.shape[1], kH = weight.shape[2], kW = weight.shape[3]
    cdef Py_ssize_t out_per_group = C_out // groups
    cdef Py_ssize_t[::1] row_lo = np.empty(kH, np.intp), row_hi = np.empty(kH, np.intp)
    cdef Py_ssize_t[::1] col_lo = np.empty(kW, np.intp), col_hi = np.empty(kW, np.intp)
    cdef Py_ssize_t plane, n, co, c, ci, g, p, q, i, j, w0
    cdef floating tap
    cdef floating* gx_row
    cdef const floating* gy_row

    inside_ranges(row_lo, row_hi, dilation_h, pad_top, stride_h, H, H_out)
    inside_ranges(col_lo, col_hi, dilation_w, pad_left, stride_w, W, W_out)
    for plane in prange(N * C_in, nogil=True, schedule="static", num_threads=num_threads):
        n = plane // C_in
        ci = plane % C_in
        g = ci // Cg
        c = ci % Cg
        for co in range(g * out_per_group, (g + 1) * out_per_group):
            for p in range(kH):
                for q in range(kW):
                    tap = weight[co, c, p, q]
                    w0 = q * dilation_w - pad_left
                    for i in range(row_lo[p], row_hi[p]):
                        gx_row = &grad_x[n, ci, i * stride_h - pad_top + p * dilation_h, 0]
                        gy_row = &grad_y[n, co, i, 0]
                        if stride_w == 1:  # the same loop; contiguous, so the compiler vectorises it
                            for j in range(col_lo[q], col_hi[q]):
                                gx_row[j + w0] += tap * gy_row[j]
                        else:
                            for j in range(col_lo[q], col_hi[q]):
                                gx_row[j * stride_w + w0] += tap * gy_row[j]


def conv2d_grad_weight(const floating[:, :, :, ::1] grad_y, const floating[:, :, :, ::1] x,
                       floating[:, :, :, ::1] grad_weight,
                       Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top, Py_ssize_t pad_left,
                       Py_ssize_t dilation_h, Py_ssize_t dilation_w, Py_ssize_t groups, int num_threads):
    """grad_w[co, c, p, q] = sum over n, i, j of  grad_y[n, co, i, j] * x[n, g*Cg + c, h, w].

    Parallel over the (co, c) filter slices: each thread owns its own weights.
    """
    cdef Py_ssize_t N = x.shape[0], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t C_out = grad_y.shape[1], H_out = grad_y.shape[2], W_out = grad_y.shape[3]
    cdef Py_ssize_t Cg = grad_weight.shape[1], kH = grad_weight.shape[2], kW = grad_weight.shape[3]
    cdef Py_ssize_t out_per_group = C_out // groups
    cdef Py_ssize_t[::1] row_lo = np.empty(kH, np.intp), row_hi = np.empty(kH, np.intp)
    cdef Py_ssize_t[::1] col_lo = np.empty(kW, np.intp), col_hi = np.empty(kW, np.intp)
    cdef Py_ssize_t filt, n, co, c, ci, p, q, i, j, w0
    cdef floating total
    cdef const floating* gy_row
    cdef const floating* x_row

    inside_ranges(row_lo, row_hi, dilation_h, pad_top, stride_h, H, H_out)
    inside_ranges(col_lo, col_hi, dilation_w, pad_left, stride_w, W, W_out)
    for filt in prange(C_out * Cg, nogil=True, schedule="static", num_threads=num_threads):
        co = filt // Cg
        c = filt % Cg
        ci = (co // out_per_group) * Cg + c
        for p in range(kH):
            for q in range(kW):
                w0 = q * dilation_w - pad_left
                total = 0
                for n in range(N):
                    for i in range(row_lo[p], row_hi[p]):
                        gy_row = &grad_y[n, co, i, 0]
                        x_row = &x[n, ci, i * stride_h - pad_top + p * dilation_h, 0]
                        for j in range(col_lo[q], col_hi[q]):
                            total = total + gy_row[j] * x_row[j * stride_w + w0]
                grad_weight[co, c, p, q] = total
