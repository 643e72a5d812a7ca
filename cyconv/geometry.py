"""Hyper-parameters, shapes and output sizes: checked once, in Python.

Everything a convolution or pooling kernel needs to know about its shapes is worked out
here, before any loop runs. The compiled kernels (``cyconv.kernels``) and the NumPy
references (``cyconv.reference``) both call these functions, so both refuse the same bad
input with the same message, and both use the one output-size formula
(:func:`output_size`).

Conventions (as in PyTorch): arrays are NCHW, convolution weights are
``(C_out, C_in // groups, kH, kW)``, and every ``int | (h, w)`` argument may be given as one
int for both spatial dimensions.
"""

from __future__ import annotations

import functools
import numbers
from dataclasses import dataclass

import numpy as np

__all__ = [
    "pair",
    "output_size",
    "conv_padding",
    "ConvGeometry",
    "conv2d_geometry",
    "PoolGeometry",
    "pool2d_geometry",
    "adaptive_pool2d_geometry",
    "as_float_array",
    "check_same_dtype",
    "check_shape",
    "check_bool",
    "check_grad_output",
    "check_batch_channels",
    "check_conv2d",
    "check_conv2d_grad_input",
    "check_conv2d_grad_weight",
    "check_max_pool2d",
    "check_max_pool2d_grad_input",
    "check_avg_pool2d",
    "check_avg_pool2d_grad_input",
    "check_adaptive_avg_pool2d",
    "check_adaptive_avg_pool2d_grad_input",
]


def _is_int(value) -> bool:
    """An int (Python's or NumPy's), but not a bool. (Plain ints, by far the most common,
    skip the slower check against the abstract numbers.Integral.)"""
    return type(value) is int or (isinstance(value, numbers.Integral)
                                  and not isinstance(value, bool))


def pair(value, name: str) -> tuple[int, int]:
    """Turn ``int`` or ``(h, w)`` into a ``(h, w)`` tuple of Python ints.

    >>> pair(3, "kernel_size")
    (3, 3)
    >>> pair((1, 2), "stride")
    (1, 2)
    """
    if _is_int(value):
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) for v in value):
        return int(value[0]), int(value[1])
    raise TypeError(f"{name} must be an int or a pair of ints (h, w), got {value!r}")


#: Largest stride, padding, dilation or size any argument may have: far beyond any real
#: image, and small enough that no index computed from it overflows a C integer.
MAX_SIZE = 2**31 - 1


def _checked_pair(value, name: str, smallest: int, wanted: str) -> tuple[int, int]:
    result = pair(value, name)
    if min(result) < smallest:
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    if max(result) > MAX_SIZE:
        raise ValueError(f"{name} must be at most {MAX_SIZE}, got {value!r}")
    return result


def _positive_pair(value, name: str) -> tuple[int, int]:
    return _checked_pair(value, name, 1, "positive")


def _non_negative_pair(value, name: str) -> tuple[int, int]:
    return _checked_pair(value, name, 0, "non-negative")


