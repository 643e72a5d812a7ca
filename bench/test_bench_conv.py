"""Convolution benchmarks: every shape of cyconv.benchmark.CONV_SHAPES, forward and fwd+bwd,
for cyconv, the NumPy reference and PyTorch (skipped when it is not installed).

Run with ``pytest bench --benchmark-only``; the parameters come from bench/conftest.py.
"""


def test_conv2d(benchmark, run_benchmark, conv_case, impl):
    run_benchmark(benchmark, conv_case, impl)
