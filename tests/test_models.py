"""Tests of cyconv.models: shapes, parameter counts, state-dict keys, training steps."""

from __future__ import annotations

import numpy as np
import pytest

import cyconv
from cyconv import Tensor, models, nn
from cyconv.models.torch_twins import torch_twin


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def conv_params(c_in, c_out, k, bias=True):
    return c_out * c_in * k * k + (c_out if bias else 0)


def linear_params(n_in, n_out):
    return n_out * n_in + n_out


# --- shapes -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name, kwargs, input_shape, classes", [
    ("lenet5", {}, (2, 1, 32, 32), 10),
    ("lenet5", dict(input_size=28), (2, 1, 28, 28), 10),
    ("lenet5", dict(in_channels=3, num_classes=7, activation="tanh", pooling="avg"), (2, 3, 32, 32), 7),
    ("digits_net", {}, (2, 1, 8, 8), 10),
    ("digits_net", dict(input_size=16, num_classes=4), (2, 1, 16, 16), 4),
    ("vgg_small", {}, (2, 3, 32, 32), 10),
    ("vgg_small", dict(widths=(8, 16), input_size=16, batch_norm=True, num_classes=5), (2, 3, 16, 16), 5),
    ("resnet_small", {}, (2, 3, 32, 32), 10),
    ("resnet_small", dict(widths=(4, 8), blocks_per_stage=(1, 1), in_channels=1), (2, 1, 20, 20), 10),
])
def test_output_shapes(name, kwargs, input_shape, classes):
    model = models.get_model(name, **kwargs)
    assert model(Tensor(rand(*input_shape))).shape == (input_shape[0], classes)


def test_lenet5_intermediate_shapes():
    model = models.LeNet5(input_size=28)
    shapes = []
    for layer in model.features:
        layer.register_forward_hook(lambda m, i, o: shapes.append(o.shape))
    model(Tensor(rand(3, 1, 28, 28)))
    assert shapes == [(3, 6, 28, 28), (3, 6, 28, 28), (3, 6, 14, 14),
                      (3, 16, 10, 10), (3, 16, 10, 10), (3, 16, 5, 5)]


# --- parameter counts, worked out by hand ---------------------------------------------------------

def test_lenet5_parameter_count():
    # C1 6*1*5*5+6 = 156, C3 16*6*5*5+16 = 2416, F5 400*120+120 = 48120,
    # F6 120*84+84 = 10164, output 84*10+10 = 850
    assert count(models.LeNet5()) == 156 + 2416 + 48120 + 10164 + 850 == 61706
    assert count(models.LeNet5(input_size=28)) == 61706          # padding adds no weights
    assert count(models.LeNet5(in_channels=3, num_classes=100)) == 61706 + 2 * 150 - 850 + 8500


def test_digits_net_parameter_count():
    assert count(models.DigitsNet()) == (conv_params(1, 16, 3) + conv_params(16, 32, 3)
                                         + linear_params(32 * 2 * 2, 64) + linear_params(64, 10)) == 13706


def test_vgg_small_parameter_count():
    convs = (conv_params(3, 32, 3) + conv_params(32, 32, 3) + conv_params(32, 64, 3)
             + conv_params(64, 64, 3) + conv_params(64, 128, 3) + conv_params(128, 128, 3))
    head = linear_params(128 * 4 * 4, 256) + linear_params(256, 10)
    assert count(models.VGGSmall()) == convs + head == 814122
    bn = 2 * (32 + 32 + 64 + 64 + 128 + 128)
    assert count(models.VGGSmall(batch_norm=True)) == 814122 + bn


def test_resnet_small_parameter_count():
    def block(c_in, c_out, downsample):
        total = conv_params(c_in, c_out, 3, bias=False) + conv_params(c_out, c_out, 3, bias=False) + 4 * c_out
        return total + (c_in * c_out + 2 * c_out if downsample else 0)

    stem = conv_params(3, 16, 3, bias=False) + 2 * 16
    stages = (2 * block(16, 16, False) + block(16, 32, True) + block(32, 32, False)
              + block(32, 64, True) + block(64, 64, False))
    assert count(models.ResNetSmall()) == stem + stages + linear_params(64, 10) == 175258


# --- names --------------------------------------------------------------------------------------

LENET_KEYS = ["features.0.weight", "features.0.bias", "features.3.weight", "features.3.bias",
              "classifier.0.weight", "classifier.0.bias", "classifier.2.weight",
              "classifier.2.bias", "classifier.4.weight", "classifier.4.bias"]


def test_lenet5_state_dict_keys():
    assert list(models.LeNet5().state_dict()) == LENET_KEYS


def test_resnet_state_dict_names_follow_torchvision():
    keys = list(models.ResNetSmall().state_dict())
    assert keys[:7] == ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean",
                        "bn1.running_var", "bn1.num_batches_tracked", "layer1.0.conv1.weight"]
    assert "layer2.0.downsample.0.weight" in keys and "layer2.0.downsample.1.running_var" in keys
    assert "layer1.0.downsample.0.weight" not in keys and "layer2.1.downsample.0.weight" not in keys
    assert keys[-2:] == ["fc.weight", "fc.bias"]


