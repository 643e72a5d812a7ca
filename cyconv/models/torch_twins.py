"""PyTorch twins of the models of :mod:`cyconv.models`, for checking cyconv against PyTorch.

``torch_twin(name, **kwargs)`` builds the ``torch.nn.Module`` that computes the same function
as ``cyconv.models.get_model(name, **kwargs)``: the same layers in the same order, with the
same sub-module names, so the two state dicts have the same keys (in the same order) and
the same shapes. Weights go either way::

    import torch
    from cyconv import models
    from cyconv.models.torch_twins import torch_twin, to_numpy_state_dict

    ours = models.get_model("resnet_small")
    theirs = torch_twin("resnet_small")
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    ours.load_state_dict(to_numpy_state_dict(theirs.state_dict()))   # or the torch tensors

After that, both models give the same logits, the same gradients and, trained with the
same optimizer on the same batches, the same parameters (tests/test_torch_parity.py checks
it). Both sides start from their own random initialisation: load one into the other.

The twins' class names are cyconv's (``LeNet5``, ``BasicBlock``, ...), so their reprs read
alike too. PyTorch is needed only here, and only when a twin is built: cyconv itself never
imports it (``pip install torch==2.13.0`` to use this module).
"""

from __future__ import annotations

import functools
import inspect
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

from ..nn._utils import check_int
from .lenet import DigitsNet, LeNet5
from .resnet import ResNetSmall
from .vgg import VGGSmall

__all__ = ["torch_twin", "to_numpy_state_dict", "TWINS"]

#: the model names that have a twin, and the cyconv class each one mirrors
TWINS = {
    "lenet5": LeNet5,
    "digits_net": DigitsNet,
    "vgg_small": VGGSmall,
    "resnet_small": ResNetSmall,
}


def _import_torch():
    try:
        import torch
    except ImportError as error:
        raise ImportError("the PyTorch twins of cyconv's models need PyTorch, which is not "
                          "installed: pip install torch==2.13.0") from error
    return torch


def _arguments(cls, kwargs: dict) -> dict:
    """``kwargs`` completed with the defaults of ``cls.__init__`` (cyconv's own signature, so
    the twin's defaults can never drift from the cyconv model's); TypeError for a keyword
    the cyconv model does not take."""
    signature = inspect.signature(cls.__init__)
    try:
        bound = signature.bind(None, **kwargs)
    except TypeError as error:
        raise TypeError(f"{cls.__name__}: {error}") from None
    bound.apply_defaults()
    arguments = dict(bound.arguments)
    arguments.pop(next(iter(signature.parameters)))  # self
    return arguments


