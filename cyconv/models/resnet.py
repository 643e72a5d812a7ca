"""A small residual network for 32x32 images (ResNet: He et al., 2015).

A residual block learns a *correction* F(x) to its input instead of a whole new mapping:
``out = relu(F(x) + shortcut(x))``. The addition gives the gradient a direct path back to
earlier layers (d out / d x contains the identity), which is what lets very deep networks
train. Names follow torchvision's ResNet (``conv1``, ``bn1``, ``layer1``..., ``fc``,
``downsample``), so a PyTorch twin's state dict maps onto this one key for key.
"""

from __future__ import annotations

from .. import nn
from ..nn._utils import check_int

__all__ = ["BasicBlock", "ResNetSmall"]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1, no bias (a BatchNorm follows and supplies the shift)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut: ``(N, in_planes, H, W) -> (N, planes, H/s, W/s)``.

    ::

        out = relu(bn1(conv1(x)))          conv1: 3x3, stride s
        out = bn2(conv2(out))              conv2: 3x3, stride 1
        out = relu(out + shortcut(x))

    The shortcut is the identity when the shape is unchanged (``stride == 1`` and
    ``in_planes == planes``); otherwise ``downsample`` = 1x1 convolution with stride s +
    BatchNorm, which matches the channels and the size ("option B" of the paper).
    """

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        check_int(in_planes, "in_planes")
        check_int(planes, "planes")
        check_int(stride, "stride")
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        else:
            self.downsample = None
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNetSmall(nn.Module):
    """A CIFAR-style ResNet: ``(N, in_channels, H, W) -> (N, num_classes)``, any H, W >= 1.

    ::

        conv1 3x3 (widths[0]) - bn1 - relu                           full resolution
        layer1: blocks_per_stage[0] BasicBlocks of widths[0]
        layer2: blocks_per_stage[1] BasicBlocks of widths[1], the first with stride 2
        ...                                                          (halving the size)
        avgpool (AdaptiveAvgPool2d(1)) - flatten - fc Linear(widths[-1], num_classes)

    With the defaults (16, 32, 64) x (2, 2, 2) on 32x32: 32 -> 32 -> 16 -> 8 -> 1, 14
    layers with weights (a "ResNet-14"), 175,258 parameters for 10 classes. Unlike
    torchvision's ImageNet ResNet there is no 7x7 stride-2 stem nor max-pooling: on 32x32
    images they would throw away most of the resolution at once.

    Thanks to the adaptive pooling any input size works; ``input_size`` is accepted (and
    only checked) so that every model of the registry takes the same arguments.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, widths: tuple = (16, 32, 64),
                 blocks_per_stage: tuple = (2, 2, 2), input_size: int | None = None):
        super().__init__()
        check_int(num_classes, "num_classes")
        check_int(in_channels, "in_channels")
        if input_size is not None:      # accepted so get_model(name, input_size=...) works for all
            check_int(input_size, "input_size")
        widths = tuple(check_int(w, "widths") for w in widths)
        blocks_per_stage = tuple(check_int(b, "blocks_per_stage") for b in blocks_per_stage)
        if not widths or len(widths) != len(blocks_per_stage):
            raise ValueError(f"widths and blocks_per_stage must be non-empty and of the same "
                             f"length (one entry per stage), got {widths} and {blocks_per_stage}")
        self.num_classes, self.in_channels = num_classes, in_channels
        self.conv1 = conv3x3(in_channels, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        planes = widths[0]
        for stage, (width, blocks) in enumerate(zip(widths, blocks_per_stage), start=1):
            stride = 1 if stage == 1 else 2
            layer = nn.Sequential()
            for index in range(blocks):
                layer.append(BasicBlock(planes, width, stride if index == 0 else 1))
                planes = width
            setattr(self, f"layer{stage}", layer)
        self.num_stages = len(widths)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(planes, num_classes)

    def forward(self, x):
        """``(N, in_channels, H, W)`` -> logits ``(N, num_classes)``."""
        x = self.relu(self.bn1(self.conv1(x)))
        for stage in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{stage}")(x)
        x = nn.functional.flatten(self.avgpool(x), 1)
        return self.fc(x)