def test_registry():
    assert set(models.list_models()) >= {"lenet5", "digits_net", "vgg_small", "resnet_small"}
    assert isinstance(models.get_model("LeNet5"), models.LeNet5)
    assert isinstance(models.get_model("resnet-small", num_classes=3), models.ResNetSmall)
    with pytest.raises(ValueError, match="unknown model 'alexnet'.*lenet5"):
        models.get_model("alexnet")
    # every registered model takes the same three data arguments
    for name in models.list_models():
        size = 8 if name == "digits_net" else 32
        model = models.get_model(name, num_classes=3, in_channels=2, input_size=size)
        assert model(Tensor(rand(2, 2, size, size))).shape == (2, 3), name


def test_model_argument_errors():
    with pytest.raises(ValueError, match="DigitsNet"):
        models.LeNet5(input_size=8)
    with pytest.raises(ValueError, match="activation"):
        models.LeNet5(activation="gelu")
    with pytest.raises(ValueError, match="divisible by 2\\*\\*len\\(widths\\) = 8"):
        models.VGGSmall(input_size=20)
    with pytest.raises(ValueError, match="same length"):
        models.ResNetSmall(widths=(8, 16), blocks_per_stage=(1,))


# --- residual block -----------------------------------------------------------------------------

def test_basic_block_identity_path_carries_gradient():
    block = models.BasicBlock(4, 4)
    assert block.downsample is None
    # With bn2's scale and shift at 0 the residual branch outputs 0, so the block is
    # relu(x): the whole gradient must come through the identity shortcut.
    block.bn2.weight.data[:] = 0
    x = Tensor(rand(2, 4, 5, 5), requires_grad=True)
    out = block(x)
    np.testing.assert_allclose(out.data, np.maximum(x.data, 0), atol=1e-6)
    out.sum().backward()
    np.testing.assert_array_equal(x.grad, (x.data > 0).astype(np.float32))
    # and the residual branch still gets its gradient (through bn2's weight)
    assert block.bn2.weight.grad is not None and np.abs(block.bn2.weight.grad).sum() > 0


def test_basic_block_with_downsample_backward_reaches_both_branches():
    block = models.BasicBlock(3, 6, stride=2)
    assert isinstance(block.downsample, nn.Sequential)
    x = Tensor(rand(2, 3, 8, 8), requires_grad=True)
    out = block(x)
    assert out.shape == (2, 6, 4, 4)
    out.sum().backward()
    for name in ("conv1.weight", "conv2.weight", "bn2.weight", "downsample.0.weight", "downsample.1.weight"):
        grad = dict(block.named_parameters())[name].grad
        assert grad is not None and np.abs(grad).sum() > 0, name
    assert x.grad.shape == x.shape and np.abs(x.grad).sum() > 0


# --- a training step of each model --------------------------------------------------------------

@pytest.mark.parametrize("name, input_shape, kwargs", [
    ("lenet5", (4, 1, 32, 32), {}),
    ("digits_net", (4, 1, 8, 8), {}),
    ("vgg_small", (4, 3, 32, 32), dict(batch_norm=True)),
    ("resnet_small", (4, 3, 32, 32), {}),
])
def test_forward_backward_gives_finite_gradients_for_every_parameter(name, input_shape, kwargs):
    cyconv.manual_seed(0)
    model = models.get_model(name, **kwargs)
    x, target = Tensor(rand(*input_shape)), np.arange(input_shape[0]) % 10
    cyconv.manual_seed(1)                       # fixes VGG's dropout masks
    logits = model(x)
    assert logits.dtype == np.float32
    loss = nn.CrossEntropyLoss()(logits, target)
    assert np.isfinite(loss.item())
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert p.grad.dtype == np.float32 and p.grad.shape == p.shape, pname
        assert np.isfinite(p.grad).all(), pname
    # the gradient points uphill: a small step against it lowers the loss on this batch
    for p in model.parameters():
        p.data -= 1e-3 * p.grad
    cyconv.manual_seed(1)                       # the same dropout masks again
    assert nn.CrossEntropyLoss()(model(x), target).item() < loss.item()


# --- PyTorch twins ------------------------------------------------------------------------------

# The twins are cyconv.models.torch_twins.torch_twin (tests/test_torch_parity.py checks them in
# depth: gradients, optimizer steps, every model).

@pytest.mark.parametrize("name, input_shape", [
    ("lenet5", (3, 1, 32, 32)),
    ("resnet_small", (3, 3, 16, 16)),
])
def test_models_match_their_torch_twins(name, input_shape):
    torch = pytest.importorskip("torch")
    ours = models.get_model(name)
    theirs = torch_twin(name)
    ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
    assert list(ours_sd) == list(theirs_sd)
    assert {k: v.shape for k, v in ours_sd.items()} == {k: tuple(v.shape) for k, v in theirs_sd.items()}
    # our weights into the twin: the same outputs, in training and in evaluation mode
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours_sd.items()})
    # (PyTorch >= 2.13 also prints BatchNorm's new ``bias=`` option, which cyconv lacks)
    assert repr(ours) == repr(theirs).replace(", bias=True, track_running_stats", ", track_running_stats")
    x = rand(*input_shape)
    for mode in (True, False):
        ours.train(mode), theirs.train(mode)
        np.testing.assert_allclose(ours(Tensor(x)).data, theirs(torch.from_numpy(x)).detach().numpy(),
                                   rtol=1e-4, atol=1e-5)
    # and the twin's state dict (torch Tensors, after two forward passes in training mode,
    # so with moved running statistics) loads back into ours
    ours.load_state_dict(theirs.state_dict())
