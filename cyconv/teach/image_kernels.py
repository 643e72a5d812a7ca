"""The classic hand-designed image kernels, and how to apply them with conv2d.

Before networks learnt their filters, image processing used hand-made ones. Each is a small
grid of weights; sliding it over the image and taking the weighted sum at every position
(a convolution) gives blurring, sharpening or edge detection. The first layer of a trained
CNN often ends up with filters that look like these: edge and blob detectors.

A remark on signs. What deep learning calls "convolution" (``conv2d`` in cyconv and in
PyTorch) is really **cross-correlation**: the kernel is laid on the image as it is, not
flipped. Textbooks of signal processing flip the kernel first. For symmetric kernels (blurs,
sharpen, outline) there is no difference; for the edge kernels the sign of the response is
reversed. The signs below are meant for cross-correlation, so that:

- ``sobel_x`` / ``prewitt_x`` respond to a change *along x* (left to right), that is to
  **vertical edges**, positively where the image gets brighter to the right;
- ``sobel_y`` / ``prewitt_y`` respond to a change *along y* (top to bottom, the row index
  grows downwards), that is to **horizontal edges**, positively where it gets brighter
  downwards.

``KERNELS`` maps names to float32 arrays (read-only: use ``get_kernel`` for a copy you
may change); ``DESCRIPTIONS`` says in one line what each one does.
"""

from __future__ import annotations

import numpy as np

from .. import kernels

__all__ = ["KERNELS", "DESCRIPTIONS", "get_kernel", "apply_kernel", "kernel_names"]


def _kernel(rows, scale: float = 1.0) -> np.ndarray:
    array = np.asarray(rows, dtype=np.float64) * scale
    array = array.astype(np.float32)
    array.setflags(write=False)           # shared by everyone: nobody may change it by accident
    return array


_binomial5 = np.array([1, 4, 6, 4, 1], dtype=np.float64)

#: name -> 2-D float32 kernel (read-only)
KERNELS: dict[str, np.ndarray] = {
    # Output = input: a 1 in the middle and zeros around.
    "identity": _kernel([[0, 0, 0],
                         [0, 1, 0],
                         [0, 0, 0]]),
    # The mean of the 3x3 neighbourhood. Weights sum to 1, so flat regions keep their value.
    "box_blur": _kernel(np.ones((3, 3)), 1 / 9),
    # Weighted mean, nearer pixels count more: outer([1, 2, 1], [1, 2, 1]) / 16, a small
    # approximation of a Gaussian bell (it is separable: a 1-D blur along x, then along y).
    "gaussian_blur": _kernel([[1, 2, 1],
                              [2, 4, 2],
                              [1, 2, 1]], 1 / 16),
    # The same with binomial weights 1 4 6 4 1 (outer product / 256): a wider, smoother blur.
    "gaussian_blur_5x5": _kernel(np.outer(_binomial5, _binomial5), 1 / 256),
    # identity + (identity - blur-like neighbours): boosts a pixel against its neighbours.
    # Weights sum to 1 (flat regions unchanged), edges get more contrast.
    "sharpen": _kernel([[0, -1, 0],
                        [-1, 5, -1],
                        [0, -1, 0]]),
    # Sobel: a derivative along x (right minus left), smoothed along y with weights 1 2 1.
    "sobel_x": _kernel([[-1, 0, 1],
                        [-2, 0, 2],
                        [-1, 0, 1]]),
    # Sobel: a derivative along y (below minus above), smoothed along x.
    "sobel_y": _kernel([[-1, -2, -1],
                        [0, 0, 0],
                        [1, 2, 1]]),
    # Prewitt: like Sobel with plain (1 1 1) smoothing.
    "prewitt_x": _kernel([[-1, 0, 1],
                          [-1, 0, 1],
                          [-1, 0, 1]]),
    "prewitt_y": _kernel([[-1, -1, -1],
                          [0, 0, 0],
                          [1, 1, 1]]),
    # 8 x centre - the 8 neighbours: a (negative) Laplacian. Weights sum to 0, so flat
    # regions go to 0 and only outlines remain, in every direction.
    "outline": _kernel([[-1, -1, -1],
                        [-1, 8, -1],
                        [-1, -1, -1]]),
    # The 4-neighbour Laplacian (second derivative along x plus along y).
    "laplacian": _kernel([[0, 1, 0],
                          [1, -4, 1],
                          [0, 1, 0]]),
    # A diagonal derivative plus the pixel itself: looks like a relief lit from the top left.
    "emboss": _kernel([[-2, -1, 0],
                       [-1, 1, 1],
                       [0, 1, 2]]),
}

