"""Layer 4: the operations of a CNN on Tensors, each with its own backward.

Every function here follows the same recipe:

1. turn its arguments into Tensors and check them (clear ``ValueError``/``TypeError``
   messages that name the argument);
2. compute the forward result on the ``.data`` ndarrays, with NumPy or the compiled
   kernels of ``cyconv.kernels``;
3. hand the result to :func:`cyconv.autograd.make_op` together with a ``backward(g)``
   function: given ``g = dL/d(output)`` it returns ``dL/d(each input)``, the chain rule for
   this one operation. The comment above each backward names its formula.

Names and semantics follow ``torch.nn.functional``; where they differ, the docstring says
so. To check an operation you write yourself, see :func:`cyconv.gradcheck`.

Shapes use N for the batch, C for channels, H and W for height and width.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import kernels
from .autograd import Tensor, as_tensor, make_op
from .random import generator

__all__ = [
    "conv2d", "pad",
    "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
    "linear", "flatten",
    "relu", "leaky_relu", "sigmoid", "tanh", "softmax", "log_softmax",
    "cross_entropy", "nll_loss", "mse_loss",
    "dropout", "batch_norm",
]


# --- helpers ---------------------------------------------------------------------------

def _tensor(value, name: str) -> Tensor:
    """``value`` (Tensor, ndarray or number) as a Tensor; refuses anything else."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (np.ndarray, numbers.Number)):
        return as_tensor(value)
    raise TypeError(f"{name} must be a Tensor or a numpy.ndarray, got {type(value).__name__}")


def _float_tensor(value, name: str) -> Tensor:
    """As :func:`_tensor`, and the dtype must be float32 or float64."""
    value = _tensor(value, name)
    if value.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must have dtype float32 or float64, got {value.dtype}")
    return value


def _optional(value, name: str) -> Tensor | None:
    return None if value is None else _float_tensor(value, name)


def _needs_grad(t: Tensor | None) -> bool:
    return t is not None and t.requires_grad


def _check_dim(dim, ndim: int, name: str = "dim") -> int:
    """A dimension index (negative counts from the end) as a non-negative int."""
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {dim!r}")
    if not -ndim <= dim < max(ndim, 1):
        raise IndexError(f"{name}={dim} is out of range for a Tensor with {ndim} dimensions")
    return int(dim) % max(ndim, 1)


_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction) -> str:
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return reduction


# --- convolution and padding -------------------------------------------------------------

def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    """2-D convolution (cross-correlation, as in PyTorch) of a batch of images.

    input (N, C_in, H, W), weight (C_out, C_in/groups, kH, kW), bias (C_out,) or None
    -> (N, C_out, H_out, W_out). ``padding`` is an int, (h, w), ``'valid'`` or ``'same'``
    (stride 1; with an even total padding split as PyTorch does, the extra row/column at
    the bottom/right). The compiled kernels check every argument.
    """
    x = _float_tensor(input, "input")
    w = _float_tensor(weight, "weight")
    b = _optional(bias, "bias")
    out = kernels.conv2d(x.data, w.data, None if b is None else b.data,
                         stride, padding, dilation, groups)
    hyper = (stride, padding, dilation, groups)

    # y = x * w + b (cross-correlation), so with g = dL/dy:
    #   dL/dx = g convolved with the flipped w ("transposed convolution"),
    #   dL/dw[co, c, p, q] = sum_{n,i,j} g[n, co, i, j] * x[n, c, i*s + p*d, j*s + q*d],
    #   dL/db[co] = sum_{n,i,j} g[n, co, i, j].
    # Each is computed only if someone needs it: the first layer's input needs no gradient,
    # and its grad_input would be the most expensive of the three.
    def backward(g):
        grad_x = kernels.conv2d_grad_input(g, w.data, x.shape, *hyper) if x.requires_grad else None
        grad_w = kernels.conv2d_grad_weight(g, x.data, w.shape, *hyper) if w.requires_grad else None
        grad_b = kernels.conv2d_grad_bias(g) if _needs_grad(b) else None
        return (grad_x, grad_w) if b is None else (grad_x, grad_w, grad_b)

    parents = (x, w) if b is None else (x, w, b)
    return make_op(out, parents, backward, "ConvolutionBackward")


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge",
              "circular": "wrap"}  # our name -> np.pad's name


