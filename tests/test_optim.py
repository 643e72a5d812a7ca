"""Tests of cyconv.optim: SGD, Adam, AdamW and the learning-rate schedulers.

1. hand-worked values for two steps on a two-element parameter;
2. a few steps against the update formulas written out here in NumPy, independently of
   the implementation (one function per optimizer, the formula as in the papers/docs);
3. (when PyTorch is installed) the same parameters as torch.optim after 5 steps;
4. state: state_dict layout, resuming from a state dict, zero_grad, parameters without a
   gradient, parameter groups, in-place float32 updates;
5. bad arguments are refused with a message that names them;
6. learning-rate schedulers.
"""

from __future__ import annotations

import numpy as np
import pytest

import cyconv
from cyconv.optim import SGD, Adam, AdamW, Optimizer
from cyconv.optim.lr_scheduler import CosineAnnealingLR, StepLR

STEPS = 5


def param(values, dtype=np.float64):
    return cyconv.Tensor(np.array(values, dtype=dtype), requires_grad=True)


def gradient_sequence(shape, n=STEPS, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for _ in range(n)]


def run(optimizer_class, p0, grads, **kwargs):
    """Final parameter values after one step per gradient."""
    p = param(p0)
    opt = optimizer_class([p], **kwargs)
    for g in grads:
        p.grad = np.array(g, dtype=p.dtype)
        opt.step()
    return p.data


# --- the update rules, written out ----------------------------------------------------------

