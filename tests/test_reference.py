"""Tests of cyconv.reference, the NumPy truth that the compiled kernels are checked against.

1. the loop-level and the vectorised version of every function agree (hypothesis);
2. hand-worked values;
3. finite-difference gradient checks in float64;
4. edge cases;
5. bad input is refused with a clear message;
6. (when PyTorch is installed) the same numbers as PyTorch.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cyconv import reference as R
from cyconv.geometry import conv2d_geometry, pool2d_geometry

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
DTYPES = st.sampled_from([np.float32, np.float64])


def tolerance(dtype):
    return dict(rtol=2e-4, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)


def assert_close(actual, expected, dtype):
    assert actual.dtype == dtype
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, **tolerance(dtype))


def arange_image(h, w, dtype=np.float64):
    return np.arange(1, h * w + 1, dtype=dtype).reshape(1, 1, h, w)


# ---------------------------------------------------------------------------------------
# Strategies: valid configurations drawn directly, checked with cyconv.geometry
# ---------------------------------------------------------------------------------------

def _size(draw, span, pad_total, high=7):
    low = max(1, span - pad_total)
    assume(low <= high)
    return draw(st.integers(low, high))


@st.composite
def conv_configs(draw):
    groups = draw(st.integers(1, 3))
    c_in = groups * draw(st.integers(1, 2))
    c_out = groups * draw(st.integers(1, 2))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(st.one_of(st.integers(0, 2), st.tuples(st.integers(0, 2), st.integers(0, 2)),
                             st.sampled_from(["valid", "same"])))
    if padding == "same":
        stride = 1
        pad_total = [d * (k - 1) for d, k in zip(dilation, kernel)]
    else:
        stride = draw(st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
        pads = (0, 0) if padding == "valid" else (padding, padding) if isinstance(padding, int) else padding
        pad_total = [2 * p for p in pads]
    spans = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]
    h = _size(draw, spans[0], pad_total[0])
    w = _size(draw, spans[1], pad_total[1])
    n = draw(st.integers(1, 2))
    dtype = draw(DTYPES)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((n, c_in, h, w)).astype(dtype)
    weight = rng.standard_normal((c_out, c_in // groups, *kernel)).astype(dtype)
    bias = rng.standard_normal(c_out).astype(dtype) if draw(st.booleans()) else None
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    geo = conv2d_geometry(x.shape, weight.shape, **kwargs)   # raises if the strategy is wrong
    grad_output = rng.standard_normal(geo.output_shape).astype(dtype)
    return x, weight, bias, kwargs, grad_output


@st.composite
def pool_configs(draw, with_dilation):
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = draw(st.one_of(st.none(), st.integers(1, 3),
                            st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if with_dilation else (1, 1)
    ceil_mode = draw(st.booleans())
    spans = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]
    # with ceil_mode a window may be larger than the (padded) input: draw such sizes too
    slack = 2 if ceil_mode else 0
    h = _size(draw, spans[0], 2 * padding[0] + slack)
    w = _size(draw, spans[1], 2 * padding[1] + slack)
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w)
    kwargs = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode)
    if with_dilation:
        kwargs["dilation"] = dilation
    try:
        geo = pool2d_geometry(shape, **kwargs)
    except ValueError:                   # the window does not fit after all
        assume(False)
    dtype = draw(DTYPES)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return shape, kwargs, geo, dtype, rng


# ---------------------------------------------------------------------------------------
# 1. loop version == vectorised version
# ---------------------------------------------------------------------------------------

@SETTINGS
@given(conv_configs())
def test_conv2d_loops_match_vectorised(config):
    x, weight, bias, kwargs, _ = config
    assert_close(R.conv2d_loops(x, weight, bias, **kwargs), R.conv2d(x, weight, bias, **kwargs), x.dtype)


@SETTINGS
@given(conv_configs())
def test_conv2d_grad_input_loops_match_vectorised(config):
    x, weight, _, kwargs, gout = config
    assert_close(R.conv2d_grad_input_loops(gout, weight, x.shape, **kwargs),
                 R.conv2d_grad_input(gout, weight, x.shape, **kwargs), x.dtype)


@SETTINGS
@given(conv_configs())
def test_conv2d_grad_weight_loops_match_vectorised(config):
    x, weight, _, kwargs, gout = config
    assert_close(R.conv2d_grad_weight_loops(gout, x, weight.shape, **kwargs),
                 R.conv2d_grad_weight(gout, x, weight.shape, **kwargs), x.dtype)


@SETTINGS
@given(conv_configs())
def test_conv2d_grad_bias_loops_match_vectorised(config):
    x, _, _, _, gout = config
    assert_close(R.conv2d_grad_bias_loops(gout), R.conv2d_grad_bias(gout), x.dtype)
    assert R.conv2d_grad_bias(gout).shape == (gout.shape[1],)


@SETTINGS
@given(pool_configs(with_dilation=True), st.sampled_from(["distinct", "ties", "special"]))
def test_max_pool2d_loops_match_vectorised(config, values):
    shape, kwargs, geo, dtype, rng = config
    if values == "distinct":
        x = rng.standard_normal(shape)
    else:                                    # small integers: many ties
        x = rng.integers(-2, 3, shape).astype(np.float64)
        if values == "special":              # and some NaN / -inf / +inf cells
            x[rng.random(shape) < 0.15] = np.nan
            x[rng.random(shape) < 0.15] = -np.inf
            x[rng.random(shape) < 0.05] = np.inf
    x = x.astype(dtype)
    out_l, idx_l = R.max_pool2d_loops(x, return_indices=True, **kwargs)
    out_v, idx_v = R.max_pool2d(x, return_indices=True, **kwargs)
    assert out_l.dtype == out_v.dtype == dtype
    assert idx_l.dtype == idx_v.dtype == np.int64
    assert out_v.shape == idx_v.shape == geo.output_shape
    np.testing.assert_array_equal(out_l, out_v)
    np.testing.assert_array_equal(idx_l, idx_v)
    # the index points at the value (or the window holds no input cell)
    planes = x.reshape(shape[0], shape[1], -1)
    picked = np.take_along_axis(planes, np.maximum(idx_v, 0).reshape(*shape[:2], -1), axis=2)
    picked = np.where(idx_v.reshape(picked.shape) < 0, -np.inf, picked)
    np.testing.assert_array_equal(picked.reshape(out_v.shape), out_v)
    np.testing.assert_array_equal(R.max_pool2d(x, **kwargs), out_v)   # without indices

    gout = rng.standard_normal(geo.output_shape).astype(dtype)
    assert_close(R.max_pool2d_grad_input_loops(gout, idx_v, shape),
                 R.max_pool2d_grad_input(gout, idx_v, shape), dtype)


@SETTINGS
@given(pool_configs(with_dilation=False), st.booleans())
def test_avg_pool2d_loops_match_vectorised(config, count_include_pad):
    shape, kwargs, geo, dtype, rng = config
    x = rng.standard_normal(shape).astype(dtype)
    assert_close(R.avg_pool2d_loops(x, count_include_pad=count_include_pad, **kwargs),
                 R.avg_pool2d(x, count_include_pad=count_include_pad, **kwargs), dtype)
    gout = rng.standard_normal(geo.output_shape).astype(dtype)
    assert_close(R.avg_pool2d_grad_input_loops(gout, shape, count_include_pad=count_include_pad, **kwargs),
                 R.avg_pool2d_grad_input(gout, shape, count_include_pad=count_include_pad, **kwargs),
                 dtype)


@SETTINGS
@given(st.integers(1, 2), st.integers(1, 3), st.integers(1, 7), st.integers(1, 7),
       st.one_of(st.integers(1, 7), st.tuples(st.one_of(st.none(), st.integers(1, 7)),
                                             st.one_of(st.none(), st.integers(1, 7)))),
       DTYPES, st.integers(0, 2**32 - 1))
def test_adaptive_avg_pool2d_loops_match_vectorised(n, c, h, w, output_size, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    out = R.adaptive_avg_pool2d(x, output_size)
    assert_close(R.adaptive_avg_pool2d_loops(x, output_size), out, dtype)
    if isinstance(output_size, tuple):
        assert out.shape[2:] == tuple(s if s is not None else full for s, full in zip(output_size, (h, w)))
    gout = rng.standard_normal(out.shape).astype(dtype)
    assert_close(R.adaptive_avg_pool2d_grad_input_loops(gout, x.shape),
                 R.adaptive_avg_pool2d_grad_input(gout, x.shape), dtype)


# ---------------------------------------------------------------------------------------
# 2. hand-worked values
# ---------------------------------------------------------------------------------------

BOTH = pytest.mark.parametrize("version", ["loops", "vectorised"])


def fn(name, version):
    return getattr(R, name + "_loops" if version == "loops" else name)


@BOTH
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_by_hand(version, dtype):
    conv = fn("conv2d", version)
    x = arange_image(3, 3, dtype)                    # 1 2 3 / 4 5 6 / 7 8 9
    ones = np.ones((1, 1, 2, 2), dtype)
    out = conv(x, ones)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out[0, 0], [[12, 16], [24, 28]])
    # stride 2, padding 1, bias 0.5: windows {1}, {2,3}, {4,7}, {5,6,8,9}
    out = conv(x, ones, np.array([0.5], dtype), stride=2, padding=1)
    np.testing.assert_array_equal(out[0, 0], [[1.5, 5.5], [11.5, 28.5]])
    # 'same' with an even kernel: the extra zero row/column goes at the bottom/right
    np.testing.assert_array_equal(conv(x, ones, padding="same")[0, 0],
                                  [[12, 16, 9], [24, 28, 15], [15, 17, 9]])
    # dilation 2 on a 4x4 image: taps (0,0), (0,2), (2,0), (2,2)
    np.testing.assert_array_equal(conv(arange_image(4, 4, dtype), ones, dilation=2)[0, 0],
                                  [[24, 28], [40, 44]])
    # cross-correlation, not convolution: the kernel is not flipped
    corner = np.array([[[[1, 0], [0, 0]]]], dtype)
    np.testing.assert_array_equal(conv(x, corner)[0, 0], [[1, 2], [4, 5]])
    # groups=2: output channel k sees input channel k only
    two = np.concatenate([x, 10 * x], axis=1)
    out = conv(two, np.array([2, 3], dtype).reshape(2, 1, 1, 1), groups=2)
    np.testing.assert_array_equal(out[0, 0], 2 * x[0, 0])
    np.testing.assert_array_equal(out[0, 1], 30 * x[0, 0])


@BOTH
def test_conv2d_grads_by_hand(version):
    x = arange_image(3, 3)
    gout = np.ones((1, 1, 2, 2))
    # each input cell gets the sum of the kernel taps that saw it: 1 2 1 / 2 4 2 / 1 2 1
    np.testing.assert_array_equal(
        fn("conv2d_grad_input", version)(gout, np.ones((1, 1, 2, 2)), x.shape)[0, 0],
        [[1, 2, 1], [2, 4, 2], [1, 2, 1]])
    # each kernel tap gets the sum of the input cells it saw
    np.testing.assert_array_equal(
        fn("conv2d_grad_weight", version)(gout, x, (1, 1, 2, 2))[0, 0], [[12, 16], [24, 28]])
    np.testing.assert_array_equal(
        fn("conv2d_grad_bias", version)(np.arange(12.0).reshape(1, 3, 2, 2)), [6, 22, 38])


@BOTH
def test_max_pool2d_by_hand(version):
    pool = fn("max_pool2d", version)
    x = np.array([[1, 5, 2, 0], [3, 4, 8, 1], [0, 2, 6, 7], [9, 1, 3, 3]], float)[None, None]
    out, idx = pool(x, 2, stride=2, return_indices=True)
    np.testing.assert_array_equal(out[0, 0], [[5, 8], [9, 7]])
    np.testing.assert_array_equal(idx[0, 0], [[1, 6], [12, 11]])
    # ties: the first maximum in row-major window order wins
    _, idx = pool(np.ones((1, 1, 2, 2)), 2, return_indices=True)
    assert idx[0, 0, 0, 0] == 0
    # NaN wins (as in PyTorch's CPU kernel, the last NaN of the window)
    nan = np.array([[1, np.nan], [np.nan, 2]])[None, None]
    out, idx = pool(nan, 2, return_indices=True)
    assert np.isnan(out[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 2
    # a window of -inf only points at its first input cell (not at the padding)
    out, idx = pool(np.full((1, 1, 1, 2), -np.inf), (1, 2), stride=1, padding=(0, 1),
                    return_indices=True)
    np.testing.assert_array_equal(out[0, 0], [[-np.inf, -np.inf, -np.inf]])
    np.testing.assert_array_equal(idx[0, 0], [[0, 0, 1]])
    # ceil_mode: a 5x5 input gives 3x3 windows of size 2, the last ones cut
    out = pool(arange_image(5, 5), 2, ceil_mode=True)
    np.testing.assert_array_equal(out[0, 0], [[7, 9, 10], [17, 19, 20], [22, 24, 25]])
    # backward: gradients go to the arg-max cells and add up where windows share one
    grad = fn("max_pool2d_grad_input", version)(np.ones((1, 1, 1, 2)), np.array([[[[4, 4]]]]),
                                                (1, 1, 3, 3))
    np.testing.assert_array_equal(grad[0, 0], [[0, 0, 0], [0, 2, 0], [0, 0, 0]])


@BOTH
def test_avg_pool2d_by_hand(version):
    pool = fn("avg_pool2d", version)
    x = arange_image(3, 3)
    # corner window of a 3x3 kernel with padding 1 holds 1, 2, 4, 5 (sum 12) and 5 zeros
    assert pool(x, 3, stride=1, padding=1, count_include_pad=True)[0, 0, 0, 0] == pytest.approx(12 / 9)
    assert pool(x, 3, stride=1, padding=1, count_include_pad=False)[0, 0, 0, 0] == pytest.approx(12 / 4)
    assert pool(x, 3, stride=1, padding=1)[0, 0, 1, 1] == pytest.approx(5)
    # ceil_mode: the last window [5, 8) is cut at W + pad = 7, so it counts 2 cells (5 and
    # one padding cell), or 1 cell without the padding
    row = arange_image(1, 6)
    np.testing.assert_allclose(pool(row, (1, 3), (1, 2), (0, 1), ceil_mode=True)[0, 0, 0],
                               [1, 3, 5, 3])
    np.testing.assert_allclose(pool(row, (1, 3), (1, 2), (0, 1), ceil_mode=True,
                                    count_include_pad=False)[0, 0, 0], [1.5, 3, 5, 6])
    grad = fn("avg_pool2d_grad_input", version)(np.ones((1, 1, 1, 1)), (1, 1, 2, 2), 2)
    np.testing.assert_allclose(grad[0, 0], np.full((2, 2), 0.25))


@BOTH
def test_adaptive_avg_pool2d_by_hand(version):
    pool = fn("adaptive_avg_pool2d", version)
    # 5 -> 3: windows [0, 2), [1, 4), [3, 5) (they overlap)
    np.testing.assert_allclose(pool(np.arange(5.0).reshape(1, 1, 1, 5), (1, 3))[0, 0, 0], [0.5, 2, 3.5])
    x = np.arange(25.0).reshape(1, 1, 5, 5)
    means = np.array([0.5, 2, 3.5])
    np.testing.assert_allclose(pool(x, 3)[0, 0], 5 * means[:, None] + means[None, :])
    np.testing.assert_allclose(pool(x, 1)[0, 0], [[12]])                 # global average
    np.testing.assert_allclose(pool(x, (None, 1))[0, 0, :, 0], x[0, 0].mean(axis=1))
    # backward: cell 1..3 belong to window 1 (size 3); cell 1 is also in window 0 (size 2)
    grad = fn("adaptive_avg_pool2d_grad_input", version)(np.ones((1, 1, 1, 3)), (1, 1, 1, 5))
    np.testing.assert_allclose(grad[0, 0, 0], [1 / 2, 1 / 2 + 1 / 3, 1 / 3, 1 / 3 + 1 / 2, 1 / 2])


# ---------------------------------------------------------------------------------------
# 3. finite-difference gradient checks (float64)
# ---------------------------------------------------------------------------------------

EPS = 1e-6
FD_TOL = dict(rtol=1e-6, atol=1e-7)


def numerical_gradient(loss, x):
    """Central differences of the scalar ``loss()`` w.r.t. every entry of ``x`` (changed in place)."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for k in range(flat.size):
        saved = flat[k]
        flat[k] = saved + EPS
        plus = loss()
        flat[k] = saved - EPS
        minus = loss()
        flat[k] = saved
        gflat[k] = (plus - minus) / (2 * EPS)
    return grad


