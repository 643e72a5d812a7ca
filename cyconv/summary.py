"""``summary(model, input_shape)``: a table of every layer, as Keras' ``model.summary()``.

For each layer that does the work (the *leaf* modules: Conv2d, ReLU, Linear..., not the
containers around them) the table shows:

- the **output shape**, batch dimension first;
- the **number of parameters** (weights and biases it learns), from the formulas in
  :mod:`cyconv.teach.calculators`;
- the **receptive field** ``RF``: the side, in input pixels, of the window of the input image
  that one value of this layer's output depends on; and the **jump**: how many input pixels
  apart two neighbouring output values are (the product of the strides so far). Only for
  layers on the spatial path (4-D outputs); after flattening, a value depends on the whole
  image and ``-`` is shown;
- the **FLOPs** of the forward pass for the whole batch, counted as 2 x multiply-adds for
  Conv2d and Linear layers (the layers that do almost all the arithmetic); other layers
  (activations, pooling, batch norm...) are counted as 0.

How it works: the model is run once on a batch of zeros, under ``no_grad()`` and in
evaluation mode (so Dropout and BatchNorm change nothing), with a forward hook on every
leaf module that records what goes in and what comes out. The model's train/eval mode is
put back afterwards. The shapes are therefore the ones the model really produces, and the
formulas are checked against them by the tests.

Receptive fields are followed through the layers in the order they run, from each layer's
input to its output. When a layer's input was made outside any module (a residual
addition ``out + identity``, a ``torch.cat``, a functional call), the field of the most recent
layer is used: for residual networks that follows the *main* path (the convolutions), which
is the larger of the two fields being added, so the value is a good approximation and the
table says so.

Use ``from cyconv.summary import summary`` (or ``cyconv.summary(...)`` where exported)::

    >>> from cyconv.models import LeNet5
    >>> print(summary(LeNet5(), (1, 32, 32)))           # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field

import numpy as np

from . import geometry
from .autograd import Tensor, no_grad
from .nn import AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Linear, MaxPool2d, Module
from .teach import calculators as calc

__all__ = ["summary", "summary_text", "Summary", "LayerRow"]


@dataclass
class LayerRow:
    """One line of the summary: one call of one leaf module."""

    name: str                          # dotted name, e.g. "features.0"
    type: str                          # class name, e.g. "Conv2d"
    input_shape: tuple | None          # shape of the first input, batch first
    output_shape: tuple | None         # shape of the output, batch first
    params: int                        # parameters of this module (0 when repeated)
    trainable_params: int              # of which requires_grad
    receptive_field: tuple | None      # (h, w) in input pixels, None off the spatial path
    jump: tuple | None                 # (h, w) input pixels between neighbouring outputs
    flops: int                         # 2 x multiply-adds for the whole batch (conv/linear)
    repeated: bool = False             # a module already listed, called again
    owns_params: bool = False          # the module has parameters (counted on its first row)


@dataclass
class Summary:
    """What :func:`summary` found: ``rows`` (one :class:`LayerRow` per layer call) and totals.

    ``str(summary)`` (or ``summary.table()``) is the printable table.
    """

    model_name: str
    input_shape: tuple                 # without the batch dimension
    batch_size: int
    rows: list = field(default_factory=list)
    total_params: int = 0              # every distinct parameter of the model
    trainable_params: int = 0          # those with requires_grad
    total_flops: int = 0               # sum of the rows' FLOPs
    param_bytes: int = 0               # memory of the parameters
    activation_bytes: int = 0          # memory of all the rows' outputs (one forward pass)
    dtype: str = "float32"
    approximate_rf: bool = False       # some receptive field followed only the main path

    @property
    def non_trainable_params(self) -> int:
        return self.total_params - self.trainable_params

    def row(self, name: str) -> LayerRow:
        """The (first) row of the layer called ``name``."""
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"no layer named {name!r} in the summary")

    def as_dict(self) -> dict:
        """Everything as plain Python values (for JSON)."""
        result = dataclasses.asdict(self)
        result["non_trainable_params"] = self.non_trainable_params
        return result

    def table(self) -> str:
        """The summary as an aligned text table with the totals below it."""
        headers = ("Layer", "Type", "Output shape", "Params", "RF", "Jump", "FLOPs")
        body = []
        for row in self.rows:
            params = "(reused)" if row.repeated and row.owns_params else f"{row.params:,}"
            body.append((row.name, row.type,
                         _shape_text(row.output_shape), params,
                         _pair_text(row.receptive_field), _pair_text(row.jump),
                         f"{row.flops:,}"))
        widths = [max([len(h)] + [len(line[i]) for line in body]) for i, h in enumerate(headers)]
        left = (True, True, True, False, False, False, False)     # text left, numbers right

        def render(cells):
            return "  ".join(c.ljust(w) if is_left else c.rjust(w)
                             for c, w, is_left in zip(cells, widths, left)).rstrip()

        rule_width = max(sum(widths) + 2 * (len(widths) - 1), 60)
        thick, thin = "=" * rule_width, "-" * rule_width
        shape = ", ".join(str(s) for s in self.input_shape)
        mb = 1024 ** 2
        lines = [f"{self.model_name}: input ({shape}), batch size {self.batch_size}, {self.dtype}",
                 thick, render(headers), thick]
        lines += [render(cells) for cells in body]
        lines += [
            thin,
            f"Total params: {self.total_params:,}",
            f"Trainable params: {self.trainable_params:,}",
            f"Non-trainable params: {self.non_trainable_params:,}",
            f"Total FLOPs (forward pass, batch of {self.batch_size}): {self.total_flops:,}",
            f"Params size (MB): {self.param_bytes / mb:.2f}",
            f"Forward pass outputs size (MB): {self.activation_bytes / mb:.2f}",
            thin,
            "RF: receptive field, the side of the input window (in pixels) one output value "
            "depends on.",
            "Jump: distance in input pixels between neighbouring output values (product of the "
            "strides).",
            "FLOPs: 2 x multiply-adds of Conv2d and Linear layers; other layers count as 0.",
        ]
        if self.approximate_rf:
            lines.append("RF of merged branches (e.g. residual additions) follows the main path: "
                         "an approximation.")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _shape_text(shape) -> str:
    return "?" if shape is None else "[" + ", ".join(str(s) for s in shape) + "]"


def _pair_text(pair) -> str:
    """``(14, 14)`` -> ``'14'``, ``(14, 10)`` -> ``'14x10'``, None -> ``'-'``."""
    if pair is None:
        return "-"
    h, w = (int(v) if float(v).is_integer() else round(float(v), 2) for v in pair)
    return f"{h}" if h == w else f"{h}x{w}"


def _first_tensor(value):
    """The tensor in a module's output (the first, for outputs such as ``(out, indices)``)."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], Tensor):
        return value[0]
    return None