@functools.cache
def _classes():
    """The twin classes, defined once PyTorch is imported (cyconv must not import it)."""
    torch = _import_torch()
    tnn = torch.nn
    activations = {"relu": tnn.ReLU, "tanh": tnn.Tanh, "sigmoid": tnn.Sigmoid}
    pools = {"max": tnn.MaxPool2d, "avg": tnn.AvgPool2d}

    class LeNet5(tnn.Module):
        """Twin of :class:`cyconv.models.LeNet5`."""

        def __init__(self, num_classes, in_channels, input_size, activation, pooling):
            super().__init__()
            act, pool = activations[activation], pools[pooling]
            self.features = tnn.Sequential(
                tnn.Conv2d(in_channels, 6, kernel_size=5, padding=2 if input_size == 28 else 0),
                act(),
                pool(kernel_size=2, stride=2),
                tnn.Conv2d(6, 16, kernel_size=5),
                act(),
                pool(kernel_size=2, stride=2),
            )
            self.classifier = tnn.Sequential(
                tnn.Linear(16 * 5 * 5, 120), act(),
                tnn.Linear(120, 84), act(),
                tnn.Linear(84, num_classes),
            )

        def forward(self, x):
            return self.classifier(torch.flatten(self.features(x), 1))

    class DigitsNet(tnn.Module):
        """Twin of :class:`cyconv.models.DigitsNet`."""

        def __init__(self, num_classes, in_channels, input_size, widths, hidden):
            super().__init__()
            c1, c2 = widths
            self.features = tnn.Sequential(
                tnn.Conv2d(in_channels, c1, kernel_size=3, padding=1), tnn.ReLU(), tnn.MaxPool2d(2),
                tnn.Conv2d(c1, c2, kernel_size=3, padding=1), tnn.ReLU(), tnn.MaxPool2d(2),
            )
            side = input_size // 4
            self.classifier = tnn.Sequential(
                tnn.Linear(c2 * side * side, hidden), tnn.ReLU(), tnn.Linear(hidden, num_classes))

        def forward(self, x):
            return self.classifier(torch.flatten(self.features(x), 1))

    class VGGSmall(tnn.Module):
        """Twin of :class:`cyconv.models.VGGSmall`."""

        def __init__(self, num_classes, in_channels, input_size, widths, convs_per_block,
                     batch_norm, dropout, hidden):
            super().__init__()
            layers, channels = [], in_channels
            for width in widths:
                for _ in range(convs_per_block):
                    layers.append(tnn.Conv2d(channels, width, kernel_size=3, padding=1))
                    if batch_norm:
                        layers.append(tnn.BatchNorm2d(width))
                    layers.append(tnn.ReLU())
                    channels = width
                layers.append(tnn.MaxPool2d(kernel_size=2, stride=2))
            self.features = tnn.Sequential(*layers)
            side = input_size // 2 ** len(widths)
            self.classifier = tnn.Sequential(
                tnn.Dropout(dropout), tnn.Linear(channels * side * side, hidden), tnn.ReLU(),
                tnn.Dropout(dropout), tnn.Linear(hidden, num_classes))

        def forward(self, x):
            return self.classifier(torch.flatten(self.features(x), 1))

    class BasicBlock(tnn.Module):
        """Twin of :class:`cyconv.models.BasicBlock`."""

        expansion = 1

        def __init__(self, in_planes, planes, stride=1):
            super().__init__()
            self.conv1 = tnn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(planes)
            self.relu = tnn.ReLU()
            self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(planes)
            if stride != 1 or in_planes != planes:
                self.downsample = tnn.Sequential(
                    tnn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
                    tnn.BatchNorm2d(planes))
            else:
                self.downsample = None
            self.stride = stride

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + identity)

    class ResNetSmall(tnn.Module):
        """Twin of :class:`cyconv.models.ResNetSmall`."""

        def __init__(self, num_classes, in_channels, widths, blocks_per_stage, input_size=None):
            super().__init__()
            self.conv1 = tnn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(widths[0])
            self.relu = tnn.ReLU()
            planes = widths[0]
            for stage, (width, blocks) in enumerate(zip(widths, blocks_per_stage), start=1):
                stride = 1 if stage == 1 else 2
                layer = tnn.Sequential()
                for index in range(blocks):
                    layer.append(BasicBlock(planes, width, stride if index == 0 else 1))
                    planes = width
                setattr(self, f"layer{stage}", layer)
            self.num_stages = len(widths)
            self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
            self.fc = tnn.Linear(planes, num_classes)

        def forward(self, x):
            x = self.relu(self.bn1(self.conv1(x)))
            for stage in range(1, self.num_stages + 1):
                x = getattr(self, f"layer{stage}")(x)
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return dict(lenet5=LeNet5, digits_net=DigitsNet, vgg_small=VGGSmall,
                resnet_small=ResNetSmall, basic_block=BasicBlock)


