"""LeNet-5 (LeCun et al., 1998) and a LeNet-style network for 8x8 digit images.

LeNet-5, as built here (for a 32x32 input)::

    input           (N, C, 32, 32)
    C1  conv 5x5, 6      -> (N, 6, 28, 28)     then activation
    S2  pool 2x2, /2     -> (N, 6, 14, 14)
    C3  conv 5x5, 16     -> (N, 16, 10, 10)    then activation
    S4  pool 2x2, /2     -> (N, 16, 5, 5)
    flatten              -> (N, 400)
    F5  linear 120, F6 linear 84 (each followed by the activation), output linear num_classes

61,706 parameters for one input channel and 10 classes. Differences from the 1998 paper,
which are the usual modern simplifications: the paper used a scaled tanh (and sigmoid-like
squashing in its subsampling layers), *trainable* subsampling (average times a learnt
coefficient plus a bias), C3 connected to only some of S2's maps, and Gaussian RBF output
units. Here the default is ReLU with max pooling; ``activation='tanh'`` with
``pooling='avg'`` is the closest to the original.
"""

from __future__ import annotations

from .. import nn
from ..nn._utils import check_int

__all__ = ["LeNet5", "DigitsNet"]

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
_POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


def _choice(value: str, options: dict, name: str):
    if value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}, got {value!r}")
    return options[value]


class LeNet5(nn.Module):
    """LeNet-5 for 32x32 images (or 28x28, e.g. MNIST): ``(N, in_channels, s, s) -> (N, num_classes)``.

    ``input_size``: 32 (the classic), or 28: the first convolution then pads by 2, so that
    28x28 images give the same 28x28 maps after C1 and everything after is unchanged (the
    usual way of running LeNet-5 on MNIST). For the 8x8 digits of the UCI data set use
    :class:`DigitsNet`: two 5x5 convolutions and two poolings do not fit in 8x8.

    ``activation``: ``'relu'`` (default), ``'tanh'`` or ``'sigmoid'``; ``pooling``: ``'max'``
    (default) or ``'avg'``. Sub-modules ``features`` (convolutions and pooling) and
    ``classifier`` (the fully connected layers), so state-dict keys are
    ``features.0.weight``, ``features.3.weight``, ``classifier.0.weight``, ``classifier.2.weight``
    and ``classifier.4.weight`` (and the biases).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 32,
                 activation: str = "relu", pooling: str = "max"):
        super().__init__()
        check_int(num_classes, "num_classes")
        check_int(in_channels, "in_channels")
        if input_size not in (28, 32):
            raise ValueError(f"LeNet5 takes input_size 32 (classic) or 28 (MNIST, padded by 2), "
                             f"got {input_size!r}; for 8x8 images use DigitsNet")
        act = _choice(activation, _ACTIVATIONS, "activation")
        pool = _choice(pooling, _POOLS, "pooling")
        self.num_classes, self.in_channels, self.input_size = num_classes, in_channels, input_size
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5, padding=2 if input_size == 28 else 0),  # C1
            act(),
            pool(kernel_size=2, stride=2),                                                    # S2
            nn.Conv2d(6, 16, kernel_size=5),                                                  # C3
            act(),
            pool(kernel_size=2, stride=2),                                                    # S4
        )
        self.classifier = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120),                                                       # F5
            act(),
            nn.Linear(120, 84),                                                               # F6
            act(),
            nn.Linear(84, num_classes),                                                       # output
        )

    def forward(self, x):
        """``(N, in_channels, s, s)`` -> logits ``(N, num_classes)``."""
        x = self.features(x)                       # (N, 16, 5, 5)
        x = nn.functional.flatten(x, 1)            # (N, 400)
        return self.classifier(x)


class DigitsNet(nn.Module):
    """A LeNet-style CNN for small images, made for the 8x8 UCI handwritten digits.

    ``(N, in_channels, 8, 8) -> (N, num_classes)``, with 3x3 convolutions padded by 1 so
    that each keeps the size, and two 2x2 max-poolings::

        conv 3x3, 16 + ReLU -> (N, 16, 8, 8) -> pool -> (N, 16, 4, 4)
        conv 3x3, 32 + ReLU -> (N, 32, 4, 4) -> pool -> (N, 32, 2, 2)
        flatten 128 -> linear 64 + ReLU -> linear num_classes

    ``input_size`` may be any multiple of 4 (the flattened size follows it). Sub-modules
    ``features`` and ``classifier`` as in :class:`LeNet5`.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 8,
                 widths: tuple = (16, 32), hidden: int = 64):
        super().__init__()
        check_int(num_classes, "num_classes")
        check_int(in_channels, "in_channels")
        check_int(input_size, "input_size")
        if input_size % 4:
            raise ValueError(f"DigitsNet needs input_size divisible by 4 (two 2x2 poolings), "
                             f"got {input_size}")
        if len(widths) != 2:
            raise ValueError(f"widths must give the channels of the 2 convolutions, got {widths!r}")
        c1, c2 = (check_int(w, "widths") for w in widths)
        self.num_classes, self.in_channels, self.input_size = num_classes, in_channels, input_size
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        side = input_size // 4
        self.classifier = nn.Sequential(
            nn.Linear(c2 * side * side, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        """``(N, in_channels, s, s)`` -> logits ``(N, num_classes)``."""
        return self.classifier(nn.functional.flatten(self.features(x), 1))
