"""``Linear`` (a fully connected layer) and ``Identity``."""

from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from . import init
from ._utils import as_input, check_input_dtype, check_int, float_dtype
from .module import Module
from .parameter import Parameter

__all__ = ["Linear", "Identity"]


class Linear(Module):
    """``y = x @ weight.T + bias``, as ``torch.nn.Linear``.

    Shapes: input ``(*, in_features)``, weight ``(out_features, in_features)``, bias
    ``(out_features,)``, output ``(*, out_features)``. Initialisation as PyTorch's: weight
    ``kaiming_uniform_(a=sqrt(5))`` = ``U(-1/sqrt(in_features), 1/sqrt(in_features))``, bias
    from the same range. float32 unless ``dtype=np.float64``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=None):
        super().__init__()
        self.in_features = check_int(in_features, "in_features")
        self.out_features = check_int(out_features, "out_features")
        dtype = float_dtype(dtype)
        self.weight = Parameter(np.empty((out_features, in_features), dtype))
        if bias:
            self.bias = Parameter(np.empty(out_features, dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features)
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input):
        x = as_input(input, "Linear")
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear expected input with {self.in_features} features in its last "
                             f"dimension, got shape {x.shape}")
        check_input_dtype(x, self.weight.dtype, "Linear")
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Identity(Module):
    """Returns its input unchanged (a placeholder, e.g. to remove a layer from a model).

    Accepts and ignores any constructor arguments, as PyTorch's.
    """

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input
