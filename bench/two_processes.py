"""Does this machine give two cores' worth of work to cyconv's kernels?

A 2-thread speed-up below 2 can come from the kernel (a serial part, threads waiting on each
other, a bad split of the work) or from the machine (two cores that share a memory system,
or vCPUs whose host is busy). This script separates the two. For each shape it times the
forward convolution with one thread:

- ``alone``: one process;
- ``side by side``: two processes at once, each with its own copy of the arrays: nothing
  is shared between them but the machine;

and, in a third process, the same call with 2 threads against 1. The rounds are interleaved
and each reports a median. If two independent processes do not run at twice the speed of
one, no change to the kernel's threading can reach 2x on that shape either.

    python bench/two_processes.py [--shapes NAME ...] [--rounds R] [--seconds S]

Set ``PYTHONPATH`` to the repository root if the kernels are built in place.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time

import numpy as np

from cyconv.benchmark import CONV_SHAPES

DEFAULT_SHAPES = ("cifar_3x3", "resnet_3x3", "stem_7x7s2", "dilated", "grouped4", "depthwise")


def _conv_call(name: str, threads: int):
    """The forward convolution of benchmark shape ``name`` on ``threads`` threads, ready to call."""
    import cyconv.kernels as kernels

    n, c_in, h, w, c_out, k, stride, padding, dilation, groups = CONV_SHAPES[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c_in, h, w), dtype=np.float32)
    weight = rng.standard_normal((c_out, c_in // groups, k, k), dtype=np.float32)
    kernels.set_num_threads(threads)
    return lambda: kernels.conv2d(x, weight, None, stride, padding, dilation, groups)


def _calls_per_second(run, seconds: float) -> float:
    run()                                            # warm up: workspaces, thread start-up
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run()
        calls += 1
    return calls / (time.perf_counter() - start)


def _worker(name: str, threads: int, seconds: float, barrier, results) -> None:
    run = _conv_call(name, threads)
    run()
    barrier.wait()                                   # start together with the other process
    results.put(_calls_per_second(run, seconds))


def _rate(context, name: str, threads: int, processes: int, seconds: float) -> float:
    """Calls per second of all ``processes`` together, each running ``threads`` threads."""
    barrier, results = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=_worker, args=(name, threads, seconds, barrier, results))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    try:
        # a worker that died (out of memory, killed) would leave get() waiting forever
        total = sum(results.get(timeout=max(120.0, 20 * seconds)) for _ in workers)
    except Exception as error:
        codes = [worker.exitcode for worker in workers]
        for worker in workers:
            worker.kill()
        raise RuntimeError(f"a worker process gave no result (exit codes {codes})") from error
    for worker in workers:
        worker.join()
    return total


def measure(name: str, rounds: int, seconds: float) -> dict[str, float]:
    """Medians over interleaved rounds: two processes / one, and 2 threads / 1 thread."""
    context = mp.get_context("spawn")                # no fork: OpenMP runtimes are not fork-safe
    ratios = {"two processes / one": [], "2 threads / 1 thread": []}
    for _ in range(rounds):
        one = _rate(context, name, 1, 1, seconds)
        two = _rate(context, name, 1, 2, seconds)
        threaded = _rate(context, name, 2, 1, seconds)
        ratios["two processes / one"].append(two / one)
        ratios["2 threads / 1 thread"].append(threaded / one)
    return {label: statistics.median(values) for label, values in ratios.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", nargs="+", default=list(DEFAULT_SHAPES),
                        choices=list(CONV_SHAPES), metavar="NAME",
                        help="benchmark shapes (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default: 5)")
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="seconds of calls per measurement (default: 1)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0:
        parser.error("--rounds must be at least 1 and --seconds positive")
    print(f"cyconv forward, float32, median of {args.rounds} interleaved rounds; throughput "
          "ratios (2.00x = twice the work done per second)\n")
    print("| shape | two processes, 1 thread each / one process | 2 threads / 1 thread |")
    print("|---|---|---|")
    for name in args.shapes:
        result = measure(name, args.rounds, args.seconds)
        print(f"| {name} | {result['two processes / one']:.2f}x | "
              f"{result['2 threads / 1 thread']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
