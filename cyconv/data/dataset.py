"""Datasets: anything with ``__len__`` and ``__getitem__``.

- :class:`Dataset` is the base class (as ``torch.utils.data.Dataset``): a subclass says how
  many examples it has and how to fetch example ``i``.
- :class:`TensorDataset` holds arrays in memory that share their first dimension; example
  ``i`` is ``(a[i], b[i], ...)``. The :class:`~cyconv.data.DataLoader` batches it by fancy
  indexing (one NumPy call per batch) instead of fetching example after example.
- :class:`Subset` is a view on some examples of another dataset, and
  :func:`random_split` cuts a dataset into random, non-overlapping subsets.
"""

from __future__ import annotations

import math
import numbers
from typing import Sequence

import numpy as np

from .. import random as _random
from ..autograd import Tensor

__all__ = ["Dataset", "TensorDataset", "Subset", "random_split"]


class Dataset:
    """The base class of datasets: subclasses define ``__len__`` and ``__getitem__``.

    ``dataset[i]`` returns example ``i``, usually a tuple ``(image, label)`` whose image is
    a ``(C, H, W)`` ndarray. The :class:`~cyconv.data.DataLoader` stacks examples into
    batches.
    """

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must define __len__")


def _as_ndarray(array, position: int) -> np.ndarray:
    if isinstance(array, Tensor):
        return array.data
    if isinstance(array, np.ndarray):
        return array
    raise TypeError(f"TensorDataset: argument {position} must be an ndarray or a Tensor, "
                    f"got {type(array).__name__}")


class TensorDataset(Dataset):
    """Examples held in memory as arrays: example ``i`` is ``tuple(a[i] for a in arrays)``.

    ``TensorDataset(images, labels)`` takes ndarrays or :class:`~cyconv.Tensor` objects
    (a Tensor's ``.data`` is used, without copying). All arrays must have the same first
    dimension, the number of examples. ``.arrays`` is the tuple of ndarrays.
    """

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("TensorDataset needs at least one array")
        converted = tuple(_as_ndarray(a, i) for i, a in enumerate(arrays))
        for i, array in enumerate(converted):
            if array.ndim == 0:
                raise ValueError(f"TensorDataset: argument {i} is a 0-d array; every array "
                                 "needs a first dimension that counts the examples")
        lengths = [len(a) for a in converted]
        if any(n != lengths[0] for n in lengths):
            raise ValueError("TensorDataset: all arrays must have the same first dimension "
                             f"(the number of examples), got sizes {lengths}")
        self.arrays = converted

    def __getitem__(self, index):
        return tuple(array[index] for array in self.arrays)

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __repr__(self) -> str:
        shapes = ", ".join(f"{a.dtype}{list(a.shape)}" for a in self.arrays)
        return f"{type(self).__name__}({shapes})"


def _check_indices(indices, length: int, what: str) -> np.ndarray:
    indices = np.asarray(indices)
    if indices.size == 0:
        return np.zeros(0, dtype=np.int64)
    if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
        raise TypeError(f"{what}: indices must be a 1-d sequence of integers, "
                        f"got {indices.dtype} array of shape {indices.shape}")
    low, high = int(indices.min()), int(indices.max())
    if low < 0 or high >= length:
        bad = low if low < 0 else high
        raise IndexError(f"{what}: index {bad} is out of range for a dataset of "
                         f"{length} examples")
    return indices.astype(np.int64, copy=False)


class Subset(Dataset):
    """The examples ``indices`` of ``dataset``: ``Subset(d, idx)[k] == d[idx[k]]``.

    The examples are not copied. ``.dataset`` and ``.indices`` (an int64 ndarray) are kept;
    a subset of an in-memory :class:`TensorDataset` is still batched by fancy indexing.
    """

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = _check_indices(indices, len(dataset), "Subset")

    def __getitem__(self, index):
        if isinstance(index, (numbers.Integral, np.integer)):
            return self.dataset[int(self.indices[index])]
        return self.dataset[self.indices[index]]

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        return f"Subset({len(self)} of {self.dataset!r})"


def _split_lengths(lengths, total: int) -> list[int]:
    lengths = list(lengths)
    if not lengths:
        raise ValueError("random_split: lengths must not be empty")
    if all(isinstance(n, (numbers.Integral, np.integer)) and not isinstance(n, bool)
           for n in lengths):
        counts = [int(n) for n in lengths]
        if any(n < 0 for n in counts):
            raise ValueError(f"random_split: lengths must be non-negative, got {counts}")
        if sum(counts) != total:
            raise ValueError(f"random_split: the lengths {counts} add up to {sum(counts)}, "
                             f"but the dataset has {total} examples")
        return counts
    # Fractions, as PyTorch: floor each share, then hand the remainder out one by one.
    try:
        fractions = [float(f) for f in lengths]
    except (TypeError, ValueError):
        raise TypeError(f"random_split: lengths must be integers or fractions, "
                        f"got {lengths!r}") from None
    if any(not 0.0 <= f <= 1.0 for f in fractions) or not math.isclose(sum(fractions), 1.0,
                                                                           abs_tol=1e-6):
        raise ValueError(f"random_split: fractions must lie in [0, 1] and add up to 1, "
                         f"got {fractions}")
    counts = [int(math.floor(total * f)) for f in fractions]
    for i in range(total - sum(counts)):
        counts[i % len(counts)] += 1
    return counts


def random_split(dataset, lengths: Sequence, seed: int | None = None) -> list[Subset]:
    """Cut ``dataset`` into non-overlapping random :class:`Subset` objects.

    ``lengths`` are either example counts that add up to ``len(dataset)`` or fractions
    that add up to 1 (``[0.8, 0.2]``; the examples left over by rounding down go to the
    first subsets, one each). The permutation comes from ``cyconv.random.generator()``
    (so ``cyconv.manual_seed`` fixes it), or from a generator of its own if ``seed`` is
    given.
    """
    total = len(dataset)
    counts = _split_lengths(lengths, total)
    rng = _random.generator() if seed is None else np.random.default_rng(seed)
    order = rng.permutation(total)
    bounds = np.cumsum([0] + counts)
    return [Subset(dataset, order[bounds[i]:bounds[i + 1]]) for i in range(len(counts))]
