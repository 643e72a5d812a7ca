"""The kernels give PyTorch's numbers (the contract: names and semantics follow PyTorch).

Skipped when PyTorch is not installed. Everything runs in float64 on the CPU; gradients come
from PyTorch's autograd.
"""

from __future__ import annotations

import numpy as np
import pytest

from cyconv import kernels as K

torch = pytest.importorskip("torch")
F = torch.nn.functional

# PyTorch warns that 'same' with an even kernel copies the input; that is what we test
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

TOL = dict(rtol=1e-10, atol=1e-10)


def t(array, grad=False):
    return torch.tensor(array, dtype=torch.float64, requires_grad=grad)


# (input_shape, weight_shape, stride, padding, dilation, groups, bias)
CONV_CASES = {
    "plain 3x3": ((2, 3, 7, 6), (4, 3, 3, 3), 1, 0, 1, 1, True),
    "stride 2, padding 1": ((2, 3, 8, 7), (5, 3, 3, 3), 2, 1, 1, 1, True),
    "asymmetric": ((1, 2, 9, 6), (3, 2, 3, 2), (2, 1), (1, 0), (1, 2), 1, False),
    "same, even kernel": ((2, 2, 6, 7), (3, 2, 4, 2), 1, "same", 1, 1, True),
    "same, even kernel, dilation 2": ((1, 2, 7, 8), (2, 2, 2, 4), 1, "same", 2, 1, True),
    "same, odd kernel, dilation (2, 3)": ((1, 2, 8, 9), (2, 2, 3, 3), 1, "same", (2, 3), 1, False),
    "valid": ((1, 3, 5, 6), (2, 3, 2, 3), 1, "valid", 1, 1, True),
    "groups 2": ((2, 4, 6, 6), (6, 2, 3, 3), 1, 1, 1, 2, True),
    "depthwise x2": ((2, 3, 7, 7), (6, 1, 3, 3), 2, 1, 1, 3, True),
    "large dilation": ((1, 2, 9, 10), (2, 2, 3, 3), 1, 2, 4, 1, True),
    "1x1 kernel, stride 3": ((2, 4, 7, 8), (3, 4, 1, 1), 3, 0, 1, 1, True),
    "big reduction (im2col by auto)": ((2, 8, 6, 6), (4, 8, 3, 3), 1, 1, 1, 1, True),
}


@pytest.mark.parametrize("algorithm", ["direct", "im2col", "auto"])
@pytest.mark.parametrize("case", list(CONV_CASES), ids=list(CONV_CASES))
def test_conv2d_matches_torch(case, algorithm):
    input_shape, weight_shape, stride, padding, dilation, groups, has_bias = CONV_CASES[case]
    rng = np.random.default_rng(7)
    x = rng.standard_normal(input_shape)
    w = rng.standard_normal(weight_shape)
    b = rng.standard_normal(weight_shape[0]) if has_bias else None

    tx, tw = t(x, True), t(w, True)
    tb = t(b, True) if has_bias else None
    ty = F.conv2d(tx, tw, tb, stride=stride, padding=padding, dilation=dilation, groups=groups)
    y = K.conv2d(x, w, b, stride, padding, dilation, groups, algorithm=algorithm)
    assert y.shape == tuple(ty.shape)
    np.testing.assert_allclose(y, ty.detach().numpy(), **TOL)

    gy = rng.standard_normal(y.shape)
    ty.backward(t(gy))
    gx = K.conv2d_grad_input(gy, w, x.shape, stride, padding, dilation, groups, algorithm=algorithm)
    np.testing.assert_allclose(gx, tx.grad.numpy(), **TOL)
    gw = K.conv2d_grad_weight(gy, x, w.shape, stride, padding, dilation, groups, algorithm=algorithm)
    np.testing.assert_allclose(gw, tw.grad.numpy(), **TOL)
    if has_bias:
        np.testing.assert_allclose(K.conv2d_grad_bias(gy), tb.grad.numpy(), **TOL)


@pytest.mark.parametrize("algorithm", ["direct", "im2col"])
def test_conv_gradients_match_torch_nn_grad(algorithm):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 4, 9, 8))
    w = rng.standard_normal((6, 2, 3, 2))
    hyper = dict(stride=(2, 1), padding=(1, 2), dilation=(2, 1), groups=2)
    y = K.conv2d(x, w, **hyper, algorithm=algorithm)
    gy = rng.standard_normal(y.shape)
    expected_gx = torch.nn.grad.conv2d_input(x.shape, t(w), t(gy), **hyper)
    expected_gw = torch.nn.grad.conv2d_weight(t(x), w.shape, t(gy), **hyper)
    np.testing.assert_allclose(K.conv2d_grad_input(gy, w, x.shape, **hyper, algorithm=algorithm),
                               expected_gx.numpy(), **TOL)
    np.testing.assert_allclose(K.conv2d_grad_weight(gy, x, w.shape, **hyper, algorithm=algorithm),
                               expected_gw.numpy(), **TOL)


def test_conv2d_float32_matches_torch():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    expected = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding="same").numpy()
    for algorithm in ("direct", "im2col"):
        y = K.conv2d(x, w, padding="same", algorithm=algorithm)
        assert y.dtype == np.float32
        np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


