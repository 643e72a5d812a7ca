"""Tests of cyconv.nn: Module bookkeeping, state dicts, layers, initialisation.

Numbers are checked against formulas written out in NumPy, against ``cyconv.reference``
and, where PyTorch is installed, against the same layer built in PyTorch from the same
weights.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict

import numpy as np
import pytest

import cyconv
from cyconv import Tensor, nn, reference
from cyconv import gradcheck
from cyconv.nn import functional as F
from cyconv.nn import init


def rand(*shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


class Block(nn.Module):
    """conv - bn - relu: a nested module for the naming tests."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.bn = nn.BatchNorm2d(c_out)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Net(nn.Module):
    """features (Sequential with a nested Block) + bn1 + fc: every kind of registration."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3), Block(4, 4), nn.MaxPool2d(2))
        self.bn1 = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 3 * 3, 3)
        self.scale = nn.Parameter(np.ones(1, np.float32))
        self.register_buffer("step", np.zeros(2, np.float32))
        self.not_a_parameter = Tensor(np.ones(3, np.float32), requires_grad=True)

    def forward(self, x):                     # (N, 1, 8, 8) -> (N, 3)
        x = self.bn1(self.features(x))         # (N, 4, 3, 3)
        return self.fc(F.flatten(x, 1)) * self.scale


NET_PARAMETERS = [
    "scale",
    "features.0.weight", "features.0.bias",
    "features.1.conv.weight", "features.1.conv.bias",
    "features.1.bn.weight", "features.1.bn.bias",
    "bn1.weight", "bn1.bias",
    "fc.weight", "fc.bias",
]

NET_STATE_KEYS = [
    "scale", "step",
    "features.0.weight", "features.0.bias",
    "features.1.conv.weight", "features.1.conv.bias",
    "features.1.bn.weight", "features.1.bn.bias",
    "features.1.bn.running_mean", "features.1.bn.running_var",
    "features.1.bn.num_batches_tracked",
    "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked",
    "fc.weight", "fc.bias",
]


# --- Parameter and registration ---------------------------------------------------------

def test_functional_is_reachable_from_nn():
    assert nn.functional is cyconv.functional
    assert nn.functional.conv2d is cyconv.functional.conv2d


def test_parameter_is_a_leaf_that_requires_grad_and_shares_its_array():
    data = np.arange(3, dtype=np.float32)
    p = nn.Parameter(data)
    assert isinstance(p, Tensor) and p.requires_grad and p.is_leaf
    assert p.data is data
    assert not nn.Parameter(data, requires_grad=False).requires_grad
    assert repr(p).startswith("Parameter containing:\ntensor([0., 1., 2.]")
    assert repr(p).endswith("requires_grad=True)")


def test_nested_registration_and_names():
    net = Net()
    assert [name for name, _ in net.named_parameters()] == NET_PARAMETERS
    assert len(list(net.parameters())) == 11
    assert all(isinstance(p, nn.Parameter) for p in net.parameters())
    # a plain Tensor attribute is not a parameter, even with requires_grad
    assert "not_a_parameter" not in dict(net.named_parameters())
    assert [name for name, _ in net.named_buffers()] == [
        "step",
        "features.1.bn.running_mean", "features.1.bn.running_var",
        "features.1.bn.num_batches_tracked",
        "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked"]
    assert [name for name, _ in net.named_children()] == ["features", "bn1", "fc"]
    assert [name for name, _ in net.named_modules()] == [
        "", "features", "features.0", "features.1", "features.1.conv", "features.1.bn",
        "features.1.act", "features.2", "bn1", "fc"]
    assert len(list(net.modules())) == 10
    assert [name for name, _ in net.named_parameters(prefix="model", recurse=False)] == ["model.scale"]
    assert net.get_submodule("features.1.bn") is net.features[1].bn


def test_shared_parameters_are_listed_once_and_reassignment_replaces():
    shared = nn.Linear(2, 2)
    seq = nn.Sequential(shared, nn.ReLU(), shared)
    assert len(list(seq.parameters())) == 2
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    layer = nn.Linear(2, 3)
    layer.bias = None                       # a parameter slot may be emptied
    assert [n for n, _ in layer.named_parameters()] == ["weight"]
    assert "bias" not in layer.state_dict()
    with pytest.raises(TypeError, match="parameter 'weight'"):
        layer.weight = Tensor(np.zeros((3, 2), np.float32))
    layer.extra = nn.Parameter(np.zeros(1, np.float32))
    del layer.extra
    assert [n for n, _ in layer.named_parameters()] == ["weight"]


def test_assignment_before_init_and_bad_buffers_are_refused():
    class Forgetful(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(np.zeros(1, np.float32))

    with pytest.raises(AttributeError, match="__init__"):
        Forgetful()
    m = nn.Module()
    with pytest.raises(TypeError, match="buffer 'b'"):
        m.register_buffer("b", [1, 2])
    with pytest.raises(KeyError):
        m.register_buffer("a.b", np.zeros(1))
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        m.missing
    with pytest.raises(NotImplementedError, match="forward"):
        m(1)


# --- state_dict / load_state_dict ---------------------------------------------------------

def test_state_dict_keys_values_and_copies():
    net = Net()
    sd = net.state_dict()
    assert isinstance(sd, OrderedDict)
    assert list(sd) == NET_STATE_KEYS            # PyTorch's order: own entries, then children
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    assert sd["bn1.num_batches_tracked"].dtype == np.int64 and sd["bn1.num_batches_tracked"].shape == ()
    assert sd["fc.weight"].shape == (3, 36) and sd["fc.weight"].dtype == np.float32
    np.testing.assert_array_equal(sd["bn1.running_var"], np.ones(4))
    # copies: changing the model later does not change the dictionary, and vice versa
    before = sd["fc.weight"].copy()
    net.fc.weight.data += 1
    sd["bn1.running_mean"][:] = 7
    np.testing.assert_array_equal(sd["fc.weight"], before)
    np.testing.assert_array_equal(net.bn1.running_mean, np.zeros(4))
    assert net.state_dict(keep_vars=True)["fc.weight"] is net.fc.weight


def test_load_state_dict_round_trip_keeps_objects_and_dtypes():
    cyconv.manual_seed(1)
    a = Net()
    a.train()
    a(Tensor(rand(4, 1, 8, 8)))               # moves the running statistics
    cyconv.manual_seed(2)
    b = Net()
    weight_object = b.fc.weight
    # float64 values, as a checkpoint from elsewhere might hold, load as float32
    sd = {k: (v.astype(np.float64) if v.dtype == np.float32 else v) for k, v in a.state_dict().items()}
    result = b.load_state_dict(sd)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert b.fc.weight is weight_object and b.fc.weight.dtype == np.float32
    for key, value in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[key], value, err_msg=key)
    assert int(b.bn1.num_batches_tracked) == 1
    a.eval(), b.eval()
    x = Tensor(rand(2, 1, 8, 8, seed=3))
    np.testing.assert_array_equal(a(x).data, b(x).data)


def test_load_state_dict_accepts_tensors():
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    b.load_state_dict({k: Tensor(v) for k, v in a.state_dict().items()})
    np.testing.assert_array_equal(a.weight.data, b.weight.data)


def test_strict_load_reports_everything_and_changes_nothing():
    net = Net()
    before = net.state_dict()
    sd = Net().state_dict()
    del sd["bn1.running_var"]                      # missing
    sd["fc.extra"] = np.zeros(1)                    # unexpected
    sd["fc.weight"] = np.zeros((5, 36))             # shape mismatch
    with pytest.raises(RuntimeError) as error:
        net.load_state_dict(sd)
    message = str(error.value)
    assert "Missing key(s)" in message and '"bn1.running_var"' in message
    assert "Unexpected key(s)" in message and '"fc.extra"' in message
    assert "size mismatch for fc.weight" in message and "(5, 36)" in message and "(3, 36)" in message
    for key, value in net.state_dict().items():     # not half-loaded: nothing changed
        np.testing.assert_array_equal(value, before[key], err_msg=key)


def test_non_strict_load_returns_the_incompatible_keys():
    net = Net()
    source = Net().state_dict()
    sd = {k: v for k, v in source.items() if not k.startswith("bn1.")}
    sd["head.weight"] = np.zeros(2)
    result = net.load_state_dict(sd, strict=False)
    assert sorted(result.missing_keys) == sorted(
        ["bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked"])
    assert result.unexpected_keys == ["head.weight"]
    np.testing.assert_array_equal(net.fc.weight.data, source["fc.weight"])
    # a shape mismatch is an error even when not strict, and nothing is loaded
    before = net.state_dict()
    bad = dict(Net().state_dict(), **{"fc.bias": np.zeros(4)})
    with pytest.raises(RuntimeError, match="size mismatch for fc.bias"):
        net.load_state_dict(bad, strict=False)
    np.testing.assert_array_equal(net.fc.weight.data, before["fc.weight"])
    with pytest.raises(TypeError, match="mapping"):
        net.load_state_dict([("fc.bias", np.zeros(3))])


# --- modes, freezing, gradients, dtype ------------------------------------------------------

def test_train_eval_propagate_to_every_submodule():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.features.train()
    assert net.features[1].bn.training and not net.bn1.training and not net.training
    net.train()
    assert all(m.training for m in net.modules())
    with pytest.raises(TypeError):
        net.train("no")


def test_requires_grad_false_freezes_and_zero_grad_clears():
    net = Net()
    net.features.requires_grad_(False)          # freeze the feature extractor
    loss = net(Tensor(rand(4, 1, 8, 8))).sum()
    loss.backward()
    for name, p in net.named_parameters():
        if name.startswith("features."):
            assert p.grad is None, name
        else:
            assert p.grad is not None and np.isfinite(p.grad).all(), name
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    net.fc.weight.grad = np.ones((3, 36), np.float32)
    net.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(net.fc.weight.grad, 0)


def test_to_double_converts_parameters_and_float_buffers():
    net = Net()
    weight = net.fc.weight
    net.fc.weight.grad = np.ones((3, 36), np.float32)
    assert net.double() is net
    assert net.fc.weight is weight and weight.dtype == np.float64 and weight.grad.dtype == np.float64
    assert all(p.dtype == np.float64 for p in net.parameters())
    assert net.bn1.running_mean.dtype == np.float64
    assert net.bn1.num_batches_tracked.dtype == np.int64
    assert net(Tensor(rand(2, 1, 8, 8, dtype=np.float64))).dtype == np.float64
    net.float()
    assert all(p.dtype == np.float32 for p in net.parameters())
    with pytest.raises(TypeError, match="floating"):
        net.to(np.int32)


def test_deepcopy_gives_an_independent_equal_model():
    net = Net()
    twin = copy.deepcopy(net)
    x = Tensor(rand(2, 1, 8, 8))
    np.testing.assert_array_equal(twin(x).data, net(x).data)
    twin.fc.weight.data += 1
    assert not np.array_equal(twin.fc.weight.data, net.fc.weight.data)
    assert [n for n, _ in twin.named_parameters()] == NET_PARAMETERS


def test_apply_visits_children_first():
    visited = []
    Net().apply(lambda m: visited.append(type(m).__name__))
    assert visited[-1] == "Net" and visited[:2] == ["Conv2d", "Conv2d"]
    assert len(visited) == 10


def test_residual_addition_sends_gradient_through_both_paths():
    layer = nn.Linear(3, 3)
    x = Tensor(rand(2, 3), requires_grad=True)
    (layer(x) + x).sum().backward()
    # d/dx sum(W x + b + x) = column sums of W, plus 1 from the identity path
    expected = np.broadcast_to(layer.weight.data.sum(axis=0) + 1, (2, 3))
    np.testing.assert_allclose(x.grad, expected, rtol=1e-6)
    assert layer.weight.grad is not None


# --- repr and hooks -----------------------------------------------------------------------

def test_repr_of_a_small_model():
    model = nn.Sequential(OrderedDict([
        ("conv", nn.Conv2d(1, 6, 5, padding=2, bias=False)),
        ("bn", nn.BatchNorm2d(6)),
        ("act", nn.ReLU()),
        ("pool", nn.MaxPool2d(2)),
        ("head", nn.Sequential(nn.Flatten(), nn.Dropout(0.25), nn.Linear(6 * 14 * 14, 10))),
    ]))
    assert repr(model) == """Sequential(
  (conv): Conv2d(1, 6, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2), bias=False)
  (bn): BatchNorm2d(6, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
  (act): ReLU()
  (pool): MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)
  (head): Sequential(
    (0): Flatten(start_dim=1, end_dim=-1)
    (1): Dropout(p=0.25, inplace=False)
    (2): Linear(in_features=1176, out_features=10, bias=True)
  )
)"""
    assert repr(nn.Conv2d(2, 4, 3, padding="same", dilation=2, groups=2, padding_mode="circular")) == (
        "Conv2d(2, 4, kernel_size=(3, 3), stride=(1, 1), padding=same, dilation=(2, 2), "
        "groups=2, padding_mode=circular)")


def test_forward_hooks_fire_can_replace_the_output_and_can_be_removed():
    net = Net()
    seen = []
    handle = net.fc.register_forward_hook(
        lambda module, inputs, output: seen.append((module, inputs[0].shape, output.shape)))
    x = Tensor(rand(2, 1, 8, 8))
    net(x)
    assert seen == [(net.fc, (2, 36), (2, 3))]
    handle.remove()
    net(x)
    assert len(seen) == 1
    with net.fc.register_forward_hook(lambda m, i, o: o * 0):
        assert np.all(net(x).data == 0)
    assert np.any(net(x).data != 0)


# --- initialisation -----------------------------------------------------------------------

@pytest.mark.parametrize("make, fan_in", [
    (lambda: nn.Conv2d(8, 16, 3), 8 * 9),
    (lambda: nn.Conv2d(8, 16, (3, 5), groups=4), 2 * 15),
    (lambda: nn.Linear(200, 50), 200),
])
def test_default_init_is_bounded_by_one_over_sqrt_fan_in_and_reproducible(make, fan_in):
    cyconv.manual_seed(123)
    layer = make()
    bound = np.float32(1 / math.sqrt(fan_in))
    for p in (layer.weight, layer.bias):
        assert p.dtype == np.float32
        assert np.abs(p.data).max() <= bound
        assert np.abs(p.data).max() > 0.9 * bound          # fills the range, not a smaller one
    # uniform on [-b, b]: standard deviation b / sqrt(3)
    np.testing.assert_allclose(layer.weight.data.std(), bound / math.sqrt(3), rtol=0.1)
    cyconv.manual_seed(123)
    again = make()
    np.testing.assert_array_equal(layer.weight.data, again.weight.data)
    np.testing.assert_array_equal(layer.bias.data, again.bias.data)
    cyconv.manual_seed(124)
    assert not np.array_equal(make().weight.data, layer.weight.data)


def test_init_functions():
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("leaky_relu", math.sqrt(5)) == pytest.approx(math.sqrt(1 / 3))
    assert init.calculate_gain("conv2d") == 1
    with pytest.raises(ValueError, match="nonlinearity"):
        init.calculate_gain("swish")
    cyconv.manual_seed(0)
    w = nn.Parameter(np.empty((400, 100, 3, 3), np.float32))     # fan_in 900, fan_out 3600
    assert init.kaiming_normal_(w, nonlinearity="relu") is w
    assert w.dtype == np.float32
    np.testing.assert_allclose(w.data.std(), math.sqrt(2 / 900), rtol=0.02)
    init.kaiming_uniform_(w, mode="fan_out", nonlinearity="relu")
    assert np.abs(w.data).max() <= math.sqrt(2) * math.sqrt(3 / 3600) * (1 + 1e-6)
    init.xavier_uniform_(w)
    bound = math.sqrt(6 / (900 + 3600))
    assert np.abs(w.data).max() <= bound * (1 + 1e-6) and np.abs(w.data).max() > 0.99 * bound
    init.xavier_normal_(w, gain=2.0)
    np.testing.assert_allclose(w.data.std(), 2 * math.sqrt(2 / 4500), rtol=0.02)
    init.normal_(w, mean=3.0, std=0.5)
    np.testing.assert_allclose([w.data.mean(), w.data.std()], [3.0, 0.5], rtol=0.02)
    init.constant_(w, 0.25)
    assert np.all(w.data == 0.25)
    init.zeros_(w)
    assert not w.data.any()
    init.ones_(w)
    assert np.all(w.data == 1)
    with pytest.raises(ValueError, match="2 dimensions"):
        init.kaiming_uniform_(np.zeros(5))


# --- Conv2d ---------------------------------------------------------------------------------

def _numpy_conv(layer: nn.Conv2d, x: np.ndarray, pads) -> np.ndarray:
    """The layer's output computed as np.pad (the layer's mode) + an unpadded convolution."""
    top, bottom, left, right = pads
    np_mode = {"zeros": "constant", "reflect": "reflect", "replicate": "edge",
               "circular": "wrap"}[layer.padding_mode]
    padded = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), mode=np_mode)
    bias = None if layer.bias is None else layer.bias.data
    return reference.conv2d(padded, layer.weight.data, bias, layer.stride, 0, layer.dilation,
                            layer.groups)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("kwargs, pads", [
    (dict(kernel_size=3, padding=1), (1, 1, 1, 1)),
    (dict(kernel_size=(3, 5), padding=(2, 1), stride=2), (2, 2, 1, 1)),
    (dict(kernel_size=3, padding=2, dilation=2, groups=2), (2, 2, 2, 2)),
    # 'same' with an even kernel: total padding 3 (rows) and 1 (columns), the extra
    # row/column goes at the bottom/right
    (dict(kernel_size=(4, 2), padding="same"), (1, 2, 0, 1)),
])
def test_conv2d_padding_modes_match_numpy_pad(mode, kwargs, pads):
    cyconv.manual_seed(5)
    layer = nn.Conv2d(4, 6, padding_mode=mode, dtype=np.float64, **kwargs)
    x = rand(2, 4, 7, 6, dtype=np.float64)
    out = layer(Tensor(x))
    np.testing.assert_allclose(out.data, _numpy_conv(layer, x, pads), rtol=1e-10, atol=1e-12)
    if kwargs.get("padding") == "same":
        assert out.shape == (2, 6, 7, 6)


def test_conv2d_unbatched_input_and_no_bias():
    layer = nn.Conv2d(3, 2, 3, bias=False)
    x = rand(3, 5, 5)
    assert layer.bias is None
    out = layer(Tensor(x))
    assert out.shape == (2, 3, 3)
    np.testing.assert_allclose(out.data, layer(Tensor(x[None])).data[0], rtol=1e-6)


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=(2, 3), padding="same", groups=2, padding_mode="reflect"),
    dict(kernel_size=3, padding=1, dilation=(1, 2), padding_mode="circular", bias=False),
])
def test_conv2d_module_gradients_float64(kwargs):
    layer = nn.Conv2d(2, 4, dtype=np.float64, **kwargs)
    x = Tensor(rand(2, 2, 5, 6, dtype=np.float64), requires_grad=True)
    params = [p for p in (layer.weight, layer.bias) if p is not None]
    # the parameters are the checked inputs: gradcheck nudges their arrays in place
    assert gradcheck(lambda x, *ps: layer(x), [x, *params])


def test_linear_module_gradients_float64():
    layer = nn.Linear(5, 3, dtype=np.float64)
    x = Tensor(rand(4, 5, dtype=np.float64), requires_grad=True)
    assert gradcheck(lambda x, w, b: layer(x), [x, layer.weight, layer.bias])
    np.testing.assert_allclose(layer(x).data, x.data @ layer.weight.data.T + layer.bias.data)


def test_batchnorm_gradients_float64():
    bn = nn.BatchNorm2d(3, dtype=np.float64)
    bn.weight.data[:] = [0.5, 1.5, -1.0]
    x = Tensor(rand(3, 3, 2, 2, dtype=np.float64), requires_grad=True)
    assert gradcheck(lambda x, w, b: bn(x), [x, bn.weight, bn.bias])


# --- errors ---------------------------------------------------------------------------------

def test_layer_input_errors_name_what_was_expected():
    with pytest.raises(ValueError, match="expected input with 3 channels, got 4 channels"):
        nn.Conv2d(3, 8, 3)(Tensor(rand(1, 4, 8, 8)))
    with pytest.raises(ValueError, match="4-D"):
        nn.Conv2d(3, 8, 3)(Tensor(rand(3, 8)))
    with pytest.raises(ValueError, match=r"4-D \(N, C, H, W\).*3-D input"):
        nn.BatchNorm2d(3)(Tensor(rand(2, 3, 4)))
    with pytest.raises(ValueError, match=r"2-D \(N, C\) or 3-D \(N, C, L\).*4-D input"):
        nn.BatchNorm1d(3)(Tensor(rand(2, 3, 4, 4)))
    with pytest.raises(ValueError, match="expected input with 3 channels.*got 2 channels"):
        nn.BatchNorm2d(3)(Tensor(rand(2, 2, 4, 4)))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(Tensor(rand(1, 3)))
    with pytest.raises(ValueError, match="5 features.*got shape \\(2, 4\\)"):
        nn.Linear(5, 2)(Tensor(rand(2, 4)))
    with pytest.raises(TypeError, match="float32 parameters but the input is float64"):
        nn.Linear(4, 2)(Tensor(rand(2, 4, dtype=np.float64)))
    with pytest.raises(TypeError, match="float32 parameters but the input is float64"):
        nn.Conv2d(1, 1, 1)(Tensor(rand(1, 1, 2, 2, dtype=np.float64)))


def test_constructor_errors():
    with pytest.raises(ValueError, match="padding_mode must be one of.*'zero'"):
        nn.Conv2d(3, 8, 3, padding_mode="zero")
    with pytest.raises(ValueError, match="in_channels must be divisible by groups"):
        nn.Conv2d(3, 8, 3, groups=2)
    with pytest.raises(ValueError, match="out_channels must be divisible by groups"):
        nn.Conv2d(4, 6, 3, groups=4)
    with pytest.raises(ValueError, match="strided"):
        nn.Conv2d(3, 8, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="kernel_size must be positive"):
        nn.Conv2d(3, 8, 0)
    with pytest.raises(TypeError, match="kernel_size"):
        nn.Conv2d(3, 8, 2.5)
    with pytest.raises(ValueError, match="padding must be"):
        nn.Conv2d(3, 8, 3, padding="full")
    with pytest.raises(ValueError, match="in_features must be positive"):
        nn.Linear(0, 3)
    with pytest.raises(TypeError, match="dtype"):
        nn.Linear(2, 3, dtype=np.int64)
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)
    with pytest.raises(ValueError, match="reduction"):
        nn.CrossEntropyLoss(reduction="avg")
    with pytest.raises(ValueError, match="momentum"):
        nn.BatchNorm2d(3, momentum=2)


# --- BatchNorm ------------------------------------------------------------------------------

def _batch_stats(x, axes):
    n = x.size // x.shape[1]
    return x.mean(axis=axes), x.var(axis=axes), x.var(axis=axes) * n / (n - 1)


def test_batchnorm2d_running_stats_and_eval_follow_the_formulas():
    bn = nn.BatchNorm2d(3, momentum=0.2, dtype=np.float64)
    bn.weight.data[:] = [1.0, 2.0, 0.5]
    bn.bias.data[:] = [0.0, -1.0, 3.0]
    running_mean, running_var = np.zeros(3), np.ones(3)
    for step in range(3):
        x = rand(4, 3, 5, 5, dtype=np.float64, seed=step) * (step + 1) + step
        out = bn(Tensor(x))
        mean, var, unbiased = _batch_stats(x, (0, 2, 3))
        expected = ((x - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5)
                    * bn.weight.data[:, None, None] + bn.bias.data[:, None, None])
        np.testing.assert_allclose(out.data, expected, rtol=1e-10, atol=1e-12)
        running_mean = 0.8 * running_mean + 0.2 * mean
        running_var = 0.8 * running_var + 0.2 * unbiased
        np.testing.assert_allclose(bn.running_mean, running_mean, rtol=1e-12)
        np.testing.assert_allclose(bn.running_var, running_var, rtol=1e-12)
        assert int(bn.num_batches_tracked) == step + 1
    bn.eval()
    x = rand(2, 3, 4, 4, dtype=np.float64, seed=9)
    out = bn(Tensor(x))
    expected = ((x - running_mean[:, None, None]) / np.sqrt(running_var[:, None, None] + 1e-5)
                * bn.weight.data[:, None, None] + bn.bias.data[:, None, None])
    np.testing.assert_allclose(out.data, expected, rtol=1e-10)
    np.testing.assert_allclose(bn.running_mean, running_mean)          # eval: no update
    assert int(bn.num_batches_tracked) == 3
    # in eval mode a sample's output does not depend on the rest of its batch
    np.testing.assert_allclose(bn(Tensor(x[:1])).data, out.data[:1], rtol=1e-12)


def test_batchnorm_momentum_none_is_a_cumulative_average():
    bn = nn.BatchNorm1d(2, momentum=None, dtype=np.float64)
    means = []
    for step in range(4):
        x = rand(6, 2, dtype=np.float64, seed=step) + 3 * step
        bn(Tensor(x))
        means.append(x.mean(axis=0))
    np.testing.assert_allclose(bn.running_mean, np.mean(means, axis=0), rtol=1e-12)


def test_batchnorm1d_3d_input_and_without_running_stats():
    bn = nn.BatchNorm1d(3, affine=False, track_running_stats=False)
    assert list(bn.state_dict()) == [] and list(bn.parameters()) == []
    x = rand(4, 3, 6)
    out = bn(Tensor(x)).data
    np.testing.assert_allclose(out.mean(axis=(0, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(out.var(axis=(0, 2)), 1, rtol=1e-3)
    bn.eval()                                   # no running stats: still batch statistics
    np.testing.assert_allclose(bn(Tensor(x)).data, out, rtol=1e-6)


# --- Dropout, activations, losses, pooling, containers ---------------------------------------

def test_dropout_train_and_eval():
    drop = nn.Dropout(p=0.25)
    x = Tensor(np.ones((200, 100), np.float32))
    cyconv.manual_seed(7)
    out = drop(x).data
    kept = out != 0
    assert abs(kept.mean() - 0.75) < 0.02
    np.testing.assert_allclose(out[kept], 1 / 0.75, rtol=1e-6)
    cyconv.manual_seed(7)
    np.testing.assert_array_equal(drop(x).data, out)           # reproducible
    drop.eval()
    np.testing.assert_array_equal(drop(x).data, x.data)


def test_activation_and_loss_modules():
    x = rand(3, 4)
    t = Tensor(x)
    np.testing.assert_allclose(nn.ReLU()(t).data, np.maximum(x, 0))
    np.testing.assert_allclose(nn.LeakyReLU(0.2)(t).data, np.where(x > 0, x, 0.2 * x), rtol=1e-6)
    np.testing.assert_allclose(nn.Sigmoid()(t).data, 1 / (1 + np.exp(-x)), rtol=1e-6)
    np.testing.assert_allclose(nn.Tanh()(t).data, np.tanh(x), rtol=1e-6)
    softmax = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(nn.Softmax(dim=1)(t).data, softmax, rtol=1e-5)
    np.testing.assert_allclose(nn.LogSoftmax(dim=-1)(t).data, np.log(softmax), rtol=1e-5)
    target = np.array([0, 3, 1])
    nll = -np.log(softmax[np.arange(3), target])
    np.testing.assert_allclose(nn.CrossEntropyLoss()(t, target).item(), nll.mean(), rtol=1e-5)
    np.testing.assert_allclose(nn.CrossEntropyLoss(reduction="none")(t, target).data, nll, rtol=1e-5)
    y = rand(3, 4, seed=1)
    np.testing.assert_allclose(nn.MSELoss()(t, Tensor(y)).item(), ((x - y) ** 2).mean(), rtol=1e-5)
    np.testing.assert_allclose(nn.MSELoss(reduction="sum")(t, Tensor(y)).item(), ((x - y) ** 2).sum(),
                               rtol=1e-5)
    np.testing.assert_array_equal(nn.Identity(3, unused=True)(t).data, x)
    assert nn.Flatten()(Tensor(rand(2, 3, 4, 5))).shape == (2, 60)
    assert nn.Flatten(0, 1)(Tensor(rand(2, 3, 4))).shape == (6, 4)


def test_pooling_modules():
    x = rand(2, 3, 6, 6)
    t = Tensor(x)
    np.testing.assert_allclose(nn.MaxPool2d(2)(t).data, x.reshape(2, 3, 3, 2, 3, 2).max(axis=(3, 5)))
    np.testing.assert_allclose(nn.AvgPool2d(3)(t).data, x.reshape(2, 3, 2, 3, 2, 3).mean(axis=(3, 5)),
                               rtol=1e-5)
    np.testing.assert_allclose(nn.AdaptiveAvgPool2d(1)(t).data, x.mean(axis=(2, 3), keepdims=True),
                               rtol=1e-5)
    out, indices = nn.MaxPool2d(3, stride=1, padding=1, return_indices=True)(t)
    assert out.shape == (2, 3, 6, 6) and indices.shape == (2, 3, 6, 6)
    np.testing.assert_allclose(nn.MaxPool2d(2, ceil_mode=True)(Tensor(rand(1, 1, 5, 5))).shape,
                               (1, 1, 3, 3))
    assert nn.AdaptiveAvgPool2d((None, 2))(t).shape == (2, 3, 6, 2)
    with pytest.raises(ValueError, match="4-D"):
        nn.MaxPool2d(2)(Tensor(rand(6, 6)))
    with pytest.raises(ValueError, match="output_size"):
        nn.AdaptiveAvgPool2d((2, 0))


def test_containers():
    a, b, c = nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)
    seq = nn.Sequential(a, b, c)
    assert len(seq) == 3 and list(seq) == [a, b, c]
    assert seq[0] is a and seq[-1] is c
    head = seq[1:]
    assert isinstance(head, nn.Sequential) and list(head) == [b, c]
    assert list(head.state_dict()) == ["2.weight", "2.bias"]     # names kept, as PyTorch
    x = Tensor(rand(4, 2))
    np.testing.assert_allclose(seq(x).data, c(b(a(x))).data)
    seq.append(nn.Sigmoid())
    assert len(seq) == 4 and isinstance(seq[3], nn.Sigmoid)
    del seq[1]
    assert [type(m).__name__ for m in seq] == ["Linear", "Linear", "Sigmoid"]
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    with pytest.raises(IndexError):
        seq[5]
    named = nn.Sequential(OrderedDict([("fc", nn.Linear(2, 2)), ("act", nn.Tanh())]))
    assert list(named.state_dict()) == ["fc.weight", "fc.bias"] and named.act is named[1]
    with pytest.raises(TypeError, match="argument 1"):
        nn.Sequential(nn.ReLU(), lambda x: x)

    blocks = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    assert len(blocks) == 3 and len(list(blocks.parameters())) == 6
    blocks.insert(0, nn.Identity())
    assert isinstance(blocks[0], nn.Identity) and list(blocks.state_dict())[0] == "1.weight"
    heads = nn.ModuleDict({"cls": nn.Linear(4, 3), "box": nn.Linear(4, 4)})
    assert list(heads.keys()) == ["cls", "box"] and "box" in heads
    assert list(heads.state_dict()) == ["cls.weight", "cls.bias", "box.weight", "box.bias"]


# --- PyTorch cross-checks ------------------------------------------------------------------------

def _torch():
    torch = pytest.importorskip("torch")
    return torch


@pytest.mark.filterwarnings("ignore:Using padding='same'")   # PyTorch's note on a copy it makes
@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3, padding=1),
    dict(kernel_size=(3, 2), padding=(1, 2), stride=(2, 1), dilation=(1, 2)),
    dict(kernel_size=4, padding="same", groups=2),
])
def test_conv2d_matches_torch(mode, kwargs):
    torch = _torch()
    ours = nn.Conv2d(4, 6, padding_mode=mode, dtype=np.float64, **kwargs)
    theirs = torch.nn.Conv2d(4, 6, padding_mode=mode, dtype=torch.float64, **kwargs)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    x = rand(2, 4, 7, 8, dtype=np.float64)
    expected = theirs(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(ours(Tensor(x)).data, expected, rtol=1e-10, atol=1e-12)
    assert repr(ours) == repr(theirs)


def test_batchnorm2d_matches_torch_in_train_and_eval():
    torch = _torch()
    ours = nn.BatchNorm2d(3, momentum=0.3)
    theirs = torch.nn.BatchNorm2d(3, momentum=0.3)
    ours.weight.data[:] = [0.5, 1.0, 2.0]
    ours.bias.data[:] = [0.1, -0.2, 0.3]
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    for step in range(3):
        x = rand(4, 3, 5, 5, seed=step) * 2 + step
        np.testing.assert_allclose(ours(Tensor(x)).data,
                                   theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-5)
    theirs_sd = theirs.state_dict()
    assert list(ours.state_dict()) == list(theirs_sd)
    for key, value in ours.state_dict().items():
        np.testing.assert_allclose(value, theirs_sd[key].numpy(), rtol=1e-5, err_msg=key)
    ours.eval(), theirs.eval()
    x = rand(2, 3, 4, 4, seed=10)
    np.testing.assert_allclose(ours(Tensor(x)).data, theirs(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    # and the other way round: PyTorch's state dict (torch Tensors) loads directly
    fresh = nn.BatchNorm2d(3)
    fresh.load_state_dict(theirs.state_dict())
    assert int(fresh.num_batches_tracked) == 3


def test_linear_matches_torch():
    torch = _torch()
    ours = nn.Linear(7, 4)
    theirs = torch.nn.Linear(7, 4)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    x = rand(5, 7)
    np.testing.assert_allclose(ours(Tensor(x)).data, theirs(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    assert repr(ours) == repr(theirs)