def sgd_formula(p0, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    p = np.array(p0, dtype=np.float64)
    velocity = None
    for t, g in enumerate(grads):
        d = g + weight_decay * p
        if momentum:
            if t == 0:
                velocity = d
            else:
                velocity = momentum * velocity + (1.0 - dampening) * d
            d = d + momentum * velocity if nesterov else velocity
        p = p - lr * d
    return p


def adam_formula(p0, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, decoupled=False):
    beta1, beta2 = betas
    p = np.array(p0, dtype=np.float64)
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    v_max = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        if decoupled:
            p = p - lr * weight_decay * p
        else:
            g = g + weight_decay * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g ** 2
        m_hat = m / (1 - beta1 ** t)
        if amsgrad:
            v_max = np.maximum(v_max, v)
            v_hat = v_max / (1 - beta2 ** t)
        else:
            v_hat = v / (1 - beta2 ** t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


SGD_CONFIGS = {
    "plain": dict(lr=0.1),
    "momentum": dict(lr=0.1, momentum=0.9),
    "dampening": dict(lr=0.05, momentum=0.8, dampening=0.3),
    "nesterov": dict(lr=0.1, momentum=0.9, nesterov=True),
    "weight_decay": dict(lr=0.1, weight_decay=0.05),
    "everything": dict(lr=0.07, momentum=0.5, weight_decay=0.1, nesterov=True),
}
ADAM_CONFIGS = {
    "defaults": dict(),
    "large lr, betas": dict(lr=0.05, betas=(0.8, 0.99)),
    "eps": dict(lr=0.01, eps=1e-2),
    "weight_decay": dict(lr=0.01, weight_decay=0.1),
    "amsgrad": dict(lr=0.02, amsgrad=True),
    "amsgrad + weight_decay": dict(lr=0.02, amsgrad=True, weight_decay=0.3),
}
ADAMW_CONFIGS = {
    "defaults": dict(),
    "strong decay": dict(lr=0.05, weight_decay=0.5),
    "amsgrad": dict(lr=0.02, amsgrad=True, weight_decay=0.1, betas=(0.5, 0.9)),
    "no decay": dict(lr=0.01, weight_decay=0.0),
}
ALL_CONFIGS = ([(SGD, k, v) for k, v in SGD_CONFIGS.items()]
               + [(Adam, k, v) for k, v in ADAM_CONFIGS.items()]
               + [(AdamW, k, v) for k, v in ADAMW_CONFIGS.items()])
ALL_IDS = [f"{cls.__name__}-{name}" for cls, name, _ in ALL_CONFIGS]


# --- 1. hand-worked values ----------------------------------------------------------------

# p0 = [1, 2], lr = 0.1, gradients g1 = [1, -1], g2 = [1, 1]
@pytest.mark.parametrize("kwargs, after_1, after_2", [
    # p1 = p0 - 0.1 g1;  p2 = p1 - 0.1 g2
    (dict(lr=0.1), [0.9, 2.1], [0.8, 2.0]),
    # buf1 = g1; buf2 = 0.9 buf1 + g2 = [1.9, 0.1]
    (dict(lr=0.1, momentum=0.9), [0.9, 2.1], [0.71, 2.09]),
    # buf1 = g1 (no dampening on the first step); buf2 = 0.9 g1 + 0.5 g2 = [1.4, -0.4]
    (dict(lr=0.1, momentum=0.9, dampening=0.5), [0.9, 2.1], [0.76, 2.14]),
    # d1 = g1 + 0.9 buf1 = [1.9, -1.9];  d2 = g2 + 0.9 [1.9, 0.1] = [2.71, 1.09]
    (dict(lr=0.1, momentum=0.9, nesterov=True), [0.81, 2.19], [0.539, 2.081]),
    # d1 = g1 + 0.1 [1, 2] = [1.1, -0.8];  d2 = g2 + 0.1 [0.89, 2.08] = [1.089, 1.208]
    (dict(lr=0.1, weight_decay=0.1), [0.89, 2.08], [0.7811, 1.9592]),
], ids=["plain", "momentum", "dampening", "nesterov", "weight_decay"])
def test_sgd_hand_worked(kwargs, after_1, after_2):
    p = param([1.0, 2.0])
    opt = SGD([p], **kwargs)
    p.grad = np.array([1.0, -1.0])
    opt.step()
    np.testing.assert_allclose(p.data, after_1, rtol=0, atol=1e-12)
    p.grad = np.array([1.0, 1.0])
    opt.step()
    np.testing.assert_allclose(p.data, after_2, rtol=0, atol=1e-12)


def test_adam_constant_gradient_moves_lr_per_step():
    # with a constant gradient the bias-corrected averages are exactly g and g^2, so each
    # step moves every coordinate by lr * g / (|g| + eps), i.e. lr against the gradient's sign
    p = param([1.0, 2.0])
    opt = Adam([p], lr=0.1)
    for expected in ([0.9, 2.1], [0.8, 2.2], [0.7, 2.3]):
        p.grad = np.array([0.5, -2.0])
        opt.step()
        np.testing.assert_allclose(p.data, expected, rtol=0, atol=1e-7)
    assert opt.state[p]["step"] == 3


def test_adamw_constant_gradient_decays_then_steps():
    # p <- p * (1 - lr * wd) - lr * sign(g): [1, 2] -> [0.89, 2.08] -> [0.7811, 2.1592]
    p = param([1.0, 2.0])
    opt = AdamW([p], lr=0.1, weight_decay=0.1)
    for expected in ([0.89, 2.08], [0.7811, 2.1592]):
        p.grad = np.array([0.5, -2.0])
        opt.step()
        np.testing.assert_allclose(p.data, expected, rtol=0, atol=1e-7)


def test_adam_weight_decay_is_not_decoupled():
    # Adam folds the decay into the gradient, where the normalisation cancels its scale:
    # with g = 0 and a constant p the L2 "gradient" wd * p is constant, so step 1 moves by lr
    p = param([1.0, -4.0])
    opt = Adam([p], lr=0.1, weight_decay=0.5)
    p.grad = np.zeros(2)
    opt.step()
    np.testing.assert_allclose(p.data, [0.9, -3.9], rtol=0, atol=1e-7)
    q = param([1.0, -4.0])
    opt = AdamW([q], lr=0.1, weight_decay=0.5)
    q.grad = np.zeros(2)
    opt.step()  # decoupled: only the shrink, 0/(0 + eps) = 0 from the Adam part
    np.testing.assert_allclose(q.data, [0.95, -3.8], rtol=0, atol=1e-12)


def test_amsgrad_keeps_the_largest_second_moment():
    # a large gradient, then small ones: with amsgrad the denominator cannot shrink, so
    # the later steps are smaller than plain Adam's
    grads = [np.array([10.0]), np.array([0.1]), np.array([0.1]), np.array([0.1])]
    plain = run(Adam, [0.0], grads, lr=0.1, betas=(0.0, 0.5))
    ams = run(Adam, [0.0], grads, lr=0.1, betas=(0.0, 0.5), amsgrad=True)
    # betas=(0, 0.5): m = g; v_t = 0.5 v_{t-1} + 0.5 g^2; amsgrad divides by the running max
    v, v_max, expected = 0.0, 0.0, 0.0
    for t, g in enumerate([10.0, 0.1, 0.1, 0.1], start=1):
        v = 0.5 * v + 0.5 * g * g
        v_max = max(v_max, v)
        expected -= 0.1 * g / (np.sqrt(v_max / (1 - 0.5 ** t)) + 1e-8)
    np.testing.assert_allclose(ams, [expected], rtol=1e-12)
    assert abs(ams[0]) < abs(plain[0])


# --- 2. against the formulas --------------------------------------------------------------

@pytest.mark.parametrize("kwargs", SGD_CONFIGS.values(), ids=SGD_CONFIGS.keys())
def test_sgd_matches_formula(kwargs):
    p0 = np.linspace(-1, 1, 12).reshape(3, 4)
    grads = gradient_sequence(p0.shape)
    np.testing.assert_allclose(run(SGD, p0, grads, **kwargs), sgd_formula(p0, grads, **kwargs),
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kwargs", ADAM_CONFIGS.values(), ids=ADAM_CONFIGS.keys())
def test_adam_matches_formula(kwargs):
    p0 = np.linspace(-1, 1, 12).reshape(3, 4)
    grads = gradient_sequence(p0.shape, seed=1)
    np.testing.assert_allclose(run(Adam, p0, grads, **kwargs), adam_formula(p0, grads, **kwargs),
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kwargs", ADAMW_CONFIGS.values(), ids=ADAMW_CONFIGS.keys())
def test_adamw_matches_formula(kwargs):
    p0 = np.linspace(-1, 1, 12).reshape(3, 4)
    grads = gradient_sequence(p0.shape, seed=2)
    expected = adam_formula(p0, grads, decoupled=True, **{"weight_decay": 1e-2, **kwargs})
    np.testing.assert_allclose(run(AdamW, p0, grads, **kwargs), expected, rtol=1e-12, atol=1e-14)


def test_adamw_default_weight_decay_is_1e_2_and_adam_is_0():
    p, q = param([1.0]), param([1.0])
    assert AdamW([p]).param_groups[0]["weight_decay"] == 1e-2
    assert Adam([q]).param_groups[0]["weight_decay"] == 0
    assert SGD([q]).param_groups[0]["lr"] == 1e-3


# --- 3. against PyTorch --------------------------------------------------------------------

def _torch_class(cls):
    torch = pytest.importorskip("torch")
    return torch, {SGD: torch.optim.SGD, Adam: torch.optim.Adam, AdamW: torch.optim.AdamW}[cls]


@pytest.mark.parametrize("cls, name, kwargs", ALL_CONFIGS, ids=ALL_IDS)
def test_same_as_torch_after_5_steps(cls, name, kwargs):
    torch, torch_cls = _torch_class(cls)
    rng = np.random.default_rng(7)
    shapes = [(4, 3, 3, 3), (4,), (2, 5)]
    starts = [rng.standard_normal(s) for s in shapes]
    grads = [[rng.standard_normal(s) for s in shapes] for _ in range(STEPS)]

    ours = [param(a) for a in starts]
    theirs = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in starts]
    opt, topt = cls(ours, **kwargs), torch_cls(theirs, **kwargs)
    for step_grads in grads:
        for p, tp, g in zip(ours, theirs, step_grads):
            p.grad = g.copy()
            tp.grad = torch.tensor(g)
        opt.step()
        topt.step()
    for p, tp in zip(ours, theirs):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW])
def test_same_as_torch_with_param_groups_and_skipped_grads(cls):
    torch, torch_cls = _torch_class(cls)
    rng = np.random.default_rng(8)
    starts = [rng.standard_normal((3, 2)) for _ in range(3)]
    ours = [param(a) for a in starts]
    theirs = [torch.tensor(a, requires_grad=True) for a in starts]
    extra = dict(momentum=0.9) if cls is SGD else {}

    def groups(ps):
        return [{"params": ps[:2], "lr": 0.05, "weight_decay": 0.1}, {"params": ps[2:]}]

    opt, topt = cls(groups(ours), lr=0.01, **extra), torch_cls(groups(theirs), lr=0.01, **extra)
    for step in range(STEPS):
        for i, (p, tp) in enumerate(zip(ours, theirs)):
            if (step + i) % 3 == 0:  # now and then a parameter gets no gradient
                p.grad, tp.grad = None, None
            else:
                g = rng.standard_normal((3, 2))
                p.grad, tp.grad = g, torch.tensor(g)
        opt.step()
        topt.step()
    for p, tp in zip(ours, theirs):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_state_dict_loads_a_torch_optimizer_state():
    # the layout is PyTorch's: a torch Adam's state dict, turned into NumPy, resumes here
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    start = rng.standard_normal((2, 3))
    grads = [rng.standard_normal((2, 3)) for _ in range(6)]
    tp = torch.tensor(start, requires_grad=True)
    topt = torch.optim.Adam([tp], lr=0.01, amsgrad=True)
    for g in grads[:3]:
        tp.grad = torch.tensor(g)
        topt.step()
    tsd = topt.state_dict()
    sd = {"state": {k: {n: (v.numpy().copy() if v.ndim else v.item()) for n, v in s.items()}
                    for k, s in tsd["state"].items()},
          "param_groups": tsd["param_groups"]}
    sd["state"][0]["step"] = int(sd["state"][0]["step"])
    p = param(tp.detach().numpy().copy())
    opt = Adam([p], lr=0.5)
    opt.load_state_dict(sd)
    assert opt.param_groups[0]["lr"] == 0.01 and opt.param_groups[0]["amsgrad"] is True
    for g in grads[3:]:
        tp.grad = torch.tensor(g)
        topt.step()
        p.grad = g.copy()
        opt.step()
    np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-12, atol=1e-14)


