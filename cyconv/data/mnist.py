"""MNIST and Fashion-MNIST from their IDX files in a local directory.

Nothing is downloaded: fetch the four files yourself (the official gzipped files, or
unpacked copies) and give their directory::

    images, labels = load_mnist("~/data/mnist", split="train")           # 60000 images
    images, labels = load_mnist("~/data/fashion", split="test", kind="fashion")

The IDX format (LeCun et al.) is a tiny header followed by the raw bytes:

====================  ============================================================
bytes 0-1             zero
byte 2                the element type, 0x08 = unsigned byte
byte 3                the number of dimensions (3 for images, 1 for labels)
then 4 bytes per dim  the size of each dimension, big-endian unsigned ints
then                  the values, row-major (C order)
====================  ============================================================

so the image file starts with the magic number 0x00000803 and (N, 28, 28), the label file
with 0x00000801 and (N,). Every file is checked: a wrong magic number, a header or data
shorter or longer than the header promises, a label out of 0..9, or image and label files
that disagree on N, all give a ValueError that names the file.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["load_mnist", "read_idx", "MNIST_CLASSES", "FASHION_MNIST_CLASSES"]

MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
_KINDS = {"mnist": "MNIST", "fashion": "FashionMNIST", "fashion-mnist": "FashionMNIST",
          "fashion_mnist": "FashionMNIST"}
_PREFIX = {"train": "train", "test": "t10k"}


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, un-gzipped if it is gzip (recognised by its content, not its name)."""
    with open(path, "rb") as handle:
        raw = handle.read()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: a damaged gzip file ({exc})") from None


def read_idx(path, expected_magic: int | None = None) -> np.ndarray:
    """Read one IDX file of unsigned bytes (gzipped or not) into a uint8 ndarray.

    ``expected_magic``: if given, the file's magic number must be this one (0x00000803 for
    image files, 0x00000801 for label files). Raises FileNotFoundError if the file does
    not exist, ValueError naming the file for anything malformed.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path}: not an IDX file: {len(data)} bytes, too short for the "
                         "4-byte magic number")
    magic = struct.unpack(">I", data[:4])[0]
    zeros, dtype_code, ndim = data[0:2], data[2], data[3]
    if zeros != b"\x00\x00" or dtype_code != 0x08 or ndim == 0:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes: magic number "
                         f"0x{magic:08X} (expected 0x000008NN, NN the number of dimensions)")
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(f"{path}: wrong magic number 0x{magic:08X}, expected "
                         f"0x{expected_magic:08X} ({_magic_name(expected_magic)})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated header: {ndim} dimensions need {header} bytes, "
                         f"the file has {len(data)}")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = math.prod(shape)
    found = len(data) - header
    if found != expected:
        what = "truncated" if found < expected else "too long"
        raise ValueError(f"{path}: {what}: the header promises shape {tuple(shape)}, "
                         f"{expected} bytes of data, but the file has {found}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy()


def _magic_name(magic: int) -> str:
    return {IMAGES_MAGIC: "an image file", LABELS_MAGIC: "a label file"}.get(magic, "IDX")


def _find(directories: list[Path], stem: str, part: str) -> Path:
    """The first existing file among the accepted names of ``stem`` in ``directories``.

    Accepted: ``train-images-idx3-ubyte`` and ``train-images.idx3-ubyte`` (a common
    renaming), each with or without ``.gz``.
    """
    names = [f"{stem}-{part}", f"{stem}-{part.replace('-', '.', 1)}"]
    candidates = [d / (n + ext) for d in directories for n in names for ext in (".gz", "")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"no {stem}-{part} file found; looked for: {looked}")


def load_mnist(root, split: str = "train", kind: str = "mnist",
               normalize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` of MNIST (``kind='mnist'``) or Fashion-MNIST (``kind='fashion'``).

    ``root`` is the directory holding the IDX files (also searched: ``root/raw`` and
    torchvision's ``root/MNIST/raw`` or ``root/FashionMNIST/raw``). ``split``: 'train'
    (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``) or 'test' (``t10k-...``);
    each name may end in ``.gz`` and may use ``.idx3-ubyte`` for ``-idx3-ubyte``.

    ``images``: (N, 1, 28, 28), float32 in [0, 1] (the bytes divided by 255) if
    ``normalize``, else the uint8 bytes. ``labels``: int64 in 0..9.
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be 'mnist' or 'fashion', got {kind!r}")
    if split not in _PREFIX:
        raise ValueError(f"split must be 'train' or 'test' (the files hold no validation "
                         f"set), got {split!r}")
    root = Path(os.path.expanduser(str(root)))
    if not root.is_dir():
        raise FileNotFoundError(f"{kind} directory not found: {root}")
    directories = [root, root / "raw", root / _KINDS[kind] / "raw"]
    prefix = _PREFIX[split]
    image_path = _find(directories, prefix, "images-idx3-ubyte")
    label_path = _find(directories, prefix, "labels-idx1-ubyte")
    images = read_idx(image_path, IMAGES_MAGIC)
    labels = read_idx(label_path, LABELS_MAGIC)
    if len(images) != len(labels):
        raise ValueError(f"{image_path} holds {len(images)} images but {label_path} holds "
                         f"{len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{label_path}: label {int(labels.max())} is out of range 0..9")
    images = images[:, None]
    if normalize:
        images = images.astype(np.float32) / np.float32(255.0)
    return images, labels.astype(np.int64)
