"""ReLU and batch normalisation on NumPy arrays with the compiled kernels.

Same signatures as their counterparts in ``cyconv.reference``. Arguments are checked here,
once; the Cython loops (``_elementwise.pyx``) trust them.
"""

from __future__ import annotations

import numpy as np

from .. import geometry as geo
from . import _elementwise
from .threads import threads_for

#: Values per thread below which the loops run on fewer threads (threads_for). Measured
#: on the project's 2-core machine, 1 thread against 2, interleaved: ReLU and its gradient
#: on 2**18 values 68 us against 100 us, on 2**19 level, on 2**20 290 us against 192 us;
#: batch norm's forward pass on 2**15 values 26 us against 40 us, on 2**17 83 against 65.
RELU_ITEMS_PER_THREAD = 2 ** 18
BATCH_NORM_ITEMS_PER_THREAD = 2 ** 16

__all__ = ["relu", "relu_grad_input", "batch_norm_forward", "batch_norm_backward"]


def _float_array(array, name: str) -> np.ndarray:
    return geo.as_float_array(array, name)


def relu(input) -> np.ndarray:
    """max(x, 0) elementwise; any shape."""
    x = _float_array(input, "input")
    y = np.empty_like(x)
    _elementwise.relu_forward(x.reshape(-1), y.reshape(-1),
                              threads_for(x.size, RELU_ITEMS_PER_THREAD))
    return y


def relu_grad_input(grad_output, output) -> np.ndarray:
    """Gradient of relu: grad_output where the output was positive, 0 elsewhere."""
    g = _float_array(grad_output, "grad_output")
    y = _float_array(output, "output")
    if g.shape != y.shape:
        raise ValueError(f"grad_output must have the output's shape {y.shape}, got {g.shape}")
    geo.check_same_dtype("output", y, grad_output=g)
    grad_x = np.empty_like(g)
    _elementwise.relu_backward(g.reshape(-1), y.reshape(-1), grad_x.reshape(-1),
                               threads_for(g.size, RELU_ITEMS_PER_THREAD))
    return grad_x


def _channels_view(x: np.ndarray, name: str) -> np.ndarray:
    """(N, C, ...) as (N, C, S): the channel axis second, everything after it flattened."""
    if x.ndim < 2:
        raise ValueError(f"{name} must be (N, C), (N, C, L) or (N, C, H, W), got shape {x.shape}")
    return x.reshape(x.shape[0], x.shape[1], -1)


def _channel_param(param, name: str, x: np.ndarray) -> np.ndarray:
    """A per-channel parameter as a (C,) array of x's dtype, or an empty array if None."""
    if param is None:
        return np.empty(0, x.dtype)
    param = _float_array(param, name)
    if param.shape != (x.shape[1],):
        raise ValueError(f"{name} must have shape ({x.shape[1]},), one value per channel, "
                         f"got {param.shape}")
    geo.check_same_dtype("input", x, **{name: param})
    return param


def batch_norm_forward(input, weight=None, bias=None, eps: float = 1e-5):
    """Batch normalisation with the batch's own statistics (training mode).

    input (N, C, ...) -> (output of the same shape, mean (C,), var (C,)), with the biased
    variance (divided by m = N * prod(...)) and, per channel,
    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` (weight/bias optional, together).
    mean and var are float64.
    """
    x = _float_array(input, "input")
    x3 = _channels_view(x, "input")
    if x3.shape[0] * x3.shape[2] <= 1:
        raise ValueError(f"batch_norm in training needs more than one value per channel, "
                         f"got input of shape {x.shape}")
    if (weight is None) != (bias is None):
        raise ValueError("weight and bias must both be given or both be None")
    w, b = _channel_param(weight, "weight", x), _channel_param(bias, "bias", x)
    y = np.empty_like(x)
    mean, var = np.empty(x.shape[1]), np.empty(x.shape[1])
    _elementwise.batch_norm_forward(x3, w, b, y.reshape(x3.shape), mean, var, float(eps),
                                    weight is not None,
                                    threads_for(x.size, BATCH_NORM_ITEMS_PER_THREAD))
    return y, mean, var


def batch_norm_backward(grad_output, input, weight, mean, var, eps: float = 1e-5,
                        needs_grad_input: bool = True):
    """Gradients of batch_norm_forward: (grad_input or None, grad_weight (C,), grad_bias (C,)).

    grad_weight and grad_bias are float64 sums (``sum g * x_hat`` and ``sum g``); cast them
    to the parameters' dtype. ``weight`` may be None (no affine transform).
    """
    x = _float_array(input, "input")
    x3 = _channels_view(x, "input")
    g = _float_array(grad_output, "grad_output")
    if g.shape != x.shape:
        raise ValueError(f"grad_output must have the input's shape {x.shape}, got {g.shape}")
    geo.check_same_dtype("input", x, grad_output=g)
    w = _channel_param(weight, "weight", x)
    mean = np.ascontiguousarray(mean, dtype=np.float64)
    var = np.ascontiguousarray(var, dtype=np.float64)
    if mean.shape != (x.shape[1],) or var.shape != (x.shape[1],):
        raise ValueError(f"mean and var must have shape ({x.shape[1]},), got {mean.shape} and "
                         f"{var.shape}")
    grad_x = np.empty_like(x) if needs_grad_input else np.empty((1, 1, 1), x.dtype)
    grad_w, grad_b = np.empty(x.shape[1]), np.empty(x.shape[1])
    _elementwise.batch_norm_backward(g.reshape(x3.shape), x3, w, mean, var, float(eps),
                                     grad_x.reshape(x3.shape) if needs_grad_input else grad_x,
                                     grad_w, grad_b, weight is not None, bool(needs_grad_input),
                                     threads_for(x.size, BATCH_NORM_ITEMS_PER_THREAD))
    return (grad_x if needs_grad_input else None), grad_w, grad_b
