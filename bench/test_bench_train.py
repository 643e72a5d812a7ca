"""Training-step benchmarks: every model of cyconv.benchmark.TRAIN_CASES, one whole step
(forward, cross-entropy, zero_grad, backward, SGD with momentum) in training mode, for
cyconv and its PyTorch twin with the same weights (skipped when PyTorch is not installed).
There is no NumPy implementation of a whole model, so these have no numpy benchmark.

Run with ``pytest bench --benchmark-only -k train``; the parameters come from bench/conftest.py.
The two checks at the end are not benchmarks (``--benchmark-only`` skips them): they pin
down the FLOP count and the table's handling of the missing numpy column.
"""

import numpy as np

from cyconv import models
from cyconv.benchmark import _format_table, forward_flops


def test_train_step(benchmark, run_benchmark, train_case, impl):
    run_benchmark(benchmark, train_case, impl)


def test_lenet5_forward_flops_by_hand():
    n = 64
    c1 = n * 6 * 28 * 28 * 2 * (1 * 5 * 5)          # padded by 2: 28x28 maps
    c3 = n * 16 * 10 * 10 * 2 * (6 * 5 * 5)
    fc = n * 2 * (400 * 120 + 120 * 84 + 84 * 10)
    model = models.LeNet5(input_size=28)
    assert forward_flops(model, np.zeros((n, 1, 28, 28), np.float32)) == c1 + c3 + fc
    assert model.training                              # counted in eval mode, then put back


def test_table_shows_a_dash_for_a_missing_implementation():
    rows = [dict(name="lenet_c1", step="forward", flops=2e9, cyconv=1e-3, numpy=4e-3, torch=5e-4),
            dict(name="train_lenet5", step="train step", flops=1.6e8, cyconv=1e-2, torch=5e-3)]
    lines = _format_table(rows, with_torch=True).splitlines()
    assert lines[2] == "| lenet_c1 | forward | 1.000 | 4.000 | 0.500 | 4.00x | 0.50x | 2000.0 |"
    assert lines[3] == "| train_lenet5 | train step | 10.000 | - | 5.000 | - | 0.50x | 16.0 |"
    del rows[1]["torch"]                               # PyTorch present, but not for this case
    assert _format_table(rows, with_torch=True).splitlines()[3] == \
        "| train_lenet5 | train step | 10.000 | - | - | - | - | 16.0 |"
