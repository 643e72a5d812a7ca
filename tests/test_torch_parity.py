"""cyconv's models against their PyTorch twins (cyconv.models.torch_twins): same function,
same gradients, same optimizer steps, and weights that move both ways.

Each comparison starts from one set of weights: the cyconv model's, with its BatchNorm
scales, shifts and running statistics set to random values (so that no BatchNorm is the
identity), copied into the twin. Then both see the same batches.

Precision: the forward/backward comparisons run in float32, the default dtype, with a
relative tolerance of 1e-4 and an absolute one scaled by the size of the values compared.
The 5-step training comparisons run in float64 (``model.double()`` / ``twin.double()``):
in float32 the two libraries' rounding differs in the last bits, and training amplifies it
- VGGSmall at lr=0.05 jumps to a loss of 9.5 at step 3 and its parameters then differ by
up to a third, and Adam turns the rounding noise of the zero gradients of the convolution
biases that feed a BatchNorm into full steps of size lr. In float64 they agree to about
1e-12. A float32 run on the two models whose training is tame (LeNet5, DigitsNet) is kept,
with float32 tolerances, to show that the default dtype trains alike too.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import cyconv  # noqa: E402
from cyconv import Tensor, models, optim  # noqa: E402
from cyconv import functional as F  # noqa: E402
from cyconv.models.torch_twins import to_numpy_state_dict, torch_twin  # noqa: E402

#: id -> (model name, kwargs, input shape of one batch); small batches keep the file quick
CONFIGS = {
    "lenet5_28": ("lenet5", dict(input_size=28), (6, 1, 28, 28)),
    "lenet5_32": ("lenet5", {}, (6, 1, 32, 32)),
    "lenet5_tanh_avg": ("lenet5", dict(in_channels=3, num_classes=7, activation="tanh",
                                       pooling="avg"), (6, 3, 32, 32)),
    "digits_net": ("digits_net", {}, (6, 1, 8, 8)),
    # dropout=0: the two libraries draw different masks; dropout itself is compared in eval
    # mode below (test_torch_state_dict_loads_into_cyconv uses the default p=0.5)
    "vgg_small_bn": ("vgg_small", dict(batch_norm=True, dropout=0.0), (6, 3, 32, 32)),
    "resnet_small": ("resnet_small", {}, (6, 3, 16, 16)),
}
WITH_BATCH_NORM = ("vgg_small_bn", "resnet_small")
TRAINED = ("lenet5_28", "lenet5_32", "digits_net", "vgg_small_bn", "resnet_small")

OPTIMIZERS = {
    "sgd": (lambda p: optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=5e-4),
            lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=5e-4)),
    "sgd_nesterov": (lambda p: optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True),
                     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=5e-4,
                                               nesterov=True)),
    "adam": (lambda p: optim.Adam(p, lr=1e-3), lambda p: torch.optim.Adam(p, lr=1e-3)),
    "adamw": (lambda p: optim.AdamW(p, lr=1e-3), lambda p: torch.optim.AdamW(p, lr=1e-3)),
}

TORCH_DTYPE = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


# --- helpers ------------------------------------------------------------------------------------

def to_torch_state_dict(state_dict):
    return {key: torch.from_numpy(np.array(value)) for key, value in state_dict.items()}


def randomise_batch_norm(model, rng):
    """Random BatchNorm scales, shifts and running statistics (in place): not the identity."""
    state = model.state_dict()
    for key, value in state.items():
        layer = key.rsplit(".", 1)[0]
        if layer + ".running_var" not in state:
            continue                                   # not a BatchNorm
        if key.endswith(".weight") or key.endswith(".running_var"):
            state[key] = rng.uniform(0.5, 1.5, value.shape)
        elif key.endswith(".bias") or key.endswith(".running_mean"):
            state[key] = 0.1 * rng.standard_normal(value.shape)
        elif key.endswith(".num_batches_tracked"):
            state[key] = np.array(3, dtype=np.int64)
    model.load_state_dict(state)


def twins(config, dtype=np.float32, seed=0):
    """(cyconv model, torch twin with the same weights, the config's input shape)."""
    name, kwargs, shape = CONFIGS[config]
    cyconv.manual_seed(seed)
    ours = models.get_model(name, **kwargs).to(dtype)
    randomise_batch_norm(ours, np.random.default_rng(seed))
    theirs = torch_twin(name, **kwargs).to(TORCH_DTYPE[np.dtype(dtype)])
    theirs.load_state_dict(to_torch_state_dict(ours.state_dict()))
    return ours, theirs, shape


def batch(shape, classes, dtype, rng):
    return rng.standard_normal(shape).astype(dtype), rng.integers(0, classes, shape[0])


def assert_close(ours, theirs, scale=None, rtol=1e-4, atol=1e-5, what=""):
    """``|ours - theirs| <= atol * scale + rtol * |theirs|``, scale defaulting to max |theirs|.

    The absolute part is relative to a *scale* so that one tolerance serves logits of 10 and
    gradients of 1e-3; values near zero (e.g. the gradient of a convolution bias that feeds a
    BatchNorm, which is 0 up to rounding) are compared against the scale of their layer set.
    """
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    scale = float(np.abs(theirs).max()) if scale is None else scale
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol * scale + 1e-30, err_msg=what)