CONV_CASES = [
    dict(shape=(2, 2, 5, 5), kernel=(3, 3)),
    dict(shape=(1, 2, 6, 7), kernel=(3, 2), stride=2, padding=1),
    dict(shape=(1, 2, 7, 6), kernel=(2, 3), stride=(2, 1), padding=(1, 2), dilation=(2, 1)),
    dict(shape=(1, 2, 5, 6), kernel=(2, 4), padding="same", dilation=(1, 2)),
    dict(shape=(1, 1, 4, 5), kernel=(2, 2), padding="same"),
    dict(shape=(2, 4, 5, 5), kernel=(3, 3), padding=1, groups=2, out=6),
    dict(shape=(1, 3, 6, 6), kernel=(3, 3), stride=2, padding="valid", groups=3, out=3, dilation=2),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: str(c))
def test_conv2d_gradients_match_finite_differences(case):
    case = dict(case)
    shape, kernel = case.pop("shape"), case.pop("kernel")
    c_out = case.pop("out", 3)
    groups = case.get("groups", 1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((c_out, shape[1] // groups, *kernel))
    b = rng.standard_normal(c_out)
    proj = rng.standard_normal(R.conv2d(x, w, b, **case).shape)

    def loss():
        return float(np.sum(R.conv2d(x, w, b, **case) * proj))

    for version in ("loops", "vectorised"):
        np.testing.assert_allclose(fn("conv2d_grad_input", version)(proj, w, x.shape, **case),
                                   numerical_gradient(loss, x), **FD_TOL)
        np.testing.assert_allclose(fn("conv2d_grad_weight", version)(proj, x, w.shape, **case),
                                   numerical_gradient(loss, w), **FD_TOL)
        np.testing.assert_allclose(fn("conv2d_grad_bias", version)(proj),
                                   numerical_gradient(loss, b), **FD_TOL)


POOL_CASES = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), ceil_mode=True),
    dict(kernel_size=2, stride=2, ceil_mode=True),
    dict(kernel_size=(2, 3), stride=1, padding=(1, 1)),
]