def _count(module: Module, recurse: bool) -> tuple[int, int]:
    params = list(module.parameters(recurse=recurse))
    return (sum(p.data.size for p in params),
            sum(p.data.size for p in params if p.requires_grad))


def _formula_params(module: Module, counted: int) -> int:
    """The parameter count from the textbook formula; the counted number for other layers.

    If a layer has been changed by hand so that the formula no longer describes it (say, a
    weight replaced by one of another shape), the counted number wins.
    """
    if isinstance(module, Conv2d):
        expected = calc.conv_params(module.in_channels, module.out_channels, module.kernel_size,
                                    module.groups, bias=module.bias is not None)
    elif isinstance(module, Linear):
        expected = calc.linear_params(module.in_features, module.out_features,
                                      bias=module.bias is not None)
    elif isinstance(module, (BatchNorm1d, BatchNorm2d)):
        expected = calc.batchnorm_params(module.num_features, module.weight is not None)
    else:
        return counted
    return expected if expected == counted else counted


def _flops(module: Module, output: Tensor | None) -> int:
    if output is None:
        return 0
    if isinstance(module, Conv2d) and output.ndim == 4:
        n, _, out_h, out_w = output.shape
        return calc.conv_flops(module.in_channels, module.out_channels, module.kernel_size,
                               out_h, out_w, module.groups, batch=n)
    if isinstance(module, Linear) and output.ndim >= 1:
        rows = int(np.prod(output.shape[:-1])) if output.ndim > 1 else 1
        return calc.linear_flops(module.in_features, module.out_features, batch=rows)
    return 0


