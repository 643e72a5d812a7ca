"""Example 3: a convolution is a (very sparse, very repetitive) matrix.

What it teaches
    A convolution is linear in its input, so it can be written as one matrix M acting on
    the flattened image: conv2d(x, w).ravel() == M @ x.ravel(). Printing M for a 4x4 image
    and a 3x3 kernel shows the two ideas behind CNNs:
      - local connectivity: most of M is zeros (an output sees only a 3x3 window);
      - weight sharing: the non-zeros are the same 9 weights (a..i) in every row, shifted.
    A fully connected layer with the same input and output sizes would learn every entry
    of M separately: the script counts the parameters of both.

How to run
    python examples/03_conv_as_matrix.py
    python examples/03_conv_as_matrix.py --quick       # the same (it is already fast)
"""

import argparse
import os

import numpy as np

from cyconv import kernels, teach


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        default=os.environ.get("CYCONV_EXAMPLES_QUICK", "0") != "0",
                        help="accepted for uniformity; this example is always quick")
    parser.parse_args()

    # 1. The pattern: which weight multiplies which input pixel for which output value.
    print("A 1-channel 4x4 input, a 3x3 kernel, no padding, stride 1 -> 2x2 output.")
    print("Rows: the 4 output values; columns: the 16 input pixels, row by row.\n")
    print(teach.show_conv_matrix((4, 4), (3, 3)))

    # 2. Check with numbers: the matrix product equals the convolution.
    rng = np.random.default_rng(0)
    kernel = rng.integers(-3, 4, size=(3, 3)).astype(np.float32)
    image = rng.integers(0, 10, size=(4, 4)).astype(np.float32)
    matrix = teach.conv_as_matrix((4, 4), kernel)
    by_matrix = matrix @ image.ravel()
    by_conv = kernels.conv2d(image[None, None], kernel[None, None]).ravel()
    print("\nWith kernel\n", kernel, "\nthe matrix is\n", matrix)
    print(f"M @ x        = {by_matrix}")
    print(f"conv2d(x, w) = {by_conv}")
    print(f"M @ x == conv2d: {np.allclose(by_matrix, by_conv)}")

    # 3. Count: convolution against a fully connected layer of the same shape.
    print("\n" + teach.compare_with_dense((4, 4), (3, 3), bias=False).explain())
    print("\nThe same comparison for LeNet-5's first layer (6 filters 5x5 on a 32x32 image):")
    print(teach.compare_with_dense((1, 32, 32), (6, 1, 5, 5)).explain())


if __name__ == "__main__":
    main()