#: name -> one line on what the kernel does
DESCRIPTIONS: dict[str, str] = {
    "identity": "returns the image unchanged (1 in the centre, 0 elsewhere)",
    "box_blur": "blurs: each pixel becomes the mean of its 3x3 neighbourhood",
    "gaussian_blur": "blurs more gently: a weighted mean, nearer pixels count more (1 2 1 / 16)",
    "gaussian_blur_5x5": "a wider Gaussian blur over a 5x5 neighbourhood (1 4 6 4 1 / 256)",
    "sharpen": "sharpens: subtracts the 4 neighbours from 5 x the pixel, boosting edges",
    "sobel_x": "vertical edges: brightness change from left to right (positive: brighter right)",
    "sobel_y": "horizontal edges: brightness change from top to bottom (positive: brighter below)",
    "prewitt_x": "vertical edges, like sobel_x with equal weights on the three rows",
    "prewitt_y": "horizontal edges, like sobel_y with equal weights on the three columns",
    "outline": "outlines in every direction: 8 x pixel minus its 8 neighbours (0 on flat areas)",
    "laplacian": "second derivative: 0 on flat areas and ramps, large on thin lines and corners",
    "emboss": "relief effect: a diagonal derivative added to the image",
}


def kernel_names() -> list[str]:
    """The names in ``KERNELS``, in the order they are defined."""
    return list(KERNELS)


def get_kernel(name: str) -> np.ndarray:
    """A writable float32 copy of the kernel called ``name``."""
    if name not in KERNELS:
        raise ValueError(f"unknown kernel {name!r}; known kernels: {', '.join(KERNELS)}")
    return KERNELS[name].copy()


def apply_kernel(image, kernel, padding="same") -> np.ndarray:
    """Convolve an image with one 2-D kernel, channel by channel, with ``cyconv.kernels.conv2d``.

    ``image``: ``(H, W)`` (grey) or ``(C, H, W)`` (e.g. RGB); any real dtype (integer images
    are converted to float32). ``kernel``: a 2-D array or a name from ``KERNELS``.
    ``padding``: ``'same'`` (default: output as large as the image, zeros around it),
    ``'valid'`` (no padding: the output shrinks by ``kernel - 1``) or an int.

    Returns float32 (float64 for a float64 image) with the image's layout. Remember that
    ``conv2d`` is cross-correlation (the kernel is not flipped): see the module docstring for
    what that means for the signs of the edge kernels.

    How: the C channels are treated as C groups of a *depthwise* convolution (``groups=C``),
    so the same kernel is applied to each channel separately and the channels do not mix::

        input (1, C, H, W), weight (C, 1, kH, kW) = the kernel C times, groups = C
    """
    if isinstance(kernel, str):
        kernel = KERNELS.get(kernel)
        if kernel is None:
            raise ValueError(f"unknown kernel name; known kernels: {', '.join(KERNELS)}")
    image = np.asarray(image)
    kernel = np.asarray(kernel)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (C, H, W), got shape {image.shape}")
    if kernel.ndim != 2:
        raise ValueError(f"kernel must be a 2-D array (kH, kW), got shape {kernel.shape}")
    if image.dtype.kind not in "fiub" or kernel.dtype.kind not in "fiub":
        raise TypeError(f"image and kernel must be real-valued, got {image.dtype} and {kernel.dtype}")
    dtype = np.float64 if image.dtype == np.float64 else np.float32
    planes = image if image.ndim == 3 else image[None]
    channels = planes.shape[0]
    x = np.ascontiguousarray(planes[None], dtype=dtype)                  # (1, C, H, W)
    weight = np.ascontiguousarray(
        np.broadcast_to(kernel.astype(dtype), (channels, 1) + kernel.shape))  # (C, 1, kH, kW)
    out = kernels.conv2d(x, weight, None, stride=1, padding=padding, groups=channels)[0]
    return out if image.ndim == 3 else out[0]
