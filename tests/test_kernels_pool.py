"""The compiled pooling kernels against the NumPy reference and hand-worked values.

Max pooling is tested on inputs with distinct values (a random permutation), so that every
window has one arg-max and the indices must equal the reference's exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cyconv import kernels as K
from cyconv import reference as R
from cyconv.geometry import output_size, pool2d_geometry

DTYPES = [np.float32, np.float64]


def assert_matches(actual, expected, dtype):
    assert isinstance(actual, np.ndarray)
    assert actual.dtype == dtype, f"dtype {actual.dtype}, expected {np.dtype(dtype)}"
    assert actual.shape == expected.shape
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    if dtype == np.float64:
        np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12 * scale)
    else:
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5 * scale)


def distinct_values(rng, shape, dtype):
    """Every value different (a shuffled 0, 1, ..., size-1, shifted to include negatives)."""
    size = int(np.prod(shape))
    return (rng.permutation(size) - size // 2).reshape(shape).astype(dtype)


# ---------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------

@st.composite
def pool_configs(draw, with_dilation=True):
    """A valid max/avg pooling configuration (kernel always fits the padded input)."""
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    if padding[0] == padding[1] and draw(st.booleans()):
        padding = padding[0]
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if with_dilation else (1, 1)
    stride = draw(st.one_of(st.none(), st.integers(1, 3),
                            st.tuples(st.integers(1, 3), st.integers(1, 3))))
    pads = padding if isinstance(padding, tuple) else (padding, padding)
    spans = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]
    h = draw(st.integers(max(1, spans[0] - 2 * pads[0]), 10))
    w = draw(st.integers(max(1, spans[1] - 2 * pads[1]), 10))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w)
    config = dict(kernel_size=kernel if draw(st.booleans()) or kernel[0] != kernel[1] else kernel[0],
                  stride=stride, padding=padding, ceil_mode=draw(st.booleans()))
    if with_dilation:
        config["dilation"] = dilation
    pool2d_geometry(shape, **config)              # raises if the strategy drew an invalid one
    return shape, config


SEEDS = st.integers(0, 2**32 - 1)


# ---------------------------------------------------------------------------------------
# Max pooling
# ---------------------------------------------------------------------------------------

@given(problem=pool_configs(), dtype=st.sampled_from(DTYPES), seed=SEEDS)
def test_max_pool_random_configs(problem, dtype, seed):
    shape, config = problem
    rng = np.random.default_rng(seed)
    x = distinct_values(rng, shape, dtype)
    y, idx = K.max_pool2d(x, **config, return_indices=True)
    y_ref, idx_ref = R.max_pool2d(x, **config, return_indices=True)
    assert y.dtype == dtype and idx.dtype == np.int64
    assert y.shape == idx.shape == pool2d_geometry(shape, **config).output_shape
    np.testing.assert_array_equal(idx, idx_ref)
    np.testing.assert_array_equal(y, y_ref)       # a maximum is exact
    np.testing.assert_array_equal(K.max_pool2d(x, **config), y)

    gy = rng.standard_normal(y.shape).astype(dtype)
    gx = K.max_pool2d_grad_input(gy, idx, shape)
    assert_matches(gx, R.max_pool2d_grad_input(gy, idx_ref, shape), dtype)


def test_max_pool_hand_worked():
    x = np.array([[1.0, 5, 2, 0],
                  [3, 4, 8, 7],
                  [9, 6, 1, 2],
                  [0, 2, 3, 4]]).reshape(1, 1, 4, 4)
    y, idx = K.max_pool2d(x, 2, return_indices=True)
    np.testing.assert_array_equal(y[0, 0], [[5, 8], [9, 4]])
    np.testing.assert_array_equal(idx[0, 0], [[1, 6], [8, 15]])
    gx = K.max_pool2d_grad_input(np.array([[[[10.0, 20], [30, 40]]]]), idx, x.shape)
    expected = np.zeros(16)
    expected[[1, 6, 8, 15]] = [10, 20, 30, 40]
    np.testing.assert_array_equal(gx.ravel(), expected)
    # overlapping windows (stride 1): the 9 sits under 4 windows, its gradient adds up
    y, idx = K.max_pool2d(x, 2, stride=1, return_indices=True)
    np.testing.assert_array_equal(y[0, 0], [[5, 8, 8], [9, 8, 8], [9, 6, 4]])
    gx = K.max_pool2d_grad_input(np.ones_like(y), idx, x.shape)
    assert gx[0, 0, 1, 2] == 4 and gx[0, 0, 2, 0] == 2 and gx.sum() == 9


def test_max_pool_ties_go_to_the_first_cell_of_the_window():
    x = np.zeros((1, 1, 3, 4))
    y, idx = K.max_pool2d(x, 2, stride=1, padding=1, return_indices=True)
    _, idx_ref = R.max_pool2d(x, 2, stride=1, padding=1, return_indices=True)
    np.testing.assert_array_equal(idx, idx_ref)
    # window (i, j) starts at (i - 1, j - 1); its first input cell is (max(i-1, 0), max(j-1, 0))
    rows, cols = np.meshgrid(np.arange(4), np.arange(5), indexing="ij")
    np.testing.assert_array_equal(idx[0, 0], np.maximum(rows - 1, 0) * 4 + np.maximum(cols - 1, 0))


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_all_minus_infinity_window_points_at_an_input_cell(dtype):
    x = np.full((1, 1, 2, 4), -np.inf, dtype)
    x[0, 0, 1, 3] = 1.0
    y, idx = K.max_pool2d(x, 2, padding=1, return_indices=True)
    y_ref, idx_ref = R.max_pool2d(x, 2, padding=1, return_indices=True)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)
    np.testing.assert_array_equal(idx[0, 0], [[0, 1, 3], [4, 5, 7]])   # never -1
    np.testing.assert_array_equal(y[0, 0], [[-np.inf, -np.inf, -np.inf], [-np.inf, -np.inf, 1]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_nan_propagates(dtype):
    rng = np.random.default_rng(0)
    x = distinct_values(rng, (2, 2, 5, 6), dtype)
    x[0, 0, 1, 1] = np.nan
    x[1, 1, 4, 5] = np.nan
    x[1, 0, 2, 2] = x[1, 0, 2, 3] = np.nan             # two NaNs in one window
    config = dict(kernel_size=3, stride=2, padding=1)
    y, idx = K.max_pool2d(x, **config, return_indices=True)
    y_ref, idx_ref = R.max_pool2d(x, **config, return_indices=True)
    np.testing.assert_array_equal(y, y_ref)             # NaNs in the same places
    np.testing.assert_array_equal(idx, idx_ref)
    # windows (rows/cols 2i-1 .. 2i+1): (1, 1) is in windows (0, 0), (0, 1), (1, 0), (1, 1)
    assert np.isnan(y[0, 0, :2, :2]).all() and (idx[0, 0, :2, :2] == 1 * 6 + 1).all()
    assert np.isnan(y[0, 0]).sum() == 4 and not np.isnan(y[0, 1]).any()
    assert np.isnan(y[1, 1, 2, 2]) and idx[1, 1, 2, 2] == 4 * 6 + 5
    # two NaNs in window (1, 1) (rows and columns 1 .. 3): the last one wins, as in PyTorch
    assert np.isnan(y[1, 0, 1, 1]) and idx[1, 0, 1, 1] == 2 * 6 + 3
    gx = K.max_pool2d_grad_input(np.ones_like(y), idx, x.shape)
    assert gx[0, 0, 1, 1] == 4 and gx[1, 1, 4, 5] == 1
    assert_matches(gx, R.max_pool2d_grad_input(np.ones_like(y), idx_ref, x.shape), dtype)


def test_max_pool_window_entirely_in_the_padding():
    # width 2, kernel 2, padding 1, dilation 3: the only window reads columns -1 and 2,
    # both outside the input, so it holds no input cell at all
    rng = np.random.default_rng(1)
    x = distinct_values(rng, (1, 2, 3, 2), np.float64)
    config = dict(kernel_size=2, stride=1, padding=1, dilation=(1, 3))
    geo = pool2d_geometry(x.shape, **config)
    assert (geo.out_h, geo.out_w) == (4, 1)
    y, idx = K.max_pool2d(x, **config, return_indices=True)
    y_ref, idx_ref = R.max_pool2d(x, **config, return_indices=True)
    assert (y == -np.inf).all() and (idx == -1).all()
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)
    gx = K.max_pool2d_grad_input(np.ones_like(y), idx, x.shape)
    np.testing.assert_array_equal(gx, np.zeros(x.shape))


def test_max_pool_dilated_windows_skip_cells():
    # 1 x 5 row, kernel (1, 3), padding (0, 1), dilation (1, 2), stride 1: 5 + 2 - 5 + 1 = 3
    # windows; window j reads columns j - 1, j + 1, j + 3 (the padding column -1 never wins)
    x = np.array([[[[10.0, 20, 30, 40, 50]]]])
    config = dict(kernel_size=(1, 3), stride=1, padding=(0, 1), dilation=(1, 2))
    y, idx = K.max_pool2d(x, **config, return_indices=True)
    np.testing.assert_array_equal(y[0, 0, 0], [40, 50, 40])
    np.testing.assert_array_equal(idx[0, 0, 0], [3, 4, 3])
    y_ref, idx_ref = R.max_pool2d(x, **config, return_indices=True)
    np.testing.assert_array_equal(idx, idx_ref)
    np.testing.assert_array_equal(y, y_ref)
    gx = K.max_pool2d_grad_input(np.array([[[[1.0, 2.0, 4.0]]]]), idx, x.shape)
    np.testing.assert_array_equal(gx, [[[[0, 0, 0, 5, 2]]]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_1x1_input(dtype):
    x = np.array([[[[3.5]], [[-2.0]]]], dtype)
    y, idx = K.max_pool2d(x, 1, return_indices=True)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(idx, np.zeros((1, 2, 1, 1)))
    y, idx = K.max_pool2d(x, 3, stride=1, padding=1, return_indices=True)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(idx, np.zeros((1, 2, 1, 1)))
    gx = K.max_pool2d_grad_input(np.array([[[[7.0]], [[8.0]]]], dtype), idx, x.shape)
    np.testing.assert_array_equal(gx, [[[[7.0]], [[8.0]]]])
    assert gx.dtype == dtype


def test_max_pool_grad_input_accepts_other_integer_index_dtypes():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    y, idx = K.max_pool2d(x, 2, return_indices=True)
    gy = np.array([[[[1.0, 2], [3, 4]]]])
    expected = R.max_pool2d_grad_input(gy, idx, x.shape)
    for dtype in (np.int32, np.int16, np.uint8):
        np.testing.assert_array_equal(K.max_pool2d_grad_input(gy, idx.astype(dtype), x.shape), expected)


# ---------------------------------------------------------------------------------------
# ceil_mode
# ---------------------------------------------------------------------------------------

def test_ceil_mode_drops_a_window_that_would_start_in_the_right_padding():
    # width 4, kernel 2, stride 3, padding 1: (4 + 2 - 2) / 3 = 1.33 -> ceil gives 3 windows,
    # but the third would start at 2 * 3 - 1 = 5 >= 4, inside the right padding: dropped.
    assert output_size(4, 2, 3, 1, ceil_mode=True) == 2
    assert output_size(4, 2, 3, 1, ceil_mode=False) == 2
    x = np.array([[[[1.0, 2, 3, 4]]]])
    config = dict(kernel_size=(1, 2), stride=(1, 3), padding=(0, 1), ceil_mode=True)
    y, idx = K.max_pool2d(x, **config, return_indices=True)
    np.testing.assert_array_equal(y, [[[[1, 4]]]])           # windows [-1, 0] and [2, 3]
    np.testing.assert_array_equal(idx, [[[[0, 3]]]])
    np.testing.assert_array_equal(y, R.max_pool2d(x, **config))
    a = K.avg_pool2d(x, **config)
    np.testing.assert_array_equal(a, [[[[0.5, 3.5]]]])
    np.testing.assert_array_equal(a, R.avg_pool2d(x, **config))
    np.testing.assert_array_equal(K.avg_pool2d(x, **config, count_include_pad=False), [[[[1, 3.5]]]])


def test_ceil_mode_keeps_a_partial_window_that_starts_inside():
    # width 5, kernel 2, stride 2: floor gives 2 windows, ceil 3 (the last one reads
    # column 4 and one column past the input)
    assert output_size(5, 2, 2, 0, ceil_mode=True) == 3
    x = np.array([[[[1.0, 2, 3, 4, 5]]]])
    y = K.max_pool2d(x, (1, 2), ceil_mode=True)
    np.testing.assert_array_equal(y, [[[[2, 4, 5]]]])
    # the divisor is the window clipped to the padded input (here: the input), 1 cell
    a = K.avg_pool2d(x, (1, 2), ceil_mode=True)
    np.testing.assert_array_equal(a, [[[[1.5, 3.5, 5]]]])
    np.testing.assert_array_equal(a, R.avg_pool2d(x, (1, 2), ceil_mode=True))
    g = K.avg_pool2d_grad_input(np.ones((1, 1, 1, 3)), x.shape, (1, 2), ceil_mode=True)
    np.testing.assert_array_equal(g, [[[[0.5, 0.5, 0.5, 0.5, 1]]]])
    assert K.max_pool2d(x, (1, 2)).shape == (1, 1, 1, 2)


@pytest.mark.parametrize("size, kernel, stride, padding, dilation", [
    (4, 2, 3, 1, 1), (5, 3, 2, 1, 1), (6, 3, 2, 1, 2), (7, 4, 3, 2, 1), (2, 2, 2, 1, 1),
    (1, 2, 2, 1, 1), (10, 3, 3, 1, 3),
])
def test_ceil_mode_sizes_follow_the_rule(size, kernel, stride, padding, dilation):
    """Output size = ceil((size + 2p - span) / s) + 1, minus 1 if the last window would
    start at or past size + p (PyTorch's rule); the kernels and the reference agree."""
    span = dilation * (kernel - 1) + 1
    expected = -(-(size + 2 * padding - span) // stride) + 1
    if (expected - 1) * stride >= size + padding:
        expected -= 1
    rng = np.random.default_rng(size)
    x = distinct_values(rng, (1, 2, size, size + 1), np.float64)
    config = dict(kernel_size=(kernel, kernel), stride=stride, padding=padding, dilation=dilation,
                  ceil_mode=True)
    y, idx = K.max_pool2d(x, **config, return_indices=True)
    assert y.shape[2] == expected
    y_ref, idx_ref = R.max_pool2d(x, **config, return_indices=True)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)
    if dilation == 1:
        del config["dilation"]
        a = K.avg_pool2d(x, **config)
        assert a.shape[2] == expected
        assert_matches(a, R.avg_pool2d(x, **config), np.float64)


# ---------------------------------------------------------------------------------------
# Average pooling
# ---------------------------------------------------------------------------------------

@given(problem=pool_configs(with_dilation=False), count_include_pad=st.booleans(),
       dtype=st.sampled_from(DTYPES), seed=SEEDS)
def test_avg_pool_random_configs(problem, count_include_pad, dtype, seed):
    shape, config = problem
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    y = K.avg_pool2d(x, **config, count_include_pad=count_include_pad)
    assert y.shape == pool2d_geometry(shape, **config).output_shape
    assert_matches(y, R.avg_pool2d(x, **config, count_include_pad=count_include_pad), dtype)

    gy = rng.standard_normal(y.shape).astype(dtype)
    gx = K.avg_pool2d_grad_input(gy, shape, **config, count_include_pad=count_include_pad)
    gx_ref = R.avg_pool2d_grad_input(gy, shape, **config, count_include_pad=count_include_pad)
    assert_matches(gx, gx_ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_avg_pool_hand_worked(dtype):
    x = np.arange(1.0, 10.0, dtype=dtype).reshape(1, 1, 3, 3)
    y = K.avg_pool2d(x, 2, stride=1)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, [[[[3, 4], [6, 7]]]])
    # 3x3 windows with padding 1, stride 2: the four corners
    y = K.avg_pool2d(x, 3, stride=2, padding=1)
    np.testing.assert_allclose(y, [[[[12 / 9, 16 / 9], [24 / 9, 28 / 9]]]], rtol=1e-6)
    y = K.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
    np.testing.assert_array_equal(y, [[[[3, 4], [6, 7]]]])
    # backward: every cell gets 1/4 from every 2x2 window holding it
    g = K.avg_pool2d_grad_input(np.ones((1, 1, 2, 2), dtype), x.shape, 2, stride=1)
    np.testing.assert_array_equal(g, [[[[0.25, 0.5, 0.25], [0.5, 1, 0.5], [0.25, 0.5, 0.25]]]])
    g = K.avg_pool2d_grad_input(np.ones((1, 1, 2, 2), dtype), x.shape, 3, stride=2, padding=1,
                                count_include_pad=False)
    np.testing.assert_array_equal(g, [[[[0.25, 0.5, 0.25], [0.5, 1, 0.5], [0.25, 0.5, 0.25]]]])


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
def test_avg_pool_1x1_input(dtype, count_include_pad):
    x = np.array([[[[4.0]], [[-2.0]]]], dtype)
    np.testing.assert_array_equal(K.avg_pool2d(x, 1, count_include_pad=count_include_pad), x)
    y = K.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=count_include_pad)
    np.testing.assert_array_equal(y, x / 9 if count_include_pad else x)
    np.testing.assert_array_equal(y, R.avg_pool2d(x, 3, 1, 1, False, count_include_pad))
    g = K.avg_pool2d_grad_input(np.ones((1, 2, 1, 1), dtype), x.shape, 3, 1, 1, False,
                                count_include_pad)
    np.testing.assert_allclose(g, np.full(x.shape, 1 / 9 if count_include_pad else 1.0), rtol=1e-6)
    assert g.dtype == dtype