def torch_parameters(model):
    return {name: p for name, p in model.named_parameters()}


def compare_buffers(ours, theirs, rtol=1e-5, atol=1e-7):
    their_buffers = dict(theirs.named_buffers())
    our_buffers = dict(ours.named_buffers())
    assert list(our_buffers) == list(their_buffers)
    for name, value in our_buffers.items():
        expected = their_buffers[name].numpy()
        if name.endswith("num_batches_tracked"):
            assert int(value) == int(expected), name
        else:
            np.testing.assert_allclose(value, expected, rtol=rtol, atol=atol, err_msg=name)


# --- architecture -------------------------------------------------------------------------------

@pytest.mark.parametrize("name, kwargs", [
    ("lenet5", {}), ("lenet5", dict(input_size=28)),
    ("lenet5", dict(activation="sigmoid", pooling="avg", num_classes=3)),
    ("digits_net", dict(input_size=16, widths=(4, 6), hidden=5)),
    ("vgg_small", {}), ("vgg_small", dict(batch_norm=True, widths=(8, 16), convs_per_block=3,
                                          input_size=16)),
    ("resnet_small", {}), ("resnet_small", dict(widths=(4, 8, 16, 32), blocks_per_stage=(1, 2, 1, 3))),
    ("ResNet-Small", dict(in_channels=1)),
])
def test_twin_has_the_same_keys_shapes_and_layers(name, kwargs):
    ours, theirs = models.get_model(name, **kwargs), torch_twin(name, **kwargs)
    ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
    assert list(ours_sd) == list(theirs_sd)                          # same keys, same order
    for key, value in ours_sd.items():
        assert value.shape == tuple(theirs_sd[key].shape), key
        assert value.dtype == theirs_sd[key].numpy().dtype, key    # float32 / int64
    # the same layers with the same hyper-parameters (PyTorch >= 2.13 also prints BatchNorm's
    # ``bias=`` option, which cyconv lacks)
    assert repr(ours) == repr(theirs).replace(", bias=True, track_running_stats", ", track_running_stats")
    assert theirs.training


def test_twin_argument_errors():
    with pytest.raises(ValueError, match="no PyTorch twin for model 'alexnet'.*lenet5"):
        torch_twin("alexnet")
    with pytest.raises(TypeError, match="model name must be a str"):
        torch_twin(5)
    with pytest.raises(TypeError, match="LeNet5.*unexpected keyword argument 'dropout'"):
        torch_twin("lenet5", dropout=0.5)
    with pytest.raises(ValueError, match="DigitsNet"):
        torch_twin("lenet5", input_size=8)
    with pytest.raises(ValueError, match="activation"):
        torch_twin("lenet5", activation="gelu")
    with pytest.raises(ValueError, match="divisible by 2\\*\\*len\\(widths\\) = 8"):
        torch_twin("vgg_small", input_size=20)
    with pytest.raises(ValueError, match="same length"):
        torch_twin("resnet_small", widths=(8, 16), blocks_per_stage=(1,))
    with pytest.raises(TypeError, match="num_classes must be an int"):
        torch_twin("digits_net", num_classes=2.5)