@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: str(c))
def test_max_pool2d_gradient_matches_finite_differences(case, dilation):
    rng = np.random.default_rng(1)
    shape = (2, 2, 7, 6)
    x = rng.permutation(np.prod(shape)).reshape(shape) * 0.01     # distinct, spaced >> EPS
    out, idx = R.max_pool2d(x, dilation=dilation, return_indices=True, **case)
    proj = rng.standard_normal(out.shape)

    def loss():
        return float(np.sum(R.max_pool2d(x, dilation=dilation, **case) * proj))

    expected = numerical_gradient(loss, x)
    for version in ("loops", "vectorised"):
        np.testing.assert_allclose(fn("max_pool2d_grad_input", version)(proj, idx, shape),
                                   expected, **FD_TOL)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: str(c))
def test_avg_pool2d_gradient_matches_finite_differences(case, count_include_pad):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 2, 7, 6))
    kwargs = dict(case, count_include_pad=count_include_pad)
    proj = rng.standard_normal(R.avg_pool2d(x, **kwargs).shape)

    def loss():
        return float(np.sum(R.avg_pool2d(x, **kwargs) * proj))

    expected = numerical_gradient(loss, x)
    for version in ("loops", "vectorised"):
        np.testing.assert_allclose(fn("avg_pool2d_grad_input", version)(proj, x.shape, **kwargs),
                                   expected, **FD_TOL)