def test_avg_pool_ceil_mode_with_padding_divisors():
    # width 6, kernel 3, stride 2, padding 1, ceil_mode: ceil(5/2) + 1 = 4 windows starting
    # at -1, 1, 3, 5; the last is cut at 6 + 1 = 7 (2 cells with padding, 1 inside)
    x = np.ones((1, 1, 1, 6))
    config = dict(kernel_size=(1, 3), stride=(1, 2), padding=(0, 1), ceil_mode=True)
    np.testing.assert_array_equal(K.avg_pool2d(x, **config), [[[[2 / 3, 1, 1, 1 / 2]]]])
    np.testing.assert_array_equal(K.avg_pool2d(x, **config, count_include_pad=False),
                                  [[[[1, 1, 1, 1]]]])
    for cip in (True, False):
        assert_matches(K.avg_pool2d(x, **config, count_include_pad=cip),
                       R.avg_pool2d(x, **config, count_include_pad=cip), np.float64)


# ---------------------------------------------------------------------------------------
# Adaptive average pooling
# ---------------------------------------------------------------------------------------

OUTPUT_SIZES = st.one_of(
    st.integers(1, 12),
    st.tuples(st.one_of(st.none(), st.integers(1, 12)), st.one_of(st.none(), st.integers(1, 12))),
)


