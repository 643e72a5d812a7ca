"""Example 2: classic hand-made kernels (blur, sharpen, edges) applied to images.

What it teaches
    A convolution kernel is a small grid of weights; sliding it over an image gives a new
    image. Hand-designed kernels blur (averages), sharpen, or find edges (differences):
    ``sobel_x`` lights up *vertical* edges (brightness changing from left to right) and
    ``sobel_y`` *horizontal* ones. A CNN learns its kernels instead, and the first layer
    of a trained network often finds filters much like these. The kernels are in
    ``cyconv.teach.KERNELS``; ``cyconv.teach.apply_kernel`` runs them with
    ``cyconv.kernels.conv2d`` (one kernel per channel, padding 'same').

    Mind the signs: deep-learning "convolution" is cross-correlation (the kernel is not
    flipped), so ``sobel_x`` gives positive values where the image gets brighter to the
    right, and negative values where it gets darker.

How to run
    python examples/02_edge_kernels.py                    # writes edge_kernels.png here
    python examples/02_edge_kernels.py --out grid.png     # choose the file
    python examples/02_edge_kernels.py --quick            # fewer kernels (as the tests run it)
    Needs matplotlib (pip install matplotlib).
"""

import argparse
import os

import numpy as np

from cyconv import teach


def shapes_image(size=48):
    """A synthetic grey image: a bright square, a disc and a diagonal bar on black."""
    y, x = np.mgrid[0:size, 0:size]
    image = np.zeros((size, size), np.float32)
    image[8:22, 6:20] = 1.0                                            # square
    image[(y - 32) ** 2 + (x - 32) ** 2 < 10 ** 2] = 0.7               # disc
    image[(np.abs(y - (size - 1 - x)) < 2) & (y < 20) & (x > 26)] = 0.5  # diagonal bar
    return image


def digit_image():
    """One of the embedded 8x8 digits, enlarged 4x (each pixel becomes a 4x4 block),
    or None if this version of cyconv has no ``cyconv.data.load_digits``."""
    try:
        from cyconv.data import load_digits
    except ImportError:
        return None
    images, labels = load_digits("test")
    first_three = int(np.flatnonzero(labels == 3)[0])
    return np.kron(images[first_three, 0], np.ones((4, 4), np.float32))  # (32, 32) in [0, 1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="edge_kernels.png", help="PNG file to write")
    parser.add_argument("--quick", action="store_true",
                        default=os.environ.get("CYCONV_EXAMPLES_QUICK", "0") != "0",
                        help="only a few kernels")
    args = parser.parse_args()

    import matplotlib
    matplotlib.use("Agg")                       # draw into a file, no window needed
    import matplotlib.pyplot as plt

    names = (["identity", "box_blur", "sobel_x", "sobel_y"] if args.quick
             else ["identity", "box_blur", "gaussian_blur_5x5", "sharpen", "sobel_x", "sobel_y",
                   "prewitt_x", "prewitt_y", "outline", "emboss"])
    images = {"shapes": shapes_image()}
    digit = digit_image()
    if digit is not None:
        images["digit 3"] = digit

    print("kernel              what it does")
    for name in names:
        print(f"{name:<19} {teach.DESCRIPTIONS[name]}")
        print("    " + str(teach.KERNELS[name].round(3)).replace("\n", "\n    "))

    fig, axes = plt.subplots(len(images), len(names), figsize=(1.8 * len(names), 2.0 * len(images)),
                             squeeze=False)
    for row, (title, image) in enumerate(images.items()):
        for col, name in enumerate(names):
            response = teach.apply_kernel(image, name)        # (H, W), same size as the image
            # Edge kernels give signed values: show them on a red-blue scale centred on 0.
            signed = response.min() < -1e-6
            limit = float(np.abs(response).max()) or 1.0
            axes[row, col].imshow(response, cmap="RdBu_r" if signed else "gray",
                                  vmin=-limit if signed else 0, vmax=limit)
            axes[row, col].set_title(f"{title}: {name}" if col == 0 else name, fontsize=8)
            axes[row, col].axis("off")
            if name == "sobel_x":
                print(f"{title}: sobel_x from {response.min():+.2f} (darker to the right) "
                      f"to {response.max():+.2f} (brighter to the right)")
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    plt.close(fig)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
