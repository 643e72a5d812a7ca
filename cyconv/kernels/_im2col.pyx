# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Convolution as matrix products: im2col, col2im and BLAS, one block of columns per thread.

im2col copies the receptive field of every output position of an image into a column:

    cols[(c * kH + p) * kW + q, i * W_out + j] = x[n, c, h, w]          (0 in the padding)
    with h = i * stride_h - pad_top + p * dilation_h,  w = j * stride_w - pad_left + q * dilation_w

and then the convolution of the image is one matrix product per group,

    y[n] (C_out, H_out*W_out) = W (C_out, C_in/groups*kH*kW) @ cols (C_in/groups*kH*kW, H_out*W_out).

col2im is its adjoint: it adds every column entry back onto the input cell it was copied
from, which turns the gradient of the columns into the gradient of the image.

How the work is shared. The output columns are cut into blocks, each small enough that its
im2col columns stay in the cache: a band of output rows of one large image, or several
whole small images side by side. Every thread runs the whole pipeline on its own blocks
(im2col into its own workspace, then a single-threaded BLAS call), so no thread waits for
another and BLAS threads never compete with OpenMP threads. The matrix products use
SciPy's Cython BLAS (OpenBLAS, called from C without the GIL); cyconv.kernels.threads keeps
that BLAS on one thread per call.

