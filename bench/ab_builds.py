"""Two builds of cyconv's compiled kernels, timed against each other in one process.

A change to a kernel is worth a few percent, and this machine's speed drifts by more than
that from one minute to the next. So this script loads the kernel modules of two builds
side by side in one process (their ``.so`` files: copy a build's ``cyconv/kernels`` folder
aside before changing it), switches them in turn on the Python wrappers that call them,
and times the benchmark cases interleaved. For each case it reports each build's median
time and the median of the paired ratios (A's time / B's time from the same round): above
1 means B is faster.

    cp -r cyconv/kernels /tmp/old_kernels          # before the change, after building it
    ... change, python setup.py build_ext --inplace ...
    python bench/ab_builds.py /tmp/old_kernels cyconv/kernels --rounds 15 --threads 2
    python bench/ab_builds.py /tmp/old_kernels cyconv/kernels grouped4 train_lenet5

Both builds run the same Python code, whichever cyconv ``import cyconv`` finds: the
installed package, or the repository's with ``PYTHONPATH=.`` and the kernels built in
place. So only the kernels differ, and both builds must have the functions that Python
code calls: a change to the wrappers, or to a kernel's name or arguments, cannot be timed
this way. Import order matters here as in bench/compare.py: cyconv is imported first, so
that its thread settings (OMP_WAIT_POLICY, OPENBLAS_THREAD_TIMEOUT) reach the libraries.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import os
import statistics
import sys
import sysconfig
import time

#: the compiled modules a build supplies, and the wrapper modules (of cyconv.kernels) that
#: call them
KERNEL_MODULES = {"_conv_blocked": ("conv",), "_conv_winograd": ("conv",), "_im2col": ("conv",),
                  "_conv_direct": ("conv",), "_pool": ("pool",),
                  "_elementwise": ("elementwise", "conv")}


def load_build(folder: str) -> dict:
    """The kernel modules of the build in ``folder`` (a copy of cyconv/kernels), by name."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    modules = {}
    for name in KERNEL_MODULES:
        path = os.path.join(folder, name + suffix)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} not found: is {folder} a built cyconv/kernels?")
        full_name = "cyconv.kernels." + name
        loader = importlib.machinery.ExtensionFileLoader(full_name, path)
        spec = importlib.util.spec_from_file_location(full_name, path, loader=loader)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        modules[name] = module
    return modules


def use_build(modules: dict) -> None:
    """Make the Python wrappers call this build's kernels."""
    from cyconv import kernels

    for name, wrappers in KERNEL_MODULES.items():
        for wrapper in wrappers:
            setattr(getattr(kernels, wrapper), name, modules[name])


def compare(a: dict, b: dict, names, rounds: int, min_time: float = 0.03, progress=print):
    """Time every case of cyconv.benchmark.build_cases(names) with build a and build b,
    interleaved (the order flips every round); returns rows of (name, step, median seconds
    of a, of b, median of the paired ratios a / b)."""
    from cyconv.benchmark import build_cases, settle_allocator

    settle_allocator()
    rows = []
    for case in build_cases(names):
        run = case.runs["cyconv"]
        for build in (a, b):                              # warm up both
            use_build(build)
            run()
        start = time.perf_counter()
        run()
        loops = max(1, int(min_time / max(time.perf_counter() - start, 1e-6)))
        times = {"a": [], "b": []}
        for r in range(rounds):
            for label in ("a", "b") if r % 2 else ("b", "a"):
                use_build(a if label == "a" else b)
                start = time.perf_counter()
                for _ in range(loops):
                    run()
                times[label].append((time.perf_counter() - start) / loops)
        ratio = statistics.median(x / y for x, y in zip(times["a"], times["b"]))
        row = (case.name, case.step, statistics.median(times["a"]),
               statistics.median(times["b"]), ratio)
        rows.append(row)
        if progress:
            progress(f"| {row[0]} | {row[1]} | {row[2] * 1e3:.3f} | {row[3] * 1e3:.3f} "
                     f"| {row[4]:.3f} |")
    return rows


def main(argv=None) -> int:
    import cyconv  # noqa: F401  (first: its thread settings must reach NumPy's BLAS)
    from cyconv import kernels

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="folder of build A's kernel modules (a copy of cyconv/kernels)")
    parser.add_argument("b", help="folder of build B's kernel modules")
    parser.add_argument("cases", nargs="*", help="benchmark cases (default: all of them)")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds (default 15)")
    parser.add_argument("--threads", type=int, default=2, help="threads (default 2)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.threads < 1:
        parser.error("--rounds and --threads must be at least 1")
    a, b = load_build(args.a), load_build(args.b)
    kernels.set_num_threads(args.threads)
    print(f"# A = {args.a}, B = {args.b}, {args.threads} threads, {args.rounds} rounds")
    print("| case | pass | A ms | B ms | A / B |")
    print("|---|---|---|---|---|")
    compare(a, b, args.cases or None, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
