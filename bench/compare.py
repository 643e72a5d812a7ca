#!/usr/bin/env python
"""Time cyconv's kernels against the NumPy reference and PyTorch, side by side.

    python bench/compare.py                          # every case, 2 threads, PyTorch if installed
    python bench/compare.py --threads 1              # one thread for every implementation
    python bench/compare.py --scaling                # cyconv alone: 1 thread against 2
    python bench/compare.py --no-torch               # leave PyTorch out
    python bench/compare.py --shapes lenet_c2 max2x2_32 --repeats 3

The measuring and the table are in ``cyconv.benchmark``; see bench/README.md for what the
columns mean.

The same thread settings for everybody
--------------------------------------
Thread pools that wait for work by spinning take the cores from each other on a small
machine, and the settings that stop it are read once, when a library loads. Measured here
on resnet_3x3: cyconv's forward took 17.7 ms alone and 35 ms when interleaved with the
NumPy reference, PyTorch's 15.4 ms and 30 ms, because OpenBLAS's idle threads spin for
about a tenth of a second after each NumPy matrix product; with
``OPENBLAS_THREAD_TIMEOUT=4`` neither was slowed. Likewise OpenMP threads spinning between
loops (PyTorch's default) slowed the BLAS calls in between. And the PyTorch wheel ships its
own ``libgomp.so.1`` under the soname of the system library the cyconv kernels use, so in
one process both run on whichever OpenMP runtime loaded first.

So, before importing anything, this script sets ``OMP_WAIT_POLICY=PASSIVE`` and
``OPENBLAS_THREAD_TIMEOUT=4`` (idle threads sleep at once; cyconv's own defaults) unless they
are already set: every implementation is timed under the same, stated settings, whatever
the import order. Set them yourself to time all three under others.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")       # before NumPy, PyTorch or cyconv load
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")    # their thread pools


def main(argv: list[str] | None = None) -> int:
    try:
        import cyconv.benchmark
    except ImportError as error:
        print(f"compare.py: cannot import cyconv ({error}).\nInstall it with `pip install .`, "
              "or build the kernels in place and set PYTHONPATH to the repository root.",
              file=sys.stderr)
        return 2
    print(f"# OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, OPENBLAS_THREAD_TIMEOUT="
          f"{os.environ['OPENBLAS_THREAD_TIMEOUT']} for every implementation", file=sys.stderr)
    return cyconv.benchmark.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
