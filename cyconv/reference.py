"""Convolution and pooling in plain NumPy: the truth every compiled kernel is tested against.

Every operation comes in two versions with the same signature:

* ``<name>_loops`` reads like the formula on the blackboard: explicit Python ``for`` loops
  over output positions and kernel taps, with only tiny NumPy operations inside. It is very
  slow, and meant for reading and for testing on tiny inputs.
* ``<name>`` is what a competent NumPy user would write: sliding windows (strided views or
  padded slices) and a matrix product, so that the heavy work runs in BLAS. Python loops
  only over the kernel taps (``kH * kW`` iterations), never over pixels. It is also the
  baseline that the benchmarks compare the compiled kernels against.

Conventions, as in PyTorch: arrays are NCHW, convolution weights are
``(C_out, C_in // groups, kH, kW)``, a convolution is really a cross-correlation (the
kernel is not flipped), and the output has the dtype of the input (float32 or float64).
All argument checking and every output size comes from :mod:`cyconv.geometry`, so the
references refuse exactly what the kernels refuse, with the same messages.

Notation used in the comments: ``(sh, sw)`` stride, ``(dh, dw)`` dilation, ``top``/``left``
padding before the first row/column, ``Cg = C_in // groups`` input channels per group,
``Og = C_out // groups`` output channels per group, and ``g = co // Og`` the group of
output channel ``co``. The input cell that kernel tap ``(i, j)`` of output ``(y, x)`` looks
at is::

    r = y * sh - top + i * dh          s = x * sw - left + j * dw

and a cell with ``r`` or ``s`` outside the input is padding (zero for convolution and
average pooling, ``-inf`` for max pooling).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import geometry

__all__ = [
    "conv2d",
    "conv2d_loops",
    "conv2d_grad_input",
    "conv2d_grad_input_loops",
    "conv2d_grad_weight",
    "conv2d_grad_weight_loops",
    "conv2d_grad_bias",
    "conv2d_grad_bias_loops",
    "max_pool2d",
    "max_pool2d_loops",
    "max_pool2d_grad_input",
    "max_pool2d_grad_input_loops",
    "avg_pool2d",
    "avg_pool2d_loops",
    "avg_pool2d_grad_input",
    "avg_pool2d_grad_input_loops",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_loops",
    "adaptive_avg_pool2d_grad_input",
    "adaptive_avg_pool2d_grad_input_loops",
    "relu",
    "relu_grad_input",
    "batch_norm_forward",
    "batch_norm_forward_loops",
    "batch_norm_backward",
    "batch_norm_backward_loops",
]


# ---------------------------------------------------------------------------------------
# Helpers of the vectorised versions
# ---------------------------------------------------------------------------------------

def _pad(x: np.ndarray, top: int, bottom: int, left: int, right: int, value) -> np.ndarray:
    """Surround the H and W axes of ``x`` (N, C, H, W) with ``value``."""
    if top == bottom == left == right == 0:
        return x
    n, c, h, w = x.shape
    out = np.full((n, c, top + h + bottom, left + w + right), value, dtype=x.dtype)
    out[:, :, top:top + h, left:left + w] = x
    return out


def _taps(start: int, count: int, step: int) -> slice:
    """The ``count`` indices ``start, start + step, ...`` as a slice (one kernel tap's cells)."""
    return slice(start, start + (count - 1) * step + 1, step)


def _pool_after_padding(size: int, out: int, stride: int, before: int, span: int) -> int:
    """Cells to add after the input so that the last window (``ceil_mode``) lies inside."""
    return max(0, (out - 1) * stride - before + span - size)


def _conv_columns(x_padded: np.ndarray, geo) -> np.ndarray:
    """im2col: (groups, N * H_out * W_out, Cg * kH * kW), one row per output position."""
    sh, sw = geo.stride
    dh, dw = geo.dilation
    span_h = dh * (geo.kernel_h - 1) + 1
    span_w = dw * (geo.kernel_w - 1) + 1
    windows = sliding_window_view(x_padded, (span_h, span_w), axis=(2, 3))
    # (N, C_in, H_out, W_out, kH, kW): every stride-th window, every dilation-th cell
    windows = windows[:, :, ::sh, ::sw, ::dh, ::dw][:, :, :geo.out_h, :geo.out_w]
    g, cg = geo.groups, geo.in_channels // geo.groups
    windows = windows.reshape(geo.batch, g, cg, geo.out_h, geo.out_w, geo.kernel_h, geo.kernel_w)
    windows = windows.transpose(1, 0, 3, 4, 2, 5, 6)      # (G, N, H_out, W_out, Cg, kH, kW)
    return windows.reshape(g, geo.batch * geo.out_h * geo.out_w, cg * geo.kernel_h * geo.kernel_w)


def _grad_output_rows(grad_output: np.ndarray, geo) -> np.ndarray:
    """(N, C_out, H_out, W_out) -> (groups, N * H_out * W_out, Og), matching the im2col rows."""
    g, og = geo.groups, geo.out_channels // geo.groups
    rows = grad_output.reshape(geo.batch, g, og, geo.out_h, geo.out_w).transpose(1, 0, 3, 4, 2)
    return rows.reshape(g, geo.batch * geo.out_h * geo.out_w, og)


def _weight_matrix(weight: np.ndarray, geo) -> np.ndarray:
    """(C_out, Cg, kH, kW) -> (groups, Og, Cg * kH * kW)."""
    return weight.reshape(geo.groups, geo.out_channels // geo.groups, -1)


def _avg_pool_divisors(geo, count_include_pad: bool, dtype) -> np.ndarray:
    """(H_out, W_out) array of the number each window sum is divided by (PyTorch's rule)."""
    def along(size, out, kernel, stride, pad):
        start = np.arange(out) * stride - pad
        end = np.minimum(start + kernel, size + pad)
        pool = end - start                                   # window, padding included
        inside = np.minimum(end, size) - np.maximum(start, 0)  # window, padding excluded
        return pool if count_include_pad else inside

    rows = along(geo.in_h, geo.out_h, geo.kernel[0], geo.stride[0], geo.padding[0])
    cols = along(geo.in_w, geo.out_w, geo.kernel[1], geo.stride[1], geo.padding[1])
    return np.outer(rows, cols).astype(dtype)


def _adaptive_matrix(size: int, out: int, dtype) -> np.ndarray:
    """(out, size) matrix whose row i averages the cells floor(i*L/O) .. ceil((i+1)*L/O) - 1."""
    i = np.arange(out)
    start = (i * size) // out
    end = -(-((i + 1) * size) // out)
    cells = np.arange(size)
    inside = (cells >= start[:, None]) & (cells < end[:, None])
    return (inside / (end - start)[:, None]).astype(dtype)


# ---------------------------------------------------------------------------------------
# Convolution
# ---------------------------------------------------------------------------------------

def conv2d_loops(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation, as in PyTorch), written as on the blackboard.

    input (N, C_in, H, W), weight (C_out, C_in // groups, kH, kW), bias (C_out,) or None.
    padding: int, (h, w), 'valid' or 'same'. Returns (N, C_out, H_out, W_out).
    """
    x, w, b, geo = geometry.check_conv2d(input, weight, bias, stride, padding, dilation, groups)
    (sh, sw), (dh, dw) = geo.stride, geo.dilation
    top, left = geo.padding[0], geo.padding[2]
    cg = geo.in_channels // geo.groups
    og = geo.out_channels // geo.groups
    out = np.empty(geo.output_shape, dtype=x.dtype)
    # out[n, co, y, x] = bias[co] + sum_{c < Cg, i < kH, j < kW}
    #                    input[n, g*Cg + c, y*sh - top + i*dh, x*sw - left + j*dw] * weight[co, c, i, j]
    # with g = co // Og, and input cells outside the image counting as 0 (zero padding).
    for n in range(geo.batch):
        for co in range(geo.out_channels):
            g = co // og
            for y in range(geo.out_h):
                for x_ in range(geo.out_w):
                    total = 0.0 if b is None else float(b[co])
                    for c in range(cg):
                        for i in range(geo.kernel_h):
                            r = y * sh - top + i * dh
                            if not 0 <= r < geo.in_h:
                                continue                      # a padding row: adds 0
                            for j in range(geo.kernel_w):
                                s = x_ * sw - left + j * dw
                                if 0 <= s < geo.in_w:
                                    total += float(x[n, g * cg + c, r, s]) * float(w[co, c, i, j])
                    out[n, co, y, x_] = total
    return out


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation, as in PyTorch), vectorised: im2col + matmul.

    input (N, C_in, H, W), weight (C_out, C_in // groups, kH, kW), bias (C_out,) or None.
    padding: int, (h, w), 'valid' or 'same'. Returns (N, C_out, H_out, W_out).
    """
    x, w, b, geo = geometry.check_conv2d(input, weight, bias, stride, padding, dilation, groups)
    x_padded = _pad(x, *geo.padding, 0)
    columns = _conv_columns(x_padded, geo)                                # (G, P, Cg*kH*kW)
    out = columns @ _weight_matrix(w, geo).transpose(0, 2, 1)             # (G, P, Og)
    og = geo.out_channels // geo.groups
    out = out.reshape(geo.groups, geo.batch, geo.out_h, geo.out_w, og)
    out = out.transpose(1, 0, 4, 2, 3).reshape(geo.output_shape)
    if b is not None:
        out = out + b[:, None, None]
    return np.ascontiguousarray(out, dtype=x.dtype)


def conv2d_grad_input_loops(grad_output, weight, input_shape, stride=1, padding=0, dilation=1,
                            groups=1):
    """Gradient of conv2d w.r.t. its input, as on the blackboard (like torch.nn.grad.conv2d_input).

    grad_output (N, C_out, H_out, W_out), weight (C_out, C_in // groups, kH, kW),
    input_shape (N, C_in, H, W). Returns an array of input_shape.
    """
    gout, w, geo = geometry.check_conv2d_grad_input(grad_output, weight, input_shape, stride,
                                                    padding, dilation, groups)
    (sh, sw), (dh, dw) = geo.stride, geo.dilation
    top, left = geo.padding[0], geo.padding[2]
    cg = geo.in_channels // geo.groups
    og = geo.out_channels // geo.groups
    grad = np.zeros(geo.input_shape, dtype=gout.dtype)
    # Every output out[n, co, y, x] used input[n, g*Cg + c, r, s] with weight[co, c, i, j],
    # r = y*sh - top + i*dh and s = x*sw - left + j*dw, so it sends back
    #     grad_input[n, g*Cg + c, r, s] += grad_output[n, co, y, x] * weight[co, c, i, j]
    # (nothing for padding cells, which are not part of the input).
    for n in range(geo.batch):
        for co in range(geo.out_channels):
            g = co // og
            for y in range(geo.out_h):
                for x_ in range(geo.out_w):
                    go = gout[n, co, y, x_]
                    for c in range(cg):
                        for i in range(geo.kernel_h):
                            r = y * sh - top + i * dh
                            if not 0 <= r < geo.in_h:
                                continue
                            for j in range(geo.kernel_w):
                                s = x_ * sw - left + j * dw
                                if 0 <= s < geo.in_w:
                                    grad[n, g * cg + c, r, s] += go * w[co, c, i, j]
    return grad


def conv2d_grad_input(grad_output, weight, input_shape, stride=1, padding=0, dilation=1, groups=1):
    """Gradient of conv2d w.r.t. its input, vectorised: matmul then col2im over the kernel taps.

    grad_output (N, C_out, H_out, W_out), weight (C_out, C_in // groups, kH, kW),
    input_shape (N, C_in, H, W). Returns an array of input_shape.
    """
    gout, w, geo = geometry.check_conv2d_grad_input(grad_output, weight, input_shape, stride,
                                                    padding, dilation, groups)
    (sh, sw), (dh, dw) = geo.stride, geo.dilation
    top, bottom, left, right = geo.padding
    cg = geo.in_channels // geo.groups
    # gradient of every im2col entry: (G, P, Og) @ (G, Og, Cg*kH*kW)
    columns = _grad_output_rows(gout, geo) @ _weight_matrix(w, geo)
    columns = columns.reshape(geo.groups, geo.batch, geo.out_h, geo.out_w, cg,
                              geo.kernel_h, geo.kernel_w)
    columns = columns.transpose(1, 0, 4, 2, 3, 5, 6).reshape(
        geo.batch, geo.in_channels, geo.out_h, geo.out_w, geo.kernel_h, geo.kernel_w)
    # col2im: each kernel tap adds its (H_out, W_out) grid back onto the cells it read
    grad = np.zeros((geo.batch, geo.in_channels, top + geo.in_h + bottom, left + geo.in_w + right),
                    dtype=gout.dtype)
    for i in range(geo.kernel_h):
        rows = _taps(i * dh, geo.out_h, sh)
        for j in range(geo.kernel_w):
            grad[:, :, rows, _taps(j * dw, geo.out_w, sw)] += columns[..., i, j]
    return np.ascontiguousarray(grad[:, :, top:top + geo.in_h, left:left + geo.in_w])


def conv2d_grad_weight_loops(grad_output, input, weight_shape, stride=1, padding=0, dilation=1,
                             groups=1):
    """Gradient of conv2d w.r.t. its weight, as on the blackboard (like torch.nn.grad.conv2d_weight).

    grad_output (N, C_out, H_out, W_out), input (N, C_in, H, W),
    weight_shape (C_out, C_in // groups, kH, kW). Returns an array of weight_shape.
    """
    gout, x, geo = geometry.check_conv2d_grad_weight(grad_output, input, weight_shape, stride,
                                                     padding, dilation, groups)
    (sh, sw), (dh, dw) = geo.stride, geo.dilation
    top, left = geo.padding[0], geo.padding[2]
    cg = geo.in_channels // geo.groups
    og = geo.out_channels // geo.groups
    grad = np.empty(geo.weight_shape, dtype=gout.dtype)
    # grad_weight[co, c, i, j] = sum_{n, y, x} grad_output[n, co, y, x]
    #                            * input[n, g*Cg + c, y*sh - top + i*dh, x*sw - left + j*dw]
    # with g = co // Og and padding cells counting as 0.
    for co in range(geo.out_channels):
        g = co // og
        for c in range(cg):
            for i in range(geo.kernel_h):
                for j in range(geo.kernel_w):
                    total = 0.0
                    for n in range(geo.batch):
                        for y in range(geo.out_h):
                            r = y * sh - top + i * dh
                            if not 0 <= r < geo.in_h:
                                continue
                            for x_ in range(geo.out_w):
                                s = x_ * sw - left + j * dw
                                if 0 <= s < geo.in_w:
                                    total += float(gout[n, co, y, x_]) * float(x[n, g * cg + c, r, s])
                    grad[co, c, i, j] = total
    return grad


def conv2d_grad_weight(grad_output, input, weight_shape, stride=1, padding=0, dilation=1, groups=1):
    """Gradient of conv2d w.r.t. its weight, vectorised: im2col + matmul.

    grad_output (N, C_out, H_out, W_out), input (N, C_in, H, W),
    weight_shape (C_out, C_in // groups, kH, kW). Returns an array of weight_shape.
    """
    gout, x, geo = geometry.check_conv2d_grad_weight(grad_output, input, weight_shape, stride,
                                                     padding, dilation, groups)
    columns = _conv_columns(_pad(x, *geo.padding, 0), geo)               # (G, P, Cg*kH*kW)
    grad = _grad_output_rows(gout, geo).transpose(0, 2, 1) @ columns     # (G, Og, Cg*kH*kW)
    return np.ascontiguousarray(grad.reshape(geo.weight_shape), dtype=gout.dtype)


def conv2d_grad_bias_loops(grad_output):
    """Gradient of conv2d w.r.t. its bias, as on the blackboard.

    grad_output (N, C_out, H_out, W_out). Returns (C_out,).
    """
    gout = geometry.as_float_array(grad_output, "grad_output", ndim=4)
    n_, c_out, h_out, w_out = gout.shape
    grad = np.empty(c_out, dtype=gout.dtype)
    # grad_bias[co] = sum_{n, y, x} grad_output[n, co, y, x]   (bias[co] is added to every output)
    for co in range(c_out):
        total = 0.0
        for n in range(n_):
            for y in range(h_out):
                for x_ in range(w_out):
                    total += float(gout[n, co, y, x_])
        grad[co] = total
    return grad


def conv2d_grad_bias(grad_output):
    """Gradient of conv2d w.r.t. its bias: grad_output (N, C_out, H_out, W_out) -> (C_out,)."""
    gout = geometry.as_float_array(grad_output, "grad_output", ndim=4)
    return gout.sum(axis=(0, 2, 3), dtype=gout.dtype)


# ---------------------------------------------------------------------------------------
# Max pooling
# ---------------------------------------------------------------------------------------

def max_pool2d_loops(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                     return_indices=False):
    """2-D max pooling, as on the blackboard.

    input (N, C, H, W). Returns output (N, C, H_out, W_out), and with return_indices also
    indices: int64 of the same shape, the flat index r * W + s of the arg-max in its input
    plane. Padding counts as -inf. Ties go to the first maximum in row-major window order;
    a NaN wins over any number (the last NaN of the window, as PyTorch's CPU kernel). A
    window made of -inf only points at its first input cell. A window that holds no input
    cell at all (possible with a large dilation) gives -inf and index -1 (PyTorch returns
    an index outside the plane there).
    """
    x, geo, return_indices = geometry.check_max_pool2d(input, kernel_size, stride, padding,
                                                       dilation, ceil_mode, return_indices)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = geo.kernel, geo.stride, geo.padding, geo.dilation
    out = np.empty(geo.output_shape, dtype=x.dtype)
    indices = np.empty(geo.output_shape, dtype=np.int64)
    # out[n, c, y, x] = max_{i < kH, j < kW} input[n, c, y*sh - ph + i*dh, x*sw - pw + j*dw]
    # over the taps that land inside the input (padding is -inf, so it never wins).
    for n in range(geo.batch):
        for c in range(geo.channels):
            for y in range(geo.out_h):
                for x_ in range(geo.out_w):
                    best, best_index = -np.inf, -1
                    for i in range(kh):
                        r = y * sh - ph + i * dh
                        if not 0 <= r < geo.in_h:
                            continue
                        for j in range(kw):
                            s = x_ * sw - pw + j * dw
                            if not 0 <= s < geo.in_w:
                                continue
                            value = x[n, c, r, s]
                            if best_index == -1 or value > best or np.isnan(value):
                                best, best_index = value, r * geo.in_w + s
                    out[n, c, y, x_] = best
                    indices[n, c, y, x_] = best_index
    return (out, indices) if return_indices else out


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """2-D max pooling, vectorised over pixels (Python loops over the kH * kW kernel taps only).

    input (N, C, H, W). Returns output (N, C, H_out, W_out), and with return_indices also
    int64 indices of the same shape (flat r * W + s in the input plane; -1 for a window with
    no input cell). Same rules for ties, NaN and -inf as :func:`max_pool2d_loops`.
    """
    x, geo, return_indices = geometry.check_max_pool2d(input, kernel_size, stride, padding,
                                                       dilation, ceil_mode, return_indices)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = geo.kernel, geo.stride, geo.padding, geo.dilation
    after_h = _pool_after_padding(geo.in_h, geo.out_h, sh, ph, dh * (kh - 1) + 1)
    after_w = _pool_after_padding(geo.in_w, geo.out_w, sw, pw, dw * (kw - 1) + 1)
    x_padded = _pad(x, ph, after_h, pw, after_w, -np.inf)
    first_row = np.arange(geo.out_h) * sh - ph          # input row of tap i = 0, per output row
    first_col = np.arange(geo.out_w) * sw - pw
    best = np.full(geo.output_shape, -np.inf, dtype=x.dtype)
    indices = np.full(geo.output_shape, -1, dtype=np.int64)
    for i in range(kh):
        rows = first_row + i * dh
        row_inside = (rows >= 0) & (rows < geo.in_h)
        for j in range(kw):
            cols = first_col + j * dw
            inside = row_inside[:, None] & ((cols >= 0) & (cols < geo.in_w))[None, :]
            if not inside.any():
                continue
            value = x_padded[:, :, _taps(i * dh, geo.out_h, sh), _taps(j * dw, geo.out_w, sw)]
            take = inside & ((indices < 0) | (value > best) | np.isnan(value))
            np.copyto(best, value, where=take)
            np.copyto(indices, rows[:, None] * geo.in_w + cols[None, :], where=take)
    return (best, indices) if return_indices else best


def max_pool2d_grad_input_loops(grad_output, indices, input_shape):
    """Gradient of max_pool2d w.r.t. its input, as on the blackboard.

    grad_output (N, C, H_out, W_out), indices (the same shape, from max_pool2d),
    input_shape (N, C, H, W). Returns an array of input_shape.
    """
    gout, indices, input_shape = geometry.check_max_pool2d_grad_input(grad_output, indices, input_shape)
    n_, c_, h, w = input_shape
    grad = np.zeros(input_shape, dtype=gout.dtype)
    # Only the arg-max of each window influenced the output, so
    #     grad_input[n, c, k // W, k % W] += grad_output[n, c, y, x]   with k = indices[n, c, y, x]
    # and a window without input cells (k = -1) sends nothing back.
    for n in range(n_):
        for c in range(c_):
            for y in range(gout.shape[2]):
                for x_ in range(gout.shape[3]):
                    k = indices[n, c, y, x_]
                    if k >= 0:
                        grad[n, c, k // w, k % w] += gout[n, c, y, x_]
    return grad


def max_pool2d_grad_input(grad_output, indices, input_shape):
    """Gradient of max_pool2d w.r.t. its input, vectorised: one bincount scatter-add.

    grad_output (N, C, H_out, W_out), indices (the same shape, from max_pool2d),
    input_shape (N, C, H, W). Returns an array of input_shape.
    """
    gout, indices, input_shape = geometry.check_max_pool2d_grad_input(grad_output, indices, input_shape)
    n_, c_, h, w = input_shape
    planes = np.arange(n_ * c_).reshape(n_, c_, 1, 1) * (h * w)   # offset of each (n, c) plane
    kept = indices >= 0
    grad = np.bincount((planes + indices)[kept], weights=gout[kept], minlength=n_ * c_ * h * w)
    return grad.reshape(input_shape).astype(gout.dtype)


# ---------------------------------------------------------------------------------------
# Average pooling
# ---------------------------------------------------------------------------------------

def _avg_pool_window(geo, y: int, x: int, count_include_pad: bool):
    """Rows [r0, r1), columns [s0, s1) of output (y, x)'s window inside the input, and its divisor.

    The window spans rows [y*sh - ph, y*sh - ph + kH) (likewise columns), cut at the far
    edge of the padding (H + ph); pool_size is its area with the padding, and
    divisor = pool_size if count_include_pad else the area inside the input (PyTorch's rule).
    """
    (kh, kw), (sh, sw), (ph, pw) = geo.kernel, geo.stride, geo.padding
    h0, w0 = y * sh - ph, x * sw - pw
    h1, w1 = min(h0 + kh, geo.in_h + ph), min(w0 + kw, geo.in_w + pw)
    r0, r1 = max(h0, 0), min(h1, geo.in_h)
    s0, s1 = max(w0, 0), min(w1, geo.in_w)
    pool_size = (h1 - h0) * (w1 - w0)
    return r0, r1, s0, s1, (pool_size if count_include_pad else (r1 - r0) * (s1 - s0))


def avg_pool2d_loops(input, kernel_size, stride=None, padding=0, ceil_mode=False,
                     count_include_pad=True):
    """2-D average pooling, as on the blackboard (PyTorch's divisor rule).

    input (N, C, H, W). Returns (N, C, H_out, W_out).
    """
    x, geo, count_include_pad = geometry.check_avg_pool2d(input, kernel_size, stride, padding,
                                                          ceil_mode, count_include_pad)
    out = np.empty(geo.output_shape, dtype=x.dtype)
    # out[n, c, y, x] = (sum of the input cells in the window of (y, x)) / divisor
    for y in range(geo.out_h):
        for x_ in range(geo.out_w):
            r0, r1, s0, s1, divisor = _avg_pool_window(geo, y, x_, count_include_pad)
            for n in range(geo.batch):
                for c in range(geo.channels):
                    out[n, c, y, x_] = x[n, c, r0:r1, s0:s1].sum() / divisor
    return out


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """2-D average pooling, vectorised (Python loops over the kH * kW kernel taps only).

    input (N, C, H, W). Returns (N, C, H_out, W_out).
    """
    x, geo, count_include_pad = geometry.check_avg_pool2d(input, kernel_size, stride, padding,
                                                          ceil_mode, count_include_pad)
    (kh, kw), (sh, sw), (ph, pw) = geo.kernel, geo.stride, geo.padding
    after_h = _pool_after_padding(geo.in_h, geo.out_h, sh, ph, kh)
    after_w = _pool_after_padding(geo.in_w, geo.out_w, sw, pw, kw)
    x_padded = _pad(x, ph, after_h, pw, after_w, 0)
    total = np.zeros(geo.output_shape, dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            total += x_padded[:, :, _taps(i, geo.out_h, sh), _taps(j, geo.out_w, sw)]
    total /= _avg_pool_divisors(geo, count_include_pad, x.dtype)
    return total


def avg_pool2d_grad_input_loops(grad_output, input_shape, kernel_size, stride=None, padding=0,
                                ceil_mode=False, count_include_pad=True):
    """Gradient of avg_pool2d w.r.t. its input, as on the blackboard.

    grad_output (N, C, H_out, W_out), input_shape (N, C, H, W). Returns an array of input_shape.
    """
    gout, geo, count_include_pad = geometry.check_avg_pool2d_grad_input(grad_output, input_shape,
                                                                        kernel_size, stride,
                                                                        padding, ceil_mode,
                                                                        count_include_pad)
    grad = np.zeros(geo.input_shape, dtype=gout.dtype)
    # out[n, c, y, x] = (sum of the window's input cells) / divisor, so every input cell
    # of the window gets   grad_input[n, c, r, s] += grad_output[n, c, y, x] / divisor
    for y in range(geo.out_h):
        for x_ in range(geo.out_w):
            r0, r1, s0, s1, divisor = _avg_pool_window(geo, y, x_, count_include_pad)
            for n in range(geo.batch):
                for c in range(geo.channels):
                    for r in range(r0, r1):
                        for s in range(s0, s1):
                            grad[n, c, r, s] += gout[n, c, y, x_] / divisor
    return grad


def avg_pool2d_grad_input(grad_output, input_shape, kernel_size, stride=None, padding=0,
                          ceil_mode=False, count_include_pad=True):
    """Gradient of avg_pool2d w.r.t. its input, vectorised (loops over the kernel taps only).

    grad_output (N, C, H_out, W_out), input_shape (N, C, H, W). Returns an array of input_shape.
    """
    gout, geo, count_include_pad = geometry.check_avg_pool2d_grad_input(grad_output, input_shape,
                                                                        kernel_size, stride,
                                                                        padding, ceil_mode,
                                                                        count_include_pad)
    (kh, kw), (sh, sw), (ph, pw) = geo.kernel, geo.stride, geo.padding
    after_h = _pool_after_padding(geo.in_h, geo.out_h, sh, ph, kh)
    after_w = _pool_after_padding(geo.in_w, geo.out_w, sw, pw, kw)
    share = gout / _avg_pool_divisors(geo, count_include_pad, gout.dtype)
    grad = np.zeros((geo.batch, geo.channels, ph + geo.in_h + after_h, pw + geo.in_w + after_w),
                    dtype=gout.dtype)
    for i in range(kh):
        for j in range(kw):
            grad[:, :, _taps(i, geo.out_h, sh), _taps(j, geo.out_w, sw)] += share
    return np.ascontiguousarray(grad[:, :, ph:ph + geo.in_h, pw:pw + geo.in_w])


# ---------------------------------------------------------------------------------------
# Adaptive average pooling
# ---------------------------------------------------------------------------------------

def adaptive_avg_pool2d_loops(input, output_size):
    """Adaptive 2-D average pooling, as on the blackboard.

    input (N, C, H, W); output_size int, (h, w), or a pair with None keeping that input size.
    Returns (N, C, H_out, W_out).
    """
    x, out_h, out_w = geometry.check_adaptive_avg_pool2d(input, output_size)
    n_, c_, h, w = x.shape
    out = np.empty((n_, c_, out_h, out_w), dtype=x.dtype)
    # Along a dimension of input size L and output size O, output i averages the cells
    #     start = floor(i * L / O)  ..  end - 1,   end = ceil((i + 1) * L / O),
    # so  out[n, c, y, x] = mean of input[n, c, h0:h1, w0:w1]  (windows may overlap).
    for y in range(out_h):
        h0, h1 = (y * h) // out_h, -(-((y + 1) * h) // out_h)
        for x_ in range(out_w):
            w0, w1 = (x_ * w) // out_w, -(-((x_ + 1) * w) // out_w)
            for n in range(n_):
                for c in range(c_):
                    out[n, c, y, x_] = x[n, c, h0:h1, w0:w1].sum() / ((h1 - h0) * (w1 - w0))
    return out


def adaptive_avg_pool2d(input, output_size):
    """Adaptive 2-D average pooling, vectorised as two matrix products: A_h @ input @ A_w^T.

    input (N, C, H, W); output_size int, (h, w), or a pair with None keeping that input size.
    Returns (N, C, H_out, W_out).
    """
    x, out_h, out_w = geometry.check_adaptive_avg_pool2d(input, output_size)
    rows = _adaptive_matrix(x.shape[2], out_h, x.dtype)               # (H_out, H)
    cols = _adaptive_matrix(x.shape[3], out_w, x.dtype)               # (W_out, W)
    return np.ascontiguousarray(rows @ x @ cols.T)


def adaptive_avg_pool2d_grad_input_loops(grad_output, input_shape):
    """Gradient of adaptive_avg_pool2d w.r.t. its input, as on the blackboard.

    grad_output (N, C, H_out, W_out), input_shape (N, C, H, W). Returns an array of input_shape.
    """
    gout, input_shape, out_h, out_w = geometry.check_adaptive_avg_pool2d_grad_input(grad_output, input_shape)
    n_, c_, h, w = input_shape
    grad = np.zeros(input_shape, dtype=gout.dtype)
    # Each cell of window (y, x) gets  grad_input[n, c, r, s] += grad_output[n, c, y, x] / area
    # (windows as in adaptive_avg_pool2d_loops; a cell in two windows gets both shares).
    for y in range(out_h):
        h0, h1 = (y * h) // out_h, -(-((y + 1) * h) // out_h)
        for x_ in range(out_w):
            w0, w1 = (x_ * w) // out_w, -(-((x_ + 1) * w) // out_w)
            area = (h1 - h0) * (w1 - w0)
            for n in range(n_):
                for c in range(c_):
                    for r in range(h0, h1):
                        for s in range(w0, w1):
                            grad[n, c, r, s] += gout[n, c, y, x_] / area
    return grad


def adaptive_avg_pool2d_grad_input(grad_output, input_shape):
    """Gradient of adaptive_avg_pool2d w.r.t. its input, vectorised: A_h^T @ grad_output @ A_w.

    grad_output (N, C, H_out, W_out), input_shape (N, C, H, W). Returns an array of input_shape.
    """
    gout, input_shape, out_h, out_w = geometry.check_adaptive_avg_pool2d_grad_input(grad_output, input_shape)
    rows = _adaptive_matrix(input_shape[2], out_h, gout.dtype)        # (H_out, H)
    cols = _adaptive_matrix(input_shape[3], out_w, gout.dtype)        # (W_out, W)
    return np.ascontiguousarray(rows.T @ gout @ cols)


# ---------------------------------------------------------------------------------------
# ReLU and batch normalisation
# ---------------------------------------------------------------------------------------

def relu(input):
    """max(x, 0), elementwise."""
    x = geometry.as_float_array(input, "input")
    return np.maximum(x, 0).astype(x.dtype, copy=False)


def relu_grad_input(grad_output, output):
    """grad_output where the output was positive, else 0: d max(x, 0) / dx (0 at x = 0)."""
    g = geometry.as_float_array(grad_output, "grad_output")
    y = geometry.as_float_array(output, "output")
    if g.shape != y.shape:
        raise ValueError(f"grad_output must have the output's shape {y.shape}, got {g.shape}")
    return np.where(y > 0, g, 0).astype(g.dtype, copy=False)


def _batch_norm_axes(x):
    if x.ndim < 2:
        raise ValueError(f"input must be (N, C), (N, C, L) or (N, C, H, W), got shape {x.shape}")
    return (0,) + tuple(range(2, x.ndim)), (1, x.shape[1]) + (1,) * (x.ndim - 2)


def batch_norm_forward_loops(input, weight=None, bias=None, eps=1e-5):
    """Training-mode batch norm, one channel at a time: (output, mean, var).

    For channel c, with the m = N * H * W values v of that channel:
        mean = sum(v) / m,  var = sum((v - mean)^2) / m,  y = (v - mean) / sqrt(var + eps) * w + b
    """
    x = geometry.as_float_array(input, "input")
    _batch_norm_axes(x)
    y = np.empty_like(x)
    mean, var = np.empty(x.shape[1]), np.empty(x.shape[1])
    for c in range(x.shape[1]):
        values = x[:, c].astype(np.float64)
        m = values.size
        mean[c] = values.sum() / m
        var[c] = ((values - mean[c]) ** 2).sum() / m
        normalised = (values - mean[c]) / np.sqrt(var[c] + eps)
        if weight is not None:
            normalised = normalised * weight[c] + bias[c]
        y[:, c] = normalised
    return y, mean, var


def batch_norm_forward(input, weight=None, bias=None, eps=1e-5):
    """Training-mode batch norm, all channels at once: (output, mean (C,), var (C,)) float64 stats."""
    x = geometry.as_float_array(input, "input")
    axes, per_channel = _batch_norm_axes(x)
    x64 = x.astype(np.float64)
    mean, var = x64.mean(axis=axes), x64.var(axis=axes)
    y = (x64 - mean.reshape(per_channel)) / np.sqrt(var.reshape(per_channel) + eps)
    if weight is not None:
        y = y * np.reshape(weight, per_channel) + np.reshape(bias, per_channel)
    return y.astype(x.dtype), mean, var


def batch_norm_backward_loops(grad_output, input, weight, mean, var, eps=1e-5,
                              needs_grad_input=True):
    """Gradients of training-mode batch norm, one channel at a time.

    With x_hat = (v - mean) / sqrt(var + eps) and g the output gradient of the channel:
        grad_bias = sum(g),  grad_weight = sum(g * x_hat),
        grad_input = w / sqrt(var + eps) / m * (m g - grad_bias - x_hat grad_weight)
    (the mean and the variance depend on every value of the channel, hence the two sums).
    """
    x = geometry.as_float_array(input, "input")
    g = geometry.as_float_array(grad_output, "grad_output")
    grad_x = np.empty_like(x)
    grad_w, grad_b = np.empty(x.shape[1]), np.empty(x.shape[1])
    for c in range(x.shape[1]):
        inv_std = 1 / np.sqrt(var[c] + eps)
        x_hat = (x[:, c].astype(np.float64) - mean[c]) * inv_std
        gc = g[:, c].astype(np.float64)
        m = gc.size
        grad_b[c] = gc.sum()
        grad_w[c] = (gc * x_hat).sum()
        scale = inv_std / m * (1.0 if weight is None else weight[c])
        grad_x[:, c] = scale * (m * gc - grad_b[c] - x_hat * grad_w[c])
    return (grad_x if needs_grad_input else None), grad_w, grad_b


def batch_norm_backward(grad_output, input, weight, mean, var, eps=1e-5, needs_grad_input=True):
    """Gradients of training-mode batch norm, vectorised: (grad_input, grad_weight, grad_bias)."""
    x = geometry.as_float_array(input, "input")
    g = geometry.as_float_array(grad_output, "grad_output").astype(np.float64)
    axes, per_channel = _batch_norm_axes(x)
    m = x.size // x.shape[1]
    inv_std = (1 / np.sqrt(np.asarray(var) + eps)).reshape(per_channel)
    x_hat = (x.astype(np.float64) - np.reshape(mean, per_channel)) * inv_std
    grad_b = g.sum(axis=axes)
    grad_w = (g * x_hat).sum(axis=axes)
    grad_x = None
    if needs_grad_input:
        scale = inv_std / m * (1.0 if weight is None else np.reshape(weight, per_channel))
        grad_x = (scale * (m * g - grad_b.reshape(per_channel) - x_hat * grad_w.reshape(per_channel)))
        grad_x = grad_x.astype(x.dtype)
    return grad_x, grad_w, grad_b
