"""2-D convolution on NumPy arrays with the compiled kernels: forward and gradients.

Same signatures as ``cyconv.reference`` (plus a keyword-only ``algorithm``), so tests and
benchmarks can swap one for the other. Arguments are checked here, once, by
``cyconv.geometry``; the Cython loops trust them.

Two algorithms compute the same numbers:

- ``"direct"``: the loop-level kernel of ``_conv_direct.pyx``, the formula written as loops.
  It needs no workspace and wins where there is little work per output (depthwise and
  small-channel convolutions).
- ``"im2col"``: ``_im2col.pyx`` copies receptive fields into the columns of a matrix, one
  chunk of images at a time, and NumPy's BLAS does one large matrix product per chunk and
  group. It wins where each output sums over many inputs (C_in/groups * kH * kW large).

``algorithm="auto"`` (the default) picks one with :func:`choose_algorithm`.
"""

from __future__ import annotations

import numpy as np

from .. import geometry as geo
from . import _conv_direct, _im2col
from .threads import get_num_threads

__all__ = ["conv2d", "conv2d_grad_input", "conv2d_grad_weight", "conv2d_grad_bias",
           "choose_algorithm", "ALGORITHMS"]

ALGORITHMS = ("auto", "direct", "im2col")

#: Upper bound on the im2col workspace (bytes); the batch is processed in chunks of images
#: whose columns fit in it (always at least one image).
IM2COL_WORKSPACE_BYTES = 16 * 2**20

#: Below this many multiply-adds per output value (C_in/groups * kH * kW), "auto" picks the
#: direct loops; the BLAS product does not pay for the im2col copy there.
DIRECT_MAX_REDUCTION = 32


