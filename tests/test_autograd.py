"""The autograd core: every Tensor operation's backward against finite differences, and the
rules of the graph (accumulation, freeing, no_grad, detach, dtypes, deep graphs).

Also the tests of ``cyconv.gradcheck`` itself: it must catch a wrong backward.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import cyconv
from cyconv import Tensor, cat, enable_grad, no_grad, stack
from cyconv.autograd import make_op
from cyconv import GradcheckError, gradcheck


def leaf(*shape, low=None, high=None, seed=0):
    """A float64 leaf requiring grad: standard normal values, or uniform in [low, high]."""
    rng = np.random.default_rng(seed)
    data = rng.standard_normal(shape) if low is None else rng.uniform(low, high, shape)
    return Tensor(data, requires_grad=True)


# --- arithmetic with broadcasting ------------------------------------------------------

BINARY_OPS = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a ** b,
}

# shapes of (a, b): equal, broadcast in both directions, and a 0-D Tensor
SHAPE_PAIRS = [((3, 4), (3, 4)), ((3, 1, 4), (2, 4)), ((2, 1), (1, 3)), ((), (3, 4)),
               ((3, 4), ())]


@pytest.mark.parametrize("shapes", SHAPE_PAIRS, ids=str)
@pytest.mark.parametrize("op", list(BINARY_OPS))
def test_binary_op_gradients_with_broadcasting(op, shapes):
    # positive operands keep div away from 0 and pow's base in log's domain
    a = leaf(*shapes[0], low=0.5, high=2.0, seed=1)
    b = leaf(*shapes[1], low=0.5, high=2.0, seed=2)
    out = BINARY_OPS[op](a, b)
    assert out.shape == np.broadcast_shapes(shapes[0], shapes[1])
    assert gradcheck(BINARY_OPS[op], (a, b))


SCALAR_OPS = {
    "x + 2": lambda x: x + 2, "2 + x": lambda x: 2 + x,
    "x - 2.5": lambda x: x - 2.5, "2.5 - x": lambda x: 2.5 - x,
    "x * 3": lambda x: x * 3, "3 * x": lambda x: 3 * x,
    "x / 4": lambda x: x / 4, "4 / x": lambda x: 4 / x,
    "x ** 3": lambda x: x ** 3, "x ** -1.5": lambda x: x ** -1.5, "2 ** x": lambda x: 2 ** x,
    "-x": lambda x: -x,
    "ndarray * x": lambda x: np.arange(1.0, 4.0) * x,
}


@pytest.mark.parametrize("op", list(SCALAR_OPS))
def test_ops_with_python_scalars_and_arrays(op):
    x = leaf(2, 3, low=0.5, high=2.0)
    assert gradcheck(SCALAR_OPS[op], x)


@settings(max_examples=25)
@given(shapes=mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3),
       op=st.sampled_from(["add", "sub", "mul", "div"]))
def test_broadcast_gradients_property(shapes, op):
    a_shape, b_shape = shapes.input_shapes
    a = leaf(*a_shape, low=0.5, high=2.0, seed=3)
    b = leaf(*b_shape, low=0.5, high=2.0, seed=4)
    assert gradcheck(BINARY_OPS[op], (a, b))


MATMUL_SHAPES = [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)),
                 ((4,), (4,)), ((2, 1, 3, 4), (5, 4, 2)), ((2, 3, 4), (2, 4, 2))]


@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
def test_matmul_gradients(shapes):
    a, b = leaf(*shapes[0], seed=1), leaf(*shapes[1], seed=2)
    np.testing.assert_allclose((a @ b).data, a.data @ b.data)
    assert gradcheck(lambda a, b: a @ b, (a, b))


def test_matmul_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"inner sizes 4 and 3"):
        leaf(2, 4) @ leaf(3, 2)


# --- reductions ------------------------------------------------------------------------

@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", [None, 0, -1, (0, 2)])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_sum_and_mean_gradients(reduction, dim, keepdim):
    x = leaf(2, 3, 4)
    fn = lambda x: getattr(x, reduction)(dim=dim, keepdim=keepdim)  # noqa: E731
    expected = getattr(np, reduction)(x.data, axis=dim, keepdims=keepdim)
    np.testing.assert_allclose(fn(x).data, expected)
    assert gradcheck(fn, x)


def test_max_over_everything_gradient_goes_to_the_maximum():
    x = leaf(3, 4)
    assert gradcheck(lambda x: x.max(), x)
    x.max().backward()
    expected = np.zeros((3, 4))
    expected[np.unravel_index(np.argmax(x.data), x.shape)] = 1
    np.testing.assert_array_equal(x.grad, expected)


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_max_along_dim_values_indices_and_gradient(dim, keepdim):
    x = leaf(3, 4, 2)
    values, indices = x.max(dim, keepdim=keepdim)
    np.testing.assert_array_equal(values.data, x.data.max(axis=dim, keepdims=keepdim))
    np.testing.assert_array_equal(indices.data, np.argmax(x.data, axis=dim)
                                  if not keepdim else np.expand_dims(np.argmax(x.data, dim), dim))
    assert not indices.requires_grad
    assert gradcheck(lambda x: x.max(dim, keepdim=keepdim), x)  # the int indices are skipped


def test_reduction_dim_out_of_range():
    with pytest.raises(IndexError, match="dim 3 is out of range"):
        leaf(2, 3).sum(dim=3)


# --- shapes ----------------------------------------------------------------------------

SHAPE_OPS = {
    "reshape": lambda x: x.reshape(4, 6),
    "reshape -1": lambda x: x.reshape((-1, 3)),
    "view": lambda x: x.view(2, 12),
    "flatten": lambda x: x.flatten(),
    "flatten(1)": lambda x: x.flatten(1),
    "flatten(0, 1)": lambda x: x.flatten(0, 1),
    "transpose": lambda x: x.transpose(0, 2),
    "permute": lambda x: x.permute(2, 0, 1),
    "permute negative": lambda x: x.permute(-1, 0, -2),
    "T": lambda x: x.T,
}


@pytest.mark.parametrize("op", list(SHAPE_OPS))
def test_shape_op_gradients(op):
    x = leaf(2, 3, 4)
    assert gradcheck(SHAPE_OPS[op], x)


def test_shape_op_results():
    x = leaf(2, 3, 4)
    assert x.flatten(1).shape == (2, 12)
    assert x.T.shape == (4, 3, 2)
    np.testing.assert_array_equal(x.permute(2, 0, 1).data, np.transpose(x.data, (2, 0, 1)))
    np.testing.assert_array_equal(x.transpose(0, 2).data, np.swapaxes(x.data, 0, 2))
    with pytest.raises(ValueError, match="cannot reshape"):
        x.reshape(5, 5)
    with pytest.raises(ValueError, match="permute needs"):
        x.permute(0, 0, 1)


# --- elementwise functions -------------------------------------------------------------

UNARY_OPS = {
    "exp": (lambda x: x.exp(), np.exp, None),
    "log": (lambda x: x.log(), np.log, (0.2, 3.0)),
    "sqrt": (lambda x: x.sqrt(), np.sqrt, (0.2, 3.0)),
    "abs": (lambda x: x.abs(), np.abs, None),
    "clamp": (lambda x: x.clamp(-0.5, 0.5), lambda a: np.clip(a, -0.5, 0.5), None),
    "clamp min": (lambda x: x.clamp(min=0.1), lambda a: np.maximum(a, 0.1), None),
    "clamp max": (lambda x: x.clamp(max=0.1), lambda a: np.minimum(a, 0.1), None),
}


@pytest.mark.parametrize("op", list(UNARY_OPS))
def test_unary_op_values_and_gradients(op):
    fn, reference, domain = UNARY_OPS[op]
    x = leaf(3, 5) if domain is None else leaf(3, 5, low=domain[0], high=domain[1])
    # keep abs and clamp away from their kinks, where finite differences are meaningless
    x.data[np.abs(x.data) < 0.05] += 0.2
    for bound in (-0.5, 0.1, 0.5):
        x.data[np.abs(x.data - bound) < 0.01] += 0.05
    np.testing.assert_allclose(fn(x).data, reference(x.data))
    assert gradcheck(fn, x)


def test_clamp_gradient_is_zero_outside_the_limits():
    x = Tensor(np.array([-2.0, 0.0, 2.0]), requires_grad=True)
    x.clamp(-1, 1).sum().backward()
    np.testing.assert_array_equal(x.grad, [0, 1, 0])


# --- indexing --------------------------------------------------------------------------

INDICES = {
    "int": 1,
    "slice": (slice(None), slice(1, 3)),
    "negative step": (slice(None, None, -1), 2),
    "fancy with repeats": [0, 0, 2, 0],
    "fancy pair with repeats": (np.array([0, 1, 0]), np.array([2, 2, 2])),
    "mixed slice and fancy": (slice(0, 2), [3, 3, 1]),
    "boolean mask": np.array([[True, False, True, True]] * 3),
    "Tensor index": Tensor(np.array([2, 2, 1])),
    "ellipsis and None": (Ellipsis, None, 1),
}


@pytest.mark.parametrize("name", list(INDICES))
def test_indexing_gradients(name):
    x = leaf(3, 4)
    index = INDICES[name]
    raw = index.data if isinstance(index, Tensor) else index
    np.testing.assert_array_equal(x[index].data, x.data[raw])
    assert gradcheck(lambda x: x[index], x)


def test_repeated_indices_add_up():
    x = leaf(4)
    x[[1, 1, 1, 3]].sum().backward()
    np.testing.assert_array_equal(x.grad, [0, 3, 0, 1])


# --- joining ---------------------------------------------------------------------------

@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cat_gradients(dim):
    shapes = [[2, 3, 4], [2, 3, 4], [2, 3, 4]]
    for shape, size in zip(shapes, (1, 2, 3)):
        shape[dim] = size
    parts = [leaf(*s, seed=i) for i, s in enumerate(shapes)]
    out = cat(parts, dim)
    np.testing.assert_array_equal(out.data, np.concatenate([p.data for p in parts], axis=dim))
    assert gradcheck(lambda *ts: cat(ts, dim), parts)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_stack_gradients(dim):
    parts = [leaf(2, 3, seed=i) for i in range(3)]
    out = stack(parts, dim)
    np.testing.assert_array_equal(out.data, np.stack([p.data for p in parts], axis=dim))
    assert gradcheck(lambda *ts: stack(ts, dim), parts)


def test_cat_and_stack_refuse_mismatched_shapes():
    with pytest.raises(ValueError, match="must match except along dim 1"):
        cat([leaf(2, 3), leaf(3, 3)], 1)
    with pytest.raises(ValueError, match="same shape"):
        stack([leaf(2, 3), leaf(3, 2)])
    with pytest.raises(ValueError, match="at least one"):
        cat([])


def test_cat_of_a_tensor_without_grad_and_one_with():
    a, b = Tensor(np.ones((2, 2))), leaf(2, 3)
    cat([a, b], 1).sum().backward()
    assert a.grad is None
    np.testing.assert_array_equal(b.grad, np.ones((2, 3)))


# --- dtype conversions -----------------------------------------------------------------

def test_to_float_double_gradients_come_back_in_the_source_dtype():
    x = Tensor(np.array([1.0, 2.0, 3.0], np.float32), requires_grad=True)
    y = x.double()
    assert y.dtype == np.float64
    (y * y).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad, 2 * x.data)

    z = leaf(3)
    assert z.double() is z  # no conversion, no new node
    assert gradcheck(lambda z: z.float().to(np.float64), z, eps=1e-2, atol=1e-4)
    assert z.float().dtype == np.float32


def test_integer_results_record_no_graph():
    x = leaf(3)
    indices = (x * 2).to(np.int64)
    assert indices.dtype == np.int64
    assert not indices.requires_grad


# --- the rules of the graph ------------------------------------------------------------

def test_gradients_accumulate_over_separate_graphs():
    x = leaf(3)
    (x * 2).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad, np.full(3, 5.0))


def test_gradients_accumulate_with_retain_graph():
    x = leaf(3)
    loss = (x * x).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    np.testing.assert_allclose(x.grad, 4 * x.data)


def test_second_backward_through_a_freed_graph_raises():
    x = leaf(3)
    loss = (x.exp() * 2).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        loss.backward()


def test_backward_through_a_freed_shared_intermediate_raises():
    x = leaf(3)
    y = x.exp()
    (y * 2).sum().backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        (y * 3).sum().backward()


def test_backward_of_a_non_scalar_needs_grad():
    x = leaf(2, 3)
    y = x * 2
    with pytest.raises(RuntimeError, match=r"only for scalar outputs.*\(2, 3\)"):
        y.backward()
    y.backward(np.ones((2, 3)))
    np.testing.assert_allclose(x.grad, np.full((2, 3), 2.0))


def test_backward_grad_of_the_wrong_shape():
    y = leaf(2, 3) * 2
    with pytest.raises(ValueError, match=r"grad must have the Tensor's shape \(2, 3\)"):
        y.backward(np.ones(3))


def test_backward_on_a_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        (Tensor(np.ones(3)) * 2).sum().backward()


def test_a_node_used_twice_gets_both_gradients():
    x = leaf(3)
    y = x * 3
    (y * y + y).sum().backward()  # d/dx (9x^2 + 3x) = 18x + 3
    np.testing.assert_allclose(x.grad, 18 * x.data + 3)


def test_intermediate_gradients_are_not_kept():
    x = leaf(3)
    y = x * 2
    y.sum().backward()
    assert y.grad is None and x.grad is not None
    assert x.is_leaf and not y.is_leaf


def test_no_grad_builds_no_graph():
    x = leaf(3)
    with no_grad():
        y = (x * 2).exp().sum()
        with enable_grad():
            z = x * 2
    assert not y.requires_grad and y._parents == () and y._backward is None
    assert z.requires_grad
    w = x * 2  # recording is back on after the block
    assert w.requires_grad


def test_a_5000_deep_chain():
    x = leaf(2)
    y = x
    for _ in range(5000):
        y = y * 1.0001 + 0.001
    y.sum().backward()
    np.testing.assert_allclose(x.grad, np.full(2, 1.0001 ** 5000))


def test_requires_grad_needs_a_floating_tensor():
    with pytest.raises(TypeError, match="only floating-point Tensors can require gradients"):
        Tensor(np.arange(3), requires_grad=True)
    with pytest.raises(TypeError, match="int64"):
        Tensor(np.arange(3)).requires_grad_()


def test_detach_cuts_the_graph_and_shares_memory():
    x = leaf(3)
    y = (x * 2).detach()
    assert not y.requires_grad and y.is_leaf
    z = y * 3 + x
    z.sum().backward()
    np.testing.assert_array_equal(x.grad, np.ones(3))  # nothing came through y
    source = x * 1
    assert np.shares_memory(source.detach().data, source.data)


def test_tensor_constructors():
    data = np.arange(3.0)
    made = cyconv.tensor(data)
    data[0] = 5
    assert made.data[0] == 0  # tensor() copies
    assert cyconv.tensor([1.0, 2.0]).dtype == np.float32  # Python floats: float32
    assert Tensor([1, 2]).dtype.kind == "i"
    assert Tensor(np.float64(1.5)).dtype == np.float64
    with pytest.raises(TypeError, match="must be numbers"):
        Tensor(np.array(["a"]))


# --- dtypes ----------------------------------------------------------------------------

FLOAT32_OPS = {
    "x * 2.0": lambda x: x * 2.0, "2.0 * x": lambda x: 2.0 * x, "x / 3": lambda x: x / 3,
    "1 - x": lambda x: 1 - x, "x ** 2": lambda x: x ** 2, "sqrt": lambda x: x.abs().sqrt(),
    "mean": lambda x: x.mean(), "mean dim": lambda x: x.mean(0), "exp": lambda x: x.exp(),
    "max": lambda x: x.max(), "index": lambda x: x[[0, 0]], "matmul": lambda x: x @ x.T,
    "clamp": lambda x: x.clamp(-0.1, 0.1), "cat": lambda x: cat([x, x * 2], 1),
}


@pytest.mark.parametrize("op", list(FLOAT32_OPS))
def test_float32_stays_float32_in_results_and_gradients(op):
    x = Tensor(np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32),
               requires_grad=True)
    out = FLOAT32_OPS[op](x)
    assert out.dtype == np.float32
    out.sum().backward()
    assert x.grad.dtype == np.float32


# --- gradcheck itself ------------------------------------------------------------------

def _wrong_square(x):
    """x^2 with a wrong backward (g * x instead of g * 2x)."""
    return make_op(x.data ** 2, (x,), lambda g: (g * x.data,), "WrongBackward")


def test_gradcheck_catches_a_wrong_backward():
    with pytest.raises(GradcheckError, match=r"input 0 \(shape \(2, 3\)\).*analytic.*numerical"):
        gradcheck(_wrong_square, leaf(2, 3))
    assert gradcheck(_wrong_square, leaf(2, 3), raise_exception=False) is False
    assert issubclass(GradcheckError, RuntimeError)


def test_gradcheck_names_the_failing_input_among_several():
    def fn(a, b):
        return a * 2 + _wrong_square(b)
    with pytest.raises(GradcheckError, match="input 1"):
        gradcheck(fn, (leaf(3), leaf(3, seed=1)))


def test_gradcheck_refuses_float32_and_inputs_without_grad():
    x32 = Tensor(np.ones(3, np.float32), requires_grad=True)
    with pytest.raises(TypeError, match="float64.*input 0 has dtype float32"):
        gradcheck(lambda x: x * 2, x32)
    with pytest.raises(ValueError, match="no input requires grad"):
        gradcheck(lambda x: x * 2, Tensor(np.ones(3)))


def test_gradcheck_leaves_grads_alone_and_passes_other_arguments():
    x = leaf(3)
    x.grad = np.full(3, 7.0)
    assert gradcheck(lambda x, k: x * k, (x, 3))
    np.testing.assert_array_equal(x.grad, np.full(3, 7.0))


def test_gradcheck_of_an_output_that_ignores_the_input():
    x = leaf(3)
    assert gradcheck(lambda x: Tensor(np.ones(2)), x)  # the gradient is 0: nothing to do
    with pytest.raises(GradcheckError, match="analytic 0, numerical"):
        gradcheck(lambda x: make_op(x.data * 2, (x,), lambda g: (None,), "Forgot"), x)


def test_gradients_keep_the_dtype_of_their_tensor():
    """float32 parameters and a float64 target: the float32 leaf gets a float32 gradient,
    and the float32 kernels underneath never see a float64 gradient."""
    import cyconv.functional as F

    rng = np.random.default_rng(0)
    x = Tensor(rng.random((2, 1, 6, 6)).astype(np.float32), requires_grad=True)
    w = Tensor(rng.random((3, 1, 3, 3)).astype(np.float32), requires_grad=True)
    y = F.relu(F.conv2d(x, w))
    F.mse_loss(y, rng.random(y.shape)).backward()          # float64 target
    assert x.grad.dtype == np.float32 and w.grad.dtype == np.float32
    a = Tensor(np.ones(3, np.float32), requires_grad=True)
    (a * np.full(3, 2.0)).sum().backward()
    assert a.grad.dtype == np.float32
    np.testing.assert_array_equal(a.grad, [2.0, 2.0, 2.0])


def test_cat_of_zero_dimensional_tensors_is_a_clear_error():
    with pytest.raises(ValueError, match="zero-dimensional Tensors cannot be concatenated; use stack"):
        cyconv.cat([Tensor(1.0), Tensor(2.0)])
