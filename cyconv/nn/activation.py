"""Activation layers: element-wise non-linearities and (log-)softmax. No parameters.

``inplace=True`` is accepted for compatibility with PyTorch code, but cyconv always
computes out of place (the result is the same; only the memory use differs).
"""

from __future__ import annotations

import numbers
import warnings

from .. import functional as F
from ._utils import as_input, is_int
from .module import Module

__all__ = ["ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax"]


class ReLU(Module):
    """``max(0, x)`` element-wise; any shape in, the same shape out."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = bool(inplace)

    def forward(self, input):
        return F.relu(as_input(input, "ReLU"))

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class LeakyReLU(Module):
    """``x`` for ``x >= 0``, ``negative_slope * x`` otherwise; any shape."""

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__()
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, numbers.Real):
            raise TypeError(f"negative_slope must be a number, got {negative_slope!r}")
        self.negative_slope = negative_slope
        self.inplace = bool(inplace)

    def forward(self, input):
        return F.leaky_relu(as_input(input, "LeakyReLU"), self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class Sigmoid(Module):
    """``1 / (1 + exp(-x))`` element-wise; any shape."""

    def forward(self, input):
        return F.sigmoid(as_input(input, "Sigmoid"))


class Tanh(Module):
    """``tanh(x)`` element-wise; any shape."""

    def forward(self, input):
        return F.tanh(as_input(input, "Tanh"))


def _legacy_softmax_dim(ndim: int, layer: str) -> int:
    warnings.warn(f"{layer} without dim: choosing dim={0 if ndim in (0, 1, 3) else 1} as PyTorch "
                  f"does; pass dim= explicitly", UserWarning, stacklevel=3)
    return 0 if ndim in (0, 1, 3) else 1


class _SoftmaxBase(Module):
    def __init__(self, dim: int | None = None):
        super().__init__()
        if dim is not None and not is_int(dim):
            raise TypeError(f"dim must be an int, got {dim!r}")
        self.dim = dim

    def _dim(self, x) -> int:
        return _legacy_softmax_dim(x.ndim, type(self).__name__) if self.dim is None else self.dim

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Softmax(_SoftmaxBase):
    """``exp(x) / sum(exp(x))`` along ``dim``: values in (0, 1) summing to 1 along ``dim``."""

    def forward(self, input):
        x = as_input(input, "Softmax")
        return F.softmax(x, self._dim(x))


class LogSoftmax(_SoftmaxBase):
    """``log(softmax(x))`` along ``dim``, computed stably (for use with a NLL loss)."""

    def forward(self, input):
        x = as_input(input, "LogSoftmax")
        return F.log_softmax(x, self._dim(x))
