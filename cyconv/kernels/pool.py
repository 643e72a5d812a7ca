"""Max, average and adaptive average pooling on NumPy arrays with the compiled kernels.

Same signatures as ``cyconv.reference``. Arguments are checked here, once, by
``cyconv.geometry``; the Cython loops (``_pool.pyx``) trust them. The kernels see every
(N, C, H, W) array as N*C independent planes (N*C, H, W) and run over planes in parallel.
"""

from __future__ import annotations

import math

import numpy as np

from .. import geometry as geo
from . import _pool
from .conv import _workspace  # per-thread rows on cache lines of their own
from .threads import threads_for

__all__ = ["max_pool2d", "max_pool2d_grad_input", "avg_pool2d", "avg_pool2d_grad_input",
           "adaptive_avg_pool2d", "adaptive_avg_pool2d_grad_input"]

#: Window cells (output values x kernel area) per thread below which pooling runs on fewer
#: threads (threads_for). Measured on the project's 2-core machine, 1 thread against 2:
#: 2x2 max pooling of (64, 16, 8, 8), 2**16 cells, 60 us against 78 us forward and 40
#: against 67 backward; of (64, 6, 24, 24), 3.4 * 2**16 cells, 96 against 78 forward;
#: 3x3 stride-2 average pooling of (64, 16, 8, 8), 2.2 * 2**16 cells, 220 against 163.
POOL_ITEMS_PER_THREAD = 2 ** 16


def _threads(output_shape, kernel=(1, 1)) -> int:
    """Threads for a pooling pass that reads ``kernel`` cells for each output value."""
    return threads_for(math.prod(output_shape) * kernel[0] * kernel[1], POOL_ITEMS_PER_THREAD)


def _planes(array: np.ndarray) -> np.ndarray:
    """View (N, C, H, W) as (N*C, H, W)."""
    n, c, h, w = array.shape
    return array.reshape(n * c, h, w)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max pooling: input (N, C, H, W) -> output (N, C, H_out, W_out).

    With ``return_indices`` also returns the arg-max of each window as an int64 array of the
    output's shape, holding flat positions ``h * W + w`` in the input plane (PyTorch's
    convention); ``max_pool2d_grad_input`` takes it. Padding counts as -inf.
    """
    x, g, return_indices = geo.check_max_pool2d(input, kernel_size, stride, padding, dilation,
                                                ceil_mode, return_indices)
    y = np.empty(g.output_shape, x.dtype)
    argmax = np.empty(g.output_shape, np.int64)
    _pool.max_pool2d_forward(_planes(x), _planes(y), _planes(argmax), *g.kernel, *g.stride,
                             *g.padding, *g.dilation, _threads(y.shape, g.kernel))
    return (y, argmax) if return_indices else y


def max_pool2d_grad_input(grad_output, indices, input_shape) -> np.ndarray:
    """Gradient w.r.t. the input of max pooling: each output's gradient goes to its arg-max.

    grad_output and indices (N, C, H_out, W_out) -> grad_input of ``input_shape``.
    """
    grad_y, indices, input_shape = geo.check_max_pool2d_grad_input(
        grad_output, indices, input_shape, check_range=False)
    n, c, h, w = input_shape
    grad_x = np.empty(input_shape, grad_y.dtype)         # the kernel zeroes it, plane by plane
    if indices.size:
        # the kernel finds the indices' range as it goes (and skips any outside the plane)
        low, high = _pool.max_pool2d_backward(_planes(grad_y), _planes(indices),
                                              grad_x.reshape(n * c, h * w),
                                              _threads(grad_x.shape))
        geo.check_pool_index_range(low, high, input_shape)
    else:
        grad_x[...] = 0
    return grad_x


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True) -> np.ndarray:
    """Average pooling: input (N, C, H, W) -> output (N, C, H_out, W_out).

    The divisor is PyTorch's: the window clipped to the padded input with
    ``count_include_pad``, the window clipped to the input without.
    """
    x, g, count_include_pad = geo.check_avg_pool2d(input, kernel_size, stride, padding, ceil_mode,
                                                   count_include_pad)
    y = np.empty(g.output_shape, x.dtype)
    _pool.avg_pool2d_forward(_planes(x), _planes(y), *g.kernel, *g.stride, *g.padding,
                             count_include_pad, _threads(y.shape, g.kernel))
    return y


def avg_pool2d_grad_input(grad_output, input_shape, kernel_size, stride=None, padding=0,
                          ceil_mode=False, count_include_pad=True) -> np.ndarray:
    """Gradient w.r.t. the input of average pooling.

    grad_output (N, C, H_out, W_out) -> grad_input of ``input_shape`` (N, C, H, W).
    """
    grad_y, g, count_include_pad = geo.check_avg_pool2d_grad_input(
        grad_output, input_shape, kernel_size, stride, padding, ceil_mode, count_include_pad)
    grad_x = np.empty(g.input_shape, grad_y.dtype)       # the kernel writes every cell
    threads = _threads(grad_y.shape, g.kernel)
    rows = _workspace("avg_pool_rows", threads, g.out_w + g.in_w, grad_y.dtype)
    _pool.avg_pool2d_backward(_planes(grad_y), _planes(grad_x), rows, *g.kernel, *g.stride,
                              *g.padding, count_include_pad, threads)
    return grad_x


def adaptive_avg_pool2d(input, output_size) -> np.ndarray:
    """Adaptive average pooling to ``output_size`` (int, (h, w), None keeps a dimension).

    input (N, C, H, W) -> (N, C, out_h, out_w); output i averages input rows
    floor(i*H/out_h) .. ceil((i+1)*H/out_h) - 1, likewise for columns.
    ``output_size=1`` is global average pooling.
    """
    x, out_h, out_w = geo.check_adaptive_avg_pool2d(input, output_size)
    y = np.empty(x.shape[:2] + (out_h, out_w), x.dtype)
    _pool.adaptive_avg_pool2d_forward(_planes(x), _planes(y), _threads(x.shape))
    return y


def adaptive_avg_pool2d_grad_input(grad_output, input_shape) -> np.ndarray:
    """Gradient w.r.t. the input of adaptive average pooling.

    grad_output (N, C, out_h, out_w) -> grad_input of ``input_shape`` (N, C, H, W).
    """
    grad_y, input_shape, _, _ = geo.check_adaptive_avg_pool2d_grad_input(grad_output, input_shape)
    grad_x = np.zeros(input_shape, grad_y.dtype)
    _pool.adaptive_avg_pool2d_backward(_planes(grad_y), _planes(grad_x), _threads(input_shape))
    return grad_x