def test_cyconv_does_not_need_torch():
    """With PyTorch unimportable: cyconv and this module import, to_numpy_state_dict works,
    and asking for a twin says how to install PyTorch."""
    code = textwrap.dedent("""
        import sys
        sys.modules["torch"] = None            # makes `import torch` raise ImportError
        import numpy as np
        import cyconv, cyconv.models
        from cyconv.models.torch_twins import to_numpy_state_dict, torch_twin
        sd = to_numpy_state_dict(cyconv.models.LeNet5().state_dict())
        assert isinstance(sd["features.0.weight"], np.ndarray)
        try:
            torch_twin("lenet5")
        except ImportError as error:
            print(error)
        else:
            raise SystemExit("no ImportError")
    """)
    # run from the tests folder: from the repository root, the source folder (no compiled
    # kernels) would shadow the installed package
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, cwd=pathlib.Path(__file__).resolve().parent)
    assert result.returncode == 0, result.stderr
    assert "pip install torch==2.13.0" in result.stdout


# --- one forward and backward pass (float32) ---------------------------------------------------

@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_forward_backward_parity(config, mode):
    ours, theirs, shape = twins(config)
    ours.train(mode == "train"), theirs.train(mode == "train")
    x, target = batch(shape, ours.num_classes, np.float32, np.random.default_rng(1))

    x_ours = Tensor(x, requires_grad=True)
    logits = ours(x_ours)
    loss = F.cross_entropy(logits, target)
    loss.backward()

    x_theirs = torch.from_numpy(x).requires_grad_()
    their_logits = theirs(x_theirs)
    their_loss = torch.nn.functional.cross_entropy(their_logits, torch.from_numpy(target))
    their_loss.backward()

    assert logits.dtype == np.float32
    assert_close(logits.data, their_logits, what="logits")
    assert loss.item() == pytest.approx(their_loss.item(), rel=1e-5)
    assert_close(x_ours.grad, x_theirs.grad, what="input gradient")

    their_params = torch_parameters(theirs)
    assert [n for n, _ in ours.named_parameters()] == list(their_params)
    scale = max(float(p.grad.abs().max()) for p in their_params.values())
    for name, p in ours.named_parameters():
        assert p.grad is not None and p.grad.dtype == np.float32, name
        assert_close(p.grad, their_params[name].grad, scale=scale, what=name)

    # running statistics: updated by the training-mode forward, untouched in eval mode
    compare_buffers(ours, theirs)
    if config in WITH_BATCH_NORM:
        tracked = [int(v) for n, v in ours.named_buffers() if n.endswith("num_batches_tracked")]
        assert set(tracked) == ({4} if mode == "train" else {3})


def test_bias_before_batch_norm_has_no_gradient_in_either():
    """A convolution bias followed by a training-mode BatchNorm is subtracted out again with
    the batch mean, so its true gradient is 0; both libraries give rounding noise only. (Why
    the tolerances above are scaled by the model's largest gradient.)"""
    ours, theirs, shape = twins("vgg_small_bn")
    x, target = batch(shape, 10, np.float32, np.random.default_rng(2))
    F.cross_entropy(ours(Tensor(x)), target).backward()
    torch.nn.functional.cross_entropy(theirs(torch.from_numpy(x)), torch.from_numpy(target)).backward()
    their_params = torch_parameters(theirs)
    largest = max(float(p.grad.abs().max()) for p in their_params.values())
    for index in (0, 3, 7):                   # convolutions, each followed by a BatchNorm
        name = f"features.{index}.bias"
        assert np.abs(dict(ours.named_parameters())[name].grad).max() < 1e-5 * largest
        assert float(their_params[name].grad.abs().max()) < 1e-5 * largest


# --- training: 5 optimizer steps on the same batches -------------------------------------------

def train_both(config, optimizer, dtype, steps=5):
    ours, theirs, shape = twins(config, dtype)
    make_ours, make_theirs = OPTIMIZERS[optimizer]
    opt_ours, opt_theirs = make_ours(ours.parameters()), make_theirs(theirs.parameters())
    rng = np.random.default_rng(3)
    losses = []
    for _ in range(steps):
        x, target = batch(shape, ours.num_classes, dtype, rng)
        opt_ours.zero_grad()
        loss = F.cross_entropy(ours(Tensor(x)), target)
        loss.backward()
        opt_ours.step()

        opt_theirs.zero_grad()
        their_loss = torch.nn.functional.cross_entropy(theirs(torch.from_numpy(x)),
                                                       torch.from_numpy(target))
        their_loss.backward()
        opt_theirs.step()
        losses.append((loss.item(), their_loss.item()))
    return ours, theirs, losses


