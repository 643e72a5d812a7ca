"""The autograd graph: a Tensor remembers how it was made, and ``backward()`` runs it back.

Every operation on Tensors returns a new Tensor holding

- ``data``: the NumPy array of the result,
- ``_parents``: the Tensors it was computed from,
- ``_backward``: a function that, given the gradient of the loss w.r.t. the result, returns
  the gradients w.r.t. each parent (the chain rule for that one operation).

``loss.backward()`` sorts the graph so that every Tensor comes after everything computed
from it (iteratively, so graphs thousands of operations deep work), then walks it once:
each node hands its gradient to its parents. Gradients of the leaves (Tensors created by
the user with ``requires_grad=True``) are accumulated into their ``.grad``, as in PyTorch;
intermediate gradients are dropped once used, and so is the graph (a second ``backward()``
through it is an error).

This module holds the Tensor class and the elementary operations. Convolution, pooling,
activations and losses are in ``cyconv.functional``, built from :func:`make_op`.
"""

from __future__ import annotations

import contextlib
import numbers
import threading

import numpy as np

__all__ = ["Tensor", "tensor", "no_grad", "enable_grad", "is_grad_enabled", "make_op", "cat",
           "stack", "as_tensor"]

_state = threading.local()


def is_grad_enabled() -> bool:
    """False inside ``with no_grad():``, True otherwise."""
    return getattr(_state, "grad_enabled", True)


@contextlib.contextmanager
def _grad_mode(enabled: bool):
    previous = is_grad_enabled()
    _state.grad_enabled = enabled
    try:
        yield
    finally:
        _state.grad_enabled = previous


def no_grad():
    """Context manager: operations inside record no graph (for evaluation and updates)."""
    return _grad_mode(False)


def enable_grad():
    """Context manager: record the graph again inside a ``no_grad`` block."""
    return _grad_mode(True)


def _as_array(data, dtype=None) -> np.ndarray:
    """Data as an ndarray: Python floats become float32 (the default dtype), ints stay ints."""
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        return np.array(data, dtype=dtype)
    array = np.array(data)
    if array.dtype.kind == "f" and not isinstance(data, (np.ndarray, np.generic)):
        array = array.astype(np.float32)  # Python floats and lists of them: float32
    elif array.dtype.kind not in "fiub":
        raise TypeError(f"Tensor data must be numbers, got dtype {array.dtype}")
    return array