# --- 4. state, groups, zero_grad ---------------------------------------------------------------

@pytest.mark.parametrize("cls, kwargs", [
    (SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    (SGD, dict(lr=0.1)),
    (Adam, dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
    (AdamW, dict(lr=0.01)),
], ids=["SGD-nesterov", "SGD-plain", "Adam-amsgrad", "AdamW"])
def test_resume_from_state_dict_continues_identically(cls, kwargs):
    rng = np.random.default_rng(3)
    starts = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    grads = [[rng.standard_normal(a.shape) for a in starts] for _ in range(6)]

    params = [param(a) for a in starts]
    opt = cls(params, **kwargs)

    def do_step(o, ps, gs):
        for p, g in zip(ps, gs):
            p.grad = g.copy()
        o.step()

    for gs in grads[:3]:
        do_step(opt, params, gs)
    snapshot = opt.state_dict()
    values_at_3 = [p.data.copy() for p in params]
    for gs in grads[3:]:
        do_step(opt, params, gs)

    # a fresh optimizer, built with other hyper-parameters that the state dict overrides
    resumed = [param(v) for v in values_at_3]
    opt2 = cls(resumed, lr=123.0)
    opt2.load_state_dict(snapshot)
    for gs in grads[3:]:
        do_step(opt2, resumed, gs)
    for p, q in zip(params, resumed):
        np.testing.assert_array_equal(p.data, q.data)
    if cls is not SGD or kwargs.get("momentum"):
        assert opt2.state[resumed[0]]  # state was restored and used


def test_state_dict_layout_is_pytorchs():
    a, b, c = param(np.ones((2, 2))), param(np.ones(3)), param(np.ones(1))
    opt = Adam([{"params": [a, b]}, {"params": [c], "lr": 0.5}], lr=0.1, amsgrad=True)
    for p in (a, c):  # b gets no gradient: no state for it
        p.grad = np.ones_like(p.data)
    opt.step()
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert sorted(sd["state"]) == [0, 2]
    assert all(type(k) is int for k in sd["state"])
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert sd["state"][0]["step"] == 1 and type(sd["state"][0]["step"]) is int
    assert sd["state"][2]["exp_avg"].shape == (1,)
    g0, g1 = sd["param_groups"]
    assert g0 == dict(lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=True,
                      params=[0, 1])
    assert g1["lr"] == 0.5 and g1["params"] == [2]


def test_state_dict_is_a_snapshot_and_load_copies():
    p = param([1.0, 2.0])
    opt = SGD([p], lr=0.1, momentum=0.9)
    p.grad = np.array([1.0, 1.0])
    opt.step()
    sd = opt.state_dict()
    opt.step()
    np.testing.assert_array_equal(sd["state"][0]["momentum_buffer"], [1.0, 1.0])

    q = param([1.0, 2.0])
    opt2 = SGD([q], lr=0.1, momentum=0.9)
    opt2.load_state_dict(sd)
    sd["state"][0]["momentum_buffer"][:] = 100.0  # must not reach opt2
    np.testing.assert_array_equal(opt2.state[q]["momentum_buffer"], [1.0, 1.0])


def test_load_state_dict_casts_state_to_the_param_dtype():
    p = param([1.0, 2.0], dtype=np.float32)
    opt = Adam([p])
    sd = {"state": {0: {"step": 2, "exp_avg": np.ones(2), "exp_avg_sq": np.ones(2)}},
          "param_groups": [{"lr": 0.1, "betas": [0.9, 0.99], "eps": 1e-8, "weight_decay": 0,
                            "amsgrad": False, "params": [0]}]}
    opt.load_state_dict(sd)
    assert opt.state[p]["exp_avg"].dtype == np.float32
    assert opt.param_groups[0]["betas"] == (0.9, 0.99)  # a list (e.g. from JSON) -> tuple
    p.grad = np.ones(2, dtype=np.float32)
    opt.step()
    assert opt.state[p]["step"] == 3 and p.dtype == np.float32


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW])
def test_float32_updates_in_place_and_keep_dtype(cls):
    p = param(np.linspace(-1, 1, 6), dtype=np.float32)
    data = p.data
    opt = cls([p], lr=0.1, **({"momentum": 0.9} if cls is SGD else {}))
    for g in gradient_sequence((6,), n=3):
        p.grad = g.astype(np.float32)
        opt.step()
    assert p.data is data and p.dtype == np.float32
    assert all(v.dtype == np.float32 for v in opt.state[p].values() if isinstance(v, np.ndarray))
    expected = (sgd_formula(np.linspace(-1, 1, 6), gradient_sequence((6,), n=3), 0.1, 0.9)
                if cls is SGD else
                adam_formula(np.linspace(-1, 1, 6), gradient_sequence((6,), n=3), lr=0.1,
                             decoupled=cls is AdamW, weight_decay=0.01 if cls is AdamW else 0))
    np.testing.assert_allclose(p.data, expected, rtol=1e-5, atol=1e-6)


