"""Transforms of image batches: normalisation and data augmentation.

Every transform takes a batch of images, an ``(N, C, H, W)`` ndarray, and returns a new
one (the input is never modified); it also accepts a single ``(C, H, W)`` image (and
returns one), or a :class:`~cyconv.Tensor` (and returns a Tensor, outside the autograd
graph). They work on the whole batch at once, without a Python loop over the images.

- :class:`Normalize` subtracts a per-channel mean and divides by a per-channel std.
- :class:`RandomCrop` pads each image and cuts a window at a random place;
  :class:`RandomShift` is the same with the window as large as the image, which moves the
  picture by up to ``max_shift`` pixels in each direction.
- :class:`RandomHorizontalFlip` mirrors each image left-right with probability ``p``
  (right for photographs such as CIFAR-10; wrong for digits, where a mirrored 2 is no 2).
- :class:`Compose` applies several transforms in turn.

The random ones draw from ``cyconv.random.generator()`` at each call, so
``cyconv.manual_seed(n)`` makes the augmentation reproducible; each image of a batch gets
its own random offset or coin toss. Data augmentation belongs to training only: give the
random transforms to the training :class:`~cyconv.data.DataLoader`, and only
``Normalize`` to the validation and test loaders.
"""

from __future__ import annotations

import numbers

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .. import random as _random
from ..autograd import Tensor

__all__ = ["Transform", "Normalize", "RandomCrop", "RandomShift", "RandomHorizontalFlip",
           "Compose", "channel_mean_std"]


def _pair(value, name: str) -> tuple[int, int]:
    if isinstance(value, (tuple, list)) and len(value) == 2:
        pair = tuple(value)
    else:
        pair = (value, value)
    for v in pair:
        if isinstance(v, bool) or not isinstance(v, (numbers.Integral, np.integer)):
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    return int(pair[0]), int(pair[1])


class Transform:
    """The base class: ``__call__`` turns the input into an (N, C, H, W) batch, hands it
    to :meth:`apply_batch`, and gives the result back in the input's form."""

    def apply_batch(self, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, images):
        as_tensor = isinstance(images, Tensor)
        array = images.data if as_tensor else np.asarray(images)
        if array.ndim not in (3, 4):
            raise ValueError(f"{type(self).__name__}: expected a batch (N, C, H, W) or an "
                             f"image (C, H, W), got an array of shape {array.shape}")
        single = array.ndim == 3
        out = self.apply_batch(array[None] if single else array)
        if single:
            out = out[0]
        return Tensor(out) if as_tensor else out


class Normalize(Transform):
    """``(image - mean[c]) / std[c]`` for every channel ``c``.

    ``mean`` and ``std`` are numbers (the same for every channel) or sequences with one
    value per channel. Integer images are converted to float32 first; float64 stays
    float64.
    """

    def __init__(self, mean, std):
        self.mean = np.atleast_1d(np.asarray(mean, dtype=np.float64))
        self.std = np.atleast_1d(np.asarray(std, dtype=np.float64))
        for name, values in (("mean", self.mean), ("std", self.std)):
            if values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values)):
                raise ValueError(f"Normalize: {name} must be a number or a 1-d sequence of "
                                 f"finite numbers, got {values.tolist()!r}")
        if np.any(self.std <= 0):
            raise ValueError(f"Normalize: std must be positive, got {self.std.tolist()}")
        if self.mean.size != self.std.size and 1 not in (self.mean.size, self.std.size):
            raise ValueError(f"Normalize: mean has {self.mean.size} values and std "
                             f"{self.std.size}; give one per channel, or a single number")

    def apply_batch(self, images):
        channels = images.shape[1]
        for name, values in (("mean", self.mean), ("std", self.std)):
            if values.size not in (1, channels):
                raise ValueError(f"Normalize: {name} has {values.size} values, but the "
                                 f"images have {channels} channels")
        dtype = images.dtype if images.dtype in (np.float32, np.float64) else np.float32
        mean = self.mean.astype(dtype).reshape(1, -1, 1, 1)
        std = self.std.astype(dtype).reshape(1, -1, 1, 1)
        return (images.astype(dtype, copy=False) - mean) / std

    def __repr__(self):
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


