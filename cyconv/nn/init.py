"""Weight initialisation, in place, as ``torch.nn.init``.

Every function fills ``tensor.data`` (a Tensor/Parameter, or an ndarray) in place, keeps its
dtype, returns the tensor, and draws from :func:`cyconv.random.generator`, so
``cyconv.manual_seed(n)`` before building a model makes its initial weights reproducible.

Why the scale matters: with ``fan_in`` inputs of variance 1, a weighted sum has variance
``fan_in * Var(w)``. Kaiming (He) initialisation picks ``Var(w) = gain**2 / fan_in`` so that
the signal keeps its size through many ReLU layers; Xavier (Glorot) picks
``Var(w) = gain**2 * 2 / (fan_in + fan_out)``, a compromise between the forward and the
backward pass. A uniform distribution on ``[-b, b]`` has variance ``b**2 / 3``, hence the
``sqrt(3)`` in the uniform variants.

For a convolution weight ``(C_out, C_in / groups, kH, kW)``:
``fan_in = C_in / groups * kH * kW`` and ``fan_out = C_out * kH * kW``.
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from ..autograd import Tensor
from ..random import generator

__all__ = ["calculate_gain", "uniform_", "normal_", "constant_", "zeros_", "ones_",
           "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_", "xavier_normal_"]


def _array(tensor) -> np.ndarray:
    if isinstance(tensor, Tensor):
        return tensor.data
    if isinstance(tensor, np.ndarray):
        return tensor
    raise TypeError(f"init functions fill a Tensor or ndarray in place, got {type(tensor).__name__}")


def _fill(tensor, values) -> object:
    array = _array(tensor)
    array[...] = values
    return tensor


def calculate_gain(nonlinearity: str, param=None) -> float:
    """The factor by which ``nonlinearity`` changes the standard deviation of its input.

    ============================  =================================
    nonlinearity                  gain
    ============================  =================================
    linear, conv*, sigmoid        1
    tanh                          5/3
    relu                          sqrt(2)
    leaky_relu                    sqrt(2 / (1 + negative_slope**2))
    selu                          3/4
    ============================  =================================
    """
    if nonlinearity in ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                        "conv_transpose2d", "conv_transpose3d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, numbers.Real) and not isinstance(param, bool):
            slope = float(param)
        else:
            raise ValueError(f"negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def _calculate_fan_in_and_fan_out(tensor) -> tuple[int, int]:
    array = _array(tensor)
    if array.ndim < 2:
        raise ValueError(f"fan in and fan out need a tensor with at least 2 dimensions, got "
                         f"shape {array.shape}")
    receptive_field = int(np.prod(array.shape[2:])) if array.ndim > 2 else 1
    return array.shape[1] * receptive_field, array.shape[0] * receptive_field


def _fan(tensor, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def _empty(tensor) -> bool:
    if _array(tensor).size == 0:
        warnings.warn("initialising a zero-element tensor is a no-op", stacklevel=3)
        return True
    return False


def uniform_(tensor, a: float = 0.0, b: float = 1.0):
    """Fill with values drawn uniformly from ``[a, b)``."""
    if a > b:
        raise ValueError(f"uniform_ needs a <= b, got a={a}, b={b}")
    return _fill(tensor, generator().uniform(a, b, size=_array(tensor).shape))


def normal_(tensor, mean: float = 0.0, std: float = 1.0):
    """Fill with values drawn from the normal distribution N(mean, std**2)."""
    if std < 0:
        raise ValueError(f"normal_ needs std >= 0, got {std}")
    return _fill(tensor, generator().normal(mean, std, size=_array(tensor).shape))


def constant_(tensor, val: float):
    """Fill with ``val``."""
    return _fill(tensor, val)


def zeros_(tensor):
    return _fill(tensor, 0)


def ones_(tensor):
    return _fill(tensor, 1)


def kaiming_uniform_(tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"):
    """He initialisation, uniform: ``U(-bound, bound)``, ``bound = gain * sqrt(3 / fan)``.

    ``a`` is the negative slope of the leaky ReLU that follows (0 for ReLU). PyTorch's
    default for Conv2d and Linear is ``a=sqrt(5)``, which gives ``gain = sqrt(1/3)`` and so
    ``bound = 1 / sqrt(fan_in)``.
    """
    if _empty(tensor):
        return tensor
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"):
    """He initialisation, normal: ``N(0, std**2)``, ``std = gain / sqrt(fan)``."""
    if _empty(tensor):
        return tensor
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    return normal_(tensor, 0.0, std)


def xavier_uniform_(tensor, gain: float = 1.0):
    """Glorot initialisation, uniform: ``bound = gain * sqrt(6 / (fan_in + fan_out))``."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor, gain: float = 1.0):
    """Glorot initialisation, normal: ``std = gain * sqrt(2 / (fan_in + fan_out))``."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))