def test_step_does_not_change_grad():
    p = param([1.0, 2.0])
    g = np.array([0.5, 0.5])
    p.grad = g
    SGD([p], lr=0.1, momentum=0.9, weight_decay=0.5).step()
    np.testing.assert_array_equal(g, [0.5, 0.5])
    assert p.grad is g


def test_zero_grad():
    a, b, c = param([1.0]), param([2.0]), param([3.0])
    opt = SGD([a, b, c], lr=0.1)
    a.grad, b.grad = np.array([1.0]), np.array([2.0])
    kept = b.grad
    opt.zero_grad(set_to_none=False)
    assert b.grad is kept and a.grad[0] == 0 and b.grad[0] == 0 and c.grad is None
    opt.zero_grad()
    assert a.grad is None and b.grad is None and c.grad is None


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW])
def test_params_without_grad_are_skipped(cls):
    a, b = param([1.0, 2.0]), param([3.0, 4.0])
    opt = cls([a, b], lr=0.1, weight_decay=0.1, **({"momentum": 0.9} if cls is SGD else {}))
    for _ in range(2):
        a.grad, b.grad = np.array([1.0, 1.0]), None
        opt.step()
    np.testing.assert_array_equal(b.data, [3.0, 4.0])  # not even weight-decayed
    assert b not in opt.state
    assert a in opt.state
    if cls is not SGD:
        assert opt.state[a]["step"] == 2


