"""Thread count: the kernels give the reference's numbers with 1, 2 and 3 threads.

Each output value is computed by one thread in a fixed order, so the direct and pooling
kernels give the same bits whatever the thread count; BLAS (used by im2col) may split its
sums differently, so there the two results only agree within rounding.
"""

from __future__ import annotations

import numpy as np
import pytest

import cyconv
from cyconv import kernels as K
from cyconv import reference as R
from cyconv.kernels import threads as threads_module

N, C, H, W = 4, 8, 16, 16
THREAD_COUNTS = (1, 2, 3)          # 3: shares of unequal size on a 2-core machine


@pytest.fixture(autouse=True)
def every_loop_on_all_threads(monkeypatch):
    """The small arrays here would run on one thread (threads_for): make every loop use
    all the threads it is given, so that the tests see the threads share the work."""
    from cyconv.kernels import conv, elementwise, pool

    for module, name in ((elementwise, "RELU_ITEMS_PER_THREAD"),
                         (elementwise, "BATCH_NORM_ITEMS_PER_THREAD"),
                         (pool, "POOL_ITEMS_PER_THREAD"), (conv, "BIAS_GRAD_ITEMS_PER_THREAD")):
        monkeypatch.setattr(module, name, 1)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(12)
    return {
        "x": rng.standard_normal((N, C, H, W)),
        "w": rng.standard_normal((C, C, 3, 3)),          # 72 products per output: im2col by auto
        "w_dw": rng.standard_normal((2 * C, 1, 3, 3)),   # depthwise, multiplier 2
        "b": rng.standard_normal(C),
        "gy": rng.standard_normal((N, C, 8, 8)),         # stride 2, padding 1 -> 8x8
        "gy_dw": rng.standard_normal((N, 2 * C, 16, 16)),
        "x_perm": (rng.permutation(N * C * H * W) * 0.5).reshape(N, C, H, W),
    }


def run_with_threads(n, function, *args, **kwargs):
    K.set_num_threads(n)
    assert K.get_num_threads() == n
    return function(*args, **kwargs)


