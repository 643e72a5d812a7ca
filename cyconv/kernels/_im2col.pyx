# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""im2col and col2im: convolution as one large matrix product.

im2col copies every receptive field of a chunk of images into a column of a matrix

    cols[(c * kH + p) * kW + q, m * L + i * W_out + j] = x[n0 + m, c, h, w]      (0 in the padding)
    with h = i * stride_h - pad_top + p * dilation_h, w = j * stride_w - pad_left + q * dilation_w,
    L = H_out * W_out and m = 0 .. chunk - 1,

so that the convolution of the chunk becomes  Y = W (C_out, C_in*kH*kW) @ cols, computed by
BLAS. The images of a chunk sit side by side in the columns, which makes one wide matrix
product instead of many thin ones. col2im is its adjoint: it adds every column entry back
onto the input cell it was copied from (the backward pass of im2col).

``gemm_to_nchw`` and ``nchw_to_gemm`` move between the (C, chunk * L) matrix layout and the
NCHW images. The arguments were checked in Python (cyconv.kernels.conv).
"""

from cython cimport floating
from cython.parallel cimport prange

from ._common cimport first_inside, stop_inside


def im2col(const floating[:, :, :, ::1] x, floating[:, ::1] cols, Py_ssize_t n0,
           Py_ssize_t kH, Py_ssize_t kW, Py_ssize_t H_out, Py_ssize_t W_out,
           Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top, Py_ssize_t pad_left,
           Py_ssize_t dilation_h, Py_ssize_t dilation_w, int num_threads):
    """Fill cols (C*kH*kW, chunk*H_out*W_out) from images n0 .. n0+chunk-1 of x (formula above)."""
    cdef Py_ssize_t C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t L = H_out * W_out
    cdef Py_ssize_t chunk = cols.shape[1] // L
    cdef Py_ssize_t task, row, m, c, p, q, i, j, h, w0, i_lo, i_hi, j_lo, j_hi, base

    for task in prange(C * kH * kW * chunk, nogil=True, schedule="static", num_threads=num_threads):
        row = task // chunk
        m = task % chunk
        c = row // (kH * kW)
        p = (row // kW) % kH
        q = row % kW
        i_lo = first_inside(p * dilation_h - pad_top, stride_h)
        i_hi = stop_inside(p * dilation_h - pad_top, stride_h, H, H_out)
        j_lo = first_inside(q * dilation_w - pad_left, stride_w)
        j_hi = stop_inside(q * dilation_w - pad_left, stride_w, W, W_out)
        w0 = q * dilation_w - pad_left
        for i in range(H_out):
            base = m * L + i * W_out
            if i < i_lo or i >= i_hi:
                for j in range(W_out):
                    cols[row, base + j] = 0
                continue
            h = i * stride_h - pad_top + p * dilation_h
            for j in range(j_lo):
                cols[row, base + j] = 0
            for j in range(j_lo, j_hi):
                cols[row, base + j] = x[n0 + m, c, h, j * stride_w + w0]
            for j in range(j_hi, W_out):
                cols[row, base + j] = 0


def col2im(const floating[:, ::1] cols, floating[:, :, :, ::1] grad_x, Py_ssize_t n0,
           Py_ssize_t kH, Py_ssize_t kW, Py_ssize_t H_out, Py_ssize_t W_out,
           Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top, Py_ssize_t pad_left,
           Py_ssize_t dilation_h, Py_ssize_t dilation_w, int num_threads):
    """grad_x[n0 + m, c, h, w] += cols[(c*kH + p)*kW + q, m*L + i*W_out + j] (padding dropped).

    Parallel over the (m, c) image planes, so no two threads add into the same cell.
    """
    cdef Py_ssize_t C = grad_x.shape[1], H = grad_x.shape[2], W = grad_x.shape[3]
    cdef Py_ssize_t L = H_out * W_out
    cdef Py_ssize_t chunk = cols.shape[1] // L
    cdef Py_ssize_t task, row, m, c, p, q, i, j, h, w0, i_lo, i_hi, j_lo, j_hi, base

    for task in prange(chunk * C, nogil=True, schedule="static", num_threads=num_threads):
        m = task // C
        c = task % C
        for p in range(kH):
            i_lo = first_inside(p * dilation_h - pad_top, stride_h)
            i_hi = stop_inside(p * dilation_h - pad_top, stride_h, H, H_out)
            for q in range(kW):
                row = (c * kH + p) * kW + q
                j_lo = first_inside(q * dilation_w - pad_left, stride_w)
                j_hi = stop_inside(q * dilation_w - pad_left, stride_w, W, W_out)
                w0 = q * dilation_w - pad_left
                for i in range(i_lo, i_hi):
                    h = i * stride_h - pad_top + p * dilation_h
                    base = m * L + i * W_out
                    for j in range(j_lo, j_hi):
                        grad_x[n0 + m, c, h, j * stride_w + w0] += cols[row, base + j]


def gemm_to_nchw(const floating[:, ::1] product, const floating[::1] bias, floating[:, :, ::1] y,
                 Py_ssize_t n0, bint has_bias, int num_threads):
    """y[n0 + m, co, l] = product[co, m * L + l] (+ bias[co]): matrix layout back to images."""
    cdef Py_ssize_t C = product.shape[0], L = y.shape[2]
    cdef Py_ssize_t chunk = product.shape[1] // L
    cdef Py_ssize_t task, m, co, l
    cdef floating b

    for task in prange(chunk * C, nogil=True, schedule="static", num_threads=num_threads):
        m = task // C
        co = task % C
        b = bias[co] if has_bias else 0
        for l in range(L):
            y[n0 + m, co, l] = product[co, m * L + l] + b


def nchw_to_gemm(const floating[:, :, ::1] y, floating[:, ::1] matrix, Py_ssize_t n0, int num_threads):
    """matrix[co, m * L + l] = y[n0 + m, co, l]: images to the matrix layout (inverse of gemm_to_nchw)."""
    cdef Py_ssize_t C = matrix.shape[0], L = y.shape[2]
    cdef Py_ssize_t chunk = matrix.shape[1] // L
    cdef Py_ssize_t task, m, co, l

    for task in prange(chunk * C, nogil=True, schedule="static", num_threads=num_threads):
        m = task // C
        co = task % C
        for l in range(L):
            matrix[co, m * L + l] = y[n0 + m, co, l]
