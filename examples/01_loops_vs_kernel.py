"""Example 1: a convolution written as loops, against the compiled kernel.

What it teaches
    A 2-D convolution is just six nested loops: for every output channel, output row and
    output column, add up input values times weights over the input channels and the kernel
    rows and columns. ``cyconv.reference.conv2d_loops`` is exactly that, in plain Python.
    ``cyconv.kernels.conv2d`` computes the same numbers with compiled Cython loops (and
    OpenMP threads); this script checks that the two agree and measures how much faster
    the compiled version is. Read ``conv2d_loops`` in ``cyconv/reference.py`` alongside.

How to run
    python examples/01_loops_vs_kernel.py            # a 16x16 image, 3 -> 8 channels
    python examples/01_loops_vs_kernel.py --quick    # tiny sizes (as the tests run it)
    (or set CYCONV_EXAMPLES_QUICK=1)
"""

import argparse
import os
import time

import numpy as np

import cyconv
from cyconv import kernels, reference


def best_time(function, repeats):
    """The fastest of ``repeats`` runs, in seconds (the least disturbed by other programs)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        default=os.environ.get("CYCONV_EXAMPLES_QUICK", "0") != "0",
                        help="tiny sizes, runs in a fraction of a second")
    args = parser.parse_args()

    # input (N, C_in, H, W) and weight (C_out, C_in, kH, kW), the PyTorch layout
    n, c_in, size, c_out = (1, 2, 8, 4) if args.quick else (2, 3, 16, 8)
    cyconv.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c_in, size, size)).astype(np.float32)
    w = rng.standard_normal((c_out, c_in, 3, 3)).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32)
    print(f"input {x.shape}, weight {w.shape}, padding 1, stride 1")

    # 1. The blackboard version: y[n,co,i,j] = b[co] + sum_{c,p,q} w[co,c,p,q] * x[n,c,i+p-1,j+q-1]
    loops = reference.conv2d_loops(x, w, b, padding=1)
    # 2. The compiled kernel: same signature, same numbers.
    compiled = kernels.conv2d(x, w, b, padding=1)
    difference = float(np.abs(loops - compiled).max())
    print(f"output {compiled.shape}")
    print(f"max |loops - kernel| = {difference:.2e}")
    # float32 sums in a different order differ in the last digits, nothing more
    print(f"same numbers: {np.allclose(loops, compiled, rtol=1e-4, atol=1e-4)}")

    t_loops = best_time(lambda: reference.conv2d_loops(x, w, b, padding=1), 1 if args.quick else 2)
    t_numpy = best_time(lambda: reference.conv2d(x, w, b, padding=1), 5)
    t_kernel = best_time(lambda: kernels.conv2d(x, w, b, padding=1), 20)
    print(f"Python loops      : {t_loops * 1e3:9.3f} ms")
    print(f"NumPy (im2col+BLAS): {t_numpy * 1e3:8.3f} ms")
    print(f"compiled kernel   : {t_kernel * 1e3:9.3f} ms  ({cyconv.get_num_threads()} threads)")
    print(f"The compiled kernel is {t_loops / t_kernel:,.0f} times faster than the Python loops.")


if __name__ == "__main__":
    main()