@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 10), st.integers(1, 10)),
       output_size=OUTPUT_SIZES, dtype=st.sampled_from(DTYPES), seed=SEEDS)
def test_adaptive_avg_pool_random_configs(shape, output_size, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    y = K.adaptive_avg_pool2d(x, output_size)
    y_ref = R.adaptive_avg_pool2d(x, output_size)
    assert_matches(y, y_ref, dtype)
    if isinstance(output_size, int):
        assert y.shape[2:] == (output_size, output_size)
    else:
        assert y.shape[2:] == tuple(o if o is not None else s for o, s in zip(output_size, shape[2:]))
    gy = rng.standard_normal(y.shape).astype(dtype)
    assert_matches(K.adaptive_avg_pool2d_grad_input(gy, shape),
                   R.adaptive_avg_pool2d_grad_input(gy, shape), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adaptive_avg_pool_hand_worked(dtype):
    x = np.arange(1.0, 6.0, dtype=dtype).reshape(1, 1, 1, 5)
    # 5 -> 3: windows [0, 2), [1, 4), [3, 5)
    y = K.adaptive_avg_pool2d(x, (1, 3))
    assert y.dtype == dtype
    np.testing.assert_allclose(y, [[[[1.5, 3, 4.5]]]], rtol=1e-6)
    g = K.adaptive_avg_pool2d_grad_input(np.ones((1, 1, 1, 3), dtype), x.shape)
    np.testing.assert_allclose(g, [[[[1 / 2, 1 / 2 + 1 / 3, 1 / 3, 1 / 3 + 1 / 2, 1 / 2]]]], rtol=1e-6)
    # None keeps the input's size: (None, 1) averages each row
    x = np.arange(1.0, 13.0, dtype=dtype).reshape(1, 1, 3, 4)
    np.testing.assert_allclose(K.adaptive_avg_pool2d(x, (None, 1)).ravel(), [2.5, 6.5, 10.5])
    np.testing.assert_allclose(K.adaptive_avg_pool2d(x, (1, None)).ravel(), [5, 6, 7, 8])
    np.testing.assert_array_equal(K.adaptive_avg_pool2d(x, (None, None)), x)
    # 2 -> 3: upsampling, windows [0, 1), [0, 2), [1, 2)
    x = np.array([[[[2.0, 4.0]]]], dtype)
    np.testing.assert_array_equal(K.adaptive_avg_pool2d(x, (1, 3)), [[[[2, 3, 4]]]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_global_average_pooling(dtype):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 7, 5)).astype(dtype)
    y = K.adaptive_avg_pool2d(x, 1)
    assert y.shape == (3, 4, 1, 1)
    assert_matches(y, x.astype(np.float64).mean(axis=(2, 3), keepdims=True).astype(dtype), dtype)
    assert_matches(y, R.adaptive_avg_pool2d(x, 1), dtype)
    gy = rng.standard_normal((3, 4, 1, 1)).astype(dtype)
    g = K.adaptive_avg_pool2d_grad_input(gy, x.shape)
    assert_matches(g, np.broadcast_to(gy / 35, x.shape), dtype)
    # 1x1 input
    x1 = x[:, :, :1, :1]
    np.testing.assert_array_equal(K.adaptive_avg_pool2d(x1, 1), x1)
    np.testing.assert_array_equal(K.adaptive_avg_pool2d(x1, 3), np.broadcast_to(x1, (3, 4, 3, 3)))


# ---------------------------------------------------------------------------------------
# Odd layouts
# ---------------------------------------------------------------------------------------

def test_pool_non_contiguous_input():
    rng = np.random.default_rng(3)
    base = distinct_values(rng, (2, 3, 7, 6), np.float64)
    x = base.transpose(0, 1, 3, 2)                     # (2, 3, 6, 7), not C-contiguous
    assert not x.flags.c_contiguous
    y, idx = K.max_pool2d(x, 3, 2, 1, return_indices=True)
    y_ref, idx_ref = R.max_pool2d(np.ascontiguousarray(x), 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)
    gy = rng.standard_normal(y.shape)[..., ::-1]
    assert_matches(K.max_pool2d_grad_input(gy, idx[..., ::-1], x.shape),
                   R.max_pool2d_grad_input(gy, idx[..., ::-1], x.shape), np.float64)
    assert_matches(K.avg_pool2d(x, 3, 2, 1), R.avg_pool2d(x, 3, 2, 1), np.float64)
    assert_matches(K.avg_pool2d_grad_input(gy, x.shape, 3, 2, 1),
                   R.avg_pool2d_grad_input(gy, x.shape, 3, 2, 1), np.float64)
    assert_matches(K.adaptive_avg_pool2d(x, (4, 5)), R.adaptive_avg_pool2d(x, (4, 5)), np.float64)
    assert_matches(K.adaptive_avg_pool2d_grad_input(gy, x.shape),
                   R.adaptive_avg_pool2d_grad_input(gy, x.shape), np.float64)


# ---------------------------------------------------------------------------------------
# The 2x2, stride 2 loops, and 1 or 2 threads
# ---------------------------------------------------------------------------------------
# 2x2 windows with stride 2 and no padding have loops of their own when they tile the plane
# (H and W even); odd sizes, padding, another stride or a dilation take the general loops.
# Both must agree with the reference exactly: a maximum is exact, and the kernels add the
# cells of an average window in the reference's order, and send each input cell of
# non-overlapping windows a single share.

TILED = [(2, 3, 4, 6), (1, 2, 8, 2), (3, 1, 2, 2), (1, 5, 6, 10)]        # the 2x2 loops
NOT_TILED = [(1, 2, 5, 6), (2, 1, 6, 7), (1, 1, 3, 3), (1, 3, 2, 5)]     # the general loops


def ties_nans_and_infinities(rng, shape, dtype):
    """Small integers (so that windows hold ties), about 1 in 10 cells NaN, 1 in 10 -inf."""
    x = rng.integers(-2, 3, shape).astype(dtype)
    x[rng.random(shape) < 0.1] = np.nan
    x[rng.random(shape) < 0.1] = -np.inf
    return x


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", TILED + NOT_TILED)
def test_max_pool_2x2_stride_2(shape, dtype, ceil_mode, threads, restore_threads):
    K.set_num_threads(threads)
    rng = np.random.default_rng(sum(shape))
    for x in (distinct_values(rng, shape, dtype), ties_nans_and_infinities(rng, shape, dtype)):
        y, idx = K.max_pool2d(x, 2, ceil_mode=ceil_mode, return_indices=True)
        y_ref, idx_ref = R.max_pool2d(x, 2, ceil_mode=ceil_mode, return_indices=True)
        np.testing.assert_array_equal(idx, idx_ref)
        np.testing.assert_array_equal(y, y_ref)              # NaNs in the same places
        gy = rng.standard_normal(y.shape).astype(dtype)
        np.testing.assert_array_equal(K.max_pool2d_grad_input(gy, idx, shape),
                                      R.max_pool2d_grad_input(gy, idx_ref, shape))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_2x2_nan_ties_and_minus_infinity_by_hand(dtype, threads, restore_threads):
    K.set_num_threads(threads)
    nan, inf = np.nan, np.inf
    x = np.array([[0, 0, 1, nan, -inf, -inf, 5, 5, 1, 3, nan, 1],
                  [0, 0, nan, 1, -inf, -inf, 5, 7, 3, 2, 2, 3]], dtype).reshape(1, 1, 2, 12)
    for config in (dict(kernel_size=2), dict(kernel_size=2, padding=1, stride=(2, 2))):
        y, idx = K.max_pool2d(x, **config, return_indices=True)
        y_ref, idx_ref = R.max_pool2d(x, **config, return_indices=True)
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(idx, idx_ref)
    y, idx = K.max_pool2d(x, 2, return_indices=True)
    # a tie goes to the first cell; of two NaNs the last wins; a NaN first stays;
    # a window of -inf points at its first cell
    np.testing.assert_array_equal(y[0, 0, 0], [0, nan, -inf, 7, 3, nan])
    np.testing.assert_array_equal(idx[0, 0, 0], [0, 12 + 2, 4, 12 + 7, 9, 10])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", TILED + NOT_TILED)
def test_avg_pool_2x2_stride_2(shape, dtype, ceil_mode, count_include_pad, threads, restore_threads):
    K.set_num_threads(threads)
    rng = np.random.default_rng(sum(shape))
    config = dict(kernel_size=2, ceil_mode=ceil_mode, count_include_pad=count_include_pad)
    x = rng.standard_normal(shape).astype(dtype)
    y = K.avg_pool2d(x, **config)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, R.avg_pool2d(x, **config))
    gy = rng.standard_normal(y.shape).astype(dtype)
    gx = K.avg_pool2d_grad_input(gy, shape, **config)
    assert gx.dtype == dtype
    np.testing.assert_array_equal(gx, R.avg_pool2d_grad_input(gy, shape, **config))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 2, 4, 6), (1, 2, 5, 7)])
