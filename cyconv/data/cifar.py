"""CIFAR-10 from the "python version" batches in a local directory.

Nothing is downloaded: unpack ``cifar-10-python.tar.gz`` yourself and give the directory
(the folder ``cifar-10-batches-py`` or the one that contains it)::

    images, labels = load_cifar10("~/data", split="train")     # (50000, 3, 32, 32)

Each batch file (``data_batch_1`` .. ``data_batch_5`` for training, ``test_batch`` for the
test) is a pickled dict written by Python 2: ``b'data'``, a (10000, 3072) uint8 array whose
rows are the red, then green, then blue 32x32 planes, and ``b'labels'``, a list of 10000
ints in 0..9; so it is read with ``encoding='bytes'``.

Pickles can run code when they are loaded. These files are read with an unpickler that
only rebuilds NumPy arrays, lists, dicts, numbers and strings, and refuses anything else,
so a file that is not a CIFAR batch gives a ValueError instead of running.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

__all__ = ["load_cifar10", "CIFAR10_CLASSES"]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
_SUBDIR = "cifar-10-batches-py"

# What a pickled ndarray needs (NumPy 1.x writes numpy.core, NumPy 2.x numpy._core), and
# _codecs.encode, which Python 3 uses for bytes objects in protocol-2 pickles.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"it wants {module}.{name}, which a CIFAR-10 batch "
                                         "never needs")
        if module.startswith("numpy.core."):          # the same object, without numpy.core's
            module = "numpy._core." + module[len("numpy.core."):]   # deprecation warning
        try:
            return super().find_class(module, name)
        except ImportError:                           # NumPy 1.x has no numpy._core
            return super().find_class(module.replace("numpy._core.", "numpy.core."), name)


def _field(batch: dict, key: str):
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    return None


def read_cifar_batch(path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch file: uint8 images (N, 3, 32, 32) and int64 labels (N,).

    Raises FileNotFoundError if it does not exist and ValueError, naming the file, if it is
    not a pickle, not a dict, lacks ``b'data'`` or ``b'labels'``, or has wrong shapes.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        try:
            batch = _ArrayUnpickler(handle, encoding="bytes").load()
        except Exception as exc:       # any failure to unpickle means: not a CIFAR batch
            raise ValueError(f"{path}: not a CIFAR-10 batch pickle "
                             f"({type(exc).__name__}: {exc})") from None
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: expected a pickled dict with b'data' and b'labels', got "
                         f"{type(batch).__name__}")
    data, labels = _field(batch, "data"), _field(batch, "labels")
    missing = [k for k, v in (("b'data'", data), ("b'labels'", labels)) if v is None]
    if missing:
        found = ", ".join(repr(k) for k in list(batch)[:8])
        raise ValueError(f"{path}: missing key {' and '.join(missing)} (keys found: "
                         f"{found or 'none'})")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * 32 * 32:
        what = (f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray)
                else type(data).__name__)
        raise ValueError(f"{path}: b'data' must be a uint8 array of shape (N, 3072), got "
                         f"{what}")
    try:
        labels = np.asarray(labels)
    except Exception:
        labels = np.asarray([], dtype=object)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: b'labels' must be a list of ints, got "
                         f"{labels.dtype} values of shape {labels.shape}")
    if len(labels) != len(data):
        raise ValueError(f"{path}: {len(data)} images but {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{path}: labels must be in 0..9, found "
                         f"{int(labels.min())}..{int(labels.max())}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def load_cifar10(root, split: str = "train",
                 normalize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` of CIFAR-10 from the python batches in ``root``.

    ``root``: the directory with the batch files, or one containing ``cifar-10-batches-py``.
    ``split``: 'train' (``data_batch_1`` .. ``data_batch_5``, 50000 images) or 'test'
    (``test_batch``, 10000). ``images``: (N, 3, 32, 32), float32 in [0, 1] if ``normalize``,
    else uint8. ``labels``: int64 in 0..9.
    """
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test' (the files hold no validation "
                         f"set), got {split!r}")
    root = Path(os.path.expanduser(str(root)))
    if not root.is_dir():
        raise FileNotFoundError(f"cifar10 directory not found: {root}")
    names = _FILES[split]
    directory = root
    if not (root / names[0]).is_file() and (root / _SUBDIR).is_dir():
        directory = root / _SUBDIR
    missing = [n for n in names if not (directory / n).is_file()]
    if missing:
        where = directory if len(missing) < len(names) else f"{root} or {root / _SUBDIR}"
        raise FileNotFoundError(f"CIFAR-10 file(s) not found in {where}: {', '.join(missing)}")
    parts = [read_cifar_batch(directory / n) for n in names]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    if normalize:
        images = images.astype(np.float32) / np.float32(255.0)
    return images, labels