def channel_mean_std(images) -> tuple[np.ndarray, np.ndarray]:
    """The mean and std of each channel of an (N, C, H, W) array, for :class:`Normalize`.

    Compute them on the training set only, and normalise every split with them.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"channel_mean_std: expected (N, C, H, W) images, got shape "
                         f"{images.shape}")
    mean = images.mean(axis=(0, 2, 3), dtype=np.float64)
    std = images.std(axis=(0, 2, 3), dtype=np.float64)
    return mean, np.where(std > 0, std, 1.0)


_PAD_MODES = {"constant": "constant", "edge": "edge", "reflect": "reflect"}


class RandomCrop(Transform):
    """Pad each image by ``padding`` pixels, then cut out a ``size`` window at a random place.

    ``size``: int or (height, width); ``padding``: int or (top/bottom, left/right);
    ``padding_mode``: ``'constant'`` (filled with ``fill``), ``'edge'`` (repeats the border
    pixel) or ``'reflect'`` (mirrors the image at its border). Each image of a batch gets
    its own offset, uniform over all the windows that fit in the padded image.

    How it is done without a loop: ``sliding_window_view`` sees the padded batch as
    ``(N, C, positions_y, positions_x, h, w)``, all windows at once (no copy), and one fancy
    index ``windows[n, :, y[n], x[n]]`` picks image ``n``'s window.
    """

    def __init__(self, size, padding=0, padding_mode: str = "constant", fill: float = 0.0):
        self.size = None if size is None else _pair(size, "RandomCrop: size")
        self.padding = _pair(padding, "RandomCrop: padding")
        if self.size is not None and min(self.size) < 1:
            raise ValueError(f"RandomCrop: size must be positive, got {self.size}")
        if min(self.padding) < 0:
            raise ValueError(f"RandomCrop: padding must be non-negative, got {self.padding}")
        if padding_mode not in _PAD_MODES:
            raise ValueError(f"RandomCrop: padding_mode must be one of {sorted(_PAD_MODES)}, "
                             f"got {padding_mode!r}")
        self.padding_mode = padding_mode
        self.fill = fill

    def _pad(self, images):
        ph, pw = self.padding
        if ph == 0 and pw == 0:
            return images
        widths = ((0, 0), (0, 0), (ph, ph), (pw, pw))
        if self.padding_mode == "constant":
            return np.pad(images, widths, mode="constant", constant_values=self.fill)
        if self.padding_mode == "reflect" and (ph >= images.shape[2] or pw >= images.shape[3]):
            raise ValueError(f"{type(self).__name__}: reflect padding {self.padding} must be "
                             f"smaller than the image ({images.shape[2]}x{images.shape[3]})")
        return np.pad(images, widths, mode=_PAD_MODES[self.padding_mode])

    def _window(self, images) -> tuple[int, int]:
        return self.size

    def apply_batch(self, images):
        n = images.shape[0]
        h, w = self._window(images)
        padded = self._pad(images)
        span_y, span_x = padded.shape[2] - h + 1, padded.shape[3] - w + 1
        if span_y < 1 or span_x < 1:
            raise ValueError(f"{type(self).__name__}: the crop {h}x{w} is larger than the "
                             f"padded image {padded.shape[2]}x{padded.shape[3]}")
        rng = _random.generator()
        ys = rng.integers(0, span_y, size=n)
        xs = rng.integers(0, span_x, size=n)
        windows = sliding_window_view(padded, (h, w), axis=(2, 3))
        return windows[np.arange(n), :, ys, xs]          # (N, C, h, w), a new array

    def __repr__(self):
        return (f"RandomCrop(size={self.size}, padding={self.padding}, "
                f"padding_mode={self.padding_mode!r})")


class RandomShift(RandomCrop):
    """Move each image by a random whole number of pixels, up to ``max_shift`` each way.

    The image keeps its size; the pixels shifted in are ``fill`` (or the border pixels /
    the mirror image with ``padding_mode='edge'`` / ``'reflect'``). This is
    ``RandomCrop(size=(H, W), padding=max_shift)``: a shift by ``(dy, dx)``, each uniform
    in ``-max_shift .. max_shift``.
    """

    def __init__(self, max_shift=1, padding_mode: str = "constant", fill: float = 0.0):
        super().__init__(None, padding=max_shift, padding_mode=padding_mode, fill=fill)
        self.max_shift = self.padding

    def _window(self, images):
        return images.shape[2], images.shape[3]

    def __repr__(self):
        return f"RandomShift(max_shift={self.max_shift}, padding_mode={self.padding_mode!r})"


class RandomHorizontalFlip(Transform):
    """Mirror each image left-right with probability ``p`` (one coin per image)."""

    def __init__(self, p: float = 0.5):
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must be in [0, 1], got {p}")
        self.p = float(p)

    def apply_batch(self, images):
        flip = _random.generator().random(images.shape[0]) < self.p
        out = images.copy()
        out[flip] = images[flip, :, :, ::-1]
        return out

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"


class Compose(Transform):
    """Apply ``transforms`` one after the other: ``Compose([RandomShift(2), Normalize(m, s)])``."""

    def __init__(self, transforms):
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"Compose: every transform must be callable, got "
                                f"{type(t).__name__}")

    def apply_batch(self, images):
        for t in self.transforms:
            images = t(images)
        return images

    def __repr__(self):
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n])"
