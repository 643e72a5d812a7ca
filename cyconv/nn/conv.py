"""``Conv2d``: a 2-D convolution layer with learnable weight and bias."""

from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..geometry import conv_padding
from . import init
from ._utils import as_input, check_input_dtype, check_int, check_pair, float_dtype
from .module import Module
from .parameter import Parameter

__all__ = ["Conv2d"]

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


class Conv2d(Module):
    """2-D convolution (cross-correlation) over an NCHW input, as ``torch.nn.Conv2d``.

    Shapes: input ``(N, C_in, H, W)`` (or unbatched ``(C_in, H, W)``), weight
    ``(C_out, C_in // groups, kH, kW)``, bias ``(C_out,)``, output ``(N, C_out, H_out, W_out)``
    with ``H_out = floor((H + 2*padding - dilation*(kH - 1) - 1) / stride) + 1``.

    ``padding`` is an int, ``(h, w)``, ``'valid'`` (none) or ``'same'`` (output as large as
    the input; stride 1 only; an odd total puts the extra row/column at the bottom/right).
    ``padding_mode`` says what the padding is filled with: ``'zeros'``, ``'reflect'``
    (mirror without repeating the edge), ``'replicate'`` (repeat the edge) or ``'circular'``
    (wrap around). Other modes than zeros pad the input with ``functional.pad`` first, then
    convolve without padding.

    Initialisation (PyTorch's): weight ``kaiming_uniform_(a=sqrt(5))``, which is
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` with ``fan_in = C_in // groups * kH * kW``; bias
    from the same range. Parameters are float32 unless ``dtype=np.float64``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 dtype=None):
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels")
        self.out_channels = check_int(out_channels, "out_channels")
        self.groups = check_int(groups, "groups")
        if in_channels % groups:
            raise ValueError(f"in_channels must be divisible by groups: in_channels={in_channels}, "
                             f"groups={groups}")
        if out_channels % groups:
            raise ValueError(f"out_channels must be divisible by groups: out_channels={out_channels}, "
                             f"groups={groups}")
        self.kernel_size = check_pair(kernel_size, "kernel_size", 1)
        self.stride = check_pair(stride, "stride", 1)
        self.dilation = check_pair(dilation, "dilation", 1)
        if isinstance(padding, str):
            if padding not in ("valid", "same"):
                raise ValueError(f"padding must be an int, a pair (h, w), 'valid' or 'same', "
                                 f"got {padding!r}")
            if padding == "same" and self.stride != (1, 1):
                raise ValueError(f"padding='same' is not supported for strided convolutions "
                                 f"(stride={self.stride})")
            self.padding = padding
        else:
            self.padding = check_pair(padding, "padding", 0)
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
        self.padding_mode = padding_mode
        # (top, bottom, left, right), resolved once; 'same' puts the odd pixel bottom/right.
        self._pads = conv_padding(self.padding, self.kernel_size, self.dilation, self.stride)

        dtype = float_dtype(dtype)
        k_h, k_w = self.kernel_size
        self.weight = Parameter(np.empty((out_channels, in_channels // groups, k_h, k_w), dtype))
        if bias:
            self.bias = Parameter(np.empty(out_channels, dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default initialisation (see the class docstring)."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.kernel_size[0] * self.kernel_size[1]
            bound = 1 / math.sqrt(fan_in)
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input):
        """``(N, C_in, H, W)`` -> ``(N, C_out, H_out, W_out)`` (3-D in, 3-D out)."""
        x = as_input(input, "Conv2d")
        if x.ndim not in (3, 4):
            raise ValueError(f"Conv2d expects a 4-D input (N, C, H, W) or a 3-D unbatched input "
                             f"(C, H, W), got a {x.ndim}-D input of shape {x.shape}")
        unbatched = x.ndim == 3
        if unbatched:
            x = x.reshape(1, *x.shape)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"Conv2d expected input with {self.in_channels} channels, got "
                             f"{x.shape[1]} channels (input shape {tuple(input.shape)})")
        check_input_dtype(x, self.weight.dtype, "Conv2d")
        if self.padding_mode == "zeros":
            out = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                           self.groups)
        else:
            top, bottom, left, right = self._pads
            if any(self._pads):
                x = F.pad(x, (left, right, top, bottom), mode=self.padding_mode)
            out = F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
        return out.reshape(out.shape[1:]) if unbatched else out

    def extra_repr(self) -> str:
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}")
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        if self.padding_mode != "zeros":
            text += f", padding_mode={self.padding_mode}"
        return text