def check_threads(function, reference, args, kwargs=None, ref_args=None, exact=True, tol=1e-10):
    """Run ``function`` with each of THREAD_COUNTS; compare with ``reference`` and with the
    1-thread result."""
    kwargs = kwargs or {}
    expected = reference(*(ref_args or args), **{k: v for k, v in kwargs.items() if k != "algorithm"})
    results = [run_with_threads(n, function, *args, **kwargs) for n in THREAD_COUNTS]
    for result in results:
        assert result.dtype == expected.dtype and result.shape == expected.shape
        np.testing.assert_allclose(result, expected, rtol=tol, atol=tol)
    for result in results[1:]:
        if exact:
            np.testing.assert_array_equal(result, results[0])
        else:
            np.testing.assert_allclose(result, results[0], rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("algorithm", ["direct", "im2col"])
def test_conv_same_result_with_1_and_2_threads(data, algorithm, dtype, restore_threads):
    x, w, b, gy = (data[k].astype(dtype) for k in ("x", "w", "b", "gy"))
    tol = 1e-10 if dtype == np.float64 else 2e-4
    exact = algorithm == "direct"
    hyper = dict(stride=2, padding=1, algorithm=algorithm)
    check_threads(K.conv2d, R.conv2d, (x, w, b), hyper, exact=exact, tol=tol)
    check_threads(K.conv2d_grad_input, R.conv2d_grad_input, (gy, w, x.shape), hyper, exact=exact, tol=tol)
    check_threads(K.conv2d_grad_weight, R.conv2d_grad_weight, (gy, x, w.shape), hyper, exact=exact, tol=tol)
    check_threads(K.conv2d_grad_bias, R.conv2d_grad_bias, (gy,), tol=tol)


@pytest.mark.parametrize("algorithm", ["direct", "im2col"])
def test_depthwise_conv_with_1_and_2_threads(data, algorithm, restore_threads):
    x, w, gy = data["x"], data["w_dw"], data["gy_dw"]
    hyper = dict(padding="same", dilation=(1, 2), groups=C, algorithm=algorithm)
    exact = algorithm == "direct"
    check_threads(K.conv2d, R.conv2d, (x, w), hyper, exact=exact)
    check_threads(K.conv2d_grad_input, R.conv2d_grad_input, (gy, w, x.shape), hyper, exact=exact)
    check_threads(K.conv2d_grad_weight, R.conv2d_grad_weight, (gy, x, w.shape), hyper, exact=exact)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_blocked_conv_with_1_and_2_threads(data, dtype, restore_threads):
    """Forward and input gradient are the same to the bit with any thread count (each task
    writes its own outputs); the weight gradient adds per-thread partial sums."""
    x, w, b = (data[k].astype(dtype) for k in ("x", "w", "b"))
    gy = np.random.default_rng(5).standard_normal(x.shape[:1] + (C,) + x.shape[2:]).astype(dtype)
    tol = 1e-10 if dtype == np.float64 else 2e-4
    for groups, weight in ((1, w), (C, data["w_dw"].astype(dtype))):
        hyper = dict(padding=1, groups=groups, algorithm="blocked")
        grad_y = gy if groups == 1 else np.concatenate([gy, gy], axis=1)
        check_threads(K.conv2d, R.conv2d, (x, weight), hyper, exact=True, tol=tol)
        check_threads(K.conv2d_grad_input, R.conv2d_grad_input, (grad_y, weight, x.shape), hyper,
                      exact=True, tol=tol)
        check_threads(K.conv2d_grad_weight, R.conv2d_grad_weight, (grad_y, x, weight.shape),
                      hyper, exact=False, tol=tol)


def test_im2col_bands_with_2_threads(data, monkeypatch, restore_threads):
    monkeypatch.setattr(K.conv, "BAND_BYTES", 1)      # one output row per band
    x, w, b, gy = data["x"], data["w"], data["b"], data["gy"]
    hyper = dict(stride=2, padding=1, algorithm="im2col")
    check_threads(K.conv2d, R.conv2d, (x, w, b), hyper, exact=False)
    check_threads(K.conv2d_grad_input, R.conv2d_grad_input, (gy, w, x.shape), hyper, exact=False)
    check_threads(K.conv2d_grad_weight, R.conv2d_grad_weight, (gy, x, w.shape), hyper, exact=False)


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_max_pool_with_1_and_2_threads(data, ceil_mode, restore_threads):
    x = data["x_perm"]
    config = dict(kernel_size=3, stride=2, padding=1, dilation=(1, 2), ceil_mode=ceil_mode)
    results = [run_with_threads(n, K.max_pool2d, x, **config, return_indices=True) for n in THREAD_COUNTS]
    y_ref, idx_ref = R.max_pool2d(x, **config, return_indices=True)
    for y, idx in results:
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(idx, idx_ref)
    gy = np.random.default_rng(0).standard_normal(y_ref.shape)
    check_threads(K.max_pool2d_grad_input, R.max_pool2d_grad_input, (gy, idx_ref, x.shape))


@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool_with_1_and_2_threads(data, count_include_pad, restore_threads):
    x = data["x"]
    config = dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1), ceil_mode=True,
                  count_include_pad=count_include_pad)
    check_threads(K.avg_pool2d, R.avg_pool2d, (x,), config)
    y = R.avg_pool2d(x, **config)
    gy = np.random.default_rng(1).standard_normal(y.shape)
    check_threads(K.avg_pool2d_grad_input, R.avg_pool2d_grad_input, (gy, x.shape), config)


@pytest.mark.parametrize("output_size", [1, 5, (3, None), (7, 16)])
def test_adaptive_avg_pool_with_1_and_2_threads(data, output_size, restore_threads):
    x = data["x"]
    check_threads(K.adaptive_avg_pool2d, R.adaptive_avg_pool2d, (x, output_size))
    y = R.adaptive_avg_pool2d(x, output_size)
    gy = np.random.default_rng(2).standard_normal(y.shape)
    check_threads(K.adaptive_avg_pool2d_grad_input, R.adaptive_avg_pool2d_grad_input, (gy, x.shape))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_winograd_with_1_2_and_3_threads(dtype, restore_threads):
    """Winograd's chunks of tiles go to whichever thread is free: the same bits anyway."""
    rng = np.random.default_rng(7)
    tol = 1e-9 if dtype == np.float64 else 1e-3
    x, gy = (rng.standard_normal((3, 16, 12, 12)).astype(dtype) for _ in range(2))
    w, b = rng.standard_normal((16, 16, 3, 3)).astype(dtype), rng.standard_normal(16).astype(dtype)
    for dilation in (1, 2):
        hyper = dict(padding=dilation, dilation=dilation, algorithm="winograd")
        check_threads(K.conv2d, R.conv2d, (x, w, b), hyper, tol=tol)
        check_threads(K.conv2d_grad_input, R.conv2d_grad_input, (gy, w, x.shape), hyper, tol=tol)


def test_forward_over_channels_with_1_2_and_3_threads(restore_threads):
    """The blocked forward kernel in tiles over output channels, with each of its tiles,
    called directly: "auto" runs it only with AVX-512's vectors of 16."""
    from cyconv.kernels import conv

    def forward(x, w, tile):
        y = np.empty((x.shape[0], w.shape[0]) + x.shape[2:], x.dtype)
        return conv._blocked_conv_by_channels(x, w, None, y, 1, 1, (1, 1), (1, 1), 2,
                                              K.get_num_threads(), tile)

    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 32, 5, 28)).astype(np.float32)
    w = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    for tile in conv.CHANNEL_TILES:
        check_threads(forward, R.conv2d, (x, w, tile), ref_args=(x, w, None, 1, 1, 1, 2),
                      tol=2e-4)