def compare_parameters(ours, theirs, rtol, atol):
    their_params = torch_parameters(theirs)
    for name, p in ours.named_parameters():
        expected = their_params[name].detach().numpy()
        assert p.dtype == expected.dtype, name
        np.testing.assert_allclose(p.data, expected, rtol=rtol,
                                   atol=atol * float(np.abs(expected).max()), err_msg=name)


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("config", TRAINED)
def test_training_parity_float64(config, optimizer):
    ours, theirs, losses = train_both(config, optimizer, np.float64)
    for step, (loss, their_loss) in enumerate(losses):
        assert loss == pytest.approx(their_loss, rel=1e-9), f"loss of step {step}"
    # observed: at most ~4e-9 of the largest value of a tensor (VGG + Adam, on the biases
    # with zero gradients described above), ~1e-12 elsewhere
    compare_parameters(ours, theirs, rtol=1e-7, atol=1e-7)
    compare_buffers(ours, theirs, rtol=1e-7, atol=1e-9)         # BatchNorm running statistics


@pytest.mark.parametrize("optimizer", ["sgd_nesterov", "adamw"])
@pytest.mark.parametrize("config", ["lenet5_28", "digits_net"])
def test_training_parity_float32(config, optimizer):
    ours, theirs, losses = train_both(config, optimizer, np.float32)
    for loss, their_loss in losses:
        assert loss == pytest.approx(their_loss, rel=1e-5)
    compare_parameters(ours, theirs, rtol=1e-4, atol=1e-4)


# --- weights from PyTorch -----------------------------------------------------------------------

@pytest.mark.parametrize("as_numpy", [True, False], ids=["to_numpy_state_dict", "torch_tensors"])
@pytest.mark.parametrize("name, kwargs, shape", [
    ("lenet5", dict(input_size=28), (16, 1, 28, 28)),
    ("lenet5", {}, (16, 1, 32, 32)),
    ("digits_net", {}, (16, 1, 8, 8)),
    ("vgg_small", dict(batch_norm=True), (16, 3, 32, 32)),       # dropout p=0.5, eval mode
    ("resnet_small", {}, (16, 3, 16, 16)),
])
def test_torch_state_dict_loads_into_cyconv(name, kwargs, shape, as_numpy):
    torch.manual_seed(0)
    theirs = torch_twin(name, **kwargs)
    rng = np.random.default_rng(4)
    with torch.no_grad():                     # move the running statistics away from 0 and 1
        for _ in range(2):
            theirs(torch.from_numpy(rng.standard_normal(shape).astype(np.float32)))
    theirs.eval()
    state = theirs.state_dict()
    ours = models.get_model(name, **kwargs)
    ours.load_state_dict(to_numpy_state_dict(state) if as_numpy else state)
    ours.eval()

    for key, value in ours.state_dict().items():
        np.testing.assert_array_equal(value, state[key].numpy(), err_msg=key)
    x = rng.standard_normal(shape).astype(np.float32)
    logits = ours(Tensor(x)).data
    with torch.no_grad():
        their_logits = theirs(torch.from_numpy(x)).numpy()
    assert_close(logits, their_logits, what="logits")
    np.testing.assert_array_equal(logits.argmax(1), their_logits.argmax(1))


def test_to_numpy_state_dict_copies():
    theirs = torch_twin("resnet_small", widths=(4, 8), blocks_per_stage=(1, 1))
    state = theirs.state_dict()
    arrays = to_numpy_state_dict(state)
    assert list(arrays) == list(state)
    assert all(isinstance(v, np.ndarray) for v in arrays.values())
    assert arrays["bn1.num_batches_tracked"].dtype == np.int64 and arrays["bn1.num_batches_tracked"].shape == ()
    assert arrays["conv1.weight"].dtype == np.float32
    before = arrays["conv1.weight"].copy()
    with torch.no_grad():
        theirs.conv1.weight.add_(1.0)         # the state dict's tensors share this memory
    np.testing.assert_array_equal(arrays["conv1.weight"], before)
    with pytest.raises(TypeError, match="mapping"):
        to_numpy_state_dict([("a", 1)])