def test_avg_pool_2x2_signed_zeros_as_in_the_reference(shape, dtype):
    # sums start from +0, and shares are added to zeroed cells: -0.0 comes out as +0.0
    x = np.full(shape, -0.0, dtype)
    y = K.avg_pool2d(x, 2)
    assert not np.signbit(y).any() and not np.signbit(R.avg_pool2d(x, 2)).any()
    gy = np.full(y.shape, -0.0, dtype)
    gx = K.avg_pool2d_grad_input(gy, shape, 2)
    np.testing.assert_array_equal(np.signbit(gx), np.signbit(R.avg_pool2d_grad_input(gy, shape, 2)))
    assert not np.signbit(gx).any()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("config", [
    dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=2, stride=1),
    dict(kernel_size=2, stride=2, padding=1), dict(kernel_size=(2, 3), stride=2),
    dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 0), ceil_mode=True),
])
@pytest.mark.parametrize("dtype", DTYPES)
def test_pool_general_loops_on_1_and_2_threads(config, dtype, threads, restore_threads):
    K.set_num_threads(threads)
    shape = (2, 3, 9, 8)                    # 6 planes: the two threads get several each
    rng = np.random.default_rng(4)
    x = ties_nans_and_infinities(rng, shape, dtype)
    y, idx = K.max_pool2d(x, **config, return_indices=True)
    y_ref, idx_ref = R.max_pool2d(x, **config, return_indices=True)
    np.testing.assert_array_equal(idx, idx_ref)
    np.testing.assert_array_equal(y, y_ref)
    gy = rng.standard_normal(y.shape).astype(dtype)
    assert_matches(K.max_pool2d_grad_input(gy, idx, shape),
                   R.max_pool2d_grad_input(gy, idx_ref, shape), dtype)
    x = rng.standard_normal(shape).astype(dtype)
    for count_include_pad in (True, False):
        avg = dict(config, count_include_pad=count_include_pad)
        assert_matches(K.avg_pool2d(x, **avg), R.avg_pool2d(x, **avg), dtype)
        assert_matches(K.avg_pool2d_grad_input(gy, shape, **avg),
                       R.avg_pool2d_grad_input(gy, shape, **avg), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, kernel, stride, padding", [
    ((2, 3, 6, 8), 2, 2, 0),           # the 2x2 loop writes every cell
    ((2, 3, 7, 5), 2, 2, 0),           # the general loop, with a row and a column in no window
    ((2, 3, 7, 5), 3, 2, 1),           # the general loop, overlapping windows
])
def test_backward_kernels_ignore_what_grad_input_held(shape, kernel, stride, padding, dtype):
    # kernels.pool hands the backward kernels np.empty arrays: they must write every cell
    from cyconv.kernels import _pool

    rng = np.random.default_rng(5)
    n, c, h, w = shape
    x = rng.standard_normal(shape).astype(dtype)
    y, idx = R.max_pool2d(x, kernel, stride, padding, return_indices=True)
    gy = rng.standard_normal(y.shape).astype(dtype)
    planes = (n * c,) + y.shape[2:]
    gx = np.full(shape, np.nan, dtype)
    _pool.max_pool2d_backward(gy.reshape(planes), idx.reshape(planes), gx.reshape(n * c, h * w), 2)
    assert_matches(gx, R.max_pool2d_grad_input(gy, idx, shape), dtype)
    gx = np.full(shape, np.nan, dtype)
    _pool.avg_pool2d_backward(gy.reshape(planes), gx.reshape((n * c, h, w)),
                              np.empty((2, y.shape[3] + w), dtype), kernel, kernel,
                              stride, stride, padding, padding, True, 2)
    assert_matches(gx, R.avg_pool2d_grad_input(gy, shape, kernel, stride, padding), dtype)


