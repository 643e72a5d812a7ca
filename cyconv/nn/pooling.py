"""Pooling layers: ``MaxPool2d``, ``AvgPool2d``, ``AdaptiveAvgPool2d`` (no parameters)."""

from __future__ import annotations

from .. import functional as F
from ._utils import as_input, check_pair, is_int
from .module import Module

__all__ = ["MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d"]


def _check_4d(x, layer: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{layer} expects a 4-D input (N, C, H, W), got a {x.ndim}-D input of "
                         f"shape {x.shape}")


class MaxPool2d(Module):
    """Maximum over each ``kernel_size`` window, as ``torch.nn.MaxPool2d``.

    Input ``(N, C, H, W)``, output ``(N, C, H_out, W_out)`` with
    ``H_out = floor((H + 2*padding - dilation*(k - 1) - 1) / stride) + 1`` (ceil with
    ``ceil_mode``). ``stride`` defaults to ``kernel_size`` (non-overlapping windows).
    Padding counts as -inf. With ``return_indices`` the forward returns
    ``(output, indices)``, indices into each flattened ``H*W`` plane.
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1,
                 return_indices: bool = False, ceil_mode: bool = False):
        super().__init__()
        check_pair(kernel_size, "kernel_size", 1)
        if stride is not None:
            check_pair(stride, "stride", 1)
        check_pair(padding, "padding", 0)
        check_pair(dilation, "dilation", 1)
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding
        self.dilation = dilation
        self.return_indices = bool(return_indices)
        self.ceil_mode = bool(ceil_mode)

    def forward(self, input):
        x = as_input(input, "MaxPool2d")
        _check_4d(x, "MaxPool2d")
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                            ceil_mode=self.ceil_mode, return_indices=self.return_indices)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    """Mean over each ``kernel_size`` window, as ``torch.nn.AvgPool2d``.

    Output size as for :class:`MaxPool2d` (without dilation). ``count_include_pad`` decides
    whether padded zeros count in the divisor of windows that overlap the padding.
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True):
        super().__init__()
        check_pair(kernel_size, "kernel_size", 1)
        if stride is not None:
            check_pair(stride, "stride", 1)
        check_pair(padding, "padding", 0)
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding
        self.ceil_mode = bool(ceil_mode)
        self.count_include_pad = bool(count_include_pad)

    def forward(self, input):
        x = as_input(input, "AvgPool2d")
        _check_4d(x, "AvgPool2d")
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed ``output_size`` whatever the input size.

    ``output_size`` is an int or ``(h, w)``; an entry of None keeps that input size. Output window ``i`` of ``out`` along a dimension
    of size ``n`` covers ``[floor(i*n/out), ceil((i+1)*n/out))``. ``AdaptiveAvgPool2d(1)`` is
    global average pooling: ``(N, C, H, W) -> (N, C, 1, 1)``.
    """

    def __init__(self, output_size):
        super().__init__()
        sizes = output_size if isinstance(output_size, (tuple, list)) else (output_size,)
        if not 1 <= len(sizes) <= 2 or not all(s is None or (is_int(s) and s >= 1) for s in sizes):
            raise ValueError(f"output_size must be a positive int or a pair (h, w) of positive "
                             f"ints or None (keep that size), got {output_size!r}")
        self.output_size = output_size

    def forward(self, input):
        x = as_input(input, "AdaptiveAvgPool2d")
        _check_4d(x, "AdaptiveAvgPool2d")
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
