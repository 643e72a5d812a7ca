"""ReLU and batch-norm kernels against cyconv.reference (and the references against
finite differences)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cyconv
from cyconv import kernels as K
from cyconv import reference as R

DTYPES = [np.float32, np.float64]
shapes = st.sampled_from([(2, 3), (3, 2, 5), (2, 4, 3, 5), (1, 1, 2, 2), (5, 7, 1, 1),
                          (2, 3, 40, 50)])


def tolerance(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)


@given(shape=shapes, dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31))
def test_relu_matches_reference(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    x.flat[0] = 0.0                                   # the kink: gradient 0 there, as PyTorch
    g = rng.standard_normal(shape).astype(dtype)
    y = K.relu(x)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, R.relu(x))
    np.testing.assert_array_equal(K.relu_grad_input(g, y), R.relu_grad_input(g, R.relu(x)))
    assert K.relu_grad_input(g, y).flat[0] == 0


def test_relu_keeps_nan_like_the_reference():
    x = np.array([np.nan, -1.0, 2.0, -np.inf, np.inf], np.float32)
    np.testing.assert_array_equal(K.relu(x), R.relu(x))          # NaN == NaN here
    assert np.isnan(K.relu(x)[0])


def test_relu_hand_worked():
    x = np.array([[-2.0, 0.0, 3.0]])
    np.testing.assert_array_equal(K.relu(x), [[0.0, 0.0, 3.0]])
    np.testing.assert_array_equal(K.relu_grad_input(np.array([[5.0, 6.0, 7.0]]), K.relu(x)),
                                  [[0.0, 0.0, 7.0]])


@given(shape=shapes, dtype=st.sampled_from(DTYPES), affine=st.booleans(),
       seed=st.integers(0, 2**31))
def test_batch_norm_matches_reference(shape, dtype, affine, seed):
    rng = np.random.default_rng(seed)
    x = (3 + 2 * rng.standard_normal(shape)).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    channels = shape[1]
    w = rng.standard_normal(channels).astype(dtype) if affine else None
    b = rng.standard_normal(channels).astype(dtype) if affine else None
    y, mean, var = K.batch_norm_forward(x, w, b, eps=1e-5)
    y_ref, mean_ref, var_ref = R.batch_norm_forward(x, w, b, eps=1e-5)
    assert y.dtype == dtype and mean.dtype == np.float64
    np.testing.assert_allclose(y, y_ref, **tolerance(dtype))
    np.testing.assert_allclose(mean, mean_ref, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(var, var_ref, rtol=1e-9, atol=1e-9)
    grads = K.batch_norm_backward(g, x, w, mean, var, eps=1e-5)
    grads_ref = R.batch_norm_backward(g, x, w, mean_ref, var_ref, eps=1e-5)
    for got, want in zip(grads, grads_ref):
        np.testing.assert_allclose(got, want, **tolerance(dtype))
    assert K.batch_norm_backward(g, x, w, mean, var, needs_grad_input=False)[0] is None


@pytest.mark.parametrize("affine", [False, True])
def test_batch_norm_reference_versions_agree(affine):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 2, 3))
    g = rng.standard_normal(x.shape)
    w, b = (rng.standard_normal(4), rng.standard_normal(4)) if affine else (None, None)
    y, mean, var = R.batch_norm_forward(x, w, b)
    y_loops, mean_loops, var_loops = R.batch_norm_forward_loops(x, w, b)
    np.testing.assert_allclose(y, y_loops, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(var, var_loops, rtol=1e-12)
    for got, want in zip(R.batch_norm_backward(g, x, w, mean, var),
                         R.batch_norm_backward_loops(g, x, w, mean, var)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_batch_norm_hand_worked():
    # one channel holding 1, 2, 3, 4: mean 2.5, variance 1.25
    x = np.array([[[1.0, 2.0]], [[3.0, 4.0]]])        # (N=2, C=1, S=2)
    y, mean, var = K.batch_norm_forward(x, eps=0.0)
    assert mean[0] == 2.5 and var[0] == 1.25
    np.testing.assert_allclose(y.ravel(), (np.array([1, 2, 3, 4]) - 2.5) / np.sqrt(1.25))


def test_batch_norm_reference_backward_by_finite_differences():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 2, 4))
    w, b = rng.standard_normal(2), rng.standard_normal(2)
    projection = rng.standard_normal(x.shape)

    def loss(x_, w_, b_):
        return float((R.batch_norm_forward(x_, w_, b_)[0] * projection).sum())

    _, mean, var = R.batch_norm_forward(x, w, b)
    grad_x, grad_w, grad_b = R.batch_norm_backward(projection, x, w, mean, var)
    eps = 1e-6
    for array, grad in ((x, grad_x), (w, grad_w), (b, grad_b)):
        numerical = np.zeros_like(array)
        for i in np.ndindex(array.shape):
            keep = array[i]
            array[i] = keep + eps
            up = loss(x, w, b)
            array[i] = keep - eps
            down = loss(x, w, b)
            array[i] = keep
            numerical[i] = (up - down) / (2 * eps)
        np.testing.assert_allclose(grad, numerical, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("threads", [1, 2, 8])
def test_elementwise_kernels_with_threads(threads):
    before = cyconv.get_num_threads()
    try:
        cyconv.set_num_threads(threads)
        rng = np.random.default_rng(3)
        x = rng.standard_normal((4, 8, 30, 30)).astype(np.float32)
        np.testing.assert_array_equal(K.relu(x), R.relu(x))
        y, mean, var = K.batch_norm_forward(x)
        np.testing.assert_allclose(y, R.batch_norm_forward(x)[0], rtol=1e-5, atol=1e-5)
        g = rng.standard_normal(x.shape).astype(np.float32)
        for got, want in zip(K.batch_norm_backward(g, x, None, mean, var),
                             R.batch_norm_backward(g, x, None, mean, var)):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    finally:
        cyconv.set_num_threads(before)


@pytest.mark.parametrize("module", [K, R])
def test_elementwise_errors(module):
    x = np.ones((2, 3, 4), np.float32)
    with pytest.raises(TypeError, match="input must have dtype float32 or float64, got int64"):
        module.relu(np.ones(3, np.int64))
    with pytest.raises(ValueError, match=r"grad_output must have the output's shape \(2, 3, 4\), "
                                         r"got \(2, 3\)"):
        module.relu_grad_input(np.ones((2, 3), np.float32), x)
    with pytest.raises(ValueError, match=r"input must be \(N, C\), \(N, C, L\) or \(N, C, H, W\)"):
        module.batch_norm_forward(np.ones(4, np.float32))


def test_batch_norm_kernel_errors():
    x = np.ones((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\), one value per channel, "
                                         r"got \(2,\)"):
        K.batch_norm_forward(x, np.ones(2, np.float32), np.ones(2, np.float32))
    with pytest.raises(ValueError, match="weight and bias must both be given or both be None"):
        K.batch_norm_forward(x, np.ones(3, np.float32), None)
    with pytest.raises(ValueError, match="more than one value per channel"):
        K.batch_norm_forward(np.ones((1, 3), np.float32))
    with pytest.raises(TypeError, match="weight has dtype float64 but input has dtype float32"):
        K.batch_norm_forward(x, np.ones(3), np.ones(3))