@pytest.mark.parametrize("threads", [2, 3])
def test_weight_gradients_same_bits_run_to_run(data, threads, restore_threads):
    """The weight gradients add up per-thread partial sums: the shares are the same on every
    run, so the rounding is too."""
    x, w = data["x"].astype(np.float32), data["w"].astype(np.float32)
    gy = np.random.default_rng(9).standard_normal(x.shape).astype(np.float32)
    K.set_num_threads(threads)
    for algorithm in ("blocked", "im2col"):
        runs = [K.conv2d_grad_weight(gy, x, w.shape, padding=1, algorithm=algorithm)
                for _ in range(3)]
        for result in runs[1:]:
            np.testing.assert_array_equal(result, runs[0])
        np.testing.assert_allclose(runs[0], R.conv2d_grad_weight(gy, x, w.shape, padding=1),
                                   rtol=2e-4, atol=2e-3)


def test_2x2_pooling_with_1_2_and_3_threads(data, restore_threads):
    """The 2x2, stride-2 pooling paths (max_pool_2x2 and avg_pool_2x2 with their backward)."""
    x = data["x_perm"]
    results = [run_with_threads(n, K.max_pool2d, x, 2, return_indices=True) for n in THREAD_COUNTS]
    y_ref, idx_ref = R.max_pool2d(x, 2, return_indices=True)
    for y, idx in results:
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(idx, idx_ref)
    gy = np.random.default_rng(3).standard_normal(y_ref.shape)
    check_threads(K.max_pool2d_grad_input, R.max_pool2d_grad_input, (gy, idx_ref, x.shape))
    check_threads(K.avg_pool2d, R.avg_pool2d, (x, 2))
    check_threads(K.avg_pool2d_grad_input, R.avg_pool2d_grad_input, (gy, x.shape, 2))


def test_more_threads_than_work(restore_threads):
    # 1 plane, 8 threads: most threads get nothing to do
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    K.set_num_threads(8)
    np.testing.assert_array_equal(K.conv2d(x, np.ones((1, 1, 2, 2)), algorithm="direct"),
                                  [[[[12, 16], [24, 28]]]])
    np.testing.assert_array_equal(K.max_pool2d(x, 2, stride=1), [[[[5, 6], [8, 9]]]])
    np.testing.assert_array_equal(K.avg_pool2d(x, 2, stride=1), [[[[3, 4], [6, 7]]]])
    np.testing.assert_array_equal(K.adaptive_avg_pool2d(x, 1), [[[[5]]]])


