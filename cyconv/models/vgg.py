"""VGG-style network for small images (VGG: Simonyan & Zisserman, 2014).

The VGG idea: only 3x3 convolutions (padded by 1, so they keep the size), stacked in
blocks, each block followed by a 2x2 max-pooling that halves the size; the number of
channels grows from block to block. Two stacked 3x3 convolutions see a 5x5 window with
fewer parameters than one 5x5 convolution, and with a non-linearity in between.
"""

from __future__ import annotations

from .. import nn
from ..nn._utils import check_int

__all__ = ["VGGSmall"]


class VGGSmall(nn.Module):
    """A small VGG for 32x32 images (CIFAR-10): ``(N, in_channels, s, s) -> (N, num_classes)``.

    ``features``: for each width ``w`` in ``widths``, ``convs_per_block`` times
    ``Conv2d(3x3, w, padding=1)`` [+ ``BatchNorm2d(w)`` if ``batch_norm``] + ``ReLU``,
    then ``MaxPool2d(2)``. With the defaults: 32 -> 16 -> 8 -> 4.

    ``classifier``: ``Dropout(dropout)``, ``Linear(widths[-1] * r * r, hidden)``, ``ReLU``,
    ``Dropout(dropout)``, ``Linear(hidden, num_classes)`` with ``r = input_size / 2**len(widths)``.
    The Dropout layers are there even for ``dropout=0`` (then they do nothing), so that the
    state-dict keys do not depend on it. The convolutions keep their bias with batch norm
    (as torchvision's VGG), although BatchNorm's shift makes it redundant.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, input_size: int = 32,
                 widths: tuple = (32, 64, 128), convs_per_block: int = 2, batch_norm: bool = False,
                 dropout: float = 0.5, hidden: int = 256):
        super().__init__()
        check_int(num_classes, "num_classes")
        check_int(in_channels, "in_channels")
        check_int(input_size, "input_size")
        check_int(convs_per_block, "convs_per_block")
        check_int(hidden, "hidden")
        widths = tuple(check_int(w, "widths") for w in widths)
        if not widths:
            raise ValueError("widths must name at least one block")
        if input_size % 2 ** len(widths):
            raise ValueError(f"input_size must be divisible by 2**len(widths) = {2 ** len(widths)} "
                             f"({len(widths)} poolings), got {input_size}")
        self.num_classes, self.in_channels, self.input_size = num_classes, in_channels, input_size
        layers, channels = [], in_channels
        for width in widths:
            for _ in range(convs_per_block):
                layers.append(nn.Conv2d(channels, width, kernel_size=3, padding=1))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(width))
                layers.append(nn.ReLU())
                channels = width
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        self.features = nn.Sequential(*layers)
        side = input_size // 2 ** len(widths)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(channels * side * side, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        """``(N, in_channels, s, s)`` -> logits ``(N, num_classes)``."""
        return self.classifier(nn.functional.flatten(self.features(x), 1))