# (input_shape, kernel_size, stride, padding, dilation, ceil_mode)
MAX_POOL_CASES = {
    "2x2": ((2, 3, 8, 8), 2, None, 0, 1, False),
    "3x3 stride 2 padding 1": ((2, 2, 9, 7), 3, 2, 1, 1, False),
    "ceil_mode": ((1, 2, 7, 6), 2, 2, 0, 1, True),
    "ceil_mode drops a window in the padding": ((1, 2, 4, 4), 2, 3, 1, 1, True),
    "ceil_mode with padding": ((1, 2, 6, 7), 3, 2, 1, 1, True),
    "dilation": ((1, 2, 9, 9), 3, 1, 1, 2, False),
    "dilation, ceil_mode": ((2, 1, 10, 8), (2, 3), (2, 3), (1, 1), (3, 2), True),
    "asymmetric": ((1, 2, 7, 9), (3, 2), (1, 2), (1, 0), 1, False),
}


@pytest.mark.parametrize("case", list(MAX_POOL_CASES), ids=list(MAX_POOL_CASES))
def test_max_pool2d_matches_torch(case):
    input_shape, kernel, stride, padding, dilation, ceil_mode = MAX_POOL_CASES[case]
    rng = np.random.default_rng(10)
    x = rng.permutation(int(np.prod(input_shape))).reshape(input_shape).astype(np.float64)
    tx = t(x, True)
    ty, tidx = F.max_pool2d(tx, kernel, stride, padding, dilation, ceil_mode, return_indices=True)
    y, idx = K.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode, return_indices=True)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(idx, tidx.numpy())
    gy = rng.standard_normal(y.shape)
    ty.backward(t(gy))
    np.testing.assert_allclose(K.max_pool2d_grad_input(gy, idx, x.shape), tx.grad.numpy(), **TOL)


def test_max_pool2d_nan_matches_torch():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((1, 2, 6, 6))
    x[0, 0, 1, 2] = x[0, 0, 1, 3] = x[0, 1, 5, 5] = np.nan
    ty, tidx = F.max_pool2d(t(x), 3, 2, 1, return_indices=True)
    y, idx = K.max_pool2d(x, 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(y, ty.numpy())
    np.testing.assert_array_equal(idx, tidx.numpy())


# (input_shape, kernel_size, stride, padding, ceil_mode, count_include_pad)
AVG_POOL_CASES = {
    "2x2": ((2, 3, 8, 8), 2, None, 0, False, True),
    "3x3 padding 1": ((2, 2, 7, 7), 3, 2, 1, False, True),
    "3x3 padding 1, exclude pad": ((2, 2, 7, 7), 3, 2, 1, False, False),
    "ceil_mode": ((1, 2, 7, 6), 2, 2, 0, True, True),
    "ceil_mode, padding, include pad": ((1, 2, 6, 7), 3, 2, 1, True, True),
    "ceil_mode, padding, exclude pad": ((1, 2, 6, 7), 3, 2, 1, True, False),
    "ceil_mode drops a window in the padding": ((1, 1, 4, 4), 2, 3, 1, True, True),
    "asymmetric": ((1, 2, 9, 5), (4, 2), (3, 1), (2, 1), True, False),
}


@pytest.mark.parametrize("case", list(AVG_POOL_CASES), ids=list(AVG_POOL_CASES))
def test_avg_pool2d_matches_torch(case):
    input_shape, kernel, stride, padding, ceil_mode, count_include_pad = AVG_POOL_CASES[case]
    rng = np.random.default_rng(12)
    x = rng.standard_normal(input_shape)
    tx = t(x, True)
    ty = F.avg_pool2d(tx, kernel, stride, padding, ceil_mode, count_include_pad)
    y = K.avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad)
    assert y.shape == tuple(ty.shape)
    np.testing.assert_allclose(y, ty.detach().numpy(), **TOL)
    gy = rng.standard_normal(y.shape)
    ty.backward(t(gy))
    gx = K.avg_pool2d_grad_input(gy, x.shape, kernel, stride, padding, ceil_mode, count_include_pad)
    np.testing.assert_allclose(gx, tx.grad.numpy(), **TOL)


@pytest.mark.parametrize("input_hw, output_size", [
    ((8, 8), 1), ((8, 8), 4), ((7, 5), 3), ((10, 7), (4, 3)), ((5, 9), (None, 4)),
    ((6, 6), (2, None)), ((3, 4), (5, 7)), ((1, 1), 2), ((9, 9), (9, 9)),
])
def test_adaptive_avg_pool2d_matches_torch(input_hw, output_size):
    rng = np.random.default_rng(13)
    x = rng.standard_normal((2, 3) + input_hw)
    tx = t(x, True)
    ty = F.adaptive_avg_pool2d(tx, output_size)
    y = K.adaptive_avg_pool2d(x, output_size)
    assert y.shape == tuple(ty.shape)
    np.testing.assert_allclose(y, ty.detach().numpy(), **TOL)
    gy = rng.standard_normal(y.shape)
    ty.backward(t(gy))
    np.testing.assert_allclose(K.adaptive_avg_pool2d_grad_input(gy, x.shape), tx.grad.numpy(), **TOL)
