"""The UCI optical-recognition handwritten digits, shipped inside the package.

1,797 grey images of handwritten digits, 8x8 pixels, each pixel an integer 0..16 (the
number of ink pixels in a 4x4 block of the original 32x32 bitmap), in 10 classes '0'..'9'
(174 to 183 images per class). Small enough to ship (``digits.npz``, about 45 kB) and to
train a LeNet-style network on in well under a minute on a laptop, large enough for that
network to reach about 98% test accuracy.

Source and licence. "Optical Recognition of Handwritten Digits" by E. Alpaydin and
C. Kaynak (1998), UCI Machine Learning Repository, https://doi.org/10.24432/C50P49,
licensed under Creative Commons Attribution 4.0 International (CC BY 4.0,
https://creativecommons.org/licenses/by/4.0/). The images here are the repository's test
set (``optdigits.tes``: 1,797 images written by 13 people), taken from the copy distributed
with scikit-learn as ``digits.csv.gz`` and stored unchanged as uint8 arrays
(``images`` (1797, 8, 8), ``labels`` (1797,)) with ``numpy.savez_compressed``. See
``DIGITS_LICENSE.txt`` next to this file.

The fixed split. Every user gets the same train / validation / test split: 60% / 20% /
20% of each class (1079 / 359 / 359 images), made by :func:`cyconv.data.splits.stratified_split`
with ``salt=DIGITS_SPLIT_SALT``: a hash of the image index decides the order, so the split
depends on neither ``cyconv.manual_seed`` nor the NumPy version.
"""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np

from .dataset import TensorDataset
from .splits import stratified_split

__all__ = ["load_digits", "DigitsDataset", "DIGITS_CLASSES", "DIGITS_SPLIT_FRACTIONS",
           "DIGITS_SPLIT_SALT", "SPLITS"]

DIGITS_CLASSES = tuple(str(d) for d in range(10))
DIGITS_SPLIT_FRACTIONS = (0.6, 0.2, 0.2)       # train, validation, test (of each class)
DIGITS_SPLIT_SALT = 1998
SPLITS = ("train", "val", "test", "all")
_FILE = "digits.npz"


@functools.lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    """The embedded arrays, read once: uint8 images (1797, 8, 8) and uint8 labels."""
    source = resources.files(__package__).joinpath(_FILE)
    try:
        with source.open("rb") as handle, np.load(handle, allow_pickle=False) as archive:
            images, labels = archive["images"], archive["labels"]
    except FileNotFoundError:
        raise FileNotFoundError(f"the embedded digits file {_FILE} is missing from the "
                                "cyconv.data package; reinstall cyconv") from None
    if images.shape != (1797, 8, 8) or labels.shape != (1797,):
        raise ValueError(f"the embedded digits file {_FILE} is damaged: images "
                         f"{images.shape}, labels {labels.shape}")
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


@functools.lru_cache(maxsize=1)
def _split_indices() -> dict[str, np.ndarray]:
    labels = _raw()[1]
    train, val, test = stratified_split(labels, DIGITS_SPLIT_FRACTIONS, salt=DIGITS_SPLIT_SALT)
    return {"train": train, "val": val, "test": test, "all": np.arange(len(labels))}


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(map(repr, SPLITS))}, got {split!r}")
    return split


def split_indices(split: str) -> np.ndarray:
    """The indices (into the 1,797 images) of ``split``: 'train', 'val', 'test' or 'all'."""
    return _split_indices()[_check_split(split)].copy()


def load_digits(split: str = "train", normalize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` of the embedded digits.

    ``split``: 'train' (1079 images), 'val' (359), 'test' (359) or 'all' (1797), the fixed
    stratified split described in this module. ``images`` has shape (N, 1, 8, 8): float32
    in [0, 1] (the counts divided by 16) if ``normalize``, else the raw uint8 counts 0..16.
    ``labels`` is int64 in 0..9. The arrays are new copies, yours to modify.
    """
    idx = _split_indices()[_check_split(split)]
    images, labels = _raw()
    chosen = images[idx][:, None]
    chosen = chosen.astype(np.float32) / np.float32(16.0) if normalize else chosen.copy()
    return chosen, labels[idx].astype(np.int64)


class DigitsDataset(TensorDataset):
    """The embedded digits as a :class:`TensorDataset`: ``DigitsDataset('train')[i]`` is
    ``(image (1, 8, 8) float32, label)``. ``.classes`` names the classes."""

    classes = DIGITS_CLASSES

    def __init__(self, split: str = "train", normalize: bool = True):
        super().__init__(*load_digits(split, normalize))
        self.split = split

    def __repr__(self) -> str:
        return f"DigitsDataset(split={self.split!r}, {len(self)} images)"