def test_param_groups_use_their_own_hyper_parameters():
    a, b = param([1.0]), param([1.0])
    opt = SGD([{"params": [a]}, {"params": b, "lr": 0.5, "momentum": 0.0}], lr=0.1, momentum=0.9)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert [g["momentum"] for g in opt.param_groups] == [0.9, 0.0]
    for _ in range(2):
        a.grad, b.grad = np.array([1.0]), np.array([1.0])
        opt.step()
    np.testing.assert_allclose(a.data, [1.0 - 0.1 - 0.1 * 1.9])
    np.testing.assert_allclose(b.data, [1.0 - 0.5 - 0.5])
    assert b not in opt.state  # no momentum buffer for the group without momentum


def test_add_param_group_and_generators():
    a, b = param([1.0]), param([2.0])
    opt = Adam((p for p in [a]), lr=0.1)
    opt.add_param_group({"params": [b], "lr": 0.2})
    assert len(opt.param_groups) == 2 and opt.param_groups[1]["betas"] == (0.9, 0.999)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})


def test_step_with_closure_returns_the_loss():
    p = param([3.0])
    opt = SGD([p], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == 9.0
    np.testing.assert_allclose(p.data, [3.0 - 0.25 * 6.0])


def test_repr_lists_each_group_like_torch():
    opt = SGD([param([1.0])], lr=0.1, momentum=0.9)
    assert repr(opt) == ("SGD (\nParameter Group 0\n    dampening: 0\n    lr: 0.1\n"
                         "    momentum: 0.9\n    nesterov: False\n    weight_decay: 0\n)")


def test_optimizers_are_optimizers():
    assert all(issubclass(c, Optimizer) for c in (SGD, Adam, AdamW))
    assert issubclass(AdamW, Adam)


# --- 5. bad arguments --------------------------------------------------------------------------

@pytest.mark.parametrize("cls, kwargs, error, match", [
    (SGD, dict(lr=-0.1), ValueError, r"learning rate \(lr\): -0.1"),
    (SGD, dict(lr=float("nan")), ValueError, r"lr"),
    (SGD, dict(lr="0.1"), TypeError, r"lr.*'0.1'"),
    (SGD, dict(lr=0.1, momentum=-0.5), ValueError, r"momentum: -0.5"),
    (SGD, dict(lr=0.1, weight_decay=-1e-4), ValueError, r"weight_decay: -0.0001"),
    (SGD, dict(lr=0.1, nesterov=True), ValueError, r"Nesterov.*momentum=0"),
    (SGD, dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), ValueError,
     r"Nesterov.*dampening=0.1"),
    (SGD, dict(lr=0.1, nesterov="yes"), TypeError, r"nesterov"),
    (Adam, dict(lr=-1e-3), ValueError, r"learning rate \(lr\)"),
    (Adam, dict(betas=(1.0, 0.999)), ValueError, r"betas\[0\]\): 1.0 \(must be >= 0.0 and < 1.0"),
    (Adam, dict(betas=(0.9, -0.1)), ValueError, r"betas\[1\]\): -0.1"),
    (Adam, dict(betas=(0.9,)), ValueError, r"betas must be a pair"),
    (Adam, dict(betas=0.9), ValueError, r"betas must be a pair"),
    (Adam, dict(eps=-1e-8), ValueError, r"eps: -1e-08"),
    (Adam, dict(weight_decay=-0.1), ValueError, r"weight_decay"),
    (Adam, dict(amsgrad=None), TypeError, r"amsgrad"),
    (AdamW, dict(betas=(0.9, 1.5)), ValueError, r"betas\[1\]"),
    (AdamW, dict(weight_decay=-0.01), ValueError, r"weight_decay"),
])
def test_bad_hyper_parameters(cls, kwargs, error, match):
    with pytest.raises(error, match=match):
        cls([param([1.0])], **kwargs)