def _window(module: Module, input: Tensor):
    """``((kernel, stride, dilation, padding) along h, the same along w)`` of a sliding-window
    layer, or None for a layer that keeps every pixel where it is."""
    if isinstance(module, Conv2d):
        k, s, d = module.kernel_size, module.stride, module.dilation
        top, _, left, _ = geometry.conv_padding(module.padding, k, d, s)
        return (k[0], s[0], d[0], top), (k[1], s[1], d[1], left)
    if isinstance(module, (MaxPool2d, AvgPool2d)):
        k = geometry.pair(module.kernel_size, "kernel_size")
        s = geometry.pair(module.stride, "stride")
        p = geometry.pair(module.padding, "padding")
        d = geometry.pair(getattr(module, "dilation", 1), "dilation")
        return (k[0], s[0], d[0], p[0]), (k[1], s[1], d[1], p[1])
    if isinstance(module, AdaptiveAvgPool2d):
        h, w = input.shape[2:]
        out_h, out_w = geometry.adaptive_pool2d_geometry(input.shape, module.output_size)
        steps = []
        for size, out in ((h, out_h), (w, out_w)):
            # Largest window, and the step rounded down when out does not divide size: then
            # the windows are not evenly spaced and the jump is an approximation.
            window, _ = calc.adaptive_window(size, out)
            steps.append((window, max(1, size // out), 1, 0))
        return tuple(steps)
    return None


def _next_field(module: Module, input: Tensor, output: Tensor, previous):
    """The (h, w) receptive fields after ``module``, or None if it cannot be told."""
    window = _window(module, input)
    if window is not None:
        return tuple(calc.receptive_field_step(field_, *axis) for field_, axis in zip(previous, window))
    if output.shape[2:] == input.shape[2:]:
        return previous          # pixel by pixel (ReLU, BatchNorm, Dropout...): unchanged
    return None                  # an unknown layer that moves pixels around


def _check_shape(input_shape) -> tuple:
    if isinstance(input_shape, numbers.Integral) and not isinstance(input_shape, bool):
        input_shape = (input_shape,)
    if (not isinstance(input_shape, (tuple, list)) or not input_shape
            or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in input_shape)):
        raise TypeError(f"input_shape must be a tuple of ints such as (C, H, W) (no batch "
                        f"dimension), got {input_shape!r}")
    if min(input_shape) < 1:
        raise ValueError(f"input_shape must have positive sizes, got {tuple(input_shape)}")
    return tuple(int(s) for s in input_shape)


def summary(model: Module, input_shape, batch_size: int = 1, dtype=None) -> Summary:
    """Run ``model`` once on zeros of shape ``(batch_size, *input_shape)`` and tabulate its layers.

    ``input_shape`` is one example's shape without the batch dimension, e.g. ``(1, 32, 32)``
    for LeNet-5 (``(C, H, W)``; any length works for models that take other inputs).
    ``dtype`` defaults to the dtype of the model's parameters. Returns a :class:`Summary`;
    ``print()`` it for the table. The model is left as it was (same mode, same weights, no
    gradients).

    Raises ValueError if the model cannot run on that input shape, with the model's own
    message (for example a kernel that does not fit).
    """
    if not isinstance(model, Module):
        raise TypeError(f"model must be a cyconv.nn.Module, got {type(model).__name__}")
    input_shape = _check_shape(input_shape)
    if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    parameters = list(model.parameters())
    if dtype is None:
        dtype = parameters[0].data.dtype if parameters else np.float32
    dtype = np.dtype(dtype)

    # Hook the leaves (and any container that owns parameters itself).
    calls = []
    handles = []
    for name, module in model.named_modules():
        children = any(True for _ in module.children())
        if children and not module._parameters:
            continue

        def hook(module, inputs, output, name=name or type(module).__name__):
            calls.append((name, module, inputs[0] if inputs else None, output))
        handles.append(module.register_forward_hook(hook))

    modes = [(module, module.training) for module in model.modules()]
    x = Tensor(np.zeros((batch_size,) + input_shape, dtype=dtype))
    try:
        model.eval()
        with no_grad():
            model(x)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{type(model).__name__} cannot run on input shape {input_shape} "
                         f"(batch {batch_size}): {error}") from error
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes:
            module.training = training

    result = Summary(model_name=type(model).__name__, input_shape=input_shape,
                     batch_size=int(batch_size), dtype=str(dtype))
    # Receptive fields by tensor: id(tensor) -> ((h field, w field)). The tensors are kept
    # alive by `calls`, so no id can be reused by another tensor meanwhile.
    fields = {}
    latest = None
    if x.ndim == 4:
        fields[id(x)] = latest = (calc.ReceptiveField(), calc.ReceptiveField())
    seen = set()
    for name, module, input, output in calls:
        out = _first_tensor(output)
        inp = input if isinstance(input, Tensor) else None
        repeated = id(module) in seen
        seen.add(id(module))
        children = any(True for _ in module.children())
        params, trainable = _count(module, recurse=not children)
        owns_params = params > 0
        if repeated:                         # counted on the module's first row already
            params = trainable = 0
        else:
            params = _formula_params(module, params)

        field_ = None
        if inp is not None and out is not None and inp.ndim == 4 and out.ndim == 4:
            before = fields.get(id(inp))
            if before is None and latest is not None:
                before = latest              # made outside any module: follow the main path
                result.approximate_rf = True
            if before is not None:
                field_ = _next_field(module, inp, out, before)
            if field_ is not None:
                fields[id(out)] = field_
            latest = field_

        result.rows.append(LayerRow(
            name=name, type=type(module).__name__,
            input_shape=None if inp is None else tuple(inp.shape),
            output_shape=None if out is None else tuple(out.shape),
            params=params, trainable_params=trainable,
            receptive_field=None if field_ is None else tuple(calc._exact(f.size) for f in field_),
            jump=None if field_ is None else tuple(calc._exact(f.jump) for f in field_),
            flops=_flops(module, out), repeated=repeated, owns_params=owns_params))
        if out is not None:
            result.activation_bytes += out.data.nbytes

    result.total_params = sum(p.data.size for p in parameters)
    result.trainable_params = sum(p.data.size for p in parameters if p.requires_grad)
    result.param_bytes = sum(p.data.nbytes for p in parameters)
    result.total_flops = sum(row.flops for row in result.rows)
    return result


def summary_text(model: Module, input_shape, batch_size: int = 1) -> str:
    """The table of :func:`summary` as a string (what ``cyconv summary`` prints)."""
    return summary(model, input_shape, batch_size).table()