class Tensor:
    """An n-dimensional array that can record the operations applied to it.

    ``Tensor(data, requires_grad=False, dtype=None)``: ``data`` is an ndarray, a number or a
    nested list. Floating data keeps an ndarray's float32/float64 dtype; Python floats
    become float32. Only floating Tensors can require gradients.
    """

    __array_priority__ = 1000  # ndarray (op) Tensor calls Tensor's reflected operator

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        self.data = _as_array(data, dtype)
        self.grad = None
        self._parents: tuple = ()
        self._backward = None
        self._op = ""
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # --- basic facts -----------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def is_leaf(self) -> bool:
        """True for Tensors the user made (not the result of a recorded operation)."""
        return self._backward is None and not self._parents

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]

    def numel(self) -> int:
        return int(self.data.size)

    def __len__(self) -> int:
        return len(self.data)

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        """Switch gradient recording for this leaf on or off (in place); returns self."""
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(f"only floating-point Tensors can require gradients, got dtype {self.dtype}")
        if not self.is_leaf and not requires_grad:
            raise RuntimeError("requires_grad can only be switched off on leaf Tensors; use .detach()")
        self.requires_grad = bool(requires_grad)
        return self

    def detach(self) -> "Tensor":
        """The same data, cut from the graph (shares memory, as in PyTorch)."""
        return _wrap(self.data)

    def numpy(self) -> np.ndarray:
        """The underlying ndarray (shares memory)."""
        return self.data

    def item(self):
        """The value of a one-element Tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item() needs a Tensor with one element, got shape {self.shape}")
        return self.data.item()

    def tolist(self):
        return self.data.tolist()

    def float(self) -> "Tensor":
        return self.to(np.float32)

    def double(self) -> "Tensor":
        return self.to(np.float64)

    def to(self, dtype) -> "Tensor":
        """A copy in another dtype; gradients flow back in the original dtype."""
        dtype = np.dtype(dtype)
        if dtype == self.dtype:
            return self
        source = self.dtype
        return make_op(self.data.astype(dtype), (self,), lambda g: (g.astype(source),), "to")

    def __repr__(self) -> str:
        body = np.array2string(self.data, separator=", ", prefix="tensor(")
        extra = ""
        if self.dtype != np.float32 and self.dtype.kind == "f":
            extra += f", dtype={self.dtype}"
        if self._backward is not None:
            extra += f", grad_fn=<{self._op}>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    def __bool__(self):
        return bool(self.data)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __hash__(self):
        return id(self)

    # --- backward ----------------------------------------------------------------------
    def backward(self, grad=None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) * grad into every leaf's ``.grad``.

        ``grad`` defaults to 1 for a one-element Tensor (a loss); any other Tensor needs it.
        The graph is freed afterwards unless ``retain_graph``.
        """
        if not self.requires_grad:
            raise RuntimeError("this Tensor does not require grad and has no grad_fn: nothing "
                               "to differentiate (did you forget requires_grad=True, or run "
                               "the forward pass under no_grad()?)")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"grad can be implicitly created only for scalar outputs; "
                                   f"this Tensor has shape {self.shape}: pass grad=")
            grad = np.ones_like(self.data)
        else:
            grad = np.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=self.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"grad must have the Tensor's shape {self.shape}, got {grad.shape}")

        order = _topological_order(self)
        grads = {id(self): grad}
        for node in reversed(order):
            node_grad = grads.pop(id(node), None)
            if node_grad is None:
                continue
            if node.is_leaf:
                node.grad = node_grad.copy() if node.grad is None else node.grad + node_grad
                continue
            if node._backward is _FREED:
                raise RuntimeError("trying to backward through the graph a second time; the "
                                   "graph is freed after backward() unless retain_graph=True")
            parent_grads = node._backward(node_grad)
            for parent, parent_grad in zip(node._parents, parent_grads):
                if parent_grad is None or not parent.requires_grad:
                    continue
                if parent_grad.dtype != parent.dtype:   # e.g. float32 weights, float64 targets:
                    parent_grad = parent_grad.astype(parent.dtype)  # a gradient has its input's dtype
                key = id(parent)
                grads[key] = parent_grad if key not in grads else grads[key] + parent_grad
            if not retain_graph:
                node._backward = _FREED

    # --- operators (each defined in terms of the ops below) ------------------------------
    def __add__(self, other):
        return add(self, other)

    def __radd__(self, other):
        return add(other, self)

    def __sub__(self, other):
        return sub(self, other)

    def __rsub__(self, other):
        return sub(other, self)

    def __mul__(self, other):
        return mul(self, other)

    def __rmul__(self, other):
        return mul(other, self)

    def __truediv__(self, other):
        return div(self, other)

    def __rtruediv__(self, other):
        return div(other, self)

    def __pow__(self, exponent):
        return power(self, exponent)

    def __rpow__(self, base):
        return power(base, self)

    def __matmul__(self, other):
        return matmul(self, other)

    def __rmatmul__(self, other):
        return matmul(other, self)

    def __neg__(self):
        return neg(self)

    def __getitem__(self, index):
        return getitem(self, index)

    # comparisons give plain boolean Tensors (no graph)
    def __lt__(self, other):
        return Tensor(self.data < _data(other))

    def __le__(self, other):
        return Tensor(self.data <= _data(other))

    def __gt__(self, other):
        return Tensor(self.data > _data(other))

    def __ge__(self, other):
        return Tensor(self.data >= _data(other))

    def eq(self, other):
        return Tensor(self.data == _data(other))

    # --- methods -----------------------------------------------------------------------
    def sum(self, dim=None, keepdim: bool = False):
        return sum_(self, dim, keepdim)

    def mean(self, dim=None, keepdim: bool = False):
        return mean(self, dim, keepdim)

    def max(self, dim=None, keepdim: bool = False):
        return max_(self, dim, keepdim)

    def argmax(self, dim=None, keepdim: bool = False):
        return Tensor(np.argmax(self.data, axis=dim, keepdims=keepdim))

    def reshape(self, *shape):
        return reshape(self, *shape)

    def view(self, *shape):
        return reshape(self, *shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1):
        return flatten(self, start_dim, end_dim)

    def transpose(self, dim0: int, dim1: int):
        return transpose(self, dim0, dim1)

    def permute(self, *dims):
        return permute(self, *dims)

    @property
    def T(self):
        return permute(self, *reversed(range(self.ndim)))

    def exp(self):
        return exp(self)

    def log(self):
        return log(self)

    def sqrt(self):
        return power(self, 0.5)

    def abs(self):
        return abs_(self)

    def clamp(self, min=None, max=None):
        return clamp(self, min, max)