def test_bad_hyper_parameter_in_a_group():
    with pytest.raises(ValueError, match=r"momentum: -1"):
        SGD([{"params": [param([1.0])], "momentum": -1}], lr=0.1)


@pytest.mark.parametrize("params, error, match", [
    ([], ValueError, "empty parameter list"),
    ((p for p in []), ValueError, "empty parameter list"),
    (lambda: [param([1.0]), np.ones(2)], TypeError, r"parameter 1 is ndarray"),
    (lambda: param([1.0]), TypeError, r"single Tensor"),
    (lambda: {param([1.0])}, TypeError, r"not a set"),
    (lambda: [param([1.0]), {"params": [param([1.0])]}], TypeError, "mixture"),
    (lambda: [{"lr": 0.1}], ValueError, "'params' entry"),
    (5, TypeError, "iterable"),
])
def test_bad_params(params, error, match):
    if callable(params):
        params = params()
    with pytest.raises(error, match=match):
        SGD(params, lr=0.1)


def test_same_parameter_twice_is_refused():
    p = param([1.0])
    with pytest.raises(ValueError, match="same parameter more than once"):
        SGD([p, p], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        SGD([{"params": [p]}, {"params": [p]}], lr=0.1)


def test_non_leaf_is_refused():
    p = param([1.0])
    with pytest.raises(ValueError, match="not a leaf"):
        SGD([p * 2], lr=0.1)


def test_gradient_of_the_wrong_shape():
    p = param([1.0, 2.0])
    p.grad = np.ones(3)
    with pytest.raises(ValueError, match=r"gradient of parameter 0 has shape \(3,\), but the "
                                         r"parameter has shape \(2,\)"):
        Adam([p]).step()


def _trained_sgd(*shapes):
    params = [param(np.ones(s)) for s in shapes]
    opt = SGD(params, lr=0.1, momentum=0.9)
    for p in params:
        p.grad = np.ones(p.shape)
    opt.step()
    return opt


def test_load_state_dict_errors_and_leaves_the_optimizer_unchanged():
    sd = _trained_sgd((2,), (3,)).state_dict()
    target = _trained_sgd((2,), (3,))
    target.param_groups[0]["lr"] = 0.7
    before = target.state_dict()

    with pytest.raises(ValueError, match=r"2 parameter\(s\), but the optimizer's group has 1"):
        _trained_sgd((2,)).load_state_dict(sd)
    two_groups = dict(sd, param_groups=[dict(sd["param_groups"][0], params=[0]),
                                        dict(sd["param_groups"][0], params=[1])])
    with pytest.raises(ValueError, match=r"2 parameter group\(s\), but the optimizer has 1"):
        target.load_state_dict(two_groups)
    with pytest.raises(ValueError, match=r"'momentum_buffer' of parameter 1 has shape \(3,\), "
                                         r"but the parameter has shape \(4,\)"):
        _trained_sgd((2,), (4,)).load_state_dict(sd)
    with pytest.raises(ValueError, match="no 'state' entry"):
        target.load_state_dict({"param_groups": sd["param_groups"]})
    bad_lr = dict(sd, param_groups=[dict(sd["param_groups"][0], lr=-1.0)])
    with pytest.raises(ValueError, match=r"parameter group 0 of the loaded state dict.*lr"):
        target.load_state_dict(bad_lr)
    stray = dict(sd, state={**sd["state"], 5: {"momentum_buffer": np.ones(2)}})
    with pytest.raises(ValueError, match="parameter 5"):
        target.load_state_dict(stray)
    with pytest.raises(TypeError, match="must be a dict"):
        target.load_state_dict([1, 2])

    after = target.state_dict()  # every failed load left it as it was
    assert after["param_groups"] == before["param_groups"]
    for k in before["state"]:
        np.testing.assert_array_equal(after["state"][k]["momentum_buffer"],
                                      before["state"][k]["momentum_buffer"])


# --- 6. learning-rate schedulers ------------------------------------------------------------

def test_step_lr():
    opt = SGD([param([1.0])], lr=1.0)
    sched = StepLR(opt, step_size=2, gamma=0.5)
    lrs = [sched.get_last_lr()[0]]
    for _ in range(6):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.125]
    assert opt.param_groups[0]["initial_lr"] == 1.0


