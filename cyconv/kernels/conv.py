"""2-D convolution on NumPy arrays with the compiled kernels: forward and gradients.

Same signatures as ``cyconv.reference`` (plus a keyword-only ``algorithm``), so tests and
benchmarks can swap one for the other. Arguments are checked here, once, by
``cyconv.geometry``; the Cython loops trust them.

Two algorithms compute the same numbers:

- ``"direct"``: the loop-level kernel of ``_conv_direct.pyx``, the formula written as loops.
  It needs no workspace and wins where there is little work per output (depthwise
  convolutions).
- ``"im2col"``: ``_im2col.pyx`` copies the receptive fields of a band of output rows into
  the columns of a matrix and multiplies it by the weight matrix with BLAS; every thread
  runs that pipeline on its own bands. It wins where each output sums over many inputs
  (C_in/groups * kH * kW large).

``algorithm="auto"`` (the default) picks one with :func:`choose_algorithm`.
"""

from __future__ import annotations

import threading

import numpy as np

from .. import geometry as geo
from . import _conv_direct, _im2col
from .threads import get_num_threads

__all__ = ["conv2d", "conv2d_grad_input", "conv2d_grad_weight", "conv2d_grad_bias",
           "choose_algorithm", "ALGORITHMS"]

ALGORITHMS = ("auto", "direct", "im2col")

#: Size (bytes) of one thread's im2col columns: blocks of output columns are chosen so that
#: their columns fit, and stay in the cache between the copy and the matrix product.
BAND_BYTES = 2**20

#: Below this many multiply-adds per output value (C_in/groups * kH * kW), "auto" picks the
#: direct loops; the matrix product does not pay for the im2col copy there.
DIRECT_MAX_REDUCTION = 16


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


def im2col_blocks(g: geo.ConvGeometry, itemsize: int, threads: int,
                  whole_images: bool = False) -> tuple[int, int]:
    """How the im2col kernels cut the output into blocks: (images per block, rows per band).

    A block's columns should fit in BAND_BYTES, so that they stay in the cache between the
    copy and the matrix product: small images go several to a block, large ones are cut
    into bands of output rows (unless ``whole_images``; col2im needs whole images). Blocks
    are made smaller when that gives every thread at least two of them.
    """
    column_rows = (g.in_channels // (g.groups if whole_images else 1)) * g.kernel_h * g.kernel_w
    row_bytes = column_rows * g.out_w * itemsize            # the columns of one output row
    enough = 2 * threads
    if whole_images or row_bytes * g.out_h <= BAND_BYTES:
        images = max(1, min(g.batch, BAND_BYTES // (row_bytes * g.out_h)))
        # as many blocks as that needs, but at least `enough`, and a multiple of the threads
        blocks = max(enough, -(-g.batch // images))
        blocks = min(g.batch, -(-blocks // threads) * threads)
        images = -(-g.batch // blocks)
        if images > 1 or whole_images or g.batch >= enough:
            return images, g.out_h
    rows = max(1, min(g.out_h, BAND_BYTES // row_bytes))    # bands of rows of one image
    while rows > 1 and g.batch * -(-g.out_h // rows) < enough:
        rows = -(-rows // 2)
    return 1, rows


def _workspace(name: str, threads: int, size: int, dtype) -> np.ndarray:
    """A (threads, size) scratch matrix, kept per Python thread and reused across calls.

    A fresh multi-megabyte array per call would be fresh memory from the operating system,
    and touching its pages for the first time costs about as much as the im2col copy.
    """
    buffers = _local.__dict__.setdefault("buffers", {})
    key = (name, np.dtype(dtype))
    buffer = buffers.get(key)
    if buffer is None or buffer.size < threads * size:
        buffer = buffers[key] = np.empty(threads * size, dtype)
    return buffer[:threads * size].reshape(threads, size)


_local = threading.local()


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
    images, band = im2col_blocks(g, x.itemsize, threads)
    width = images * band * g.out_w
    columns = _workspace("columns", threads, g.in_channels * g.kernel_h * g.kernel_w * width, x.dtype)
    product = _workspace("product", threads, g.out_channels * width if images > 1 else 1, x.dtype)
    _im2col.conv2d_forward(x, weight.reshape(g.out_channels, -1),
                           bias if bias is not None else np.empty(0, x.dtype),
                           y.reshape(g.batch, g.out_channels, -1), columns, product, images, band,
                           g.kernel_h, g.kernel_w, g.out_h, g.out_w, *_loop_args(g), g.groups,
                           bias is not None, threads)
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

    images, _ = im2col_blocks(g, weight.itemsize, threads, whole_images=True)
    width = images * g.out_h * g.out_w
    per_group = (g.in_channels // g.groups) * g.kernel_h * g.kernel_w
    columns = _workspace("grad_columns", threads, per_group * width, weight.dtype)
    gathered = _workspace("gathered", threads, (g.out_channels // g.groups) * width if images > 1 else 1,
                          weight.dtype)
    _im2col.conv2d_grad_input(grad_y.reshape(g.batch, g.out_channels, -1),
                              weight.reshape(g.out_channels, -1), grad_x, columns, gathered, images,
                              g.kernel_h, g.kernel_w, g.out_h, g.out_w, *_loop_args(g), g.groups,
                              threads)
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

    images, band = im2col_blocks(g, x.itemsize, threads)
    width = images * band * g.out_w
    columns = _workspace("columns", threads, g.in_channels * g.kernel_h * g.kernel_w * width, x.dtype)
    gathered = _workspace("gathered", threads, g.out_channels * width if images > 1 else 1, x.dtype)
    partial = np.zeros((threads, g.out_channels, (g.in_channels // g.groups) * g.kernel_h * g.kernel_w),
                       x.dtype)
    _im2col.conv2d_grad_weight(x, grad_y.reshape(g.batch, g.out_channels, -1), partial, columns,
                               gathered, images, band, g.kernel_h, g.kernel_w, g.out_h, g.out_w,
                               *_loop_args(g), g.groups, threads)
    return partial.sum(axis=0).reshape(g.weight_shape)


def conv2d_grad_bias(grad_output) -> np.ndarray:
    """Gradient w.r.t. the bias: grad_output (N, C_out, H_out, W_out) summed to (C_out,)."""
    grad_y = geo.as_float_array(grad_output, "grad_output", ndim=4)
    grad_b = np.empty(grad_y.shape[1], grad_y.dtype)
    _conv_direct.conv2d_grad_bias(grad_y, grad_b, get_num_threads())
    return grad_b