@pytest.mark.parametrize("planes", [1, 3, 64])
def test_max_pool_backward_kernel_returns_the_index_range_and_skips_what_lies_outside(planes):
    """The compiled backward finds (min, max) of the indices while it scatters, for the
    check of max_pool2d_grad_input, and writes nothing for an index outside [0, H*W): -1
    (a window of padding only) or one the caller is about to refuse."""
    from cyconv.kernels import _pool
    rng = np.random.default_rng(planes)
    h_out, w_out, hw = 3, 4, 25
    grad_y = rng.standard_normal((planes, h_out, w_out))
    indices = rng.integers(0, hw, (planes, h_out, w_out)).astype(np.int64)
    indices[0, 0, 0] = -1
    indices[-1, 1, 2] = -7                            # extremes in the first and last plane
    indices[-1, 2, 3] = hw + 3
    expected = np.zeros((planes, hw))
    for s, i, j in np.ndindex(grad_y.shape):         # the scatter, written out
        if 0 <= indices[s, i, j] < hw:
            expected[s, indices[s, i, j]] += grad_y[s, i, j]
    for threads in (1, 2, 3):
        grad_x = np.full((planes, hw), np.nan)
        low, high = _pool.max_pool2d_backward(grad_y, indices, grad_x, threads)
        assert (low, high) == (-7, hw + 3)
        np.testing.assert_allclose(grad_x, expected, rtol=1e-15)
