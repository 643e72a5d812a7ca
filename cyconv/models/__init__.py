"""``cyconv.models``: classic small CNNs, and a registry to build them by name.

=================  ======================  =====================================
name               class                   for
=================  ======================  =====================================
``lenet5``         :class:`LeNet5`         32x32 or 28x28 grey images (MNIST)
``digits_net``     :class:`DigitsNet`      8x8 digits (UCI / scikit-learn)
``vgg_small``      :class:`VGGSmall`       32x32 colour images (CIFAR-10)
``resnet_small``   :class:`ResNetSmall`    32x32 colour images (CIFAR-10)
=================  ======================  =====================================

``get_model("lenet5", num_classes=10)`` builds one; ``list_models()`` lists the names.
"""

from __future__ import annotations

from .lenet import DigitsNet, LeNet5
from .resnet import BasicBlock, ResNetSmall
from .vgg import VGGSmall

__all__ = ["LeNet5", "DigitsNet", "VGGSmall", "BasicBlock", "ResNetSmall", "MODELS",
           "get_model", "list_models", "register_model"]

#: name -> model class (or any callable returning a Module)
MODELS = {
    "lenet5": LeNet5,
    "digits_net": DigitsNet,
    "vgg_small": VGGSmall,
    "resnet_small": ResNetSmall,
}


def register_model(name: str, builder=None):
    """Add ``builder`` to the registry under ``name``; usable as a class decorator."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"model name must be a non-empty str, got {name!r}")

    def register(builder):
        if name in MODELS:
            raise ValueError(f"a model named {name!r} is already registered")
        MODELS[name] = builder
        return builder
    return register if builder is None else register(builder)


def list_models() -> list[str]:
    """The registered model names, sorted."""
    return sorted(MODELS)


def get_model(name: str, **kwargs):
    """Build the model registered as ``name`` (case-insensitive, ``-`` same as ``_``)."""
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, got {type(name).__name__}")
    key = name.lower().replace("-", "_")
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return MODELS[key](**kwargs)