The arguments were checked in Python (cyconv.kernels.conv); nothing is checked here.
"""

import numpy as np

from libc.string cimport memcpy, memset
from cython cimport floating
from cython.parallel cimport parallel, threadid
from scipy.linalg.cython_blas cimport dgemm, sgemm

from ._common cimport inside_ranges
from ._threads cimport join_threads, new_team, share_start, share_stop, take_task, Team


cdef struct Conv:
    # sizes and hyper-parameters of one convolution
    Py_ssize_t C, H, W, C_out, H_out, W_out, kH, kW, groups
    Py_ssize_t stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w
    # output rows [row_lo[p], row_hi[p]) read inside the image under kernel row p; same for columns
    Py_ssize_t* row_lo
    Py_ssize_t* row_hi
    Py_ssize_t* col_lo
    Py_ssize_t* col_hi


cdef struct Block:
    # a block of output columns: images n0 .. n0+count-1, output rows i0 .. i1-1 of each
    Py_ssize_t n0, count, i0, i1


cdef inline Block block_of(Py_ssize_t task, Py_ssize_t N, Py_ssize_t images, Py_ssize_t band,
                           Py_ssize_t H_out) noexcept nogil:
    """Task number -> block: ``images`` whole images per task, or (images == 1) bands of rows."""
    cdef Block b
    cdef Py_ssize_t bands = (H_out + band - 1) // band
    if images > 1:
        b.n0 = task * images
        b.count = min(images, N - b.n0)
        b.i0 = 0
        b.i1 = H_out
    else:
        b.n0 = task // bands
        b.count = 1
        b.i0 = (task % bands) * band
        b.i1 = min(b.i0 + band, H_out)
    return b


cdef inline Py_ssize_t block_count(Py_ssize_t N, Py_ssize_t images, Py_ssize_t band,
                                   Py_ssize_t H_out) noexcept nogil:
    if images > 1:
        return (N + images - 1) // images
    return N * ((H_out + band - 1) // band)


cdef inline void gemm(bint trans_a, bint trans_b, int M, int N, int K,
                      const floating* A, int lda, const floating* B, int ldb,
                      floating beta, floating* C, int ldc) noexcept nogil:
    """Row-major C (M x N) = op(A) @ op(B) + beta * C, with op(X) = X or X transposed.

    BLAS is column-major, and a row-major matrix read column-major is its transpose, so we
    ask BLAS for C^T = op(B)^T @ op(A)^T: the same call with A and B swapped.
    """
    cdef char ta = b'T' if trans_b else b'N'
    cdef char tb = b'T' if trans_a else b'N'
    cdef floating one = 1
    if floating is float:
        sgemm(&ta, &tb, &N, &M, &K, &one, <float*> B, &ldb, <float*> A, &lda, &beta, C, &ldc)
    else:
        dgemm(&ta, &tb, &N, &M, &K, &one, <double*> B, &ldb, <double*> A, &lda, &beta, C, &ldc)


cdef void image_to_columns(const floating[:, :, :, ::1] x, Py_ssize_t n, Py_ssize_t c0,
                           Py_ssize_t c1, Py_ssize_t i0, Py_ssize_t i1, floating* cols,
                           Py_ssize_t ld, const Conv* cv) noexcept nogil:
    """im2col of channels c0..c1-1 and output rows i0..i1-1 of image n.

    cols: a ((c1-c0)*kH*kW, (i1-i0)*W_out) matrix whose rows are ``ld`` entries apart.
    """
    cdef Py_ssize_t c, p, q, i, j, j_lo, j_hi, w0
    cdef Py_ssize_t stride_w = cv.stride_w   # a local: the stores below might alias *cv
    cdef floating* out
    cdef const floating* x_row
    for c in range(c0, c1):
        for p in range(cv.kH):
            for q in range(cv.kW):
                w0 = q * cv.dilation_w - cv.pad_left
                j_lo = cv.col_lo[q]
                j_hi = cv.col_hi[q]
                for i in range(i0, i1):
                    out = cols + (((c - c0) * cv.kH + p) * cv.kW + q) * ld + (i - i0) * cv.W_out
                    if i < cv.row_lo[p] or i >= cv.row_hi[p]:  # the whole row reads padding
                        memset(out, 0, cv.W_out * sizeof(floating))
                        continue
                    x_row = &x[n, c, i * cv.stride_h - cv.pad_top + p * cv.dilation_h, 0]
                    for j in range(j_lo):                     # left padding
                        out[j] = 0
                    if stride_w == 1:                         # contiguous: the compiler vectorises it
                        for j in range(j_lo, j_hi):
                            out[j] = x_row[j + w0]
                    else:
                        for j in range(j_lo, j_hi):
                            out[j] = x_row[j * stride_w + w0]
                    for j in range(j_hi, cv.W_out):           # right padding
                        out[j] = 0


cdef void columns_to_image(const floating* cols, Py_ssize_t ld, floating[:, :, :, ::1] grad_x,
                           Py_ssize_t n, Py_ssize_t c0, Py_ssize_t c1, const Conv* cv) noexcept nogil:
    """col2im: grad_x[n, c, h, w] += cols[((c-c0)*kH + p)*kW + q, i*W_out + j], c in c0..c1-1.

    cols: a ((c1-c0)*kH*kW, H_out*W_out) matrix whose rows are ``ld`` entries apart.
    """
    cdef Py_ssize_t c, p, q, i, j, j_lo, j_hi, w0, at
    cdef Py_ssize_t stride_w = cv.stride_w   # a local: the stores below might alias *cv
    cdef const floating* col
    cdef floating* gx_row
    for c in range(c0, c1):
        for p in range(cv.kH):
            for q in range(cv.kW):
                w0 = q * cv.dilation_w - cv.pad_left
                j_lo = cv.col_lo[q]
                j_hi = cv.col_hi[q]
                for i in range(cv.row_lo[p], cv.row_hi[p]):
                    col = cols + (((c - c0) * cv.kH + p) * cv.kW + q) * ld + i * cv.W_out
                    gx_row = &grad_x[n, c, i * cv.stride_h - cv.pad_top + p * cv.dilation_h, 0]
                    if stride_w == 1:  # contiguous, so the compiler vectorises it
                        for j in range(j_lo, j_hi):
                            gx_row[j + w0] += col[j]
                    else:              # at: the cell under output column j, stride_w apart
                        at = j_lo * stride_w + w0
                        for j in range(j_lo, j_hi):
                            gx_row[at] += col[j]
                            at = at + stride_w


cdef Conv make_conv(Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t C_out, Py_ssize_t H_out,
                    Py_ssize_t W_out, Py_ssize_t kH, Py_ssize_t kW, Py_ssize_t groups,
                    Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top, Py_ssize_t pad_left,
                    Py_ssize_t dilation_h, Py_ssize_t dilation_w, Py_ssize_t[::1] ranges):
    """Fill a Conv; ``ranges`` (2*kH + 2*kW entries) holds the inside ranges it points to."""
    cdef Conv cv
    cv.C, cv.H, cv.W, cv.C_out, cv.H_out, cv.W_out = C, H, W, C_out, H_out, W_out
    cv.kH, cv.kW, cv.groups = kH, kW, groups
    cv.stride_h, cv.stride_w, cv.pad_top, cv.pad_left = stride_h, stride_w, pad_top, pad_left
    cv.dilation_h, cv.dilation_w = dilation_h, dilation_w
    inside_ranges(ranges[0:kH], ranges[kH:2 * kH], dilation_h, pad_top, stride_h, H, H_out)
    inside_ranges(ranges[2 * kH:2 * kH + kW], ranges[2 * kH + kW:], dilation_w, pad_left,
                  stride_w, W, W_out)
    cv.row_lo = &ranges[0]
    cv.row_hi = &ranges[kH]
    cv.col_lo = &ranges[2 * kH]
    cv.col_hi = &ranges[2 * kH + kW]
    return cv


def conv2d_forward(const floating[:, :, :, ::1] x, const floating[:, ::1] w_matrix,
                   const floating[::1] bias, floating[:, :, ::1] y, floating[:, ::1] columns,
                   floating[:, ::1] product, Py_ssize_t images, Py_ssize_t band,
                   Py_ssize_t kH, Py_ssize_t kW, Py_ssize_t H_out, Py_ssize_t W_out,
                   Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top, Py_ssize_t pad_left,
                   Py_ssize_t dilation_h, Py_ssize_t dilation_w, Py_ssize_t groups, bint has_bias,
                   int num_threads):
    """y[n] (C_out, H_out*W_out) = W @ cols(x[n]) (+ bias), block by block.

    w_matrix is the weight as (C_out, C_in/groups*kH*kW); y is (N, C_out, H_out*W_out).
    ``columns`` and ``product`` have one row per thread, with room for the columns and the
    product of one block; a one-image block writes its product straight into y.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1]
    cdef Py_ssize_t C_out = w_matrix.shape[0], K = w_matrix.shape[1], L = H_out * W_out
    cdef Py_ssize_t out_g = C_out // groups
    cdef Py_ssize_t[::1] ranges = np.empty(2 * (kH + kW), np.intp)
    cdef Conv cv = make_conv(C, x.shape[2], x.shape[3], C_out, H_out, W_out, kH, kW, groups,
                             stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w, ranges)
    cdef Py_ssize_t blocks = block_count(N, images, band, H_out)
    cdef Py_ssize_t task, t, m, g, co, l, width, rows
    cdef Block b
    cdef floating* cols
    cdef floating* prod
    cdef floating* y_row
    cdef Team team = new_team()
    with nogil, parallel(num_threads=num_threads):
        while True:
            task = take_task(&team)
            if task >= blocks:
                break
            b = block_of(task, N, images, band, H_out)
            t = threadid()
            rows = (b.i1 - b.i0) * W_out       # output positions per image in this block
            width = b.count * rows
            cols = &columns[t, 0]
            for m in range(b.count):
                image_to_columns(x, b.n0 + m, 0, C, b.i0, b.i1, cols + m * rows, width, &cv)
            if b.count == 1:
                for g in range(groups):  # y[n, group g, band] = W[group g] @ cols[group g]
                    gemm(False, False, out_g, width, K, &w_matrix[g * out_g, 0], K,
                         cols + g * K * width, width, 0, &y[b.n0, g * out_g, b.i0 * W_out], L)
                if has_bias:
                    for co in range(C_out):
                        y_row = &y[b.n0, co, b.i0 * W_out]
                        for l in range(width):
                            y_row[l] += bias[co]
            else:
                prod = &product[t, 0]
                for g in range(groups):  # prod[group g] = W[group g] @ cols[group g]
                    gemm(False, False, out_g, width, K, &w_matrix[g * out_g, 0], K,
                         cols + g * K * width, width, 0, prod + g * out_g * width, width)
                for m in range(b.count):  # y[n0 + m, co, :] = prod[co, m*L : (m+1)*L] (+ bias)
                    for co in range(C_out):
                        y_row = &y[b.n0 + m, co, 0]
                        for l in range(L):
                            y_row[l] = prod[co * width + m * L + l] + (bias[co] if has_bias else 0)
        join_threads(&team)


