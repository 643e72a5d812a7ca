"""``get_dataset``: a dataset named the way the command line names it.

==========================  ==============================================================
spec                        data
==========================  ==============================================================
``digits``                  the embedded 8x8 digits (no files needed), (1, 8, 8)
``mnist:DIR``               MNIST IDX files in DIR, (1, 28, 28)
``fashion-mnist:DIR``       Fashion-MNIST IDX files in DIR, (1, 28, 28)
``cifar10:DIR``             CIFAR-10 python batches in DIR, (3, 32, 32)
==========================  ==============================================================

Splits: 'train', 'val', 'test' (and 'all' for the digits). The digits have their own fixed
60/20/20 split. MNIST, Fashion-MNIST and CIFAR-10 come with a training file and a test
file only, so the validation set is a fixed, stratified ``val_fraction`` (10% by default)
of the training file, and 'train' is the rest of it; 'test' is the test file. Like the
digits' split, it is made by :func:`cyconv.data.splits.stratified_split` and so is the same
for every user and every seed.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .cifar import CIFAR10_CLASSES, load_cifar10
from .digits import DIGITS_CLASSES, load_digits
from .mnist import FASHION_MNIST_CLASSES, MNIST_CLASSES, load_mnist
from .splits import stratified_split

__all__ = ["get_dataset", "DatasetSplit", "DATASET_SPECS", "VAL_SPLIT_SALT"]

DATASET_SPECS = ("digits", "mnist:DIR", "fashion-mnist:DIR", "cifar10:DIR")
VAL_SPLIT_SALT = 2024
_ALIASES = {"digits": "digits", "mnist": "mnist", "fashion-mnist": "fashion",
            "fashion_mnist": "fashion", "fashion": "fashion", "fashionmnist": "fashion",
            "cifar10": "cifar10", "cifar-10": "cifar10", "cifar": "cifar10"}
_SPLITS = ("train", "val", "test")


class DatasetSplit(NamedTuple):
    """What :func:`get_dataset` returns; unpacks as ``images, labels, names, shape = ...``."""
    images: np.ndarray          # (N, C, H, W) float32 in [0, 1] (uint8 if normalize=False)
    labels: np.ndarray          # (N,) int64
    class_names: tuple          # class_names[label] is the name of the class
    input_shape: tuple          # (C, H, W)


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``"mnist:~/data"`` -> ``("mnist", "~/data")``; ``"digits"`` -> ``("digits", None)``."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"dataset spec must be a non-empty string such as "
                         f"{', '.join(DATASET_SPECS)}; got {spec!r}")
    name, sep, directory = spec.strip().partition(":")
    key = name.strip().lower()
    if key not in _ALIASES:
        raise ValueError(f"unknown dataset {name!r} in {spec!r}; choose one of "
                         f"{', '.join(DATASET_SPECS)}")
    kind = _ALIASES[key]
    directory = directory.strip()
    if kind == "digits":
        if sep:
            raise ValueError(f"the digits are built in and take no directory: use 'digits', "
                             f"not {spec!r}")
        return kind, None
    if not directory:
        shown = "fashion-mnist" if kind == "fashion" else kind
        raise ValueError(f"dataset {name!r} needs the directory holding its files: "
                         f"use '{shown}:DIR'")
    return kind, directory


def get_dataset(spec: str, split: str = "train", normalize: bool = True,
                val_fraction: float = 0.1) -> DatasetSplit:
    """Load ``split`` of the dataset ``spec``: ``(images, labels, class_names, input_shape)``.

    ``spec``: ``'digits'``, ``'mnist:DIR'``, ``'fashion-mnist:DIR'`` or ``'cifar10:DIR'``.
    ``split``: 'train', 'val' or 'test' ('all' too for the digits). ``val_fraction``: the
    share of the training file held out for validation (file datasets only).
    Raises ValueError for an unknown spec, a missing DIR or a bad split, and
    FileNotFoundError / ValueError (naming the file) for missing or malformed files.
    """
    kind, directory = parse_spec(spec)
    if kind == "digits":
        images, labels = load_digits(split, normalize=normalize)
        return DatasetSplit(images, labels, DIGITS_CLASSES, tuple(images.shape[1:]))
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {', '.join(map(repr, _SPLITS))}, got {split!r}")
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    file_split = "test" if split == "test" else "train"
    if kind == "cifar10":
        images, labels = load_cifar10(directory, file_split, normalize=normalize)
        names = CIFAR10_CLASSES
    else:
        images, labels = load_mnist(directory, file_split, kind=kind, normalize=normalize)
        names = MNIST_CLASSES if kind == "mnist" else FASHION_MNIST_CLASSES
    if split != "test":
        fractions = (1.0 - float(val_fraction), float(val_fraction))
        train_idx, val_idx = stratified_split(labels, fractions, salt=VAL_SPLIT_SALT)
        keep = train_idx if split == "train" else val_idx
        images, labels = images[keep], labels[keep]
    return DatasetSplit(images, labels, names, tuple(images.shape[1:]))
