"""A convolution is a matrix product: build the matrix and look at it.

A convolution layer is *linear* in its input: every output value is a weighted sum of input
values. So, like any linear map, it can be written as one matrix ``M`` acting on the
flattened input::

    conv2d(x, w).ravel() == M @ x.ravel()

    M has one row per output value    (C_out * H_out * W_out rows)
      and one column per input value  (C_in  * H    * W    columns)

Row ``(co, y, x)`` of ``M`` holds the weights of filter ``co``, placed in the columns of the
input pixels that its window covers when it sits at output position ``(y, x)``; every other
entry is zero. Looking at ``M`` (:func:`show_conv_matrix`) shows the two ideas that make a
convolution much cheaper than a fully connected layer with the same input and output sizes:

- **local connectivity**: most entries are zero, because one output only sees a small
  window of the input;
- **weight sharing**: the non-zero entries are the *same few numbers* (the kH*kW weights of
  the filter) repeated in every row, shifted along: a (block-)Toeplitz pattern.

A ``Linear`` layer of the same shape would learn every entry of ``M`` separately
(:func:`compare_with_dense` counts how many that is). Nobody computes a convolution this way
(``M`` is huge and mostly zeros); the point is to see what a convolution *is*. The bias is
left out of ``M``: it is added afterwards, one number per output channel.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np

from .. import geometry
from ..autograd import Tensor

__all__ = ["conv_as_matrix", "conv_matrix_pattern", "ConvMatrixInfo", "compare_with_dense",
           "show_conv_matrix"]


def _weight_array(weight):
    """``weight`` as an ndarray, or None if a shape was given instead of weights."""
    if isinstance(weight, Tensor):
        return weight.data
    if isinstance(weight, np.ndarray):
        return weight
    if isinstance(weight, (tuple, list)) and all(isinstance(v, (int, np.integer)) for v in weight):
        return None                                # a shape such as (3, 3) or (6, 1, 5, 5)
    return np.asarray(weight)


def _shapes(input_shape, weight_shape):
    """Normalise to ``(C, H, W)`` and ``(C_out, C_in/groups, kH, kW)``.

    ``(H, W)`` means one channel; a ``(kH, kW)`` kernel means one filter for one channel.
    """
    input_shape = tuple(input_shape)
    if len(input_shape) == 2:
        input_shape = (1,) + input_shape
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W) or (H, W), got {input_shape}")
    weight_shape = tuple(int(v) for v in weight_shape)
    if len(weight_shape) == 2:
        weight_shape = (1, 1) + weight_shape
    if len(weight_shape) != 4:
        raise ValueError(f"weight must be (C_out, C_in, kH, kW) or (kH, kW), got shape {weight_shape}")
    return input_shape, weight_shape


def conv_matrix_pattern(input_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1):
    """Which weight sits where in the convolution matrix: an integer matrix and the geometry.

    Entry ``[row, col]`` is the index of the weight in ``weight.ravel()`` that multiplies input
    value ``col`` in output value ``row``, or ``-1`` where the matrix has a zero. Returns
    ``(pattern, geo)`` with ``geo`` the :class:`cyconv.geometry.ConvGeometry` (sizes, padding).
    """
    (c, h, w), weight_shape = _shapes(input_shape, weight_shape)
    geo = geometry.conv2d_geometry((1, c, h, w), weight_shape, stride, padding, dilation, groups)
    (sh, sw), (dh, dw) = geo.stride, geo.dilation
    top, left = geo.padding[0], geo.padding[2]
    cg = geo.in_channels // geo.groups            # input channels each filter sees
    og = geo.out_channels // geo.groups           # filters per group
    out_plane = geo.out_h * geo.out_w
    pattern = np.full((geo.out_channels * out_plane, c * h * w), -1, dtype=np.int64)

    ys = np.arange(geo.out_h)[:, None]            # output row y, as a column
    xs = np.arange(geo.out_w)[None, :]            # output column x, as a row
    for co in range(geo.out_channels):
        g = co // og                              # the group of filter co
        rows = co * out_plane + ys * geo.out_w + xs          # output value (co, y, x)
        for ci in range(cg):
            for i in range(geo.kernel_h):
                for j in range(geo.kernel_w):
                    # Tap (i, j) of the window at output (y, x) reads input pixel (r, s):
                    #   r = y*stride - top + i*dilation,   s = x*stride - left + j*dilation
                    r = ys * sh - top + i * dh
                    s = xs * sw - left + j * dw
                    inside = (r >= 0) & (r < h) & (s >= 0) & (s < w)   # else: padding, a zero
                    cols = ((g * cg + ci) * h + r) * w + s             # input value (c, r, s)
                    tap = ((co * cg + ci) * geo.kernel_h + i) * geo.kernel_w + j
                    pattern[rows[inside], cols[inside]] = tap
    return pattern, geo


def conv_as_matrix(input_shape, weight, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """The dense matrix ``M`` with ``M @ x.ravel() == conv2d(x, weight).ravel()``.

    ``input_shape``: ``(C, H, W)`` or ``(H, W)`` (one channel) of one image ``x``.
    ``weight``: ``(C_out, C_in/groups, kH, kW)`` or ``(kH, kW)`` (one filter), an ndarray or a
    cyconv Tensor (e.g. ``layer.weight``). ``stride``, ``padding`` (int, pair, ``'same'``,
    ``'valid'``), ``dilation`` and ``groups`` as for :func:`cyconv.functional.conv2d`.

    Returns an array of shape ``(C_out*H_out*W_out, C*H*W)`` with the weight's dtype. Rows
    are output values in ``(channel, row, column)`` order, columns input values in the same
    order: exactly the order of ``ravel()`` on an NCHW array. The bias is not included.

    >>> M = conv_as_matrix((4, 4), np.ones((3, 3), np.float32))
    >>> M.shape                       # 2x2 outputs, 4x4 inputs
    (4, 16)
    """
    array = _weight_array(weight)
    if array is None:
        raise TypeError("conv_as_matrix needs the weights themselves (an array), not a shape; "
                        "conv_matrix_pattern and show_conv_matrix accept shapes")
    if array.dtype.kind not in "fiu":
        raise TypeError(f"weight must be a real-valued array, got dtype {array.dtype}")
    dtype = array.dtype if array.dtype.kind == "f" else np.float64
    pattern, _ = conv_matrix_pattern(input_shape, array.shape, stride, padding, dilation, groups)
    values = np.asarray(array, dtype=dtype).ravel()
    # Every entry that belongs to a tap gets that tap's weight; the rest stay zero.
    return np.where(pattern >= 0, values[np.maximum(pattern, 0)], 0).astype(dtype)


@dataclass(frozen=True)
class ConvMatrixInfo:
    """Counts that describe a convolution matrix and a fully connected layer of the same size.

    ``nonzeros`` counts the places where a weight sits (even if that weight happens to be
    0.0 at the moment); ``distinct_weights`` how many different weights fill them.
    """

    input_shape: tuple          # (C_in, H, W)
    output_shape: tuple         # (C_out, H_out, W_out)
    matrix_shape: tuple         # (outputs, inputs)
    entries: int                # outputs * inputs
    nonzeros: int               # entries where some weight sits
    distinct_weights: int       # different weights used (the shared parameters)
    conv_params: int            # weights (+ biases) of the convolution layer
    dense_params: int           # weights (+ biases) of a Linear(inputs, outputs)
    bias: bool                  # whether the two parameter counts include biases

    @property
    def zeros(self) -> int:
        return self.entries - self.nonzeros

    @property
    def density(self) -> float:
        """Fraction of the matrix that is not structurally zero."""
        return self.nonzeros / self.entries

    @property
    def uses_per_weight(self) -> float:
        """How many times, on average, each weight appears in the matrix (weight sharing)."""
        return self.nonzeros / self.distinct_weights if self.distinct_weights else 0.0

    @property
    def ratio(self) -> float:
        """How many times more parameters the fully connected layer needs."""
        return self.dense_params / self.conv_params

    def explain(self) -> str:
        """A few sentences a student can read, with the numbers filled in."""
        c, h, w = self.input_shape
        co, ho, wo = self.output_shape
        rows, cols = self.matrix_shape
        with_bias = " (with biases)" if self.bias else " (weights only)"
        return "\n".join([
            f"Input {c}x{h}x{w} = {cols} values, output {co}x{ho}x{wo} = {rows} values.",
            f"As a matrix, the convolution is {rows} x {cols} = {self.entries:,} entries:",
            f"  {self.nonzeros:,} hold a weight ({self.density:.1%}), {self.zeros:,} are zeros "
            f"(local connectivity: an output only sees a small window);",
            f"  those {self.nonzeros:,} entries hold only {self.distinct_weights} different "
            f"weights, each used {self.uses_per_weight:.1f} times on average (weight sharing).",
            f"Parameters{with_bias}: convolution {self.conv_params:,}, fully connected layer "
            f"with the same input and output sizes {self.dense_params:,} "
            f"({self.ratio:,.1f} times as many).",
        ])

    def __str__(self) -> str:
        return self.explain()


def compare_with_dense(input_shape, weight, stride=1, padding=0, dilation=1, groups=1,
                       bias: bool = True) -> ConvMatrixInfo:
    """Count the zeros and the shared weights of the convolution matrix, and compare the
    parameter count with a ``Linear`` layer mapping the same inputs to the same outputs.

    ``weight`` is an array/Tensor or just its shape, e.g. ``(3, 3)`` or ``(6, 1, 5, 5)``.
    With ``bias=True`` both counts include biases (one per output channel for the
    convolution, one per output value for the dense layer).

    >>> info = compare_with_dense((4, 4), (3, 3), bias=False)
    >>> info.nonzeros, info.distinct_weights, info.conv_params, info.dense_params
    (36, 9, 9, 64)
    """
    array = _weight_array(weight)
    shape = array.shape if array is not None else weight
    pattern, geo = conv_matrix_pattern(input_shape, shape, stride, padding, dilation, groups)
    rows, cols = pattern.shape
    used = pattern[pattern >= 0]
    weights = int(np.prod(geo.weight_shape))
    return ConvMatrixInfo(
        input_shape=(geo.in_channels, geo.in_h, geo.in_w),
        output_shape=(geo.out_channels, geo.out_h, geo.out_w),
        matrix_shape=(rows, cols),
        entries=rows * cols,
        nonzeros=int(used.size),
        distinct_weights=int(np.unique(used).size),
        conv_params=weights + (geo.out_channels if bias else 0),
        dense_params=rows * cols + (rows if bias else 0),
        bias=bool(bias),
    )


def _labels(count: int) -> list[str]:
    """Names for ``count`` weights: a, b, c, ... (then A..Z), or w0, w1, ... when more."""
    letters = string.ascii_lowercase + string.ascii_uppercase
    if count <= len(letters):
        return list(letters[:count])
    return [f"w{k}" for k in range(count)]


def show_conv_matrix(input_shape, weight, stride=1, padding=0, dilation=1, groups=1,
                     values: bool = False, max_columns: int = 150) -> str:
    """The convolution matrix as text, for small cases: shared weights become letters.

    Each weight of the kernel gets a letter (``a``..``i`` for one 3x3 filter, in reading
    order) and the zeros become ``.``; with ``values=True`` (and an array ``weight``) the
    numbers are printed instead. Columns are grouped by input row (``|``) and channel
    (``||``), so that the shifted copies of the kernel rows stand out::

        >>> print(show_conv_matrix((4, 4), (3, 3)))          # doctest: +SKIP
        kernel (output channel 0, input channel 0):
          a b c
          d e f
          g h i
        ...
        y[0,0] | a b c . | d e f . | g h i . | . . . . |
        y[0,1] | . a b c | . d e f | . g h i | . . . . |
        y[1,0] | . . . . | a b c . | d e f . | g h i . |
        y[1,1] | . . . . | . a b c | . d e f | . g h i |

    Refuses (ValueError) inputs with more than ``max_columns`` values: use
    :func:`conv_as_matrix` for those.
    """
    array = _weight_array(weight)
    shape = array.shape if array is not None else weight
    pattern, geo = conv_matrix_pattern(input_shape, shape, stride, padding, dilation, groups)
    rows, cols = pattern.shape
    if cols > max_columns:
        raise ValueError(f"the matrix has {cols} columns, more than max_columns={max_columns}: "
                         f"too wide to read; use a smaller input (or conv_as_matrix)")
    count = int(np.prod(geo.weight_shape))
    if values:
        if array is None:
            raise ValueError("values=True needs the weights (an array), not only their shape")
        names = [f"{v:g}" for v in np.asarray(array, dtype=np.float64).ravel()]
    else:
        names = _labels(count)
    cell = max(len(n) for n in names + ["."])
    fmt = lambda text: text.rjust(cell)  # noqa: E731  (every cell equally wide)

    c, h, w = geo.in_channels, geo.in_h, geo.in_w
    cg = c // geo.groups
    lines = []
    kernel_names = np.array(names, dtype=object).reshape(geo.weight_shape)
    for co in range(geo.out_channels):
        for ci in range(cg):
            lines.append(f"kernel (output channel {co}, input channel "
                         f"{(co // (geo.out_channels // geo.groups)) * cg + ci}):")
            for i in range(geo.kernel_h):
                lines.append("  " + " ".join(fmt(kernel_names[co, ci, i, j])
                                             for j in range(geo.kernel_w)))
    lines.append("")
    lines.append(f"input {c}x{h}x{w} -> {cols} columns (grouped by input row '|' and channel "
                 f"'||'); output {geo.out_channels}x{geo.out_h}x{geo.out_w} -> {rows} rows y[row,col]"
                 + (" per output channel" if geo.out_channels > 1 else "") + ".")
    lines.append(f"stride {geo.stride}, padding (top, bottom, left, right) {geo.padding}, "
                 f"dilation {geo.dilation}; '.' is a zero.")
    lines.append("")
    labels = []
    for row in range(rows):                       # row = (co * H_out + y) * W_out + x
        co, rest = divmod(row, geo.out_h * geo.out_w)
        y, x = divmod(rest, geo.out_w)
        labels.append(f"y[{co},{y},{x}]" if geo.out_channels > 1 else f"y[{y},{x}]")
    width = max(len(label) for label in labels)
    for row, label in enumerate(labels):
        parts = []
        for channel in range(c):
            blocks = []
            for r in range(h):
                start = (channel * h + r) * w
                blocks.append(" ".join(fmt(names[k]) if k >= 0 else fmt(".")
                                       for k in pattern[row, start:start + w]))
            parts.append(" | ".join(blocks))
        lines.append(f"{label.ljust(width)} | " + " || ".join(parts) + " |")
    return "\n".join(lines)