@pytest.mark.parametrize("output_size", [1, 3, (2, 4), (7, 5), (None, 2), (9, 10)])
def test_adaptive_avg_pool2d_gradient_matches_finite_differences(output_size):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 2, 7, 6))
    proj = rng.standard_normal(R.adaptive_avg_pool2d(x, output_size).shape)

    def loss():
        return float(np.sum(R.adaptive_avg_pool2d(x, output_size) * proj))

    expected = numerical_gradient(loss, x)
    for version in ("loops", "vectorised"):
        np.testing.assert_allclose(fn("adaptive_avg_pool2d_grad_input", version)(proj, x.shape),
                                   expected, **FD_TOL)


# ---------------------------------------------------------------------------------------
# 4. edge cases
# ---------------------------------------------------------------------------------------

@BOTH
def test_one_by_one_input_and_kernel(version):
    out = fn("conv2d", version)(np.full((1, 1, 1, 1), 3.0), np.full((2, 1, 1, 1), 2.0),
                                np.array([1.0, -1.0]))
    np.testing.assert_array_equal(out.reshape(-1), [7, 5])
    assert fn("max_pool2d", version)(np.full((1, 1, 1, 1), 3.0), 1).shape == (1, 1, 1, 1)
    assert fn("avg_pool2d", version)(np.full((1, 1, 1, 1), 3.0), 1)[0, 0, 0, 0] == 3
    assert fn("adaptive_avg_pool2d", version)(np.full((1, 1, 1, 1), 3.0), 1)[0, 0, 0, 0] == 3


