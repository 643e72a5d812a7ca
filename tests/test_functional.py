"""cyconv.functional: forward values, gradients (gradcheck in float64), numerical
stability, side effects (batch-norm running statistics, dropout masks) and error messages.
At the end, a cross-check against torch.nn.functional when PyTorch is installed.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import cyconv
from cyconv import Tensor, reference
from cyconv import functional as F
from cyconv import kernels
from cyconv import gradcheck


def leaf(*shape, seed=0, low=None, high=None, requires_grad=True):
    """A float64 Tensor of standard-normal values (or uniform in [low, high])."""
    rng = np.random.default_rng(seed)
    data = rng.standard_normal(shape) if low is None else rng.uniform(low, high, shape)
    return Tensor(data, requires_grad=requires_grad)


# --- conv2d ----------------------------------------------------------------------------

# (input_shape, weight_shape, stride, padding, dilation, groups, bias)
CONV_CASES = {
    "plain": ((2, 3, 6, 5), (4, 3, 3, 3), 1, 0, 1, 1, True),
    "stride 2, padding 1": ((2, 2, 7, 6), (3, 2, 3, 3), 2, 1, 1, 1, True),
    "asymmetric hyper-parameters": ((1, 2, 8, 6), (3, 2, 3, 2), (2, 1), (1, 0), (1, 2), 1, False),
    "same, even kernel": ((1, 2, 5, 6), (3, 2, 4, 2), 1, "same", 1, 1, True),
    "same, dilation 2": ((1, 2, 6, 6), (2, 2, 2, 3), 1, "same", 2, 1, False),
    "valid": ((1, 2, 5, 5), (2, 2, 2, 3), 1, "valid", 1, 1, True),
    "dilation 2": ((1, 2, 7, 7), (2, 2, 3, 3), 1, 1, 2, 1, True),
    "groups 2": ((2, 4, 5, 5), (6, 2, 3, 3), 1, 1, 1, 2, True),
    "depthwise": ((2, 3, 6, 6), (3, 1, 3, 3), 1, 1, 1, 3, True),
    "depthwise x2, stride 2": ((1, 3, 7, 7), (6, 1, 3, 3), 2, 1, 1, 3, False),
    "im2col path": ((1, 8, 5, 5), (3, 8, 3, 3), 1, 1, 1, 1, True),
}


def _conv_case(case, seed=0):
    input_shape, weight_shape, stride, padding, dilation, groups, has_bias = CONV_CASES[case]
    x = leaf(*input_shape, seed=seed)
    w = leaf(*weight_shape, seed=seed + 1)
    b = leaf(weight_shape[0], seed=seed + 2) if has_bias else None
    return x, w, b, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv2d_forward_matches_reference(case):
    x, w, b, hyper = _conv_case(case)
    out = F.conv2d(x, w, b, **hyper)
    expected = reference.conv2d(x.data, w.data, None if b is None else b.data, **hyper)
    np.testing.assert_allclose(out.data, expected, rtol=1e-10, atol=1e-10)
    if hyper["padding"] == "same":
        assert out.shape[2:] == x.shape[2:]


@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv2d_gradients(case):
    x, w, b, hyper = _conv_case(case)
    inputs = (x, w) if b is None else (x, w, b)
    assert gradcheck(lambda *t: F.conv2d(*t, **hyper), inputs)


def test_conv2d_skips_the_input_gradient_when_nobody_needs_it(monkeypatch):
    x = leaf(1, 2, 5, 5, requires_grad=False)
    w, b = leaf(3, 2, 3, 3, seed=1), leaf(3, seed=2)

    def forbidden(*args, **kwargs):
        raise AssertionError("conv2d_grad_input called for an input that needs no gradient")
    monkeypatch.setattr(kernels, "conv2d_grad_input", forbidden)
    F.conv2d(x, w, b, padding=1).sum().backward()
    assert x.grad is None
    np.testing.assert_allclose(b.grad, np.full(3, 25.0))
    np.testing.assert_allclose(w.grad, reference.conv2d_grad_weight(
        np.ones((1, 3, 5, 5)), x.data, w.shape, padding=1), rtol=1e-12)


def test_conv2d_float32_stays_float32():
    x = Tensor(np.ones((1, 2, 4, 4), np.float32), requires_grad=True)
    w = Tensor(np.ones((3, 2, 3, 3), np.float32), requires_grad=True)
    out = F.conv2d(x, w, padding=1)
    assert out.dtype == np.float32
    out.sum().backward()
    assert x.grad.dtype == np.float32 and w.grad.dtype == np.float32


def test_conv2d_channel_mismatch_through_the_tensor_api():
    x, w = leaf(1, 4, 5, 5), leaf(2, 3, 3, 3)
    with pytest.raises(ValueError, match=r"weight expects 3 input channels.*the input has 4"):
        F.conv2d(x, w)


def test_conv2d_bad_arguments():
    x, w = leaf(1, 3, 5, 5), leaf(2, 3, 3, 3)
    with pytest.raises(TypeError, match="input must have dtype float32 or float64, got int64"):
        F.conv2d(Tensor(np.ones((1, 3, 5, 5), np.int64)), w)
    with pytest.raises(TypeError, match="weight has dtype float32 but input has dtype float64"):
        F.conv2d(x, w.float())
    with pytest.raises(ValueError, match="bias must have shape \\(2,\\)"):
        F.conv2d(x, w, leaf(3))
    with pytest.raises(ValueError, match="padding='same' needs stride 1"):
        F.conv2d(x, w, stride=2, padding="same")
    with pytest.raises(TypeError, match="input must be a Tensor or a numpy.ndarray"):
        F.conv2d([[1.0]], w)


# --- pad -------------------------------------------------------------------------------

PAD_ROW = np.array([[1.0, 2.0, 3.0]])  # one row of three, padded by (2, 2)
PAD_EXPECTED = {
    "constant": [[5, 5, 1, 2, 3, 5, 5]],
    "reflect": [[3, 2, 1, 2, 3, 2, 1]],
    "replicate": [[1, 1, 1, 2, 3, 3, 3]],
    "circular": [[2, 3, 1, 2, 3, 1, 2]],
}


@pytest.mark.parametrize("mode", list(PAD_EXPECTED))
def test_pad_values_worked_by_hand(mode):
    value = 5.0 if mode == "constant" else 0.0
    out = F.pad(Tensor(PAD_ROW), (2, 2), mode=mode, value=value)
    np.testing.assert_array_equal(out.data, PAD_EXPECTED[mode])


@pytest.mark.parametrize("mode", list(PAD_EXPECTED))
def test_pad_gradient_counts_the_copies(mode):
    x = Tensor(PAD_ROW.copy(), requires_grad=True)
    F.pad(x, (2, 2), mode=mode).sum().backward()
    # how often each of the three cells appears in the padded row above
    copies = {"constant": [1, 1, 1], "reflect": [2, 3, 2], "replicate": [3, 1, 3],
              "circular": [2, 3, 2]}[mode]
    np.testing.assert_array_equal(x.grad, [copies])


@pytest.mark.parametrize("pads", [(2, 1, 1, 3), (0, 3, 2, 0), (1, 1), (3, 3, 3, 3)], ids=str)
@pytest.mark.parametrize("mode", list(PAD_EXPECTED))
def test_pad_gradients(mode, pads):
    x = leaf(2, 2, 4, 5)
    out = F.pad(x, pads, mode=mode)
    widths = [(0, 0)] * 4
    widths[3], widths[2] = pads[0:2], (pads[2:4] if len(pads) == 4 else (0, 0))
    np_mode = {"replicate": "edge", "circular": "wrap"}.get(mode, mode)
    np.testing.assert_array_equal(out.data, np.pad(x.data, widths, mode=np_mode))
    assert gradcheck(lambda x: F.pad(x, pads, mode=mode), x)


def test_pad_bad_arguments():
    x = leaf(1, 1, 3, 3)
    with pytest.raises(ValueError, match="reflect padding must be smaller"):
        F.pad(x, (3, 0), mode="reflect")
    with pytest.raises(ValueError, match="circular padding can wrap around at most once"):
        F.pad(x, (0, 4), mode="circular")
    with pytest.raises(ValueError, match="mode must be one of"):
        F.pad(x, (1, 1), mode="mirror")
    with pytest.raises(TypeError, match="pad must be a tuple"):
        F.pad(x, (1, 1, 1))
    with pytest.raises(ValueError, match="non-negative"):
        F.pad(x, (1, -1))
    with pytest.raises(ValueError, match="value is only used by mode='constant'"):
        F.pad(x, (1, 1), mode="reflect", value=1.0)


# --- pooling ---------------------------------------------------------------------------

# (input_shape, kernel_size, stride, padding, dilation, ceil_mode)
MAX_POOL_CASES = {
    "2x2 stride 2": ((2, 2, 6, 6), 2, None, 0, 1, False),
    "3x3 stride 2 padding 1": ((1, 2, 7, 6), 3, 2, 1, 1, False),
    "ceil_mode": ((1, 2, 7, 7), 2, 2, 0, 1, True),
    "ceil_mode with padding": ((2, 1, 6, 7), 3, 2, 1, 1, True),
    "dilation 2": ((1, 2, 8, 8), 3, 1, 1, 2, False),
    "asymmetric": ((1, 2, 7, 9), (2, 3), (1, 2), (1, 1), (2, 1), True),
}


@pytest.mark.parametrize("case", list(MAX_POOL_CASES))
def test_max_pool2d_forward_and_gradients(case):
    shape, *hyper = MAX_POOL_CASES[case]
    x = leaf(*shape)  # continuous random values: no ties, so the derivative exists
    out, indices = F.max_pool2d(x, *hyper, return_indices=True)
    expected, expected_indices = reference.max_pool2d(x.data, *hyper, return_indices=True)
    np.testing.assert_array_equal(out.data, expected)
    np.testing.assert_array_equal(indices.data, expected_indices)
    assert indices.dtype == np.int64 and not indices.requires_grad
    assert gradcheck(lambda x: F.max_pool2d(x, *hyper), x)


def test_max_pool2d_by_hand():
    x = Tensor(np.array([[[[1.0, 5.0, 2.0], [3.0, 4.0, 0.0], [7.0, 6.0, 8.0]]]]),
               requires_grad=True)
    out = F.max_pool2d(x, 2, stride=1)
    np.testing.assert_array_equal(out.data, [[[[5, 5], [7, 8]]]])
    out.sum().backward()  # 5 wins two windows
    np.testing.assert_array_equal(x.grad, [[[[0, 2, 0], [0, 0, 0], [1, 0, 1]]]])


# (input_shape, kernel_size, stride, padding, ceil_mode, count_include_pad)
AVG_POOL_CASES = {
    "2x2": ((2, 2, 6, 6), 2, None, 0, False, True),
    "3x3 stride 2 padding 1": ((1, 2, 7, 6), 3, 2, 1, False, True),
    "padding, count_include_pad=False": ((1, 2, 7, 6), 3, 2, 1, False, False),
    "ceil_mode with padding": ((1, 2, 6, 7), 3, 2, 1, True, True),
    "ceil_mode, count_include_pad=False": ((2, 1, 6, 7), 3, 2, 1, True, False),
    "asymmetric": ((1, 1, 7, 9), (2, 3), (1, 2), (1, 1), True, False),
}


@pytest.mark.parametrize("case", list(AVG_POOL_CASES))
def test_avg_pool2d_forward_and_gradients(case):
    shape, *hyper = AVG_POOL_CASES[case]
    x = leaf(*shape)
    np.testing.assert_allclose(F.avg_pool2d(x, *hyper).data, reference.avg_pool2d(x.data, *hyper),
                               rtol=1e-12)
    assert gradcheck(lambda x: F.avg_pool2d(x, *hyper), x)


@pytest.mark.parametrize("output_size", [1, (3, 2), (None, 2), 5, (7, 6)], ids=str)
def test_adaptive_avg_pool2d_forward_and_gradients(output_size):
    x = leaf(2, 2, 7, 6)
    out = F.adaptive_avg_pool2d(x, output_size)
    np.testing.assert_allclose(out.data, reference.adaptive_avg_pool2d(x.data, output_size),
                               rtol=1e-12)
    assert gradcheck(lambda x: F.adaptive_avg_pool2d(x, output_size), x)


def test_global_average_pooling_is_the_mean():
    x = leaf(2, 3, 5, 4)
    np.testing.assert_allclose(F.adaptive_avg_pool2d(x, 1).data[..., 0, 0],
                               x.data.mean(axis=(2, 3)), rtol=1e-12)


def test_pooling_bad_arguments():
    x = leaf(1, 1, 4, 4)
    with pytest.raises(ValueError, match="padding must be at most half of kernel_size"):
        F.max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="input must be 4-D"):
        F.avg_pool2d(leaf(4, 4), 2)


# --- linear and flatten ----------------------------------------------------------------

@pytest.mark.parametrize("input_shape", [(4,), (3, 4), (2, 3, 4)], ids=str)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_forward_and_gradients(input_shape, bias):
    x, w = leaf(*input_shape), leaf(5, 4, seed=1)
    b = leaf(5, seed=2) if bias else None
    out = F.linear(x, w, b)
    expected = x.data @ w.data.T + (b.data if bias else 0)
    np.testing.assert_allclose(out.data, expected, rtol=1e-12)
    assert out.shape == input_shape[:-1] + (5,)
    inputs = (x, w, b) if bias else (x, w)
    assert gradcheck(F.linear, inputs)


def test_linear_shape_mismatch():
    with pytest.raises(ValueError, match=r"in_features=4.*got input of shape \(3, 5\)"):
        F.linear(leaf(3, 5), leaf(2, 4))
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\)"):
        F.linear(leaf(3, 4), leaf(2, 4), leaf(3))
    with pytest.raises(ValueError, match="weight must be 2-D"):
        F.linear(leaf(3, 4), leaf(4))
    with pytest.raises(TypeError, match="same dtype"):
        F.linear(leaf(3, 4).float(), leaf(2, 4))


def test_flatten():
    x = leaf(2, 3, 4, 5)
    assert F.flatten(x).shape == (2, 60)
    assert F.flatten(x, 0).shape == (120,)
    assert F.flatten(x, 1, 2).shape == (2, 12, 5)
    assert gradcheck(lambda x: F.flatten(x, 1, 2), leaf(2, 3, 2, 2))


# --- activations -----------------------------------------------------------------------

ACTIVATIONS = {
    "relu": (F.relu, lambda a: np.maximum(a, 0)),
    "leaky_relu": (F.leaky_relu, lambda a: np.where(a > 0, a, 0.01 * a)),
    "leaky_relu 0.2": (lambda x: F.leaky_relu(x, 0.2), lambda a: np.where(a > 0, a, 0.2 * a)),
    "sigmoid": (F.sigmoid, lambda a: 1 / (1 + np.exp(-a))),
    "tanh": (F.tanh, np.tanh),
}


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_values_and_gradients(name):
    fn, formula = ACTIVATIONS[name]
    x = leaf(3, 4, 2)
    x.data[np.abs(x.data) < 0.05] = 0.3  # away from the kink at 0
    np.testing.assert_allclose(fn(x).data, formula(x.data), rtol=1e-12)
    assert gradcheck(fn, x)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activations_keep_float32(name):
    x = Tensor(np.linspace(-2, 2, 6, dtype=np.float32), requires_grad=True)
    out = ACTIVATIONS[name][0](x)
    assert out.dtype == np.float32
    out.sum().backward()
    assert x.grad.dtype == np.float32


def test_relu_gradient_is_a_step():
    x = Tensor(np.array([-1.0, 0.0, 2.0]), requires_grad=True)
    F.relu(x).sum().backward()
    np.testing.assert_array_equal(x.grad, [0, 0, 1])


def test_sigmoid_is_stable_for_large_inputs():
    x = Tensor(np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0]), requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow warning fails the test
        out = F.sigmoid(x)
        out.sum().backward()
    assert np.all(np.isfinite(out.data)) and np.all(np.isfinite(x.grad))
    np.testing.assert_allclose(out.data, [0, 1.9287498479639178e-22, 0.5, 1, 1], rtol=1e-12)
    assert out.data[0] == 0 and out.data[-1] == 1


# --- softmax and log_softmax -----------------------------------------------------------

@pytest.mark.parametrize("dim", [0, 1, 2, -1])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_values_and_gradients(name, dim):
    x = leaf(2, 3, 4)
    e = np.exp(x.data)
    expected = e / e.sum(axis=dim, keepdims=True)
    fn = getattr(F, name)
    out = fn(x, dim)
    np.testing.assert_allclose(out.data, expected if name == "softmax" else np.log(expected),
                               rtol=1e-12)
    assert gradcheck(lambda x: fn(x, dim), x)


def test_softmax_by_hand():
    out = F.softmax(Tensor(np.array([0.0, np.log(3.0)])), 0)
    np.testing.assert_allclose(out.data, [0.25, 0.75])


def test_log_softmax_is_stable_for_huge_logits():
    x = Tensor(np.array([[1e4, 0.0, -1e4], [-1e4, -1e4, -1e4]]), requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = F.log_softmax(x, 1)
        (out * Tensor(np.arange(6.0).reshape(2, 3))).sum().backward()
        soft = F.softmax(x, 1)
    np.testing.assert_allclose(out.data[0], [0, -1e4, -2e4])
    np.testing.assert_allclose(out.data[1], np.full(3, -np.log(3)))
    np.testing.assert_allclose(soft.data[0], [1, 0, 0])
    assert np.all(np.isfinite(x.grad))


def test_softmax_dim_errors():
    with pytest.raises(TypeError, match="dim must be an int"):
        F.softmax(leaf(2, 3), None)
    with pytest.raises(IndexError, match="dim=2 is out of range"):
        F.log_softmax(leaf(2, 3), 2)


# --- cross_entropy, nll_loss, mse_loss -------------------------------------------------

TARGET = np.array([0, 2, 1, 2])
CLASS_WEIGHT = np.array([0.5, 2.0, 1.5])


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_values_and_gradients(reduction, weighted):
    x = leaf(4, 3)
    weight = CLASS_WEIGHT if weighted else None
    out = F.cross_entropy(x, TARGET, reduction=reduction, weight=weight)
    logp = x.data - np.log(np.exp(x.data).sum(axis=1, keepdims=True))
    w_n = CLASS_WEIGHT[TARGET] if weighted else np.ones(4)
    losses = -w_n * logp[np.arange(4), TARGET]
    expected = {"none": losses, "sum": losses.sum(), "mean": losses.sum() / w_n.sum()}[reduction]
    np.testing.assert_allclose(out.data, expected, rtol=1e-12)
    assert gradcheck(lambda x: F.cross_entropy(x, TARGET, reduction, weight=weight), x)


def test_cross_entropy_by_hand():
    # two equal logits: probability 1/2, loss log 2; for [1, 2, 3] and class 2 the loss is
    # log(e + e^2 + e^3) - 3 = log(1 + e^-1 + e^-2)
    logits = Tensor(np.array([[0.0, 0.0, -np.inf], [1.0, 2.0, 3.0]]), requires_grad=True)
    out = F.cross_entropy(logits, np.array([1, 2]), reduction="none")
    np.testing.assert_allclose(out.data, [np.log(2), np.log(1 + np.exp(-1) + np.exp(-2))])
    F.cross_entropy(logits, np.array([1, 2])).backward()
    np.testing.assert_allclose(logits.grad[0], [0.25, -0.25, 0])  # (softmax - onehot) / N


def test_cross_entropy_equals_nll_of_log_softmax():
    x1, x2 = leaf(5, 4), leaf(5, 4)
    target = np.array([3, 0, 1, 1, 2])
    a = F.cross_entropy(x1, target)
    b = F.nll_loss(F.log_softmax(x2, 1), target)
    np.testing.assert_allclose(a.data, b.data, rtol=1e-12)
    a.backward()
    b.backward()
    np.testing.assert_allclose(x1.grad, x2.grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss_gradients(reduction):
    assert gradcheck(lambda x: F.nll_loss(x, TARGET, reduction, weight=CLASS_WEIGHT), leaf(4, 3))


def test_cross_entropy_is_stable_for_huge_logits():
    x = Tensor(np.array([[1e4, 0.0, -1e4], [1e4, 0.0, -1e4]]), requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = F.cross_entropy(x, np.array([0, 1]), reduction="none")
        out.sum().backward()
    np.testing.assert_allclose(out.data, [0, 1e4])
    np.testing.assert_allclose(x.grad, [[0, 0, 0], [1, -1, 0]])


def test_cross_entropy_keeps_float32():
    x = Tensor(np.ones((2, 3), np.float32), requires_grad=True)
    out = F.cross_entropy(x, np.array([0, 1]))
    assert out.dtype == np.float32
    out.backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(out.item(), np.log(3), rtol=1e-6)


def test_cross_entropy_accepts_a_target_tensor_and_a_list():
    x = leaf(2, 3)
    a = F.cross_entropy(x, Tensor(np.array([2, 0])))
    b = F.cross_entropy(x, [2, 0])
    assert a.item() == b.item()


def test_cross_entropy_bad_targets():
    x = leaf(3, 4)
    with pytest.raises(TypeError, match="target must hold integer class indices.*float64"):
        F.cross_entropy(x, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"target holds class 4, outside \[0, 4\)"):
        F.cross_entropy(x, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"target holds class -1"):
        F.cross_entropy(x, np.array([0, -1, 1]))
    with pytest.raises(ValueError, match=r"target must have shape \(3,\).*got shape \(3, 1\)"):
        F.cross_entropy(x, np.array([[0], [1], [2]]))
    with pytest.raises(ValueError, match=r"input must be 2-D \(N, C\)"):
        F.cross_entropy(leaf(4), np.array([0]))
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.cross_entropy(x, np.array([0, 1, 2]), reduction="average")
    with pytest.raises(ValueError, match="reduction must be one of"):  # torch's positional weight
        F.cross_entropy(x, np.array([0, 1, 2]), np.ones(4))
    with pytest.raises(ValueError, match=r"weight must have shape \(4,\)"):
        F.cross_entropy(x, np.array([0, 1, 2]), weight=np.ones(3))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss_values_and_gradients(reduction):
    x, y = leaf(3, 4), leaf(3, 4, seed=1)
    squares = (x.data - y.data) ** 2
    expected = {"mean": squares.mean(), "sum": squares.sum(), "none": squares}[reduction]
    np.testing.assert_allclose(F.mse_loss(x, y, reduction).data, expected, rtol=1e-12)
    assert gradcheck(lambda x, y: F.mse_loss(x, y, reduction), (x, y))


def test_mse_loss_by_hand_and_errors():
    out = F.mse_loss(Tensor(np.array([1.0, 2.0])), np.array([3.0, 2.0]))
    assert out.item() == 2.0
    with pytest.raises(ValueError, match=r"input \(4, 1\) and target \(4,\)"):
        F.mse_loss(leaf(4, 1), leaf(4))
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.mse_loss(leaf(4), leaf(4), reduction="max")


# --- dropout ---------------------------------------------------------------------------

def test_dropout_gradients_with_a_fixed_mask():
    def fn(x):
        cyconv.manual_seed(3)  # the same mask in every call
        return F.dropout(x, 0.4)
    assert gradcheck(fn, leaf(4, 5))


def test_dropout_scales_the_kept_elements():
    cyconv.manual_seed(0)
    x = Tensor(np.ones(100_000))
    out = F.dropout(x, p=0.3).data
    kept = out != 0
    np.testing.assert_allclose(out[kept], 1 / 0.7)
    assert abs(kept.mean() - 0.7) < 0.01  # about 1 - p kept (~7 standard deviations margin)
    assert abs(out.mean() - 1) < 0.02     # the expected value is unchanged


def test_dropout_is_reproducible_with_the_seed():
    x = leaf(50)
    cyconv.manual_seed(7)
    a = F.dropout(x).data
    cyconv.manual_seed(7)
    b = F.dropout(x).data
    c = F.dropout(x).data
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(b, c)


def test_dropout_identity_when_not_training_or_p_zero():
    x = leaf(3, 4)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x


def test_dropout_keeps_float32():
    x = Tensor(np.ones(10, np.float32), requires_grad=True)
    out = F.dropout(x, 0.5)
    assert out.dtype == np.float32
    out.sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, out.data)  # the gradient is the scaled mask


@pytest.mark.parametrize("p", [1, 1.0, -0.1, 1.5, "0.5", True])
def test_dropout_bad_probability(p):
    with pytest.raises(ValueError, match=r"p must be a number in \[0, 1\), got"):
        F.dropout(leaf(3), p)


# --- batch_norm ------------------------------------------------------------------------

BN_SHAPES = [(6, 3), (4, 3, 5), (3, 3, 2, 3)]


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_gradients(training, shape, affine):
    x = leaf(*shape)
    w, b = leaf(3, seed=1), leaf(3, seed=2)
    running_mean = np.array([0.1, -0.2, 0.3])
    running_var = np.array([0.5, 1.5, 2.0])
    inputs = (x, w, b) if affine else (x,)

    def fn(x, w=None, b=None):
        # copies: training updates the running statistics in place on every call
        return F.batch_norm(x, running_mean.copy(), running_var.copy(), w, b, training=training)
    assert gradcheck(fn, inputs)


def test_batch_norm_gradients_without_running_stats():
    assert gradcheck(lambda x, w: F.batch_norm(x, None, None, w, training=False),
                     (leaf(4, 3, 2), leaf(3, seed=1)))


def _normalise(x, mean, var, eps=1e-5):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)


@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
def test_batch_norm_training_forward_and_running_stats(shape):
    x = leaf(*shape, low=-1, high=3)
    w, b = leaf(3, seed=1), leaf(3, seed=2)
    running_mean, running_var = np.array([0.1, -0.2, 0.3]), np.array([0.5, 1.5, 2.0])
    before_mean, before_var = running_mean.copy(), running_var.copy()
    out = F.batch_norm(x, running_mean, running_var, w, b, training=True, momentum=0.2)

    axes = (0,) + tuple(range(2, x.ndim))
    mean, var = x.data.mean(axis=axes), x.data.var(axis=axes)
    per_channel = (1, -1) + (1,) * (x.ndim - 2)
    expected = _normalise(x.data, mean, var) * w.data.reshape(per_channel) + b.data.reshape(per_channel)
    np.testing.assert_allclose(out.data, expected, rtol=1e-10, atol=1e-12)
    # the running statistics, updated in place, with the UNBIASED batch variance
    np.testing.assert_allclose(running_mean, 0.8 * before_mean + 0.2 * mean, rtol=1e-12)
    np.testing.assert_allclose(running_var, 0.8 * before_var + 0.2 * x.data.var(axis=axes, ddof=1),
                               rtol=1e-12)


def test_batch_norm_training_normalises_each_channel():
    x = leaf(8, 3, 4, 4, low=5, high=9)
    out = F.batch_norm(x, None, None, training=True).data
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=(0, 2, 3)), 1, rtol=1e-3)  # eps makes it < 1


def test_batch_norm_eval_uses_running_stats_and_changes_nothing():
    x = leaf(4, 3, 2, 2)
    running_mean, running_var = np.array([0.1, -0.2, 0.3]), np.array([0.5, 1.5, 2.0])
    out = F.batch_norm(x, running_mean, running_var, training=False, eps=1e-3)
    np.testing.assert_allclose(out.data, _normalise(x.data, running_mean, running_var, 1e-3),
                               rtol=1e-12)
    np.testing.assert_array_equal(running_mean, [0.1, -0.2, 0.3])
    np.testing.assert_array_equal(running_var, [0.5, 1.5, 2.0])


def test_batch_norm_float32_running_stats_stay_float32():
    x = Tensor(np.random.default_rng(0).standard_normal((4, 2)).astype(np.float32),
               requires_grad=True)
    running_mean, running_var = np.zeros(2, np.float32), np.ones(2, np.float32)
    out = F.batch_norm(x, running_mean, running_var, Tensor(np.ones(2, np.float32)),
                       Tensor(np.zeros(2, np.float32)), training=True)
    assert out.dtype == np.float32 and running_mean.dtype == np.float32
    out.sum().backward()
    assert x.grad.dtype == np.float32


def test_batch_norm_bad_arguments():
    x = leaf(4, 3)
    with pytest.raises(ValueError, match=r"running_mean must have shape \(3,\)"):
        F.batch_norm(x, np.zeros(2), np.ones(3))
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\)"):
        F.batch_norm(x, None, None, leaf(4), training=True)
    with pytest.raises(ValueError, match="more than one value per channel"):
        F.batch_norm(leaf(1, 3), np.zeros(3), np.ones(3), training=True)
    with pytest.raises(ValueError, match="both be given or both be None"):
        F.batch_norm(x, np.zeros(3), None)
    with pytest.raises(ValueError, match=r"input must be \(N, C\)"):
        F.batch_norm(leaf(3), None, None, training=True)


# --- PyTorch cross-check ---------------------------------------------------------------

class TestAgainstTorch:
    """The same numbers as torch.nn.functional (skipped without PyTorch)."""

    @pytest.fixture(autouse=True)
    def torch(self):
        self.torch = pytest.importorskip("torch")
        self.TF = self.torch.nn.functional

    def t(self, tensor):
        return self.torch.tensor(tensor.data, requires_grad=True)

    def check_grad(self, ours, theirs):
        np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), rtol=1e-9, atol=1e-12)

    @pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
    def test_batch_norm_training(self, shape):
        x, w, b = leaf(*shape), leaf(3, seed=1), leaf(3, seed=2)
        tx, tw, tb = self.t(x), self.t(w), self.t(b)
        rm, rv = np.array([0.1, -0.2, 0.3]), np.array([0.5, 1.5, 2.0])
        trm, trv = self.torch.tensor(rm), self.torch.tensor(rv)
        out = F.batch_norm(x, rm, rv, w, b, training=True, momentum=0.3)
        tout = self.TF.batch_norm(tx, trm, trv, tw, tb, training=True, momentum=0.3)
        np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(rm, trm.numpy(), rtol=1e-12)
        np.testing.assert_allclose(rv, trv.numpy(), rtol=1e-12)
        gy = np.random.default_rng(5).standard_normal(shape)
        out.backward(gy)
        tout.backward(self.torch.tensor(gy))
        for ours, theirs in ((x, tx), (w, tw), (b, tb)):
            self.check_grad(ours, theirs)

    @pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
    def test_cross_entropy(self, reduction):
        x = leaf(4, 3)
        tx = self.t(x)
        weight = self.torch.tensor(CLASS_WEIGHT)
        out = F.cross_entropy(x, TARGET, reduction, weight=CLASS_WEIGHT)
        tout = self.TF.cross_entropy(tx, self.torch.tensor(TARGET), weight=weight,
                                     reduction=reduction)
        np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-12)
        out.sum().backward()
        tout.sum().backward()
        self.check_grad(x, tx)

    def test_log_softmax(self):
        x = leaf(3, 4, 5)
        x.data[0, 0] = 1e4
        tx = self.t(x)
        out, tout = F.log_softmax(x, 1), self.TF.log_softmax(tx, 1)
        np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-12)
        gy = np.random.default_rng(5).standard_normal(x.shape)
        out.backward(gy)
        tout.backward(self.torch.tensor(gy))
        self.check_grad(x, tx)

    @pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
    def test_pad(self, mode):
        x = leaf(2, 3, 4, 5)
        tx = self.t(x)
        out, tout = F.pad(x, (2, 1, 3, 0), mode), self.TF.pad(tx, (2, 1, 3, 0), mode)
        np.testing.assert_array_equal(out.data, tout.detach().numpy())
        gy = np.random.default_rng(5).standard_normal(out.shape)
        out.backward(gy)
        tout.backward(self.torch.tensor(gy))
        self.check_grad(x, tx)

    @pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
    @pytest.mark.parametrize("case", ["stride 2, padding 1", "same, even kernel", "depthwise"])
    def test_conv2d(self, case):
        x, w, b, hyper = _conv_case(case)
        tx, tw = self.t(x), self.t(w)
        tb = None if b is None else self.t(b)
        out, tout = F.conv2d(x, w, b, **hyper), self.TF.conv2d(tx, tw, tb, **hyper)
        np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-10, atol=1e-12)
        gy = np.random.default_rng(5).standard_normal(out.shape)
        out.backward(gy)
        tout.backward(self.torch.tensor(gy))
        for ours, theirs in ((x, tx), (w, tw)) + (((b, tb),) if b is not None else ()):
            self.check_grad(ours, theirs)
