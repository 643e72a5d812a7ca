"""Argument checks shared by the layers: refuse bad hyper-parameters when a layer is built.

Catching a mistake in ``Conv2d(3, 16, kernel_size=0)`` at construction time, with the name
of the argument in the message, is kinder than an error from deep inside a kernel at the
first forward pass.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..autograd import Tensor


def is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(value, name: str, minimum: int = 1) -> int:
    """``value`` as a Python int, at least ``minimum``; TypeError/ValueError otherwise."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        wanted = "positive" if minimum == 1 else f"at least {minimum}"
        raise ValueError(f"{name} must be {wanted}, got {value}")
    return int(value)


def check_pair(value, name: str, minimum: int) -> tuple[int, int]:
    """``int`` or ``(h, w)`` as a ``(h, w)`` tuple of ints, each at least ``minimum``."""
    if is_int(value):
        pair = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(is_int(v) for v in value):
        pair = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{name} must be an int or a pair of ints (h, w), got {value!r}")
    if min(pair) < minimum:
        wanted = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return pair


def check_probability(p, name: str = "p") -> float:
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"{name} must be a number between 0 and 1, got {p!r}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {p}")
    return float(p)


def float_dtype(dtype) -> np.dtype:
    """The dtype of a layer's parameters: float32 unless float64 is asked for."""
    if dtype is None:
        return np.dtype(np.float32)
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def as_input(x, layer: str) -> Tensor:
    """The input of a layer as a Tensor (an ndarray is wrapped, without a graph)."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray):
        return Tensor(x)
    raise TypeError(f"{layer} expects a cyconv.Tensor (or numpy.ndarray) input, "
                    f"got {type(x).__name__}")


def check_input_dtype(x: Tensor, dtype, layer: str) -> None:
    """Refuse an input whose dtype differs from the layer's parameters (as PyTorch does).

    NumPy would silently upcast float32 @ float64 to float64 and hand float64 gradients to
    float32 parameters; an explicit error teaches the fix instead.
    """
    if x.dtype != dtype:
        fix = "x.float() or model.double()" if x.dtype == np.float64 else "x.double() or model.float()"
        raise TypeError(f"{layer} has {np.dtype(dtype)} parameters but the input is {x.dtype}; "
                        f"convert one of them ({fix})")