def output_size(size: int, kernel: int, stride: int = 1, padding=0, dilation: int = 1,
                ceil_mode: bool = False) -> int:
    """Number of sliding-window positions along one spatial dimension.

    ``padding`` is an int (the same on both sides) or ``(before, after)``. The window spans
    ``dilation * (kernel - 1) + 1`` input cells, and::

        out = floor((size + before + after - span) / stride) + 1      (ceil with ceil_mode)

    With ``ceil_mode`` PyTorch's extra rule applies: the last window must start inside the
    input or the left padding, otherwise it is dropped. The result may be zero or negative
    when the window does not fit; callers turn that into an error.

    >>> output_size(28, 5)                 # LeNet C1: 28x28 -> 24x24
    24
    >>> output_size(5, 2, stride=2, ceil_mode=True)
    3
    """
    before, after = (padding, padding) if _is_int(padding) else padding
    span = dilation * (kernel - 1) + 1
    room = size + before + after - span
    if not ceil_mode:
        return room // stride + 1
    out = -(-room // stride) + 1
    if out > 0 and (out - 1) * stride >= size + before:
        out -= 1
    return out


def conv_padding(padding, kernel_size: tuple[int, int], dilation: tuple[int, int],
                 stride: tuple[int, int]) -> tuple[int, int, int, int]:
    """Resolve a convolution ``padding`` argument to ``(top, bottom, left, right)``.

    ``padding`` is an int, ``(h, w)``, ``'valid'`` (no padding) or ``'same'`` (output as
    large as the input; stride 1 only). For ``'same'`` the total padding along a dimension
    is ``dilation * (kernel - 1)``; when it is odd, the extra row/column goes at the bottom
    /right, as in PyTorch.
    """
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(f"padding='same' needs stride 1, got stride={stride}")
            total_h = dilation[0] * (kernel_size[0] - 1)
            total_w = dilation[1] * (kernel_size[1] - 1)
            return total_h // 2, total_h - total_h // 2, total_w // 2, total_w - total_w // 2
        raise ValueError(f"padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    pad_h, pad_w = _non_negative_pair(padding, "padding")
    return pad_h, pad_h, pad_w, pad_w


def check_shape(shape, name: str, ndim: int = 4) -> tuple[int, ...]:
    """Check that ``shape`` is a tuple of ``ndim`` non-negative ints and return it."""
    if not isinstance(shape, (tuple, list)) or len(shape) != ndim or not all(_is_int(s) for s in shape):
        raise ValueError(f"{name} must be a tuple of {ndim} ints, got {shape!r}")
    shape = tuple(int(s) for s in shape)
    if min(shape) < 0:
        raise ValueError(f"{name} must not have negative sizes, got {shape}")
    return shape


def as_float_array(array, name: str, ndim: int | None = None) -> np.ndarray:
    """Return ``array`` as a C-contiguous float32/float64 ndarray, or raise.

    Integer, boolean and complex arrays are refused (TypeError): convert them yourself, so
    that no precision is lost silently. Non-contiguous arrays are copied to contiguous ones.
    """
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(array).__name__}")
    if array.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must have dtype float32 or float64, got {array.dtype}")
    if ndim is not None and array.ndim != ndim:
        layout = {4: " (N, C, H, W)"}.get(ndim, "")
        raise ValueError(f"{name} must be {ndim}-D{layout}, got {array.ndim}-D with shape {array.shape}")
    return np.ascontiguousarray(array)


def check_same_dtype(reference_name: str, reference: np.ndarray, **others) -> None:
    """Raise TypeError unless every array in ``others`` has the dtype of ``reference``."""
    for name, array in others.items():
        if array is not None and array.dtype != reference.dtype:
            raise TypeError(f"{name} has dtype {array.dtype} but {reference_name} has dtype "
                            f"{reference.dtype}; convert one of them")


@dataclass(frozen=True)
class ConvGeometry:
    """Every size a 2-D convolution needs, validated.

    Input ``(batch, in_channels, in_h, in_w)``, weight
    ``(out_channels, in_channels // groups, kernel_h, kernel_w)``, output
    ``(batch, out_channels, out_h, out_w)``.
    """

    batch: int
    in_channels: int
    in_h: int
    in_w: int
    out_channels: int
    kernel_h: int
    kernel_w: int
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]  # top, bottom, left, right
    dilation: tuple[int, int]
    groups: int
    out_h: int
    out_w: int

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return self.batch, self.in_channels, self.in_h, self.in_w

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return self.out_channels, self.in_channels // self.groups, self.kernel_h, self.kernel_w

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return self.batch, self.out_channels, self.out_h, self.out_w

    @property
    def flops(self) -> int:
        """Multiply-adds times two of the forward pass (the usual GFLOP/s count)."""
        per_output = 2 * (self.in_channels // self.groups) * self.kernel_h * self.kernel_w
        return per_output * self.batch * self.out_channels * self.out_h * self.out_w


def conv2d_geometry(input_shape, weight_shape, stride=1, padding=0, dilation=1,
                    groups=1) -> ConvGeometry:
    """Validate a convolution's arguments and compute its output size.

    Raises ValueError/TypeError naming the argument, what was expected and what was given.
    The answers to calls made only of ints, tuples of ints and strings are kept (for the
    last 256 such calls): a network asks for the same few geometries at every step, and
    the checks took 6 us a call, 4% of a small convolution.
    """
    arguments = (input_shape, weight_shape, stride, padding, dilation, groups)
    if all(_plain(argument) for argument in arguments):
        return _known_conv2d_geometry(*arguments)
    return _conv2d_geometry(*arguments)


def _plain(value) -> bool:
    """An int (not a bool), a str or a tuple of ints: such a value is equal only to the
    same value of the same types, so a kept answer is never given to another call."""
    return type(value) in (int, str) or (type(value) is tuple
                                         and all(type(v) is int for v in value))


def _conv2d_geometry(input_shape, weight_shape, stride, padding, dilation,
                     groups) -> ConvGeometry:
    n, c_in, h, w = check_shape(input_shape, "input shape")
    c_out, c_in_per_group, k_h, k_w = check_shape(weight_shape, "weight shape")
    if not _is_int(groups):
        raise TypeError(f"groups must be an int, got {groups!r}")
    if groups < 1:
        raise ValueError(f"groups must be positive, got {groups}")
    if c_in % groups:
        raise ValueError(f"groups={groups} must divide the input channels, got {c_in} input channels")
    if c_out % groups:
        raise ValueError(f"groups={groups} must divide the output channels, got weight with "
                         f"{c_out} output channels")
    if c_in_per_group * groups != c_in:
        raise ValueError(f"weight expects {c_in_per_group * groups} input channels "
                         f"({c_in_per_group} per group x {groups} groups), but the input has {c_in}")
    if min(c_out, k_h, k_w) < 1:
        raise ValueError(f"weight shape must have positive sizes, got {tuple(weight_shape)}")
    if min(n, c_in, h, w) < 1:
        raise ValueError(f"input shape must have positive sizes, got {tuple(input_shape)}")
    stride = _positive_pair(stride, "stride")
    dilation = _positive_pair(dilation, "dilation")
    pads = conv_padding(padding, (k_h, k_w), dilation, stride)
    out_h = output_size(h, k_h, stride[0], pads[0:2], dilation[0])
    out_w = output_size(w, k_w, stride[1], pads[2:4], dilation[1])
    if out_h < 1 or out_w < 1:
        raise ValueError(
            f"kernel ({k_h}, {k_w}) with dilation {dilation} does not fit the padded input "
            f"({h + pads[0] + pads[1]}, {w + pads[2] + pads[3]}): output size would be ({out_h}, {out_w})")
    return ConvGeometry(n, c_in, h, w, c_out, k_h, k_w, stride, pads, dilation, groups, out_h, out_w)


_known_conv2d_geometry = functools.lru_cache(maxsize=256)(_conv2d_geometry)


@dataclass(frozen=True)
class PoolGeometry:
    """Every size a 2-D pooling needs, validated. Input and output ``(batch, channels, h, w)``."""

    batch: int
    channels: int
    in_h: int
    in_w: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    ceil_mode: bool
    out_h: int
    out_w: int

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return self.batch, self.channels, self.in_h, self.in_w

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return self.batch, self.channels, self.out_h, self.out_w


def pool2d_geometry(input_shape, kernel_size, stride=None, padding=0, dilation=1,
                    ceil_mode=False) -> PoolGeometry:
    """Validate a max/avg pooling's arguments and compute its output size.

    ``stride`` defaults to ``kernel_size``. As in PyTorch, padding may be at most half the
    kernel size; without dilation every window then holds at least one input cell, with
    dilation a window may miss the input entirely (max pooling gives -inf and index -1 there).
    """
    n, c, h, w = check_shape(input_shape, "input shape")
    if min(n, c, h, w) < 1:
        raise ValueError(f"input shape must have positive sizes, got {tuple(input_shape)}")
    kernel = _positive_pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else _positive_pair(stride, "stride")
    pad = _non_negative_pair(padding, "padding")
    dilation = _positive_pair(dilation, "dilation")
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise TypeError(f"ceil_mode must be a bool, got {ceil_mode!r}")
    if pad[0] > kernel[0] // 2 or pad[1] > kernel[1] // 2:
        raise ValueError(f"padding must be at most half of kernel_size, got padding={pad} "
                         f"for kernel_size={kernel}")
    out_h = output_size(h, kernel[0], stride[0], pad[0], dilation[0], bool(ceil_mode))
    out_w = output_size(w, kernel[1], stride[1], pad[1], dilation[1], bool(ceil_mode))
    if out_h < 1 or out_w < 1:
        raise ValueError(f"kernel_size {kernel} with dilation {dilation} does not fit the padded "
                         f"input ({h + 2 * pad[0]}, {w + 2 * pad[1]}): output size would be "
                         f"({out_h}, {out_w})")
    return PoolGeometry(n, c, h, w, kernel, stride, pad, dilation, bool(ceil_mode), out_h, out_w)


def adaptive_pool2d_geometry(input_shape, output_size) -> tuple[int, int]:
    """Validate an adaptive pooling's target size; ``None`` keeps that input dimension."""
    n, c, h, w = check_shape(input_shape, "input shape")
    if min(n, c, h, w) < 1:
        raise ValueError(f"input shape must have positive sizes, got {tuple(input_shape)}")
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        output_size = tuple(size if size is not None else full
                            for size, full in zip(output_size, (h, w)))
    out_h, out_w = _positive_pair(output_size, "output_size")
    return out_h, out_w


# ---------------------------------------------------------------------------------------
# Argument checks for whole calls: arrays and hyper-parameters together. The kernels and
# the references start with these, so both refuse bad input in the same words.
# ---------------------------------------------------------------------------------------

def check_bool(value, name: str) -> bool:
    """``value`` as a bool, or TypeError (numbers are not accepted as flags)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def check_grad_output(grad_output, expected_shape) -> np.ndarray:
    """grad_output as a float array of exactly ``expected_shape`` (the forward's output)."""
    grad_output = as_float_array(grad_output, "grad_output", ndim=4)
    if grad_output.shape != tuple(expected_shape):
        raise ValueError(f"grad_output must have the forward output's shape {tuple(expected_shape)}, "
                         f"got {grad_output.shape}")
    return grad_output


def check_batch_channels(grad_output: np.ndarray, input_shape) -> None:
    """grad_output (N, C, ...) must have the batch and channels of input_shape (N, C, ...)."""
    if grad_output.shape[:2] != tuple(input_shape[:2]):
        raise ValueError(f"grad_output must have the (batch, channels) {tuple(input_shape[:2])} of "
                         f"input_shape {tuple(input_shape)}, got {grad_output.shape[:2]}")


def check_conv2d(input, weight, bias, stride, padding, dilation, groups):
    """Check a forward convolution call; return ``(x, weight, bias, ConvGeometry)``."""
    input = as_float_array(input, "input", ndim=4)
    weight = as_float_array(weight, "weight", ndim=4)
    if bias is not None:
        bias = as_float_array(bias, "bias", ndim=1)
    check_same_dtype("input", input, weight=weight, bias=bias)
    geo = conv2d_geometry(input.shape, weight.shape, stride, padding, dilation, groups)
    if bias is not None and bias.shape != (geo.out_channels,):
        raise ValueError(f"bias must have shape ({geo.out_channels},), one value per output channel "
                         f"of the weight, got shape {bias.shape}")
    return input, weight, bias, geo


def check_conv2d_grad_input(grad_output, weight, input_shape, stride, padding, dilation, groups):
    """Check a convolution input-gradient call; return ``(grad_output, weight, ConvGeometry)``."""
    weight = as_float_array(weight, "weight", ndim=4)
    input_shape = check_shape(input_shape, "input_shape")
    geo = conv2d_geometry(input_shape, weight.shape, stride, padding, dilation, groups)
    grad_output = check_grad_output(grad_output, geo.output_shape)
    check_same_dtype("grad_output", grad_output, weight=weight)
    return grad_output, weight, geo


def check_conv2d_grad_weight(grad_output, input, weight_shape, stride, padding, dilation, groups):
    """Check a convolution weight-gradient call; return ``(grad_output, x, ConvGeometry)``."""
    input = as_float_array(input, "input", ndim=4)
    weight_shape = check_shape(weight_shape, "weight_shape")
    geo = conv2d_geometry(input.shape, weight_shape, stride, padding, dilation, groups)
    grad_output = check_grad_output(grad_output, geo.output_shape)
    check_same_dtype("grad_output", grad_output, input=input)
    return grad_output, input, geo


def check_max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    """Check a max-pooling call; return ``(x, PoolGeometry, return_indices)``."""
    input = as_float_array(input, "input", ndim=4)
    geo = pool2d_geometry(input.shape, kernel_size, stride, padding, dilation, ceil_mode)
    return input, geo, check_bool(return_indices, "return_indices")


def check_max_pool2d_grad_input(grad_output, indices, input_shape, check_range=True):
    """Check a max-pooling backward call; return ``(grad_output, int64 indices, input_shape)``.

    With ``check_range=False`` the values of int64 indices are left to the caller, who must
    pass their smallest and largest to :func:`check_pool_index_range` (the compiled kernel
    finds them while it scatters the gradient, and writes nothing for an index outside the
    plane, so the array is read once instead of twice).
    """
    grad_output = as_float_array(grad_output, "grad_output", ndim=4)
    input_shape = check_shape(input_shape, "input_shape")
    check_batch_channels(grad_output, input_shape)
    if not isinstance(indices, np.ndarray):
        raise TypeError(f"indices must be a numpy.ndarray, got {type(indices).__name__}")
    if not np.issubdtype(indices.dtype, np.integer):
        raise TypeError(f"indices must be an integer array (as returned by max_pool2d), "
                        f"got dtype {indices.dtype}")
    if indices.shape != grad_output.shape:
        raise ValueError(f"indices must have grad_output's shape {grad_output.shape}, got {indices.shape}")
    # checked before the conversion to int64 when the dtype is another one: a uint64 index
    # above 2**63 - 1 would wrap to a negative number and be reported as one
    if indices.size and (check_range or indices.dtype != np.int64):
        check_pool_index_range(indices.min(), indices.max(), input_shape)
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    return grad_output, indices, input_shape


def check_pool_index_range(low, high, input_shape) -> None:
    """Raise ValueError unless max-pooling indices from ``low`` to ``high`` (the smallest
    and the largest) lie in [-1, H*W) for input planes of ``input_shape`` (N, C, H, W)."""
    plane = input_shape[2] * input_shape[3]
    if low < -1 or high >= plane:
        raise ValueError(f"indices must lie in [-1, {plane}) for input planes of "
                         f"{input_shape[2]}x{input_shape[3]}, got values in [{low}, {high}]")


def check_avg_pool2d(input, kernel_size, stride, padding, ceil_mode, count_include_pad):
    """Check an average-pooling call; return ``(x, PoolGeometry, count_include_pad)``."""
    input = as_float_array(input, "input", ndim=4)
    geo = pool2d_geometry(input.shape, kernel_size, stride, padding, 1, ceil_mode)
    return input, geo, check_bool(count_include_pad, "count_include_pad")


def check_avg_pool2d_grad_input(grad_output, input_shape, kernel_size, stride, padding, ceil_mode,
                                count_include_pad):
    """Check an average-pooling backward call; return ``(grad_output, PoolGeometry, count_include_pad)``."""
    input_shape = check_shape(input_shape, "input_shape")
    geo = pool2d_geometry(input_shape, kernel_size, stride, padding, 1, ceil_mode)
    grad_output = check_grad_output(grad_output, geo.output_shape)
    return grad_output, geo, check_bool(count_include_pad, "count_include_pad")


def check_adaptive_avg_pool2d(input, output_size):
    """Check an adaptive-pooling call; return ``(x, out_h, out_w)``."""
    input = as_float_array(input, "input", ndim=4)
    out_h, out_w = adaptive_pool2d_geometry(input.shape, output_size)
    return input, out_h, out_w


def check_adaptive_avg_pool2d_grad_input(grad_output, input_shape):
    """Check an adaptive-pooling backward call; return ``(grad_output, input_shape, out_h, out_w)``."""
    grad_output = as_float_array(grad_output, "grad_output", ndim=4)
    input_shape = check_shape(input_shape, "input_shape")
    check_batch_channels(grad_output, input_shape)
    out_h, out_w = adaptive_pool2d_geometry(input_shape, grad_output.shape[2:])
    return grad_output, input_shape, out_h, out_w