class _Freed:
    """Marks a node whose graph was freed by backward()."""

    def __call__(self, grad):  # pragma: no cover - never called, checked before
        raise RuntimeError("graph freed")


_FREED = _Freed()


def _topological_order(root: Tensor) -> list:
    """Every node that ``root`` depends on, each after all of its parents (iterative DFS)."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        node, parents_done = stack.pop()
        if parents_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        for parent in node._parents:
            if parent.requires_grad and id(parent) not in visited:
                stack.append((parent, False))
    return order


def _data(value):
    return value.data if isinstance(value, Tensor) else value


def as_tensor(value, like: Tensor | None = None) -> Tensor:
    """``value`` as a Tensor; plain numbers take the dtype of ``like`` (no upcasting)."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, numbers.Number) and like is not None and like.dtype.kind == "f":
        return Tensor(np.asarray(value, dtype=like.dtype))
    return Tensor(value)


def tensor(data, requires_grad: bool = False, dtype=None) -> Tensor:
    """Make a new leaf Tensor (copying ``data``), as ``torch.tensor``."""
    return Tensor(_data(data), requires_grad=requires_grad, dtype=dtype)  # Tensor() copies


def _wrap(array) -> Tensor:
    """A Tensor around ``array`` itself, without the copy ``Tensor(array)`` makes."""
    out = Tensor.__new__(Tensor)
    out.data = np.asarray(array)
    out.grad = None
    out._parents, out._backward, out._op = (), None, ""
    out.requires_grad = False
    return out


def make_op(out_data: np.ndarray, parents: tuple, backward, name: str) -> Tensor:
    """Wrap the result of an operation into a Tensor that remembers how it was made.

    ``backward(grad_out)`` must return one gradient (ndarray or None) per parent. When no
    parent requires grad, or inside ``no_grad()``, nothing is recorded (nor for integer or
    boolean results, which have no gradient). ``out_data`` is not copied.
    """
    out = _wrap(out_data)
    if out.dtype.kind == "f" and is_grad_enabled() and any(p.requires_grad for p in parents):
        out._parents = parents
        out._backward = backward
        out._op = name
        out.requires_grad = True
    return out