def _check(key: str, args: dict) -> None:
    """The checks of the cyconv constructor that PyTorch would not make (or make later and
    less clearly), so that a twin is never built for arguments cyconv refuses."""
    for name in ("num_classes", "in_channels"):
        check_int(args[name], name)
    if key == "lenet5":
        if args["input_size"] not in (28, 32):
            raise ValueError(f"LeNet5 takes input_size 32 (classic) or 28 (MNIST, padded by 2), "
                             f"got {args['input_size']!r}; for 8x8 images use DigitsNet")
        if args["activation"] not in ("relu", "tanh", "sigmoid"):
            raise ValueError(f"activation must be one of ('relu', 'tanh', 'sigmoid'), "
                             f"got {args['activation']!r}")
        if args["pooling"] not in ("max", "avg"):
            raise ValueError(f"pooling must be one of ('max', 'avg'), got {args['pooling']!r}")
    elif key == "digits_net":
        if check_int(args["input_size"], "input_size") % 4:
            raise ValueError(f"DigitsNet needs input_size divisible by 4 (two 2x2 poolings), "
                             f"got {args['input_size']}")
        if len(args["widths"]) != 2:
            raise ValueError(f"widths must give the channels of the 2 convolutions, "
                             f"got {args['widths']!r}")
        args["widths"] = tuple(check_int(w, "widths") for w in args["widths"])
        check_int(args["hidden"], "hidden")
    elif key == "vgg_small":
        widths = args["widths"] = tuple(check_int(w, "widths") for w in args["widths"])
        if not widths:
            raise ValueError("widths must name at least one block")
        check_int(args["convs_per_block"], "convs_per_block")
        check_int(args["hidden"], "hidden")
        if check_int(args["input_size"], "input_size") % 2 ** len(widths):
            raise ValueError(f"input_size must be divisible by 2**len(widths) = {2 ** len(widths)} "
                             f"({len(widths)} poolings), got {args['input_size']}")
    elif key == "resnet_small":
        if args["input_size"] is not None:
            check_int(args["input_size"], "input_size")
        widths = args["widths"] = tuple(check_int(w, "widths") for w in args["widths"])
        blocks = args["blocks_per_stage"] = tuple(check_int(b, "blocks_per_stage")
                                                  for b in args["blocks_per_stage"])
        if not widths or len(widths) != len(blocks):
            raise ValueError(f"widths and blocks_per_stage must be non-empty and of the same "
                             f"length (one entry per stage), got {widths} and {blocks}")


def torch_twin(name: str, **kwargs):
    """The PyTorch model equivalent to ``cyconv.models.get_model(name, **kwargs)``.

    ``name`` as for ``get_model`` (case-insensitive, ``-`` same as ``_``): ``lenet5``,
    ``digits_net``, ``vgg_small`` or ``resnet_small``; ``kwargs`` are the cyconv model's
    (the same defaults). The twin has PyTorch's own random initialisation and is in training
    mode, like a fresh cyconv model; copy the weights over with ``load_state_dict``.
    Raises ImportError (with the install command) when PyTorch is missing.
    """
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, got {type(name).__name__}")
    key = name.lower().replace("-", "_")
    if key not in TWINS:
        raise ValueError(f"no PyTorch twin for model {name!r}; twins exist for: "
                         f"{', '.join(sorted(TWINS))}")
    args = _arguments(TWINS[key], kwargs)
    _check(key, args)
    return _classes()[key](**args)


def to_numpy_state_dict(state_dict: Mapping) -> OrderedDict:
    """A (PyTorch) state dict with every value as a NumPy array, keys and order unchanged.

    torch Tensors are detached, moved to the CPU and *copied* (a state dict's tensors share
    memory with the model's parameters, so without the copy a later training step of the
    PyTorch model would change the arrays). ndarrays are copied, numbers become 0-d arrays.
    The result loads into the cyconv model of the same architecture (``load_state_dict``),
    including ``num_batches_tracked`` (an int64 0-d array). Does not import PyTorch.
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping of name -> tensor, "
                        f"got {type(state_dict).__name__}")
    converted = OrderedDict()
    for key, value in state_dict.items():
        if hasattr(value, "detach") and hasattr(value, "cpu") and hasattr(value, "numpy"):
            value = value.detach().cpu().numpy()
        elif hasattr(value, "data") and isinstance(getattr(value, "data"), np.ndarray):
            value = value.data  # a cyconv Tensor / Parameter
        converted[key] = np.array(value, copy=True)
    return converted