@BOTH
def test_kernel_as_large_as_padded_input(version):
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((2, 2, 3, 3)), rng.standard_normal((3, 2, 5, 5))
    out = fn("conv2d", version)(x, w, padding=1)
    assert out.shape == (2, 3, 1, 1)
    # only the centre 3x3 of the kernel meets the input
    np.testing.assert_allclose(out[:, :, 0, 0], np.einsum("nchw,ochw->no", x, w[:, :, 1:4, 1:4]))


@BOTH
def test_stride_larger_than_kernel(version):
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((1, 1, 7, 7)), rng.standard_normal((1, 1, 2, 2))
    out = fn("conv2d", version)(x, w, stride=3)
    assert out.shape == (1, 1, 2, 2)
    for y in range(2):
        for z in range(2):
            assert out[0, 0, y, z] == pytest.approx(np.sum(x[0, 0, 3 * y:3 * y + 2, 3 * z:3 * z + 2] * w))
    # cells no window reads get no gradient
    grad = fn("conv2d_grad_input", version)(np.ones_like(out), w, x.shape, stride=3)
    skipped = np.ones((7, 7), bool)
    skipped[np.ix_([0, 1, 3, 4], [0, 1, 3, 4])] = False
    assert np.all(grad[0, 0][skipped] == 0) and np.all(grad[0, 0][~skipped] != 0)
    out = fn("max_pool2d", version)(x, 2, stride=3)
    np.testing.assert_array_equal(out[0, 0], [[x[0, 0, 3 * y:3 * y + 2, 3 * z:3 * z + 2].max()
                                               for z in range(2)] for y in range(2)])