# ---------------------------------------------------------------------------------------
# How the kernels share their tasks (kernels/_threads.pxd)
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("threads", [1, 2, 3, 8])
@pytest.mark.parametrize("tasks", [0, 1, 2, 5, 7, 64])
def test_static_shares_are_contiguous_and_even(tasks, threads):
    from cyconv.kernels import _parallel

    ran, team = _parallel.task_owners(tasks, threads, dynamic=False)
    assert team == (threads if K.openmp_enabled() else 1) or 1 <= team < threads
    assert ran.shape == (threads, tasks) and not ran[team:].any()
    sizes = ran.sum(axis=1)[:team]
    # tasks // team each, one more for the first tasks % team threads, in thread order
    np.testing.assert_array_equal(sizes, [tasks // team + (t < tasks % team) for t in range(team)])
    np.testing.assert_array_equal(ran.sum(axis=0), np.ones(tasks))
    owner = ran.argmax(axis=0)         # the thread that ran each task: 0, 0, ..., 1, 1, ...
    assert (np.diff(owner) >= 0).all()


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
@pytest.mark.parametrize("tasks", [0, 1, 5, 1000])
def test_dynamic_tasks_run_once_each(tasks, threads):
    from cyconv.kernels import _parallel

    for _ in range(20):                # the threads race for the tasks: try many times
        ran, team = _parallel.task_owners(tasks, threads, dynamic=True)
        assert ran.shape == (threads, tasks) and 1 <= team <= threads
        np.testing.assert_array_equal(ran.sum(axis=0), np.ones(tasks))
        assert not ran[team:].any()


def test_task_owners_refuses_bad_counts():
    from cyconv.kernels import _parallel

    with pytest.raises(ValueError, match="tasks must be >= 0 and threads >= 1, got -1 and 2"):
        _parallel.task_owners(-1, 2, True)
    with pytest.raises(ValueError, match="got 3 and 0"):
        _parallel.task_owners(3, 0, False)


# ---------------------------------------------------------------------------------------
# The thread-count API
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("items, per_thread, threads, expected", [
    (0, 10, 2, 1), (9, 10, 2, 1), (10, 10, 2, 1), (19, 10, 2, 1), (20, 10, 2, 2),
    (10 ** 9, 10, 2, 2), (10 ** 9, 10, 1, 1), (35, 10, 8, 3), (5, 1, 3, 3)])
def test_threads_for_gives_each_thread_enough_items(items, per_thread, threads, expected,
                                                    restore_threads):
    K.set_num_threads(threads)
    assert threads_module.threads_for(items, per_thread) == expected


def test_threads_for_refuses_a_zero_share():
    with pytest.raises(ValueError, match="items_per_thread must be at least 1, got 0"):
        threads_module.threads_for(100, 0)


def test_small_loops_run_on_fewer_threads(monkeypatch, restore_threads):
    """A ReLU on a few values runs on one thread; with the share per thread lowered, on all."""
    from cyconv.kernels import elementwise

    seen = []
    real = elementwise._elementwise

    class Recorder:                     # records the thread count the wrapper passes down
        def __getattr__(self, name):
            function = getattr(real, name)
            return lambda *args: seen.append(args[-1]) or function(*args)

    monkeypatch.setattr(elementwise, "_elementwise", Recorder())
    K.set_num_threads(2)
    x = np.linspace(-1, 1, 100)
    monkeypatch.setattr(elementwise, "RELU_ITEMS_PER_THREAD", 2 ** 18)
    np.testing.assert_array_equal(K.relu(x), np.maximum(x, 0))
    monkeypatch.setattr(elementwise, "RELU_ITEMS_PER_THREAD", 10)
    np.testing.assert_array_equal(K.relu(x), np.maximum(x, 0))
    assert seen == [1, 2]

@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_get_num_threads_round_trips(n, restore_threads):
    K.set_num_threads(n)
    assert K.get_num_threads() == n
    assert cyconv.get_num_threads() == n          # the same setting at the top level
    cyconv.set_num_threads(restore_threads)
    assert K.get_num_threads() == restore_threads


def test_default_is_positive(restore_threads):
    assert isinstance(restore_threads, int) and restore_threads >= 1


def test_set_num_threads_also_limits_blas(restore_threads):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    blas = [p for p in threadpoolctl.threadpool_info() if p.get("user_api") == "blas"]
    if not blas:
        pytest.skip("NumPy's BLAS is not visible to threadpoolctl")
    K.set_num_threads(1)
    assert all(p["num_threads"] == 1 for p in threadpoolctl.threadpool_info()
               if p.get("user_api") == "blas")


def test_openmp_enabled_is_a_bool():
    assert type(K.openmp_enabled()) is bool
    assert cyconv.openmp_enabled() is K.openmp_enabled()


@pytest.mark.parametrize("value, expected", [("3", 3), (" 2 ", 2), ("4,2", 4), ("1", 1)])
def test_default_follows_omp_num_threads(value, expected, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert threads_module._default_num_threads() == expected


@pytest.mark.parametrize("value", ["", "0", "-2", "abc", "2.5"])
def test_default_ignores_a_bad_omp_num_threads(value, monkeypatch):
    import os

    monkeypatch.setenv("OMP_NUM_THREADS", value)
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    result = threads_module._default_num_threads()
    assert result >= 1
    if expected is not None:
        assert result == expected


def test_im2col_with_more_threads_than_cores(restore_threads):
    """Each thread has its own im2col workspace row: 8 threads on a 2-core machine."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 4, 9, 7))
    w = rng.standard_normal((6, 2, 3, 2))
    hyper = dict(stride=(1, 2), padding=1, dilation=(2, 1), groups=2, algorithm="im2col")
    y_ref = R.conv2d(x, w, None, **{k: v for k, v in hyper.items() if k != "algorithm"})
    gy = rng.standard_normal(y_ref.shape)
    cyconv.set_num_threads(8)
    np.testing.assert_allclose(K.conv2d(x, w, **hyper), y_ref, rtol=1e-10, atol=1e-10)
    ref_hyper = {k: v for k, v in hyper.items() if k != "algorithm"}
    np.testing.assert_allclose(K.conv2d_grad_input(gy, w, x.shape, **hyper),
                               R.conv2d_grad_input(gy, w, x.shape, **ref_hyper), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(K.conv2d_grad_weight(gy, x, w.shape, **hyper),
                               R.conv2d_grad_weight(gy, x, w.shape, **ref_hyper), rtol=1e-10, atol=1e-10)