def choose_algorithm(geometry: geo.ConvGeometry) -> str:
    """The algorithm "auto" runs for this convolution: "direct" or "im2col"."""
    reduction = (geometry.in_channels // geometry.groups) * geometry.kernel_h * geometry.kernel_w
    return "direct" if reduction < DIRECT_MAX_REDUCTION else "im2col"


def _resolve(algorithm: str, geometry: geo.ConvGeometry) -> str:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    return choose_algorithm(geometry) if algorithm == "auto" else algorithm


def _loop_args(g: geo.ConvGeometry) -> tuple:
    """stride, padding (top, left) and dilation in the order the Cython kernels take them."""
    return (g.stride[0], g.stride[1], g.padding[0], g.padding[2], g.dilation[0], g.dilation[1])


def _chunks(g: geo.ConvGeometry, itemsize: int):
    """Yield (first image, number of images) so that one chunk's columns fit the workspace."""
    column_bytes = g.in_channels * g.kernel_h * g.kernel_w * g.out_h * g.out_w * itemsize
    size = max(1, min(g.batch, IM2COL_WORKSPACE_BYTES // max(column_bytes, 1)))
    for start in range(0, g.batch, size):
        yield start, min(size, g.batch - start)


class _Workspace:
    """Scratch matrices for the chunks of one call, allocated once and reused.

    A fresh multi-megabyte array per chunk would be fresh memory from the OS each time,
    and touching its pages for the first time costs about as much as the im2col copy.
    """

    def __init__(self, dtype):
        self.dtype = dtype
        self.buffers = {}

    def matrix(self, name: str, rows: int, columns: int) -> np.ndarray:
        """A C-contiguous (rows, columns) matrix; its contents are garbage."""
        size = rows * columns
        buffer = self.buffers.get(name)
        if buffer is None or buffer.size < size:
            buffer = self.buffers[name] = np.empty(size, self.dtype)
        return buffer[:size].reshape(rows, columns)


def _columns(x: np.ndarray, g: geo.ConvGeometry, start: int, count: int,
             work: _Workspace) -> np.ndarray:
    """Columns (C_in*kH*kW, count*H_out*W_out) of images start .. start+count-1."""
    cols = work.matrix("cols", g.in_channels * g.kernel_h * g.kernel_w, count * g.out_h * g.out_w)
    _im2col.im2col(x, cols, start, g.kernel_h, g.kernel_w, g.out_h, g.out_w, *_loop_args(g),
                   get_num_threads())
    return cols


def _gradient_matrix(grad_planes: np.ndarray, start: int, count: int, threads: int,
                     work: _Workspace) -> np.ndarray:
    """grad_output of images start .. start+count-1 in the (C_out, count*H_out*W_out) layout."""
    if count == 1:
        return grad_planes[start]  # one image: its planes already are that matrix
    n, channels, plane = grad_planes.shape
    matrix = work.matrix("grad", channels, count * plane)
    _im2col.nchw_to_gemm(grad_planes, matrix, start, threads)
    return matrix


def _group_rows(g: geo.ConvGeometry, group: int, per_group: int) -> slice:
    return slice(group * per_group, (group + 1) * per_group)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           algorithm: str = "auto") -> np.ndarray:
    """2-D convolution (cross-correlation, as in PyTorch) of NCHW images.

    input (N, C_in, H, W), weight (C_out, C_in/groups, kH, kW), bias (C_out,) or None
    -> output (N, C_out, H_out, W_out), with
    ``y[n, co, i, j] = bias[co] + sum_{c,p,q} w[co, c, p, q] * x[n, g*C_in/groups + c,
    i*stride_h - pad_top + p*dilation_h, j*stride_w - pad_left + q*dilation_w]``.
    """
    x, weight, bias, g = geo.check_conv2d(input, weight, bias, stride, padding, dilation, groups)
    algorithm = _resolve(algorithm, g)
    threads = get_num_threads()
    if algorithm == "direct":
        y = np.empty(g.output_shape, x.dtype)
        y[...] = 0 if bias is None else bias.reshape(1, -1, 1, 1)
        _conv_direct.conv2d_forward(x, weight, y, *_loop_args(g), g.groups, threads)
        return y

    y = np.empty(g.output_shape, x.dtype)
    y_planes = y.reshape(g.batch, g.out_channels, g.out_h * g.out_w)
    w_matrix = weight.reshape(g.out_channels, -1)
    in_rows, out_rows = w_matrix.shape[1], g.out_channels // g.groups
    bias_vector = bias if bias is not None else np.empty(0, x.dtype)
    work = _Workspace(x.dtype)
    for start, count in _chunks(g, x.itemsize):
        cols = _columns(x, g, start, count, work)
        # One image per chunk: its (C_out, H_out*W_out) product *is* its output plane.
        product = y_planes[start] if count == 1 else work.matrix("product", g.out_channels,
                                                                   cols.shape[1])
        for group in range(g.groups):
            np.matmul(w_matrix[_group_rows(g, group, out_rows)], cols[_group_rows(g, group, in_rows)],
                      out=product[_group_rows(g, group, out_rows)])
        if count > 1:
            _im2col.gemm_to_nchw(product, bias_vector, y_planes, start, bias is not None, threads)
        elif bias is not None:
            product += bias[:, None]
    return y


def conv2d_grad_input(grad_output, weight, input_shape, stride=1, padding=0, dilation=1,
                      groups=1, *, algorithm: str = "auto") -> np.ndarray:
    """Gradient of the loss w.r.t. the input of ``conv2d`` (like torch.nn.grad.conv2d_input).

    grad_output (N, C_out, H_out, W_out), weight (C_out, C_in/groups, kH, kW)
    -> grad_input of ``input_shape`` (N, C_in, H, W).
    """
    grad_y, weight, g = geo.check_conv2d_grad_input(grad_output, weight, input_shape, stride,
                                                    padding, dilation, groups)
    algorithm = _resolve(algorithm, g)
    threads = get_num_threads()
    grad_x = np.zeros(g.input_shape, weight.dtype)
    if algorithm == "direct":
        _conv_direct.conv2d_grad_input(grad_y, weight, grad_x, *_loop_args(g), g.groups, threads)
        return grad_x

    w_matrix = weight.reshape(g.out_channels, -1)
    in_rows, out_rows = w_matrix.shape[1], g.out_channels // g.groups
    grad_planes = grad_y.reshape(g.batch, g.out_channels, g.out_h * g.out_w)
    work = _Workspace(weight.dtype)
    for start, count in _chunks(g, weight.itemsize):
        grad_matrix = _gradient_matrix(grad_planes, start, count, threads, work)
        grad_cols = work.matrix("cols", g.in_channels * g.kernel_h * g.kernel_w,
                                grad_matrix.shape[1])
        for group in range(g.groups):
            out_slice, in_slice = _group_rows(g, group, out_rows), _group_rows(g, group, in_rows)
            np.matmul(w_matrix[out_slice].T, grad_matrix[out_slice], out=grad_cols[in_slice])
        _im2col.col2im(grad_cols, grad_x, start, g.kernel_h, g.kernel_w, g.out_h, g.out_w,
                       *_loop_args(g), threads)
    return grad_x


def conv2d_grad_weight(grad_output, input, weight_shape, stride=1, padding=0, dilation=1,
                       groups=1, *, algorithm: str = "auto") -> np.ndarray:
    """Gradient of the loss w.r.t. the weight of ``conv2d`` (like torch.nn.grad.conv2d_weight).

    grad_output (N, C_out, H_out, W_out), input (N, C_in, H, W)
    -> grad_weight of ``weight_shape`` (C_out, C_in/groups, kH, kW).
    """
    grad_y, x, g = geo.check_conv2d_grad_weight(grad_output, input, weight_shape, stride,
                                                padding, dilation, groups)
    algorithm = _resolve(algorithm, g)
    threads = get_num_threads()
    if algorithm == "direct":
        grad_w = np.empty(g.weight_shape, x.dtype)
        _conv_direct.conv2d_grad_weight(grad_y, x, grad_w, *_loop_args(g), g.groups, threads)
        return grad_w

    grad_w = np.zeros(g.weight_shape, x.dtype)
    grad_w_matrix = grad_w.reshape(g.out_channels, -1)
    in_rows, out_rows = grad_w_matrix.shape[1], g.out_channels // g.groups
    grad_planes = grad_y.reshape(g.batch, g.out_channels, g.out_h * g.out_w)
    work = _Workspace(x.dtype)
    for start, count in _chunks(g, x.itemsize):
        cols = _columns(x, g, start, count, work)
        grad_matrix = _gradient_matrix(grad_planes, start, count, threads, work)
        for group in range(g.groups):
            out_slice, in_slice = _group_rows(g, group, out_rows), _group_rows(g, group, in_rows)
            grad_w_matrix[out_slice] += grad_matrix[out_slice] @ cols[in_slice].T
    return grad_w


def conv2d_grad_bias(grad_output) -> np.ndarray:
    """Gradient w.r.t. the bias: grad_output (N, C_out, H_out, W_out) summed to (C_out,)."""
    grad_y = geo.as_float_array(grad_output, "grad_output", ndim=4)
    grad_b = np.empty(grad_y.shape[1], grad_y.dtype)
    _conv_direct.conv2d_grad_bias(grad_y, grad_b, get_num_threads())
    return grad_b
