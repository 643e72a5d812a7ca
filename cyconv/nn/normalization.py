"""Batch normalisation: ``BatchNorm1d`` and ``BatchNorm2d``.

For each channel ``c``, with the mean ``mu_c`` and the biased variance ``var_c`` over every
position of that channel in the batch (all axes but 1)::

    y = (x - mu_c) / sqrt(var_c + eps) * weight[c] + bias[c]

In training mode the batch statistics are used, and the running estimates are updated::

    running_mean = (1 - momentum) * running_mean + momentum * mu_c
    running_var  = (1 - momentum) * running_var  + momentum * var_c * n / (n - 1)

(the *unbiased* variance, ``n`` values per channel, as PyTorch). With ``momentum=None`` the
update is a cumulative average: momentum ``1 / num_batches_tracked``. In eval mode the
running estimates replace the batch statistics, so the output of one sample no longer
depends on the others in its batch.
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import functional as F
from ._utils import as_input, check_input_dtype, check_int, float_dtype
from .module import Module
from .parameter import Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d"]


class _BatchNorm(Module):
    """Shared by BatchNorm1d and BatchNorm2d; they differ only in the input ndim allowed."""

    _allowed_ndim: tuple = ()
    _layout: str = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, dtype=None):
        super().__init__()
        self.num_features = check_int(num_features, "num_features")
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or eps <= 0:
            raise ValueError(f"eps must be a positive number, got {eps!r}")
        if momentum is not None and (isinstance(momentum, bool) or not isinstance(momentum, numbers.Real)
                                     or not 0 <= momentum <= 1):
            raise ValueError(f"momentum must be a number in [0, 1] or None, got {momentum!r}")
        self.eps = eps
        self.momentum = momentum
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        dtype = float_dtype(dtype)
        if self.affine:
            self.weight = Parameter(np.ones(num_features, dtype))
            self.bias = Parameter(np.zeros(num_features, dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, no batches seen."""
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            self.weight.data[...] = 1
            self.bias.data[...] = 0

    def _check_input(self, x) -> None:
        name = type(self).__name__
        if x.ndim not in self._allowed_ndim:
            raise ValueError(f"{name} expects a {self._layout} input, got a {x.ndim}-D input of "
                             f"shape {x.shape}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"{name} expected input with {self.num_features} channels "
                             f"(num_features), got {x.shape[1]} channels (input shape {x.shape})")
        if self.training and x.data.size // x.shape[1] <= 1:
            raise ValueError(f"{name} in training mode needs more than 1 value per channel to "
                             f"compute batch statistics, got input shape {x.shape}")

    def forward(self, input):
        x = as_input(input, type(self).__name__)
        self._check_input(x)
        if self.affine:
            check_input_dtype(x, self.weight.dtype, type(self).__name__)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            np.add(self.num_batches_tracked, 1, out=self.num_batches_tracked)
            if self.momentum is None:  # cumulative moving average
                momentum = 1.0 / float(self.num_batches_tracked)
        # Batch statistics in training, or when there are no running estimates to use.
        use_batch_stats = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        return F.batch_norm(x, self.running_mean if track else None,
                            self.running_var if track else None, self.weight, self.bias,
                            use_batch_stats, momentum, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of ``(N, C)`` or ``(N, C, L)`` inputs (after Linear or Conv1d).

    Statistics over N (and L) for each of the C = ``num_features`` channels. Parameters
    ``weight`` (init 1) and ``bias`` (init 0) of shape ``(C,)`` if ``affine``; buffers
    ``running_mean``, ``running_var`` ``(C,)`` and ``num_batches_tracked`` (int64, 0-d) if
    ``track_running_stats``. See the module docstring for the formulas.
    """

    _allowed_ndim = (2, 3)
    _layout = "2-D (N, C) or 3-D (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of ``(N, C, H, W)`` inputs (after Conv2d), statistics over N, H, W.

    Parameters and buffers as :class:`BatchNorm1d`; the output has the input's shape.
    """

    _allowed_ndim = (4,)
    _layout = "4-D (N, C, H, W)"
