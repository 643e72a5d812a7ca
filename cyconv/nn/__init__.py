"""``cyconv.nn``: layers and models as objects that own their parameters (as ``torch.nn``).

- :class:`Module` (base class), :class:`Parameter`, containers :class:`Sequential`,
  :class:`ModuleList`, :class:`ModuleDict`;
- layers: :class:`Conv2d`, :class:`Linear`, :class:`MaxPool2d`, :class:`AvgPool2d`,
  :class:`AdaptiveAvgPool2d`, :class:`BatchNorm1d`, :class:`BatchNorm2d`,
  :class:`Dropout`, :class:`Flatten`, :class:`Identity`;
- activations :class:`ReLU`, :class:`LeakyReLU`, :class:`Sigmoid`, :class:`Tanh`,
  :class:`Softmax`, :class:`LogSoftmax`; losses :class:`CrossEntropyLoss`, :class:`MSELoss`;
- ``cyconv.nn.init`` (weight initialisation) and ``cyconv.nn.functional`` (the same module
  as ``cyconv.functional``: the stateless operations the layers call).
"""

from .. import functional
from . import init
from .activation import LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from .containers import ModuleDict, ModuleList, Sequential
from .conv import Conv2d
from .dropout import Dropout
from .flatten import Flatten
from .linear import Identity, Linear
from .loss import CrossEntropyLoss, MSELoss
from .module import IncompatibleKeys, Module, RemovableHandle
from .normalization import BatchNorm1d, BatchNorm2d
from .parameter import Parameter
from .pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d

__all__ = [
    "functional", "init", "Module", "Parameter", "RemovableHandle", "IncompatibleKeys",
    "Sequential", "ModuleList", "ModuleDict", "Conv2d", "Linear", "Identity", "MaxPool2d",
    "AvgPool2d", "AdaptiveAvgPool2d", "BatchNorm1d", "BatchNorm2d", "Dropout", "Flatten",
    "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "CrossEntropyLoss",
    "MSELoss",
]
