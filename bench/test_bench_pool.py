"""Pooling benchmarks: every case of cyconv.benchmark.POOL_SHAPES (max and average), forward
and backward, for cyconv, the NumPy reference and PyTorch (skipped when it is not installed).

Run with ``pytest bench --benchmark-only``; the parameters come from bench/conftest.py.
"""


def test_pool2d(benchmark, run_benchmark, pool_case, impl):
    run_benchmark(benchmark, pool_case, impl)