def _unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum ``grad`` over the axes broadcasting added or stretched, back to ``shape``."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    grad = grad.sum(axis=tuple(range(extra))) if extra > 0 else grad
    stretched = tuple(i for i, size in enumerate(shape) if size == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad.reshape(shape)


# --- elementary operations -----------------------------------------------------------

def _binary(a, b):
    a = as_tensor(a, b if isinstance(b, Tensor) else None)
    b = as_tensor(b, a)
    return a, b


def add(a, b) -> Tensor:
    a, b = _binary(a, b)
    return make_op(a.data + b.data, (a, b),
                   lambda g: (_unbroadcast(g, a.shape), _unbroadcast(g, b.shape)), "AddBackward")


def sub(a, b) -> Tensor:
    a, b = _binary(a, b)
    return make_op(a.data - b.data, (a, b),
                   lambda g: (_unbroadcast(g, a.shape), _unbroadcast(-g, b.shape)), "SubBackward")


def mul(a, b) -> Tensor:
    a, b = _binary(a, b)
    return make_op(a.data * b.data, (a, b),
                   lambda g: (_unbroadcast(g * b.data, a.shape), _unbroadcast(g * a.data, b.shape)),
                   "MulBackward")


def div(a, b) -> Tensor:
    a, b = _binary(a, b)
    return make_op(a.data / b.data, (a, b),
                   lambda g: (_unbroadcast(g / b.data, a.shape),
                              _unbroadcast(-g * a.data / (b.data * b.data), b.shape)), "DivBackward")


def power(base, exponent) -> Tensor:
    """base ** exponent; d/dbase = e * base**(e-1), d/dexponent = base**e * log(base)."""
    base, exponent = _binary(base, exponent)
    out = base.data ** exponent.data

    def backward(g):
        grad_base = g * exponent.data * base.data ** (exponent.data - 1)
        grad_exp = None
        if exponent.requires_grad:
            with np.errstate(divide="ignore", invalid="ignore"):
                grad_exp = g * out * np.log(base.data)
        return (_unbroadcast(grad_base, base.shape),
                None if grad_exp is None else _unbroadcast(grad_exp, exponent.shape))
    return make_op(out, (base, exponent), backward, "PowBackward")


def neg(a: Tensor) -> Tensor:
    return make_op(-a.data, (a,), lambda g: (-g,), "NegBackward")


def exp(a: Tensor) -> Tensor:
    out = np.exp(a.data)
    return make_op(out, (a,), lambda g: (g * out,), "ExpBackward")


def log(a: Tensor) -> Tensor:
    return make_op(np.log(a.data), (a,), lambda g: (g / a.data,), "LogBackward")


def abs_(a: Tensor) -> Tensor:
    return make_op(np.abs(a.data), (a,), lambda g: (g * np.sign(a.data),), "AbsBackward")


def clamp(a: Tensor, low=None, high=None) -> Tensor:
    """Values limited to [low, high]; the gradient passes only where no limit applied."""
    out = np.clip(a.data, low, high)
    inside = np.ones(a.shape, bool)
    if low is not None:
        inside &= a.data >= low
    if high is not None:
        inside &= a.data <= high
    return make_op(out, (a,), lambda g: (g * inside,), "ClampBackward")


def matmul(a, b) -> Tensor:
    """Matrix product with NumPy's broadcasting rules (1-D operands included)."""
    a, b = as_tensor(a), as_tensor(b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul needs operands with at least 1 dimension, got a scalar")
    if a.shape[-1] != b.shape[-2 if b.ndim > 1 else -1]:
        raise ValueError(f"matmul shape mismatch: {a.shape} @ {b.shape} (inner sizes "
                         f"{a.shape[-1]} and {b.shape[-2 if b.ndim > 1 else -1]} differ)")

    def backward(g):
        a2 = a.data[None, :] if a.ndim == 1 else a.data
        b2 = b.data[:, None] if b.ndim == 1 else b.data
        g2 = g
        if a.ndim == 1 and b.ndim == 1:
            g2 = np.reshape(g2, (1, 1))  # vector @ vector: g is 0-D
        elif a.ndim == 1:
            g2 = np.expand_dims(g2, -2)
        elif b.ndim == 1:
            g2 = np.expand_dims(g2, -1)
        grad_a = g2 @ np.swapaxes(b2, -1, -2)
        grad_b = np.swapaxes(a2, -1, -2) @ g2
        if a.ndim == 1:
            grad_a = grad_a.squeeze(-2)
        if b.ndim == 1:
            grad_b = grad_b.squeeze(-1)
        return _unbroadcast(grad_a, a.shape), _unbroadcast(grad_b, b.shape)
    return make_op(a.data @ b.data, (a, b), backward, "MmBackward")


def _axes(dim, ndim: int):
    if dim is None:
        return None
    dims = (dim,) if isinstance(dim, numbers.Integral) else tuple(dim)
    for d in dims:
        if not -ndim <= d < max(ndim, 1):
            raise IndexError(f"dim {d} is out of range for a Tensor with {ndim} dimensions")
    return tuple(d % max(ndim, 1) for d in dims)


def sum_(a: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    axes = _axes(dim, a.ndim)
    out = np.sum(a.data, axis=axes, keepdims=keepdim)

    def backward(g):
        if not keepdim and axes is not None:
            g = np.expand_dims(g, axes)
        return (np.broadcast_to(g, a.shape).copy(),)
    return make_op(np.asarray(out), (a,), backward, "SumBackward")


def mean(a: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    axes = _axes(dim, a.ndim)
    count = a.data.size if axes is None else int(np.prod([a.shape[d] for d in axes]))
    return sum_(a, dim, keepdim) * (1.0 / count)


def max_(a: Tensor, dim=None, keepdim: bool = False):
    """Maximum over all elements, or ``(values, indices)`` along ``dim`` (as torch.max).

    The gradient goes to the first maximal element.
    """
    if dim is None:
        flat = int(np.argmax(a.data))

        def backward_all(g):
            grad = np.zeros(a.data.size, a.dtype)
            grad[flat] = g
            return (grad.reshape(a.shape),)
        return make_op(np.asarray(a.data.reshape(-1)[flat]), (a,), backward_all, "MaxBackward")
    (axis,) = _axes(dim, a.ndim)
    indices = np.argmax(a.data, axis=axis)
    values = np.take_along_axis(a.data, np.expand_dims(indices, axis), axis)

    def backward(g):
        grad = np.zeros(a.shape, a.dtype)
        g = g if keepdim else np.expand_dims(g, axis)
        np.put_along_axis(grad, np.expand_dims(indices, axis), g, axis)
        return (grad,)
    out = make_op(values if keepdim else values.squeeze(axis), (a,), backward, "MaxBackward")
    return out, Tensor(np.expand_dims(indices, axis) if keepdim else indices)


def _shape_args(shape) -> tuple:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


def reshape(a: Tensor, *shape) -> Tensor:
    shape = _shape_args(shape)
    try:
        out = a.data.reshape(shape)
    except ValueError:
        raise ValueError(f"cannot reshape a Tensor of shape {a.shape} ({a.data.size} elements) "
                         f"into shape {shape}") from None
    return make_op(out, (a,), lambda g: (g.reshape(a.shape),), "ViewBackward")


def flatten(a: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge dimensions start_dim .. end_dim into one."""
    if a.ndim == 0:
        return reshape(a, 1)
    start, end = start_dim % a.ndim, end_dim % a.ndim
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    shape = a.shape[:start] + (int(np.prod(a.shape[start:end + 1])),) + a.shape[end + 1:]
    return reshape(a, shape)


def permute(a: Tensor, *dims) -> Tensor:
    dims = _shape_args(dims)
    if sorted(d % max(a.ndim, 1) for d in dims) != list(range(a.ndim)):
        raise ValueError(f"permute needs a reordering of all {a.ndim} dims, got {dims}")
    inverse = np.argsort([d % a.ndim for d in dims])
    return make_op(np.transpose(a.data, dims), (a,), lambda g: (np.transpose(g, inverse),),
                   "PermuteBackward")


def transpose(a: Tensor, dim0: int, dim1: int) -> Tensor:
    dims = list(range(a.ndim))
    dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
    return permute(a, *dims)


def getitem(a: Tensor, index) -> Tensor:
    """Indexing and slicing; the gradient is scattered back (repeated indices add up)."""
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)

    def backward(g):
        grad = np.zeros(a.shape, a.dtype)
        np.add.at(grad, index, g)
        return (grad,)
    return make_op(np.asarray(a.data[index]), (a,), backward, "IndexBackward")


def cat(tensors, dim: int = 0) -> Tensor:
    """Join Tensors along an existing dimension (e.g. Inception branches along channels)."""
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("cat needs at least one Tensor")
    if tensors[0].ndim == 0:
        raise ValueError("cat: zero-dimensional Tensors cannot be concatenated; use stack")
    axis = dim % tensors[0].ndim
    for t in tensors[1:]:
        if t.ndim != tensors[0].ndim or any(s != r for i, (s, r) in enumerate(zip(t.shape, tensors[0].shape))
                                             if i != axis):
            raise ValueError(f"cat: all Tensors must match except along dim {dim}, got shapes "
                             f"{[tuple(x.shape) for x in tensors]}")
    sizes = np.cumsum([t.shape[axis] for t in tensors])[:-1]

    def backward(g):
        return tuple(np.split(g, sizes, axis=axis))
    return make_op(np.concatenate([t.data for t in tensors], axis=axis), tuple(tensors), backward,
                   "CatBackward")


def stack(tensors, dim: int = 0) -> Tensor:
    """Join Tensors of equal shape along a new dimension."""
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("stack needs at least one Tensor")
    if len({t.shape for t in tensors}) != 1:
        raise ValueError(f"stack: all Tensors must have the same shape, got {[t.shape for t in tensors]}")
    axis = dim % (tensors[0].ndim + 1)

    def backward(g):
        return tuple(np.take(g, i, axis=axis) for i in range(len(tensors)))
    return make_op(np.stack([t.data for t in tensors], axis=axis), tuple(tensors), backward,
                   "StackBackward")