cdef void gather_gradient(const floating[:, :, ::1] grad_y, Block b, Py_ssize_t c0, Py_ssize_t c1,
                          Py_ssize_t W_out, floating* out) noexcept nogil:
    """out[co - c0, m * rows + l] = grad_y[n0 + m, co, i0*W_out + l]: a block as one matrix."""
    cdef Py_ssize_t rows = (b.i1 - b.i0) * W_out, width = b.count * rows
    cdef Py_ssize_t m, co
    for m in range(b.count):
        for co in range(c0, c1):
            memcpy(out + (co - c0) * width + m * rows, &grad_y[b.n0 + m, co, b.i0 * W_out],
                   rows * sizeof(floating))


def conv2d_grad_input(const floating[:, :, ::1] grad_y, const floating[:, ::1] w_matrix,
                      floating[:, :, :, ::1] grad_x, floating[:, ::1] columns,
                      floating[:, ::1] gathered, Py_ssize_t images,
                      Py_ssize_t kH, Py_ssize_t kW, Py_ssize_t H_out, Py_ssize_t W_out,
                      Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top, Py_ssize_t pad_left,
                      Py_ssize_t dilation_h, Py_ssize_t dilation_w, Py_ssize_t groups, int num_threads):
    """grad_x[n] += col2im(W^T @ grad_y[n]), one (block of whole images, group) per task.

    grad_y is (N, C_out, H_out*W_out) and grad_x must be zero on entry. Each task owns whole
    (image, channel) planes of grad_x, so no two tasks add into the same cell. ``columns``
    holds a task's column gradient (C_in/groups*kH*kW, images*H_out*W_out), ``gathered``
    its block of grad_y (C_out/groups, images*H_out*W_out), one row per thread.
    """
    cdef Py_ssize_t N = grad_x.shape[0], C = grad_x.shape[1]
    cdef Py_ssize_t C_out = w_matrix.shape[0], K = w_matrix.shape[1], L = H_out * W_out
    cdef Py_ssize_t Cg = C // groups, out_g = C_out // groups
    cdef Py_ssize_t[::1] ranges = np.empty(2 * (kH + kW), np.intp)
    cdef Conv cv = make_conv(C, grad_x.shape[2], grad_x.shape[3], C_out, H_out, W_out, kH, kW,
                             groups, stride_h, stride_w, pad_top, pad_left, dilation_h,
                             dilation_w, ranges)
    cdef Py_ssize_t blocks = block_count(N, images, H_out, H_out)
    cdef Py_ssize_t task, t, m, g, width
    cdef Block b
    cdef floating* grad_cols
    cdef const floating* gy
    cdef Team team = new_team()
    with nogil, parallel(num_threads=num_threads):
        while True:
            task = take_task(&team)
            if task >= blocks * groups:
                break
            b = block_of(task // groups, N, images, H_out, H_out)
            g = task % groups
            t = threadid()
            width = b.count * L
            grad_cols = &columns[t, 0]
            if b.count == 1:
                gy = &grad_y[b.n0, g * out_g, 0]
            else:
                gather_gradient(grad_y, b, g * out_g, (g + 1) * out_g, W_out, &gathered[t, 0])
                gy = &gathered[t, 0]
            # grad_cols (K, width) = W[group g]^T @ grad_y[block, group g]
            gemm(True, False, K, width, out_g, &w_matrix[g * out_g, 0], K, gy, width, 0, grad_cols, width)
            for m in range(b.count):
                columns_to_image(grad_cols + m * L, width, grad_x, b.n0 + m, g * Cg, (g + 1) * Cg, &cv)
        join_threads(&team)


def conv2d_grad_weight(const floating[:, :, :, ::1] x, const floating[:, :, ::1] grad_y,
                       floating[:, :, ::1] partial, floating[:, ::1] columns,
                       floating[:, ::1] gathered, Py_ssize_t images, Py_ssize_t band,
                       Py_ssize_t kH, Py_ssize_t kW, Py_ssize_t H_out, Py_ssize_t W_out,
                       Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top, Py_ssize_t pad_left,
                       Py_ssize_t dilation_h, Py_ssize_t dilation_w, Py_ssize_t groups, int num_threads):
    """partial[t] += grad_y[block] @ cols(x[block])^T, summed over the blocks thread t ran.

    grad_y is (N, C_out, H_out*W_out); partial is (threads, C_out, C_in/groups*kH*kW) and
    must be zero on entry: the caller adds the threads' partial sums up, which gives the
    weight gradient as a matrix.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1]
    cdef Py_ssize_t C_out = partial.shape[1], K = partial.shape[2], L = H_out * W_out
    cdef Py_ssize_t out_g = C_out // groups
    cdef Py_ssize_t[::1] ranges = np.empty(2 * (kH + kW), np.intp)
    cdef Conv cv = make_conv(C, x.shape[2], x.shape[3], C_out, H_out, W_out, kH, kW, groups,
                             stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w, ranges)
    cdef Py_ssize_t blocks = block_count(N, images, band, H_out)
    cdef Py_ssize_t task, t, m, g, width, rows, ldb
    cdef Block b
    cdef floating* cols
    cdef const floating* gy

    # static: every run hands the same blocks to the same thread, so the partial sums (and
    # the rounding of the gradient) are the same from run to run
    cdef Team team = new_team()
    with nogil, parallel(num_threads=num_threads):
        for task in range(share_start(blocks), share_stop(blocks)):
            b = block_of(task, N, images, band, H_out)
            t = threadid()
            rows = (b.i1 - b.i0) * W_out
            width = b.count * rows
            cols = &columns[t, 0]
            for m in range(b.count):
                image_to_columns(x, b.n0 + m, 0, C, b.i0, b.i1, cols + m * rows, width, &cv)
            if b.count == 1:
                gy = &grad_y[b.n0, 0, b.i0 * W_out]
                ldb = L
            else:
                gather_gradient(grad_y, b, 0, C_out, W_out, &gathered[t, 0])
                gy = &gathered[t, 0]
                ldb = width
            for g in range(groups):
                # partial[t, group g] += grad_y[block, group g] @ cols[group g]^T
                gemm(False, True, out_g, K, width, gy + g * out_g * ldb, ldb,
                     cols + g * K * width, width, 1, &partial[t, g * out_g, 0], K)
        join_threads(&team)
