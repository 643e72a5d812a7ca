"""Every convolution algorithm on every pass of the benchmark shapes, side by side.

The measurements behind ``cyconv.kernels.choose_algorithm``: for each shape and each pass
(output, grad_input, grad_weight), the median time of "direct", "im2col" and "blocked"
called in turn (interleaved) on the same arrays, and what "auto" picks. The fastest is in
bold. "direct" is left out where it would take seconds (64 or more multiply-adds per
output; it is the kernel to read, never the fastest there), and "blocked" where it cannot
run the pass (a strided input gradient).

    python bench/algorithms.py                       # every shape, 2 threads
    python bench/algorithms.py --shapes grouped4 rs_l2_32 --repeats 15
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import cyconv
from cyconv import kernels
from cyconv.benchmark import CONV_SHAPES
from cyconv.geometry import conv2d_geometry

#: The benchmark shapes, and the 3x3 layers of ResNetSmall on a batch of 32 (same tuple
#: layout as cyconv.benchmark.CONV_SHAPES).
SHAPES = dict(CONV_SHAPES, **{
    "rs_l1_16": (32, 16, 32, 32, 16, 3, 1, 1, 1, 1),
    "rs_l2_32": (32, 32, 16, 16, 32, 3, 1, 1, 1, 1),
    "rs_l3_64": (32, 64, 8, 8, 64, 3, 1, 1, 1, 1),
    "rs_l2a_s2": (32, 16, 32, 32, 32, 3, 2, 1, 1, 1),
})
ALGORITHMS = ("direct", "im2col", "blocked", "winograd")


def passes(name: str, rng) -> tuple:
    """(geometry, {pass: function of the algorithm}) for one shape, on float32 arrays."""
    n, c, h, w, c_out, k, stride, padding, dilation, groups = SHAPES[name]
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    weight = rng.standard_normal((c_out, c // groups, k, k)).astype(np.float32)
    hyper = (stride, padding, dilation, groups)
    geometry = conv2d_geometry(x.shape, weight.shape, *hyper)
    grad_y = rng.standard_normal(geometry.output_shape).astype(np.float32)
    return geometry, {
        "output": lambda a: kernels.conv2d(x, weight, None, *hyper, algorithm=a),
        "grad_input": lambda a: kernels.conv2d_grad_input(grad_y, weight, x.shape, *hyper, algorithm=a),
        "grad_weight": lambda a: kernels.conv2d_grad_weight(grad_y, x, weight.shape, *hyper, algorithm=a),
    }


def table(names, repeats: int) -> str:
    """The markdown table, printed line by line as it is measured, and returned."""
    rng = np.random.default_rng(0)
    lines = ["| shape | pass | auto picks | " + " | ".join(f"{a} ms" for a in ALGORITHMS) + " |",
             "|---|---|---|" + "---|" * len(ALGORITHMS)]
    print("\n".join(lines), flush=True)
    for name in names:
        geometry, runs = passes(name, rng)
        reduction = (geometry.in_channels // geometry.groups) * geometry.kernel_h * geometry.kernel_w
        for computing, run in runs.items():
            usable = []
            for algorithm in ALGORITHMS:
                if algorithm == "direct" and reduction >= 64:
                    continue
                try:
                    run(algorithm)                   # warm-up; "blocked" may refuse the pass
                except ValueError:
                    continue
                usable.append(algorithm)
            times = {a: [] for a in usable}
            for _ in range(repeats):
                for algorithm in usable:
                    start = time.perf_counter()
                    run(algorithm)
                    times[algorithm].append(time.perf_counter() - start)
            medians = {a: statistics.median(t) * 1e3 for a, t in times.items()}
            best = min(medians, key=medians.get)
            cells = [("-" if a not in medians else
                      f"**{medians[a]:.2f}**" if a == best else f"{medians[a]:.2f}")
                     for a in ALGORITHMS]
            line = (f"| {name} | {computing} | {kernels.choose_algorithm(geometry, computing)} | "
                    + " | ".join(cells) + " |")
            lines.append(line)
            print(line, flush=True)
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES),
                        metavar="NAME", help="only these shapes: " + ", ".join(SHAPES))
    parser.add_argument("--repeats", type=int, default=9, help="interleaved repeats (default 9)")
    parser.add_argument("--threads", type=int, default=2, help="threads (default 2)")
    args = parser.parse_args(argv)
    cyconv.set_num_threads(args.threads)
    table(args.shapes, args.repeats)


if __name__ == "__main__":
    main()