def test_cosine_annealing_lr():
    opt = Adam([{"params": [param([1.0])]}, {"params": [param([1.0])], "lr": 0.2}], lr=0.1)
    sched = CosineAnnealingLR(opt, T_max=4, eta_min=0.01)
    seen = [sched.get_last_lr()]
    for _ in range(4):
        sched.step()
        seen.append(sched.get_last_lr())
    for epoch, lrs in enumerate(seen):
        for base, lr in zip([0.1, 0.2], lrs):
            assert lr == pytest.approx(0.01 + (base - 0.01) * (1 + np.cos(np.pi * epoch / 4)) / 2)
    assert seen[-1] == pytest.approx([0.01, 0.01])


@pytest.mark.parametrize("name, kwargs", [
    ("StepLR", dict(step_size=3, gamma=0.3)),
    ("CosineAnnealingLR", dict(T_max=5, eta_min=0.001)),
])
def test_schedulers_match_torch(name, kwargs):
    torch = pytest.importorskip("torch")
    opt = SGD([param([1.0])], lr=0.1)
    topt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = {"StepLR": StepLR, "CosineAnnealingLR": CosineAnnealingLR}[name](opt, **kwargs)
    tsched = getattr(torch.optim.lr_scheduler, name)(topt, **kwargs)
    for _ in range(12):  # past T_max: the cosine climbs back, in both
        assert sched.get_last_lr() == pytest.approx(tsched.get_last_lr(), rel=1e-12)
        opt.step()
        topt.step()
        sched.step()
        tsched.step()


