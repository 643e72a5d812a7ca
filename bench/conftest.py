"""pytest-benchmark set-up for the kernel benchmarks of bench/.

    pytest bench --benchmark-only                   # the full run (a few minutes)
    pytest bench --benchmark-disable -q             # smoke test: every benchmark runs once
    CYCONV_BENCH_THREADS=1 pytest bench --benchmark-only -k "lenet or depthwise"

The plain ``pytest`` of the test suite does not collect this folder (``testpaths`` in
pyproject.toml is ``tests``).

- The cases are the ones of ``cyconv.benchmark.build_cases``, built once, at collection:
  every array is allocated once per session. Each test is one (case, implementation) pair;
  a case is a shape and a pass (conv: forward, fwd+bwd; pooling: forward, backward;
  training: "train step" of a whole model, cyconv and torch only: there is no NumPy model).
- ``benchmark.group`` is "<shape> <pass>", so that pytest-benchmark's table puts cyconv,
  numpy and torch of the same case next to each other.
- PyTorch is optional: without it, its benchmarks are skipped.
- A session fixture sets cyconv's threads (OpenMP and NumPy's BLAS) and PyTorch's to
  ``CYCONV_BENCH_THREADS`` (default 2), and frees one large array first, as compare.py does
  (``cyconv.benchmark.settle_allocator``: see bench/README.md, "The memory allocator").
- ``OMP_WAIT_POLICY=PASSIVE`` and ``OPENBLAS_THREAD_TIMEOUT=4`` are set (unless already set)
  before anything is imported, so that every implementation runs under the same thread
  settings whatever the import order (bench/compare.py's docstring says why).
- Rounds: each benchmark is timed once or twice first (which also warms it up), then run
  for about ``--benchmark-max-time`` seconds (default 1.0) and at least
  ``--benchmark-min-rounds`` rounds (default 5); calls shorter than a millisecond are
  grouped into rounds of about a millisecond.
"""

from __future__ import annotations

import functools
import math
import os
import time

# the same thread settings for every implementation, before NumPy, PyTorch or cyconv load
# their thread pools (see bench/compare.py)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import numpy as np
import pytest

IMPLEMENTATIONS = ("cyconv", "numpy", "torch")
TRAIN_IMPLEMENTATIONS = ("cyconv", "torch")  # the training steps have no NumPy version
DTYPE = np.float32
_ROUND_SECONDS = 1e-3  # calls shorter than this are grouped into rounds of about this long
_MAX_ROUNDS = 1000



def _import_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


torch = _import_torch()
import cyconv  # noqa: E402  (after the OpenMP setting)
from cyconv.benchmark import CONV_SHAPES, POOL_SHAPES, TRAIN_CASES, build_cases  # noqa: E402


def _threads_from_env() -> int:
    value = os.environ.get("CYCONV_BENCH_THREADS", "2").strip()
    if not value.isdigit() or int(value) < 1:
        raise pytest.UsageError(f"CYCONV_BENCH_THREADS must be a positive integer, got {value!r}")
    return int(value)


def pytest_configure(config):
    _threads_from_env()  # refuse a bad value before anything runs


def pytest_report_header(config):
    torch_version = torch.__version__ if torch is not None else "not installed"
    return [f"cyconv bench: {_threads_from_env()} threads (CYCONV_BENCH_THREADS), PyTorch "
            f"{torch_version}, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, "
            f"OPENBLAS_THREAD_TIMEOUT={os.environ['OPENBLAS_THREAD_TIMEOUT']} for all"]


@functools.cache
def _cases() -> tuple:
    return tuple(build_cases(None, DTYPE, torch))


_KINDS = (("conv_case", CONV_SHAPES, IMPLEMENTATIONS),
          ("pool_case", POOL_SHAPES, IMPLEMENTATIONS),
          ("train_case", TRAIN_CASES, TRAIN_IMPLEMENTATIONS))


def pytest_generate_tests(metafunc):
    """Parametrise ``conv_case``/``pool_case``/``train_case`` x ``impl`` over every case of
    that kind and the implementations that kind has. Ids are ``<case>-<pass>-<impl>``, with
    spaces as underscores (``train_lenet5-train_step-torch``)."""
    for argname, shapes, implementations in _KINDS:
        if argname in metafunc.fixturenames:
            pairs = [(case, impl) for case in _cases() if case.name in shapes
                     for impl in implementations]
            metafunc.parametrize((argname, "impl"), pairs,
                                 ids=[f"{case.name}-{case.step}-{impl}".replace(" ", "_")
                                      for case, impl in pairs])


@pytest.fixture(scope="session", autouse=True)
def bench_threads():
    """Every implementation on the same number of threads for the whole session (and the C
    allocator in a long-running process's state: cyconv.benchmark.settle_allocator)."""
    from cyconv.benchmark import settle_allocator

    settle_allocator()
    threads = _threads_from_env()
    cyconv_before = cyconv.get_num_threads()
    torch_before = torch.get_num_threads() if torch is not None else None
    cyconv.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    yield threads
    cyconv.set_num_threads(cyconv_before)
    if torch is not None:
        torch.set_num_threads(torch_before)


def _plan(run, budget: float, min_rounds: int) -> tuple[int, int]:
    """(rounds, iterations) for about ``budget`` seconds; the calls made here warm ``run`` up."""
    start = time.perf_counter()
    run()  # the first call pays for allocations and thread start-up: a rough upper bound
    once = time.perf_counter() - start
    if once < budget / 10:  # cheap: time a warm call
        start = time.perf_counter()
        run()
        once = time.perf_counter() - start
    once = max(once, 1e-7)
    iterations = max(1, int(_ROUND_SECONDS / once))
    rounds = int(budget / (once * iterations))
    return min(max(rounds, min_rounds, 1), _MAX_ROUNDS), iterations


@pytest.fixture
def run_benchmark(request, bench_threads):
    """``run_benchmark(benchmark, case, impl)``: time one implementation of one case."""

    def run_one(benchmark, case, impl):
        if impl not in case.runs:
            if impl == "torch" and torch is None:
                pytest.skip("PyTorch is not installed (pip install torch==2.13.0)")
            pytest.skip(f"{case.name} {case.step} has no {impl} implementation")
        run = case.runs[impl]
        benchmark.group = f"{case.name} {case.step}"
        benchmark.extra_info.update(case=case.name, step=case.step, implementation=impl,
                                    threads=bench_threads, flops=case.flops,
                                    dtype=np.dtype(DTYPE).name,
                                    omp_wait_policy=os.environ["OMP_WAIT_POLICY"])
        if not benchmark.enabled:  # --benchmark-disable: one call, no statistics
            benchmark.pedantic(run)
            return
        budget = float(request.config.getoption("benchmark_max_time"))
        min_rounds = int(request.config.getoption("benchmark_min_rounds"))
        rounds, iterations = _plan(run, budget, min_rounds)
        benchmark.pedantic(run, rounds=rounds, iterations=iterations, warmup_rounds=1)
        stats = getattr(benchmark.stats, "stats", None)
        if stats is not None and stats.median > 0 and math.isfinite(stats.median):
            benchmark.extra_info["gflops"] = round(case.flops / stats.median / 1e9, 3)

    return run_one