@BOTH
def test_depthwise_is_one_convolution_per_channel(version):
    conv = fn("conv2d", version)
    rng = np.random.default_rng(6)
    x, w = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((6, 1, 3, 3))   # multiplier 2
    out = conv(x, w, padding=1, groups=3)
    for co in range(6):
        np.testing.assert_allclose(out[:, co:co + 1], conv(x[:, co // 2:co // 2 + 1], w[co:co + 1], padding=1))


@BOTH
@pytest.mark.parametrize("kernel,dilation", [((2, 4), (3, 2)), ((4, 2), 1), ((3, 2), (2, 3))])
def test_same_padding_keeps_the_size(version, kernel, dilation):
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal((1, 2, 5, 6)), rng.standard_normal((3, 2, *kernel))
    out = fn("conv2d", version)(x, w, padding="same", dilation=dilation)
    assert out.shape == (1, 3, 5, 6)
    # PyTorch's placement: total padding d*(k-1), the odd extra one at the bottom/right
    d = (dilation, dilation) if isinstance(dilation, int) else dilation
    total = [dd * (k - 1) for dd, k in zip(d, kernel)]
    padded = np.pad(x, ((0, 0), (0, 0), (total[0] // 2, total[0] - total[0] // 2),
                        (total[1] // 2, total[1] - total[1] // 2)))
    np.testing.assert_allclose(out, fn("conv2d", version)(padded, w, dilation=dilation))


@BOTH
def test_max_pool_window_without_input_cells(version):
    x = arange_image(3, 3)
    # H = W = 3, kernel 2, dilation 4, padding 1: the taps land on rows/columns -1 and 3
    out, idx = fn("max_pool2d", version)(x, 2, stride=1, padding=1, dilation=4, return_indices=True)
    assert out.shape == (1, 1, 1, 1)
    assert out[0, 0, 0, 0] == -np.inf and idx[0, 0, 0, 0] == -1
    grad = fn("max_pool2d_grad_input", version)(np.ones_like(out), idx, x.shape)
    np.testing.assert_array_equal(grad, np.zeros_like(x))
    # only some windows empty: kernel (1, 2), dilation (1, 3), padding (0, 1) on W = 2
    out, idx = fn("max_pool2d", version)(np.array([[[[5.0, 6.0]]]]), (1, 2), stride=1,
                                         padding=(0, 1), dilation=(1, 3), return_indices=True)
    # one window, taps on columns -1 and 2: both outside the 2 input columns
    assert out.shape == (1, 1, 1, 1) and out[0, 0, 0, 0] == -np.inf and idx[0, 0, 0, 0] == -1
    # a dilated window that is half padding still finds its input cell
    out, idx = fn("max_pool2d", version)(np.array([[[[5.0, 6.0, 4.0]]]]), (1, 2), stride=1,
                                         padding=(0, 1), dilation=(1, 2), return_indices=True)
    np.testing.assert_array_equal(out[0, 0, 0], [6.0, 5.0, 6.0])   # taps (-1, 1), (0, 2), (1, 3)
    np.testing.assert_array_equal(idx[0, 0, 0], [1, 0, 1])


def test_output_dtype_follows_input():
    for dtype in (np.float32, np.float64):
        x = np.ones((1, 2, 4, 4), dtype)
        w = np.ones((2, 2, 3, 3), dtype)
        out = R.conv2d(x, w, np.ones(2, dtype))
        assert out.dtype == dtype
        assert R.conv2d_grad_input(out, w, x.shape).dtype == dtype
        assert R.conv2d_grad_weight(out, x, w.shape).dtype == dtype
        assert R.conv2d_grad_bias(out).dtype == dtype
        out, idx = R.max_pool2d(x, 2, return_indices=True)
        assert out.dtype == dtype and R.max_pool2d_grad_input(out, idx, x.shape).dtype == dtype
        out = R.avg_pool2d(x, 2)
        assert out.dtype == dtype and R.avg_pool2d_grad_input(out, x.shape, 2).dtype == dtype
        out = R.adaptive_avg_pool2d(x, 3)
        assert out.dtype == dtype and R.adaptive_avg_pool2d_grad_input(out, x.shape).dtype == dtype


# ---------------------------------------------------------------------------------------
# 5. bad input
# ---------------------------------------------------------------------------------------

X = np.ones((1, 3, 5, 5))
W = np.ones((2, 3, 3, 3))


@BOTH
def test_conv2d_refuses_bad_input(version):
    conv = fn("conv2d", version)
    with pytest.raises(ValueError, match=r"input must be 4-D .*got 3-D"):
        conv(np.ones((3, 5, 5)), W)
    with pytest.raises(ValueError, match=r"weight must be 4-D"):
        conv(X, np.ones((2, 3, 3)))
    with pytest.raises(ValueError, match=r"weight expects 2 input channels .*the input has 3"):
        conv(X, np.ones((2, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"groups=2 must divide the input channels, got 3"):
        conv(X, np.ones((2, 1, 3, 3)), groups=2)
    with pytest.raises(ValueError, match=r"groups=3 must divide the output channels"):
        conv(X, np.ones((2, 1, 3, 3)), groups=3)
    with pytest.raises(ValueError, match=r"stride must be positive, got 0"):
        conv(X, W, stride=0)
    with pytest.raises(ValueError, match=r"padding must be non-negative, got -1"):
        conv(X, W, padding=-1)
    with pytest.raises(ValueError, match=r"padding must be an int, a pair, 'valid' or 'same'"):
        conv(X, W, padding="full")
    with pytest.raises(ValueError, match=r"dilation must be positive"):
        conv(X, W, dilation=(1, 0))
    with pytest.raises(ValueError, match=r"does not fit the padded input \(5, 5\).*\(-1, -1\)"):
        conv(X, np.ones((2, 3, 7, 7)))
    with pytest.raises(ValueError, match=r"padding='same' needs stride 1"):
        conv(X, W, stride=2, padding="same")
    with pytest.raises(TypeError, match=r"input must have dtype float32 or float64, got int64"):
        conv(X.astype(np.int64), W)
    with pytest.raises(TypeError, match=r"input must be a numpy.ndarray, got list"):
        conv(X.tolist(), W)
    with pytest.raises(TypeError, match=r"weight has dtype float32 but input has dtype float64"):
        conv(X, W.astype(np.float32))
    with pytest.raises(TypeError, match=r"bias has dtype float32 but input has dtype float64"):
        conv(X, W, np.ones(2, np.float32))
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\).*got shape \(3,\)"):
        conv(X, W, np.ones(3))
    with pytest.raises(ValueError, match=r"bias must be 1-D"):
        conv(X, W, np.ones((2, 1)))
    with pytest.raises(TypeError, match=r"stride must be an int or a pair"):
        conv(X, W, stride=1.5)


@BOTH
def test_conv2d_grads_refuse_bad_input(version):
    gout = np.ones((1, 2, 3, 3))
    with pytest.raises(ValueError, match=r"grad_output must have .*shape \(1, 2, 3, 3\), got \(1, 2, 4, 4\)"):
        fn("conv2d_grad_input", version)(np.ones((1, 2, 4, 4)), W, X.shape)
    with pytest.raises(ValueError, match=r"grad_output must have .*shape \(1, 2, 5, 5\), got \(1, 2, 3, 3\)"):
        fn("conv2d_grad_weight", version)(gout, X, W.shape, padding=1)
    with pytest.raises(TypeError, match=r"weight has dtype float32 but grad_output has dtype float64"):
        fn("conv2d_grad_input", version)(gout, W.astype(np.float32), X.shape)
    with pytest.raises(TypeError, match=r"input has dtype float32 but grad_output has dtype float64"):
        fn("conv2d_grad_weight", version)(gout, X.astype(np.float32), W.shape)
    with pytest.raises(ValueError, match=r"input_shape must be a tuple of 4 ints"):
        fn("conv2d_grad_input", version)(gout, W, (3, 5, 5))
    with pytest.raises(ValueError, match=r"weight_shape must be a tuple of 4 ints"):
        fn("conv2d_grad_weight", version)(gout, X, (2, 3, 3))
    with pytest.raises(ValueError, match=r"grad_output must be 4-D"):
        fn("conv2d_grad_bias", version)(np.ones((2, 3)))
    with pytest.raises(TypeError, match=r"grad_output must have dtype float32 or float64"):
        fn("conv2d_grad_bias", version)(np.ones((1, 2, 3, 3), np.int32))


@BOTH
def test_pooling_refuses_bad_input(version):
    max_pool, avg_pool = fn("max_pool2d", version), fn("avg_pool2d", version)
    adaptive = fn("adaptive_avg_pool2d", version)
    for pool in (max_pool, avg_pool):
        with pytest.raises(ValueError, match=r"input must be 4-D"):
            pool(np.ones((5, 5)), 2)
        with pytest.raises(ValueError, match=r"padding must be at most half of kernel_size"):
            pool(X, 3, padding=2)
        with pytest.raises(ValueError, match=r"kernel_size \(7, 7\) .*does not fit .*\(5, 5\).*\(0, 0\)"):
            pool(X, 7)
        with pytest.raises(ValueError, match=r"stride must be positive"):
            pool(X, 2, stride=0)
        with pytest.raises(ValueError, match=r"padding must be non-negative"):
            pool(X, 2, padding=-1)
        with pytest.raises(TypeError, match=r"input must have dtype float32 or float64, got int64"):
            pool(X.astype(np.int64), 2)
        with pytest.raises(TypeError, match=r"ceil_mode must be a bool"):
            pool(X, 2, ceil_mode=1)
    with pytest.raises(TypeError, match=r"count_include_pad must be a bool"):
        avg_pool(X, 2, count_include_pad="yes")
    with pytest.raises(TypeError, match=r"return_indices must be a bool"):
        max_pool(X, 2, return_indices=None)
    with pytest.raises(ValueError, match=r"output_size must be positive"):
        adaptive(X, (0, 2))
    with pytest.raises(ValueError, match=r"input must be 4-D"):
        adaptive(np.ones((5, 5)), 2)
    with pytest.raises(TypeError, match=r"input must have dtype float32 or float64, got bool"):
        adaptive(X > 0, 2)


@BOTH
def test_pooling_grads_refuse_bad_input(version):
    gout = np.ones((1, 3, 2, 2))
    idx = np.zeros((1, 3, 2, 2), np.int64)
    max_grad = fn("max_pool2d_grad_input", version)
    with pytest.raises(TypeError, match=r"indices must be an integer array .*got dtype float64"):
        max_grad(gout, idx.astype(float), X.shape)
    with pytest.raises(ValueError, match=r"indices must have grad_output's shape \(1, 3, 2, 2\), got \(1, 3, 2, 1\)"):
        max_grad(gout, idx[..., :1], X.shape)
    with pytest.raises(ValueError, match=r"indices must lie in \[-1, 25\)"):
        max_grad(gout, idx + 25, X.shape)
    with pytest.raises(ValueError, match=r"indices must lie in \[-1, 25\)"):
        max_grad(gout, idx - 2, X.shape)
    with pytest.raises(ValueError, match=r"grad_output must have the \(batch, channels\) \(1, 3\)"):
        max_grad(np.ones((1, 2, 2, 2)), idx[:, :2], X.shape)
    with pytest.raises(ValueError, match=r"grad_output must have .*shape \(1, 3, 2, 2\), got \(1, 3, 3, 3\)"):
        fn("avg_pool2d_grad_input", version)(np.ones((1, 3, 3, 3)), X.shape, 2)
    with pytest.raises(ValueError, match=r"grad_output must have the \(batch, channels\) \(1, 3\)"):
        fn("adaptive_avg_pool2d_grad_input", version)(np.ones((2, 3, 2, 2)), X.shape)
    with pytest.raises(TypeError, match=r"grad_output must have dtype float32 or float64"):
        fn("adaptive_avg_pool2d_grad_input", version)(np.ones((1, 3, 2, 2), int), X.shape)


NON_CONTIGUOUS_CALLS = {
    "conv2d": lambda f, x: f(x, np.linspace(-1, 1, 2 * 3 * 2 * 3).reshape(2, 3, 2, 3), stride=2, padding=1),
    "conv2d_grad_input": lambda f, g: f(g, np.linspace(-1, 1, 3 * 2 * 2 * 2).reshape(3, 2, 2, 2),
                                        (g.shape[0], 6, g.shape[2] + 1, g.shape[3] + 1), groups=3),
    "conv2d_grad_weight": lambda f, x: f(np.ones((x.shape[0], 2, x.shape[2] - 1, x.shape[3] - 1)), x,
                                         (2, 3, 2, 2)),
    "conv2d_grad_bias": lambda f, g: f(g),
    "max_pool2d": lambda f, x: f(x, 2, ceil_mode=True, return_indices=True),
    "avg_pool2d": lambda f, x: f(x, 3, 2, 1),
    "adaptive_avg_pool2d": lambda f, x: f(x, (2, 3)),
    "avg_pool2d_grad_input": lambda f, g: f(g, (g.shape[0], g.shape[1], 2 * g.shape[2], 2 * g.shape[3]), 2),
    "adaptive_avg_pool2d_grad_input": lambda f, g: f(g, (g.shape[0], g.shape[1], 7, 5)),
}


@BOTH
@pytest.mark.parametrize("name", sorted(NON_CONTIGUOUS_CALLS))
def test_non_contiguous_input_gives_the_contiguous_result(version, name):
    rng = np.random.default_rng(8)
    base = rng.standard_normal((2, 5, 3, 2 * 8))
    x = base.transpose(0, 2, 1, 3)[:, :, :, ::2]           # (2, 3, 5, 8), non-contiguous
    assert not x.flags.c_contiguous
    call, f = NON_CONTIGUOUS_CALLS[name], fn(name, version)
    got, expected = call(f, x), call(f, np.ascontiguousarray(x))
    for a, b in zip(got if isinstance(got, tuple) else [got], expected if isinstance(expected, tuple) else [expected]):
        np.testing.assert_array_equal(a, b)


def test_max_pool2d_grad_accepts_non_contiguous_indices():
    x = np.random.default_rng(9).standard_normal((1, 2, 4, 6))
    out, idx = R.max_pool2d(x, 2, return_indices=True)
    idx_t = np.ascontiguousarray(idx.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    gout_t = np.ascontiguousarray(out.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    assert not idx_t.flags.c_contiguous
    for version in ("loops", "vectorised"):
        f = fn("max_pool2d_grad_input", version)
        np.testing.assert_array_equal(f(gout_t, idx_t.astype(np.int32), x.shape), f(out, idx, x.shape))


# ---------------------------------------------------------------------------------------
# 6. the same numbers as PyTorch (skipped when PyTorch is not installed)
# ---------------------------------------------------------------------------------------

TORCH_SETTINGS = settings(max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@TORCH_SETTINGS
@given(conv_configs())
def test_conv2d_matches_pytorch(torch, config):
    import warnings
    x, w, b, kwargs, gout = config
    x, w, gout = x.astype(np.float64), w.astype(np.float64), gout.astype(np.float64)
    b = None if b is None else b.astype(np.float64)
    tx, tw = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_()
    tb = None if b is None else torch.from_numpy(b).requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # PyTorch warns about 'same' with even kernels
        out = torch.nn.functional.conv2d(tx, tw, tb, **kwargs)
    out.backward(torch.from_numpy(gout))
    np.testing.assert_allclose(R.conv2d(x, w, b, **kwargs), out.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(R.conv2d_grad_input(gout, w, x.shape, **kwargs), tx.grad.numpy(),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(R.conv2d_grad_weight(gout, x, w.shape, **kwargs), tw.grad.numpy(),
                               rtol=1e-10, atol=1e-12)
    if b is not None:
        np.testing.assert_allclose(R.conv2d_grad_bias(gout), tb.grad.numpy(), rtol=1e-10, atol=1e-12)


@TORCH_SETTINGS
@given(pool_configs(with_dilation=True))
def test_max_pool2d_matches_pytorch(torch, config):
    shape, kwargs, geo, _, rng = config
    x = rng.integers(-2, 3, shape).astype(np.float64)          # ties
    x[rng.random(shape) < 0.1] = np.nan
    out, idx = R.max_pool2d(x, return_indices=True, **kwargs)
    stride = kwargs["stride"] if kwargs["stride"] is not None else kwargs["kernel_size"]
    t_out, t_idx = torch.nn.functional.max_pool2d(torch.from_numpy(x), **dict(kwargs, stride=stride),
                                                  return_indices=True)
    np.testing.assert_array_equal(out, t_out.numpy())
    has_cell = idx >= 0                       # PyTorch's index of an empty window is meaningless
    np.testing.assert_array_equal(idx[has_cell], t_idx.numpy()[has_cell])


@TORCH_SETTINGS
@given(pool_configs(with_dilation=False), st.booleans())
def test_avg_pool2d_matches_pytorch(torch, config, count_include_pad):
    shape, kwargs, geo, _, rng = config
    x = rng.standard_normal(shape)
    stride = kwargs["stride"] if kwargs["stride"] is not None else kwargs["kernel_size"]
    tx = torch.from_numpy(x).requires_grad_()
    t_out = torch.nn.functional.avg_pool2d(tx, **dict(kwargs, stride=stride),
                                           count_include_pad=count_include_pad)
    gout = rng.standard_normal(geo.output_shape)
    t_out.backward(torch.from_numpy(gout))
    np.testing.assert_allclose(R.avg_pool2d(x, count_include_pad=count_include_pad, **kwargs),
                               t_out.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(R.avg_pool2d_grad_input(gout, shape, count_include_pad=count_include_pad,
                                                       **kwargs), tx.grad.numpy(), rtol=1e-10, atol=1e-12)


@TORCH_SETTINGS
@given(st.integers(1, 9), st.integers(1, 9), st.integers(1, 9), st.integers(1, 9))
def test_adaptive_avg_pool2d_matches_pytorch(torch, h, w, out_h, out_w):
    x = np.random.default_rng(h * 1000 + w).standard_normal((1, 2, h, w))
    tx = torch.from_numpy(x).requires_grad_()
    t_out = torch.nn.functional.adaptive_avg_pool2d(tx, (out_h, out_w))
    gout = np.ones(t_out.shape)
    t_out.backward(torch.from_numpy(gout))
    np.testing.assert_allclose(R.adaptive_avg_pool2d(x, (out_h, out_w)), t_out.detach().numpy(),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(R.adaptive_avg_pool2d_grad_input(gout, x.shape), tx.grad.numpy(),
                               rtol=1e-10, atol=1e-12)


def test_conv2d_geometry_keeps_answers_only_for_exactly_equal_calls():
    """The kept answers (plain ints and tuples of them) are the computed ones, and a call
    equal to a kept one but with a bool, a float or a NumPy int is checked afresh."""
    first = conv2d_geometry((2, 4, 9, 9), (8, 2, 3, 3), (1, 2), 1, 1, 2)
    again = conv2d_geometry((2, 4, 9, 9), (8, 2, 3, 3), (1, 2), 1, 1, 2)
    assert again == first and (first.out_h, first.out_w) == (9, 5)
    assert conv2d_geometry((2, 4, 9, 9), (8, 2, 3, 3), (1, np.int64(2)), 1, 1, 2) == first
    with pytest.raises(TypeError, match="stride"):
        conv2d_geometry((2, 4, 9, 9), (8, 2, 3, 3), (True, 2), 1, 1, 2)
    with pytest.raises(TypeError, match="stride"):
        conv2d_geometry((2, 4, 9, 9), (8, 2, 3, 3), (1.0, 2), 1, 1, 2)
    conv2d_geometry((2, 4, 9, 9), (8, 2, 3, 3), 1, 1, 1, 2)
    with pytest.raises(TypeError, match="groups"):
        conv2d_geometry((2, 4, 9, 9), (8, 2, 3, 3), 1, 1, 1, 2.0)
    for _ in range(2):                                       # refused again, not kept
        with pytest.raises(ValueError, match="groups=3 must divide the input channels"):
            conv2d_geometry((2, 4, 9, 9), (8, 2, 3, 3), 1, 1, 1, 3)
