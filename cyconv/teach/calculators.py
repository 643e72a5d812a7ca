"""Pocket calculators for the textbook questions about a CNN layer.

"What size is the output?", "how many parameters does this layer have?", "how many
input pixels does one output value see?", "how much arithmetic is the forward pass?"
Each answer is one short formula, written out here so that you can check your pen-and-paper
work, and so that :func:`cyconv.summary` (which uses these functions) can be checked
against them.

Sizes along one spatial dimension (height or width)::

    out = floor((size + 2*padding - dilation*(kernel - 1) - 1) / stride) + 1

Parameters::

    conv:   C_out * (C_in / groups) * kH * kW   (+ C_out biases)
    linear: n_out * n_in                        (+ n_out biases)

Receptive field (size ``r`` and jump ``j`` in input pixels; the input itself has r = j = 1)::

    r_out = r_in + (k - 1) * d * j_in        j_out = j_in * s

FLOPs are counted as 2 x multiply-adds (one multiplication and one addition each).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

from .. import geometry

__all__ = [
    "conv_output_size",
    "conv_output_shape",
    "pool_output_size",
    "conv_params",
    "linear_params",
    "batchnorm_params",
    "conv_flops",
    "linear_flops",
    "ReceptiveField",
    "receptive_field_step",
    "receptive_field",
    "adaptive_window",
]


def _int(value, name: str, minimum: int) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        wanted = "positive" if minimum == 1 else f"at least {minimum}"
        raise ValueError(f"{name} must be {wanted}, got {value}")
    return int(value)


def _padding_pair(padding, name: str = "padding") -> tuple[int, int]:
    """An int (both sides) or ``(before, after)``, each non-negative."""
    if isinstance(padding, (tuple, list)) and len(padding) == 2:
        return _int(padding[0], name, 0), _int(padding[1], name, 0)
    value = _int(padding, name, 0)
    return value, value


def conv_output_size(size: int, kernel: int, stride: int = 1, padding=0, dilation: int = 1) -> int:
    """Output length of a convolution along one dimension.

    ``padding`` is an int (added on both sides), ``(before, after)``, ``'valid'`` (no padding)
    or ``'same'`` (stride 1: the output is as long as the input). The window covers
    ``dilation*(kernel-1) + 1`` input cells and slides by ``stride``::

        out = floor((size + before + after - dilation*(kernel - 1) - 1) / stride) + 1

    >>> conv_output_size(32, 5)               # LeNet-5 C1: 32 -> 28
    28
    >>> conv_output_size(32, 3, stride=2, padding=1)
    16

    The formula itself lives in :func:`cyconv.geometry.output_size`, the one place every
    kernel of cyconv takes its output sizes from. Raises ValueError when the window does
    not fit in the padded input.
    """
    size = _int(size, "size", 1)
    kernel = _int(kernel, "kernel", 1)
    stride = _int(stride, "stride", 1)
    dilation = _int(dilation, "dilation", 1)
    if isinstance(padding, str):
        top, bottom, _, _ = geometry.conv_padding(padding, (kernel, 1), (dilation, 1), (stride, 1))
        padding = (top, bottom)
    before, after = _padding_pair(padding)
    out = geometry.output_size(size, kernel, stride, (before, after), dilation)
    if out < 1:
        raise ValueError(f"a kernel of {kernel} with dilation {dilation} spans "
                         f"{dilation * (kernel - 1) + 1} cells and does not fit the padded input of "
                         f"{size + before + after}")
    return out


def conv_output_shape(input_hw, kernel_size, stride=1, padding=0, dilation=1) -> tuple[int, int]:
    """``(H_out, W_out)`` of a convolution; every argument an int or an ``(h, w)`` pair.

    ``padding`` may also be ``'valid'`` or ``'same'``.

    >>> conv_output_shape((28, 28), 5, padding=2)
    (28, 28)
    """
    h, w = geometry.pair(input_hw, "input_hw")
    k = geometry.pair(kernel_size, "kernel_size")
    s = geometry.pair(stride, "stride")
    d = geometry.pair(dilation, "dilation")
    if isinstance(padding, str):
        top, bottom, left, right = geometry.conv_padding(padding, k, d, s)
        pads = ((top, bottom), (left, right))
    else:
        p = geometry.pair(padding, "padding")
        pads = ((p[0], p[0]), (p[1], p[1]))
    return (conv_output_size(h, k[0], s[0], pads[0], d[0]),
            conv_output_size(w, k[1], s[1], pads[1], d[1]))


def pool_output_size(size: int, kernel: int, stride: int | None = None, padding: int = 0,
                     dilation: int = 1, ceil_mode: bool = False) -> int:
    """Output length of a max/average pooling along one dimension.

    The same formula as a convolution, but ``stride`` defaults to ``kernel`` (windows side by
    side, not overlapping), and ``ceil_mode=True`` rounds up instead of down (keeping a last,
    partial window, as long as it starts inside the input).

    >>> pool_output_size(28, 2)               # LeNet-5 S2: 28 -> 14
    14
    >>> pool_output_size(5, 2, ceil_mode=True)
    3
    """
    size = _int(size, "size", 1)
    kernel = _int(kernel, "kernel", 1)
    stride = kernel if stride is None else _int(stride, "stride", 1)
    padding = _int(padding, "padding", 0)
    dilation = _int(dilation, "dilation", 1)
    out = geometry.output_size(size, kernel, stride, padding, dilation, bool(ceil_mode))
    if out < 1:
        raise ValueError(f"a pooling window of {kernel} (dilation {dilation}) does not fit the "
                         f"padded input of {size + 2 * padding}")
    return out


def conv_params(c_in: int, c_out: int, kernel_size, groups: int = 1, bias: bool = True) -> int:
    """Number of learnable numbers in a ``Conv2d(c_in, c_out, kernel_size, groups=groups)``.

    Every output channel has one ``(c_in/groups) x kH x kW`` filter, plus one bias::

        params = c_out * (c_in / groups) * kH * kW + (c_out if bias else 0)

    It does not depend on the image size: the same filter slides over every position
    (weight sharing). LeNet-5's C3: ``conv_params(6, 16, 5)`` = 16*6*25 + 16 = 2,416.

    >>> conv_params(1, 6, 5)
    156
    """
    c_in, c_out, groups = _int(c_in, "c_in", 1), _int(c_out, "c_out", 1), _int(groups, "groups", 1)
    k_h, k_w = geometry.pair(kernel_size, "kernel_size")
    if c_in % groups or c_out % groups:
        raise ValueError(f"groups={groups} must divide both c_in={c_in} and c_out={c_out}")
    return c_out * (c_in // groups) * k_h * k_w + (c_out if bias else 0)


def linear_params(n_in: int, n_out: int, bias: bool = True) -> int:
    """Number of learnable numbers in a ``Linear(n_in, n_out)``: one weight per (input, output)
    pair, plus one bias per output::

        params = n_out * n_in + (n_out if bias else 0)

    >>> linear_params(400, 120)               # LeNet-5 F5
    48120
    """
    n_in, n_out = _int(n_in, "n_in", 1), _int(n_out, "n_out", 1)
    return n_out * n_in + (n_out if bias else 0)


def batchnorm_params(num_features: int, affine: bool = True) -> int:
    """Learnable numbers of a BatchNorm: a scale (gamma) and a shift (beta) per channel.

    The running mean and variance are *buffers*: part of the state, but not learnt.
    """
    return 2 * _int(num_features, "num_features", 1) if affine else 0


def conv_flops(c_in: int, c_out: int, kernel_size, out_h: int, out_w: int, groups: int = 1,
               batch: int = 1) -> int:
    """Floating-point operations of a convolution's forward pass (2 x multiply-adds).

    Each output value is a dot product of length ``(c_in/groups) * kH * kW``: that many
    multiplications and (about) as many additions. There are ``batch * c_out * out_h * out_w``
    output values::

        flops = 2 * (c_in / groups) * kH * kW * c_out * out_h * out_w * batch

    The bias additions (one per output value) are left out, as is usual.

    >>> conv_flops(1, 6, 5, 28, 28)           # LeNet-5 C1
    235200
    """
    c_in, c_out, groups = _int(c_in, "c_in", 1), _int(c_out, "c_out", 1), _int(groups, "groups", 1)
    k_h, k_w = geometry.pair(kernel_size, "kernel_size")
    out_h, out_w = _int(out_h, "out_h", 1), _int(out_w, "out_w", 1)
    batch = _int(batch, "batch", 1)
    if c_in % groups:
        raise ValueError(f"groups={groups} must divide c_in={c_in}")
    return 2 * (c_in // groups) * k_h * k_w * c_out * out_h * out_w * batch


def linear_flops(n_in: int, n_out: int, batch: int = 1) -> int:
    """Floating-point operations of a linear layer's forward pass: ``2 * n_in * n_out * batch``.

    >>> linear_flops(400, 120)
    96000
    """
    return 2 * _int(n_in, "n_in", 1) * _int(n_out, "n_out", 1) * _int(batch, "batch", 1)


@dataclass(frozen=True)
class ReceptiveField:
    """Where one value of a feature map looks in the input, along one dimension.

    - ``size``: how many input pixels influence one output value (the receptive field);
    - ``jump``: how many input pixels apart two neighbouring output values are (the product
      of all the strides so far);
    - ``start``: the centre of the receptive field of the first output value, in input pixel
      coordinates (pixel ``i`` covers ``[i, i+1)``, so its centre is ``i + 0.5``). Padding
      moves it to the left, possibly outside the image.

    The input image itself is ``ReceptiveField(size=1, jump=1, start=0.5)``.
    """

    size: float = 1
    jump: float = 1
    start: float = 0.5


def receptive_field_step(previous: ReceptiveField, kernel: int, stride: int = 1,
                         dilation: int = 1, padding: int = 0) -> ReceptiveField:
    """The receptive field after one more sliding-window layer (convolution or pooling).

    The new window has ``kernel`` taps, ``dilation`` cells apart; each cell of the layer's
    input is already ``j_in`` input pixels away from its neighbour, so the window adds
    ``(kernel - 1) * dilation`` steps of ``j_in`` pixels::

        r_out = r_in + (kernel - 1) * dilation * j_in
        j_out = j_in * stride
        start_out = start_in + ((kernel - 1) * dilation / 2 - padding) * j_in

    Layers that work pixel by pixel (ReLU, BatchNorm, Dropout) leave all three unchanged.

    >>> conv1 = receptive_field_step(ReceptiveField(), 5)          # LeNet C1
    >>> pool1 = receptive_field_step(conv1, 2, stride=2)           # S2
    >>> receptive_field_step(pool1, 5).size                        # C3 sees 14x14 pixels
    14
    """
    kernel = _int(kernel, "kernel", 1)
    stride = _int(stride, "stride", 1)
    dilation = _int(dilation, "dilation", 1)
    before = _padding_pair(padding)[0]
    reach = (kernel - 1) * dilation
    return ReceptiveField(size=previous.size + reach * previous.jump,
                          jump=previous.jump * stride,
                          start=previous.start + (reach / 2 - before) * previous.jump)


def receptive_field(layers, start: ReceptiveField | None = None) -> list[ReceptiveField]:
    """Receptive fields after each layer of a stack, along one dimension.

    ``layers`` is a sequence of ``(kernel, stride)``, ``(kernel, stride, dilation)`` or
    ``(kernel, stride, dilation, padding)`` tuples, or dicts with those keys. Returns one
    :class:`ReceptiveField` per layer.

    >>> [rf.size for rf in receptive_field([(3, 1), (3, 1), (2, 2), (3, 1)])]
    [3, 5, 6, 10]

    Two stacked 3x3 convolutions see 5x5 pixels, three see 7x7: the VGG argument for small
    kernels (fewer parameters than one big kernel, and more non-linearities).
    """
    field = ReceptiveField() if start is None else start
    result = []
    for position, layer in enumerate(layers):
        if isinstance(layer, dict):
            unknown = set(layer) - {"kernel", "stride", "dilation", "padding"}
            if unknown or "kernel" not in layer:
                raise ValueError(f"layer {position}: a dict needs 'kernel' and may have 'stride', "
                                 f"'dilation', 'padding'; got keys {sorted(layer)}")
            field = receptive_field_step(field, **layer)
        elif isinstance(layer, (tuple, list)) and 1 <= len(layer) <= 4:
            field = receptive_field_step(field, *layer)
        else:
            raise TypeError(f"layer {position}: expected (kernel, stride[, dilation[, padding]]) "
                            f"or a dict, got {layer!r}")
        result.append(field)
    return result


def _exact(value: float):
    """``value`` as an int when it is a whole number (sizes print as 14, not 14.0)."""
    return int(value) if float(value).is_integer() else value


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def adaptive_window(size: int, out: int) -> tuple[int, float]:
    """Largest window and average step of an adaptive pooling from ``size`` to ``out`` cells.

    Window ``i`` covers ``[floor(i*size/out), ceil((i+1)*size/out))``; when ``out`` divides
    ``size`` every window is ``size/out`` long and the step is the same: an ordinary pooling.
    """
    size, out = _int(size, "size", 1), _int(out, "out", 1)
    largest = max(_ceil_div((i + 1) * size, out) - (i * size) // out for i in range(out))
    return largest, _exact(size / out)
