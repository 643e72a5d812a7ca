"""Read an image file and turn it into what a model expects: ``(C, H, W)`` floats in [0, 1].

Used by ``cyconv visualize --image FILE``. Kept deliberately simple:

1. **Reading.** ``.npy``: a NumPy array, read with ``numpy.load`` (no pickles). Anything
   else (PNG; JPEG and others if Pillow is installed): ``matplotlib.image.imread``.
2. **Layout.** ``(H, W)`` is a grey image; ``(H, W, C)`` (what image files give) and
   ``(C, H, W)`` (what cyconv's datasets give) are recognised by where the 1, 3 or 4
   channels are, the last axis first; a leading batch axis of 1 is dropped. A fourth
   (alpha) channel is dropped.
3. **Values.** Brought into [0, 1], as the datasets' images are before normalisation:
   ``uint8`` arrays are divided by 255; other arrays whose maximum is above 1 (e.g. the
   digits' raw ink counts 0..16) by their maximum; others are used as they are.
4. **Channels.** Colour to grey by the luminance ``0.299 R + 0.587 G + 0.114 B``; grey to
   colour by repeating it three times.
5. **Size.** Each axis is resampled on its own: a smaller size by *area* averaging (each
   output pixel is the mean of the block of input pixels it covers, which is also how the
   8x8 digits were made from 32x32 bitmaps), a larger one by *nearest neighbour*.
6. ``invert=True`` gives ``1 - image``: the embedded digits and MNIST are light ink on a
   dark ground, so a photo of dark ink on white paper needs it.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["load_image", "to_input_shape", "resample_axis"]

_LUMA = np.array([0.299, 0.587, 0.114])


def _read(path: str) -> np.ndarray:
    if not os.path.exists(path):
        raise FileNotFoundError(f"image file not found: {path}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"image file expected, got a directory: {path}")
    if path.lower().endswith(".npy"):
        try:
            return np.load(path, allow_pickle=False)
        except Exception as error:
            raise ValueError(f"{path}: not a readable .npy array ({error})") from None
    try:
        import matplotlib.image as mpimg
        return np.asarray(mpimg.imread(path))
    except Exception as error:
        raise ValueError(f"{path}: cannot read this image ({type(error).__name__}: "
                         f"{error}); give a PNG or a .npy array") from None


def resample_axis(array: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Resample ``array`` to ``size`` along ``axis``: area averaging to shrink, nearest to grow."""
    n = array.shape[axis]
    if n == size:
        return array
    if size < n:
        starts = (np.arange(size) * n) // size         # block i covers starts[i]..starts[i+1]-1
        counts = np.diff(np.append(starts, n))
        sums = np.add.reduceat(array, starts, axis=axis)
        shape = [1] * array.ndim
        shape[axis] = size
        return sums / counts.reshape(shape)
    index = ((np.arange(size) + 0.5) * n / size).astype(np.int64)  # centre of each new pixel
    return np.take(array, np.minimum(index, n - 1), axis=axis)


def to_input_shape(array, input_shape, invert: bool = False, name: str = "image") -> np.ndarray:
    """Turn ``array`` (see the module docstring) into a float32 ``input_shape`` (C, H, W) image."""
    array = np.asarray(array)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{name}: expected numbers, got an array of dtype {array.dtype}")
    while array.ndim > 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 2:
        hwc = array[:, :, None]
    elif array.ndim == 3 and array.shape[-1] in (1, 3, 4):
        hwc = array
    elif array.ndim == 3 and array.shape[0] in (1, 3, 4):
        hwc = array.transpose(1, 2, 0)
    else:
        raise ValueError(f"{name}: expected an image (H, W), (H, W, C) or (C, H, W) with 1, 3 "
                         f"or 4 channels, got shape {array.shape}")
    if min(hwc.shape[:2]) < 1:
        raise ValueError(f"{name}: the image is empty, shape {array.shape}")
    if hwc.shape[-1] == 4:
        hwc = hwc[:, :, :3]                              # drop the alpha channel
    values = hwc.astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name}: the image holds NaN or infinite values")
    if hwc.dtype == np.uint8:
        values /= 255.0
    elif values.max() > 1.0:
        values /= values.max()
    values = np.clip(values, 0.0, None)
    channels, height, width = (int(v) for v in input_shape)
    if values.shape[-1] == 3 and channels == 1:
        values = (values @ _LUMA)[:, :, None]
    elif values.shape[-1] == 1 and channels == 3:
        values = np.repeat(values, 3, axis=2)
    elif values.shape[-1] != channels:
        raise ValueError(f"{name}: has {values.shape[-1]} channels, the model takes {channels}")
    values = resample_axis(values, height, 0)
    values = resample_axis(values, width, 1)
    if invert:
        values = 1.0 - values
    return np.ascontiguousarray(values.transpose(2, 0, 1), dtype=np.float32)


def load_image(path, input_shape, invert: bool = False) -> np.ndarray:
    """Read ``path`` (.npy or an image file) as a float32 ``(C, H, W)`` image in [0, 1]."""
    path = os.fspath(path)
    return to_input_shape(_read(path), input_shape, invert=invert, name=path)
