"""The ``cyconv`` command line.

    cyconv demo       convolve and pool a small image, checked against the NumPy reference
    cyconv info       which build is installed (OpenMP or serial) and how many threads it uses
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from . import kernels, reference


def _print_matrix(title: str, matrix: np.ndarray) -> None:
    print(title)
    for row in matrix:
        print("   " + " ".join(f"{value:6.2f}" for value in row))


def demo(args: argparse.Namespace) -> int:
    """Find the edges of a small picture with a Sobel kernel, then max-pool the edge map."""
    if args.threads is not None:
        kernels.set_num_threads(args.threads)
    image = np.zeros((1, 1, 8, 8), np.float32)
    image[0, 0, 2:6, 2:6] = 1.0                       # a bright square on a dark ground
    sobel_x = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], np.float32).reshape(1, 1, 3, 3)

    edges = kernels.conv2d(image, sobel_x, padding=1)
    pooled, where = kernels.max_pool2d(edges, kernel_size=2, return_indices=True)
    expected_edges = reference.conv2d(image, sobel_x, padding=1)
    expected_pooled = reference.max_pool2d(expected_edges, kernel_size=2)

    _print_matrix("input image (1x1x8x8):", image[0, 0])
    _print_matrix("conv2d with the vertical-edge Sobel kernel, padding=1 (8x8):", edges[0, 0])
    _print_matrix("max_pool2d 2x2, stride 2 (4x4):", pooled[0, 0])
    print("arg-max positions (flat h*W + w in the 8x8 edge map):")
    print("   " + "\n   ".join(" ".join(f"{i:3d}" for i in row) for row in where[0, 0]))
    conv_error = float(np.abs(edges - expected_edges).max())
    pool_error = float(np.abs(pooled - expected_pooled).max())
    ok = conv_error <= 1e-6 and pool_error <= 1e-6
    print(f"checked against cyconv.reference: conv2d max |diff| = {conv_error:.1e}, "
          f"max_pool2d max |diff| = {pool_error:.1e} -> {'OK' if ok else 'MISMATCH'}")
    print(f"({'OpenMP' if kernels.openmp_enabled() else 'serial'} build, "
          f"{kernels.get_num_threads()} threads)")
    return 0 if ok else 1


def info(args: argparse.Namespace) -> int:
    """Print the build and threading facts."""
    from . import __version__

    print(f"cyconv {__version__}")
    print(f"OpenMP: {'yes' if kernels.openmp_enabled() else 'no (serial build)'}")
    print(f"threads: {kernels.get_num_threads()}")
    print(f"numpy {np.__version__}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cyconv", description="cyconv: convolutional networks "
                                     "with Cython kernels, for learning and for real.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run_demo = commands.add_parser("demo", help="convolve and pool a small image, checked "
                                   "against the NumPy reference")
    run_demo.add_argument("--threads", type=int, default=None, help="OpenMP threads (default: all cores)")
    run_demo.set_defaults(func=demo)
    run_info = commands.add_parser("info", help="show the build (OpenMP or serial) and threads")
    run_info.set_defaults(func=info)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except (ValueError, TypeError) as error:
        print(f"cyconv {args.command}: error: {error}", file=sys.stderr)
        return 2
