"""The DataLoader: a dataset cut into (shuffled) mini-batches, epoch after epoch.

::

    loader = DataLoader(dataset, batch_size=64, shuffle=True)
    for epoch in range(10):
        for images, labels in loader:      # a new order every epoch
            ...                            # images: Tensor (N, C, H, W), labels: int64 ndarray

How a batch is made:

1. The indices of the epoch: ``0 .. len(dataset)-1``, or a fresh permutation of them when
   ``shuffle=True``, drawn from ``cyconv.random.generator()`` (so ``cyconv.manual_seed``
   fixes it) or from the loader's own generator if ``seed`` is given.
2. The examples of each slice of ``batch_size`` indices are fetched and stacked. For an
   in-memory :class:`~cyconv.data.TensorDataset` (and a ``Subset`` of one) that is a single
   fancy-indexing call per array, ``array[indices]``; any other dataset is asked for each
   example in turn and the examples are stacked with ``np.stack``.
3. The first field (the images) becomes float32 (float64 stays float64), the ``transform``
   is applied to the whole batch at once, and it is wrapped in a :class:`~cyconv.Tensor`.
   Integer fields (the labels) become int64 ndarrays, ready for ``cross_entropy``.

Augmentation only in training: give the training loader the random transforms, and the
validation/test loaders only the deterministic ones::

    normalize = transforms.Normalize(mean, std)
    train_loader = DataLoader(train_set, batch_size=64, shuffle=True,
                              transform=transforms.Compose([transforms.RandomShift(1), normalize]))
    val_loader = DataLoader(val_set, batch_size=256, transform=normalize)
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import random as _random
from ..autograd import Tensor
from .dataset import Subset, TensorDataset

__all__ = ["DataLoader", "default_collate"]


def _array_source(dataset):
    """``(arrays, index_map)`` if ``dataset`` can be batched by fancy indexing, else None.

    ``index_map`` translates the dataset's indices into rows of ``arrays`` (None: the
    identity). A TensorDataset subclass that overrides ``__getitem__`` is not batched this
    way, since its ``__getitem__`` may do more than indexing.
    """
    if isinstance(dataset, TensorDataset) and \
            type(dataset).__getitem__ is TensorDataset.__getitem__:
        return dataset.arrays, None
    if isinstance(dataset, Subset) and type(dataset).__getitem__ is Subset.__getitem__:
        inner = _array_source(dataset.dataset)
        if inner is not None:
            arrays, index_map = inner
            rows = dataset.indices if index_map is None else index_map[dataset.indices]
            return arrays, rows
    return None


def default_collate(examples: list):
    """Stack a list of examples into a batch: a tuple of arrays, one per field.

    Each example is a tuple/list of fields (``(image, label)``) or a single array; the
    batch has the same structure, with every field stacked along a new first axis.
    """
    if not examples:
        raise ValueError("default_collate: no examples to stack")
    first = examples[0]
    if isinstance(first, (tuple, list)):
        width = len(first)
        for example in examples:
            if not isinstance(example, (tuple, list)) or len(example) != width:
                raise ValueError("default_collate: every example must have the same number "
                                 f"of fields ({width}), got {example!r:.80}")
        return tuple(np.stack([np.asarray(example[k]) for example in examples])
                     for k in range(width))
    return np.stack([np.asarray(example) for example in examples])


class DataLoader:
    """Iterate over ``dataset`` in mini-batches.

    ``DataLoader(dataset, batch_size=1, shuffle=False, drop_last=False, transform=None,
    seed=None)``

    - ``batch_size``: examples per batch (the last batch may be smaller unless
      ``drop_last=True`` drops it).
    - ``shuffle``: a new random order every epoch (every ``for`` loop over the loader),
      from ``cyconv.random.generator()``, or from ``np.random.default_rng(seed)`` created
      once with the loader when ``seed`` is given (so two loaders with the same seed give
      the same sequence of epochs, whatever else draws random numbers).
    - ``transform``: a callable applied to each batch of images, an ``(N, C, H, W)``
      ndarray (see :mod:`cyconv.data.transforms`); give the random augmentations to the
      training loader only.

    Each batch is ``(images, labels)``: ``images`` a float32 :class:`~cyconv.Tensor`,
    ``labels`` an int64 ndarray (in general, one entry per field of the dataset's examples:
    the first becomes a Tensor, integer fields int64 ndarrays). ``len(loader)`` is the
    number of batches per epoch.
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False,
                 drop_last: bool = False, transform=None, seed: int | None = None):
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError("DataLoader: dataset must define __len__ and __getitem__, got "
                            f"{type(dataset).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
            raise TypeError(f"DataLoader: batch_size must be an int, got {batch_size!r}")
        if batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be at least 1, got {batch_size}")
        if transform is not None and not callable(transform):
            raise TypeError(f"DataLoader: transform must be callable or None, got "
                            f"{type(transform).__name__}")
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
                raise ValueError(f"DataLoader: seed must be a non-negative int or None, "
                                 f"got {seed!r}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.transform = transform
        self.seed = seed
        self._rng = None if seed is None else np.random.default_rng(seed)

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _epoch_order(self) -> np.ndarray:
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        rng = self._rng if self._rng is not None else _random.generator()
        return rng.permutation(n)

    def _finish(self, batch):
        fields = batch if isinstance(batch, tuple) else (batch,)
        images = np.asarray(fields[0])
        if images.dtype != np.float64:
            images = images.astype(np.float32, copy=False)
        if self.transform is not None:
            images = self.transform(images)
            if isinstance(images, Tensor):
                images = images.data
        out = [Tensor(images)]
        for field in fields[1:]:
            field = np.asarray(field)
            if np.issubdtype(field.dtype, np.integer) or field.dtype == np.bool_:
                field = field.astype(np.int64, copy=False)
            out.append(field)
        return tuple(out) if isinstance(batch, tuple) else out[0]

    def __iter__(self):
        order = self._epoch_order()
        source = _array_source(self.dataset)
        stop = len(self) * self.batch_size
        for start in range(0, min(stop, len(order)), self.batch_size):
            indices = order[start:start + self.batch_size]
            if source is not None:
                arrays, index_map = source
                rows = indices if index_map is None else index_map[indices]
                batch = tuple(array[rows] for array in arrays)
            else:
                batch = default_collate([self.dataset[int(i)] for i in indices])
            yield self._finish(batch)

    def __repr__(self) -> str:
        return (f"DataLoader({self.dataset!r}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, "
                f"transform={self.transform!r})")