def _check_pad(pad, shape: tuple, mode: str) -> list[tuple[int, int, int]]:
    """Validate ``pad`` and return (axis, before, after) for every padded axis.

    ``pad`` lists (before, after) pairs starting from the LAST dimension, as torch's
    F.pad: (left, right) pads W; (left, right, top, bottom) pads W and H.
    """
    if (not isinstance(pad, (tuple, list)) or len(pad) % 2 or not pad
            or not all(isinstance(p, numbers.Integral) and not isinstance(p, bool) for p in pad)):
        raise TypeError(f"pad must be a tuple of (before, after) int pairs from the last "
                        f"dimension, e.g. (left, right, top, bottom), got {pad!r}")
    if min(pad) < 0:
        raise ValueError(f"pad sizes must be non-negative, got {tuple(pad)}")
    if len(pad) // 2 > len(shape):
        raise ValueError(f"pad {tuple(pad)} pads {len(pad) // 2} dimensions but the input has "
                         f"only {len(shape)} (shape {shape})")
    plan = []
    for k in range(len(pad) // 2):
        axis = len(shape) - 1 - k
        before, after, size = int(pad[2 * k]), int(pad[2 * k + 1]), shape[axis]
        if mode == "reflect" and max(before, after) >= size:
            raise ValueError(f"reflect padding must be smaller than the input size it reflects: "
                             f"pad ({before}, {after}) on dimension {axis} of size {size}")
        if mode == "circular" and max(before, after) > size:
            raise ValueError(f"circular padding can wrap around at most once: pad "
                             f"({before}, {after}) on dimension {axis} of size {size}")
        if mode == "replicate" and size == 0 and before + after:
            raise ValueError(f"replicate padding needs a non-empty dimension {axis}")
        plan.append((axis, before, after))
    return plan


def _unpad_axis(g: np.ndarray, axis: int, before: int, after: int, mode: str) -> np.ndarray:
    """The backward of padding one axis: fold the gradient of the padded cells back.

    g has the padded size P = before + size + after along ``axis``; the result has ``size``.
    Every padded cell is a copy of one source cell, so its gradient is added to that source.
    """
    g = np.moveaxis(g, axis, -1)
    size = g.shape[-1] - before - after
    grad = g[..., before:before + size].copy()  # the cells that were there all along
    left, right = g[..., :before], g[..., before + size:]
    if mode == "reflect":
        # left pad cell j copies x[before - j], right pad cell k copies x[size - 2 - k]
        grad[..., 1:before + 1] += left[..., ::-1]
        grad[..., size - 1 - after:size - 1] += right[..., ::-1]
    elif mode == "replicate":
        # every left pad cell copies x[0], every right pad cell copies x[size - 1]
        grad[..., 0] += left.sum(axis=-1)
        grad[..., size - 1] += right.sum(axis=-1)
    elif mode == "circular":
        # left pad cell j copies x[size - before + j], right pad cell k copies x[k]
        grad[..., size - before:] += left
        grad[..., :after] += right
    # constant: the padded cells hold ``value``, which depends on nothing: no gradient
    return np.moveaxis(grad, -1, axis)


def pad(input, pad, mode: str = "constant", value=0.0) -> Tensor:
    """Pad the last dimensions of ``input``, as torch's F.pad.

    ``pad`` = (left, right) pads the last dimension, (left, right, top, bottom) the last two
    (for NCHW images: W, then H). Modes:

    - ``'constant'``: new cells hold ``value`` (0 by default);
    - ``'reflect'``: mirror without repeating the edge (``[1 2 3] -> 3 2 [1 2 3] 2 1``);
    - ``'replicate'``: repeat the edge (``1 1 [1 2 3] 3 3``);
    - ``'circular'``: wrap around (``2 3 [1 2 3] 1 2``).

    input (..., H, W) -> (..., top + H + bottom, left + W + right).
    """
    x = _float_tensor(input, "input")
    if mode not in _PAD_MODES:
        raise ValueError(f"mode must be one of {tuple(_PAD_MODES)}, got {mode!r}")
    if mode != "constant" and value != 0:
        raise ValueError(f"value is only used by mode='constant', got value={value!r} with "
                         f"mode={mode!r}")
    plan = _check_pad(pad, x.shape, mode)
    widths = [(0, 0)] * x.ndim
    for axis, before, after in plan:
        widths[axis] = (before, after)
    if mode == "constant":
        out = np.pad(x.data, widths, mode="constant", constant_values=value)
    else:
        out = np.pad(x.data, widths, mode=_PAD_MODES[mode])

    # Padding copies cells, so each output cell's gradient goes to the cell it copies:
    # dL/dx[i] = sum of g over every output cell that is a copy of x[i]. The axes are
    # padded independently, so the gradient is folded back one axis at a time.
    def backward(g):
        for axis, before, after in plan:
            g = _unpad_axis(g, axis, before, after, mode)
        return (g,)
    return make_op(out, (x,), backward, "PadBackward")


# --- pooling -----------------------------------------------------------------------------

def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max pooling: input (N, C, H, W) -> (N, C, H_out, W_out).

    ``stride`` defaults to ``kernel_size``; padding counts as -inf. With ``return_indices``
    also returns an int64 Tensor of the arg-max positions (``h * W + w`` in the input
    plane, as PyTorch).
    """
    x = _float_tensor(input, "input")
    out, argmax = kernels.max_pool2d(x.data, kernel_size, stride, padding, dilation, ceil_mode,
                                     return_indices=True)

    # y = max over the window, so dL/dx is g at the window's arg-max and 0 elsewhere
    # (a cell that is the maximum of several windows collects all their gradients).
    def backward(g):
        return (kernels.max_pool2d_grad_input(g, argmax, x.shape),)
    result = make_op(out, (x,), backward, "MaxPool2DBackward")
    return (result, Tensor(argmax)) if return_indices else result


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True) -> Tensor:
    """Average pooling: input (N, C, H, W) -> (N, C, H_out, W_out).

    The divisor is PyTorch's: the window clipped to the padded input when
    ``count_include_pad``, the window clipped to the real input otherwise.
    """
    x = _float_tensor(input, "input")
    hyper = (kernel_size, stride, padding, ceil_mode, count_include_pad)
    out = kernels.avg_pool2d(x.data, *hyper)

    # y = (1/divisor) * sum over the window, so every cell of a window receives
    # g / divisor from it: dL/dx[cell] = sum over windows containing it of g / divisor.
    def backward(g):
        return (kernels.avg_pool2d_grad_input(g, x.shape, *hyper),)
    return make_op(out, (x,), backward, "AvgPool2DBackward")


def adaptive_avg_pool2d(input, output_size) -> Tensor:
    """Adaptive average pooling: input (N, C, H, W) -> (N, C, out_h, out_w).

    ``output_size`` is an int, (h, w), or has None to keep that input size. Output row i
    averages input rows floor(i*H/out_h) .. ceil((i+1)*H/out_h) - 1 (likewise columns);
    ``output_size=1`` is global average pooling.
    """
    x = _float_tensor(input, "input")
    out = kernels.adaptive_avg_pool2d(x.data, output_size)

    # as for avg_pool2d: each cell gets g / (its window's size) from every window holding it
    def backward(g):
        return (kernels.adaptive_avg_pool2d_grad_input(g, x.shape),)
    return make_op(out, (x,), backward, "AdaptiveAvgPool2DBackward")


# --- linear layers and shapes ------------------------------------------------------------

def linear(input, weight, bias=None) -> Tensor:
    """Fully connected layer: y = x @ weight.T + bias.

    input (..., in_features), weight (out_features, in_features), bias (out_features,)
    or None -> (..., out_features). Any number of leading dimensions.
    """
    x = _float_tensor(input, "input")
    w = _float_tensor(weight, "weight")
    b = _optional(bias, "bias")
    if w.ndim != 2:
        raise ValueError(f"weight must be 2-D (out_features, in_features), got shape {w.shape}")
    if x.ndim == 0 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"input's last dimension must be in_features={w.shape[1]} (the weight "
                         f"has shape {w.shape}), got input of shape {x.shape}")
    if b is not None and b.shape != (w.shape[0],):
        raise ValueError(f"bias must have shape ({w.shape[0]},), one value per output feature, "
                         f"got {b.shape}")
    if x.dtype != w.dtype or (b is not None and b.dtype != w.dtype):
        raise TypeError(f"input, weight and bias must have the same dtype, got {x.dtype}, "
                        f"{w.dtype}" + ("" if b is None else f", {b.dtype}"))
    out = x.data @ w.data.T
    if b is not None:
        out += b.data

    # With the leading dimensions merged into rows, X (M, in), G = dL/dY (M, out):
    #   dL/dX = G @ W,   dL/dW = G.T @ X,   dL/db = G summed over the rows.
    def backward(g):
        rows = g.reshape(-1, w.shape[0])
        grad_x = (g @ w.data) if x.requires_grad else None
        grad_w = rows.T @ x.data.reshape(-1, w.shape[1]) if w.requires_grad else None
        grad_b = rows.sum(axis=0) if _needs_grad(b) else None
        return (grad_x, grad_w) if b is None else (grad_x, grad_w, grad_b)

    parents = (x, w) if b is None else (x, w, b)
    return make_op(out, parents, backward, "LinearBackward")


def flatten(input, start_dim: int = 1, end_dim: int = -1) -> Tensor:
    """Merge dimensions start_dim..end_dim: (N, C, H, W) -> (N, C*H*W) by default.

    Unlike ``Tensor.flatten`` (start_dim=0), the batch dimension is kept, as in
    torch.flatten's use in nn.Flatten.
    """
    x = _tensor(input, "input")
    return x.flatten(start_dim, end_dim)


# --- activations -------------------------------------------------------------------------

def relu(input) -> Tensor:
    """max(x, 0), elementwise."""
    x = _float_tensor(input, "input")
    out = kernels.relu(x.data)

    # d relu / dx = 1 where x > 0, else 0 (we take 0 at x == 0, as PyTorch)
    return make_op(out, (x,), lambda g: (kernels.relu_grad_input(g, out),), "ReluBackward")


def leaky_relu(input, negative_slope: float = 0.01) -> Tensor:
    """x where x > 0, negative_slope * x elsewhere."""
    x = _float_tensor(input, "input")
    if isinstance(negative_slope, bool) or not isinstance(negative_slope, numbers.Real):
        raise TypeError(f"negative_slope must be a number, got {negative_slope!r}")
    slope = np.where(x.data > 0, 1, negative_slope).astype(x.dtype)

    # d/dx = 1 where x > 0, negative_slope elsewhere: the same factor as the forward
    return make_op(x.data * slope, (x,), lambda g: (g * slope,), "LeakyReluBackward")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) without overflow: exp is only ever taken of -|x| <= 0."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def sigmoid(input) -> Tensor:
    """1 / (1 + exp(-x)), stable for large |x| (sigmoid(-1000) is 0, not a warning)."""
    x = _float_tensor(input, "input")
    s = _sigmoid(x.data)
    # d sigmoid / dx = s * (1 - s)
    return make_op(s, (x,), lambda g: (g * s * (1 - s),), "SigmoidBackward")


def tanh(input) -> Tensor:
    """Hyperbolic tangent."""
    x = _float_tensor(input, "input")
    t = np.tanh(x.data)
    # d tanh / dx = 1 - tanh^2
    return make_op(t, (x,), lambda g: (g * (1 - t * t),), "TanhBackward")


def _log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    """log(exp(x) / sum exp(x)) = (x - m) - log(sum exp(x - m)), m the max along ``axis``.

    Subtracting the max makes the largest exponent exp(0) = 1: no overflow for logits of
    1e4, and the sum is at least 1, so its log is finite.
    """
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(input, dim: int) -> Tensor:
    """exp(x) / sum(exp(x)) along ``dim`` (required: there is no implicit choice)."""
    x = _float_tensor(input, "input")
    axis = _check_dim(dim, x.ndim)
    s = np.exp(_log_softmax(x.data, axis))

    # dL/dx_i = sum_j g_j ds_j/dx_i = s_i * (g_i - sum_j g_j s_j)
    def backward(g):
        return (s * (g - (g * s).sum(axis=axis, keepdims=True)),)
    return make_op(s, (x,), backward, "SoftmaxBackward")


def log_softmax(input, dim: int) -> Tensor:
    """log(softmax(x)) along ``dim``, computed stably (not as log of softmax)."""
    x = _float_tensor(input, "input")
    axis = _check_dim(dim, x.ndim)
    out = _log_softmax(x.data, axis)

    # out_j = x_j - logsumexp(x), so dL/dx_i = g_i - softmax_i * sum_j g_j
    def backward(g):
        return (g - np.exp(out) * g.sum(axis=axis, keepdims=True),)
    return make_op(out, (x,), backward, "LogSoftmaxBackward")


# --- losses ------------------------------------------------------------------------------

def _check_target(target, n: int, classes: int) -> np.ndarray:
    """Class targets as an int64 array of shape (n,) with values in [0, classes)."""
    if isinstance(target, Tensor):
        target = target.data
    elif not isinstance(target, np.ndarray):
        target = np.asarray(target)
    if target.dtype.kind not in "iu":
        raise TypeError(f"target must hold integer class indices (dtype int64, say), got "
                        f"dtype {target.dtype}; for class probabilities use your own loss")
    if target.shape != (n,):
        raise ValueError(f"target must have shape ({n},), one class index per row of the "
                         f"input, got shape {target.shape}")
    if n and (target.min() < 0 or target.max() >= classes):
        bad = target[(target < 0) | (target >= classes)][0]
        raise ValueError(f"target holds class {bad}, outside [0, {classes}) for an input with "
                         f"{classes} classes")
    return target.astype(np.int64, copy=False)


def _class_weights(weight, classes: int, dtype) -> np.ndarray | None:
    if weight is None:
        return None
    weight = weight.data if isinstance(weight, Tensor) else np.asarray(weight)
    if weight.shape != (classes,):
        raise ValueError(f"weight must have shape ({classes},), one weight per class, got "
                         f"{weight.shape}")
    return weight.astype(dtype, copy=False)


def _pick_loss(log_probs: Tensor, target, reduction: str, weight, fused_softmax: bool,
               name: str) -> Tensor:
    """The loss -w[t_n] * log_probs[n, t_n], reduced; shared by nll_loss and cross_entropy.

    With ``fused_softmax`` the Tensor holds logits and log_probs are computed here, and the
    backward is the fused one of cross-entropy.
    """
    x = _float_tensor(log_probs, "input")
    if x.ndim != 2:
        raise ValueError(f"input must be 2-D (N, C) scores for N samples and C classes, got "
                         f"shape {x.shape}")
    _check_reduction(reduction)
    n, classes = x.shape
    t = _check_target(target, n, classes)
    w = _class_weights(weight, classes, x.dtype)
    logp = _log_softmax(x.data, 1) if fused_softmax else x.data
    rows = np.arange(n)
    w_n = np.ones(n, x.dtype) if w is None else w[t]           # each sample's weight
    losses = -w_n * logp[rows, t]                                # (N,)
    total = w_n.sum()
    if reduction == "none":
        out = losses
    elif reduction == "sum":
        out = np.asarray(losses.sum())
    else:
        with np.errstate(invalid="ignore", divide="ignore"):    # N = 0 gives nan, as PyTorch
            out = np.asarray(losses.sum() / total)

    def backward(g):
        # dL/d(loss_n): g per sample ('none'), g ('sum') or g / sum(w) ('mean')
        per_sample = g if reduction == "none" else np.full(n, g if reduction == "sum" else
                                                           g / total, x.dtype)
        scale = (per_sample * w_n)[:, None]                      # (N, 1)
        onehot = np.zeros_like(x.data)
        onehot[rows, t] = 1
        if fused_softmax:
            # cross-entropy: d(-log softmax(x)[t]) / dx = softmax(x) - onehot(t)
            return (scale * (np.exp(logp) - onehot),)
        # nll: d(-logp[t]) / dlogp = -onehot(t)
        return (-scale * onehot,)
    return make_op(out.astype(x.dtype, copy=False), (x,), backward, name)


def nll_loss(input, target, reduction: str = "mean", *, weight=None) -> Tensor:
    """Negative log-likelihood: input (N, C) log-probabilities, target (N,) class indices.

    loss_n = -weight[t_n] * input[n, t_n]; 'mean' divides the sum by sum_n weight[t_n]
    (by N without weights), 'sum' adds up, 'none' returns the (N,) losses.
    """
    return _pick_loss(input, target, reduction, weight, False, "NllLossBackward")


def cross_entropy(input, target, reduction: str = "mean", *, weight=None) -> Tensor:
    """Softmax cross-entropy: input (N, C) logits (unnormalised scores), target (N,) ints.

    loss_n = -log softmax(input)[n, t_n] = logsumexp(input[n]) - input[n, t_n], computed
    stably (logits of +-1e4 are fine). ``weight`` (C,) optionally weighs the classes, and
    'mean' then divides by the total weight, as PyTorch. Equal to
    ``nll_loss(log_softmax(input, 1), target)``, but with one fused backward:
    (softmax - onehot(target)) / N for 'mean'.

    Note: the third positional argument is ``reduction`` (cyconv's API); ``weight`` is
    keyword-only. PyTorch's third positional argument is ``weight``, so code written for
    PyTorch that passes it positionally gets a clear error here rather than a wrong loss.
    """
    return _pick_loss(input, target, reduction, weight, True, "CrossEntropyLossBackward")


def mse_loss(input, target, reduction: str = "mean") -> Tensor:
    """Mean squared error: (input - target)^2, averaged ('mean'), summed or per element.

    input and target must have the same shape. PyTorch broadcasts them (with a warning),
    which turns a (N, 1) prediction against a (N,) target into an (N, N) matrix of errors
    and a silently wrong loss; here it is an error.
    """
    x = _float_tensor(input, "input")
    y = _float_tensor(target, "target")
    _check_reduction(reduction)
    if x.shape != y.shape:
        raise ValueError(f"input and target must have the same shape, got input {x.shape} and "
                         f"target {y.shape}")
    diff = x.data - y.data
    squares = diff * diff
    out = squares if reduction == "none" else np.asarray(
        squares.sum() if reduction == "sum" else squares.mean())
    count = diff.size if reduction == "mean" else 1

    # d (x - y)^2 / dx = 2 (x - y), and -2 (x - y) for y; 'mean' divides by the count
    def backward(g):
        grad = (2 / count) * g * diff
        return grad, -grad
    return make_op(out, (x, y), backward, "MseLossBackward")


# --- regularisation and normalisation ------------------------------------------------------

def dropout(input, p: float = 0.5, training: bool = True) -> Tensor:
    """Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p).

    The scaling keeps the expected value of every element, so at evaluation time
    (``training=False``) dropout is the identity and ``input`` is returned unchanged. The
    mask is drawn from ``cyconv.random.generator()`` (seed it with ``cyconv.manual_seed``).
    p must be in [0, 1) (PyTorch also allows p=1, which zeroes everything).
    """
    x = _float_tensor(input, "input")
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p < 1:
        raise ValueError(f"dropout probability p must be a number in [0, 1), got {p!r}")
    if not training or p == 0:
        return x
    keep = generator().random(x.shape) >= p
    mask = keep.astype(x.dtype) * x.dtype.type(1 / (1 - p))

    # y = x * mask, mask fixed: dL/dx = g * mask
    return make_op(x.data * mask, (x,), lambda g: (g * mask,), "DropoutBackward")


def _check_running(stat, name: str, channels: int) -> np.ndarray | None:
    """A running statistic as the (C,) ndarray that will be updated in place."""
    if stat is None:
        return None
    array = stat.data if isinstance(stat, Tensor) else stat
    if not isinstance(array, np.ndarray) or array.dtype.kind != "f":
        raise TypeError(f"{name} must be a float ndarray (updated in place), got "
                        f"{type(stat).__name__} {getattr(array, 'dtype', '')}")
    if array.shape != (channels,):
        raise ValueError(f"{name} must have shape ({channels},), one value per channel, got "
                         f"{array.shape}")
    return array


def _batch_norm_batch_stats(x, w, b, r_mean, r_var, training, momentum, eps, m):
    """batch_norm with this batch's statistics (the compiled kernels do the passes)."""
    if m <= 1:
        raise ValueError(f"batch_norm in training needs more than one value per channel, "
                         f"got input of shape {x.shape}")
    channels = x.shape[1]
    weight = np.ones(channels, x.dtype) if w is None and b is not None else (
        None if w is None else w.data)
    bias = np.zeros(channels, x.dtype) if b is None and w is not None else (
        None if b is None else b.data)
    out, mean, var = kernels.batch_norm_forward(x.data, weight, bias, eps)
    if training and r_mean is not None:
        # running = (1 - momentum) running + momentum batch_stat, with the unbiased variance
        r_mean *= 1 - momentum
        r_mean += momentum * mean
        r_var *= 1 - momentum
        r_var += momentum * var * (m / (m - 1))

    def backward(g):
        # the mean and the variance depend on x too: see kernels.batch_norm_backward
        grad_x, grad_w, grad_b = kernels.batch_norm_backward(g, x.data, weight, mean, var, eps,
                                                             needs_grad_input=x.requires_grad)
        grads = {"weight": grad_w.astype(x.dtype), "bias": grad_b.astype(x.dtype)}
        return (grad_x,) + tuple(grads[name] for name, p in (("weight", w), ("bias", b))
                                 if p is not None)

    parents = (x,) + tuple(p for p in (w, b) if p is not None)
    return make_op(out, parents, backward, "BatchNormBackward")


def batch_norm(input, running_mean, running_var, weight=None, bias=None,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Batch normalisation over the batch (and spatial) dimensions of each channel.

    input (N, C), (N, C, L) or (N, C, H, W); running_mean, running_var, weight, bias (C,).
    y = (x - mean) / sqrt(var + eps) * weight + bias, per channel, with

    - training (or running stats None): mean and biased variance of this batch; and, if
      running stats are given, they are updated IN PLACE, as PyTorch:
      ``running = (1 - momentum) * running + momentum * batch_stat``, where the variance
      put into running_var is the unbiased one (divided by m - 1, m values per channel);
    - evaluation: running_mean and running_var.
    """
    x = _float_tensor(input, "input")
    if x.ndim < 2:
        raise ValueError(f"input must be (N, C), (N, C, L) or (N, C, H, W), got shape {x.shape}")
    channels = x.shape[1]
    w, b = _optional(weight, "weight"), _optional(bias, "bias")
    for name, param in (("weight", w), ("bias", b)):
        if param is not None and param.shape != (channels,):
            raise ValueError(f"{name} must have shape ({channels},), one value per channel, "
                             f"got {param.shape}")
    r_mean = _check_running(running_mean, "running_mean", channels)
    r_var = _check_running(running_var, "running_var", channels)
    if (r_mean is None) != (r_var is None):
        raise ValueError("running_mean and running_var must both be given or both be None")

    axes = (0,) + tuple(range(2, x.ndim))               # all but the channel dimension
    per_channel = (1, channels) + (1,) * (x.ndim - 2)   # shape that broadcasts over x
    m = x.data.size // max(channels, 1)                 # values per channel
    if training or r_mean is None:
        return _batch_norm_batch_stats(x, w, b, r_mean, r_var, training, momentum, eps, m)

    # evaluation: the running statistics are constants, so this is a per-channel scaling
    # y = x * scale + shift, and dL/dx = g * scale
    inv_std = 1 / np.sqrt(r_var.astype(np.float64) + eps)
    scale = inv_std * (1.0 if w is None else w.data)
    shift = -r_mean * scale + (0.0 if b is None else b.data)
    x_hat = None
    if _needs_grad(w):
        x_hat = ((x.data - r_mean.reshape(per_channel)) * inv_std.reshape(per_channel)).astype(x.dtype)
    scale = scale.astype(x.dtype).reshape(per_channel)
    out = x.data * scale + shift.astype(x.dtype).reshape(per_channel)

    def backward(g):
        grad_w = (g * x_hat).sum(axis=axes) if _needs_grad(w) else None   # dL/dw = sum g x_hat
        grad_b = g.sum(axis=axes) if _needs_grad(b) else None             # dL/db = sum g
        grad_x = g * scale if x.requires_grad else None
        # one gradient per parent: x, then weight and bias if they were given
        return (grad_x,) + tuple(grad for grad, p in ((grad_w, w), (grad_b, b)) if p is not None)

    parents = (x,) + tuple(p for p in (w, b) if p is not None)
    return make_op(out, parents, backward, "BatchNormBackward")