def test_scheduler_state_dict_resumes():
    opt = SGD([param([1.0])], lr=1.0)
    sched = CosineAnnealingLR(opt, T_max=10)
    for _ in range(3):
        sched.step()
    sd = sched.state_dict()
    opt2 = SGD([param([1.0])], lr=1.0)
    sched2 = CosineAnnealingLR(opt2, T_max=10)
    sched2.load_state_dict(sd)
    sched.step()
    sched2.step()
    assert sched2.last_epoch == 4 and sched2.get_last_lr() == sched.get_last_lr()
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_scheduler_errors():
    opt = SGD([param([1.0])], lr=1.0)
    with pytest.raises(ValueError, match="step_size"):
        StepLR(opt, step_size=0)
    with pytest.raises(ValueError, match="T_max"):
        CosineAnnealingLR(opt, T_max=0)
    with pytest.raises(TypeError, match="Optimizer"):
        StepLR(object(), step_size=1)
    with pytest.raises(KeyError, match="initial_lr"):
        StepLR(SGD([param([1.0])], lr=1.0), step_size=1, last_epoch=3)


# --- with cyconv.nn, when it is there ---------------------------------------------------------

def test_with_an_nn_linear_layer():
    nn = pytest.importorskip("cyconv.nn")
    if not hasattr(nn, "Linear"):
        pytest.skip("cyconv.nn has no Linear yet")
    cyconv.manual_seed(0)
    layer = nn.Linear(3, 2)
    opt = SGD(layer.parameters(), lr=0.1, momentum=0.9)
    names = [n for n, _ in layer.named_parameters()]
    assert names == ["weight", "bias"]
    rng = np.random.default_rng(0)
    x = cyconv.Tensor(rng.standard_normal((8, 3)).astype(np.float32))
    target = rng.standard_normal((8, 2))
    losses = []
    for _ in range(20):
        opt.zero_grad()
        diff = layer(x) - cyconv.Tensor(target.astype(layer.weight.dtype))
        loss = (diff * diff).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_frozen_parameters_are_accepted_and_left_alone():
    """Transfer learning: optimizer(model.parameters()) after freezing part of the model."""
    frozen = param([1.0, 2.0])
    frozen.requires_grad_(False)
    trained = param([3.0])
    opt = SGD([frozen, trained], lr=0.5)
    loss = (trained * trained).sum()
    loss.backward()
    opt.step()
    np.testing.assert_array_equal(frozen.data, [1.0, 2.0])
    np.testing.assert_allclose(trained.data, [3.0 - 0.5 * 6.0])
    frozen.requires_grad_(True)          # unfreezing later works with the same optimizer
    (frozen * frozen).sum().backward()
    opt.step()
    np.testing.assert_allclose(frozen.data, [1.0 - 0.5 * 2.0, 2.0 - 0.5 * 4.0])
