"""Check a backward against finite differences: does the chain rule you wrote hold?

Every operation in cyconv has a hand-written backward, and a wrong one does not crash: the
network just learns badly. :func:`gradcheck` catches that. It compares the gradient your
backward computes (the *analytic* gradient) with the one measured by nudging each input
element a little (the *numerical* gradient)::

    d f / d x_i  ~  (f(x + eps e_i) - f(x - eps e_i)) / (2 eps)      (central difference)

Check your own op
-----------------
Write the op with :func:`cyconv.autograd.make_op`, then run it on small float64 inputs::

    import numpy as np
    from cyconv import Tensor
    from cyconv.autograd import make_op
    from cyconv import gradcheck

    def cube(x):
        # y = x^3, so dL/dx = g * 3 x^2
        return make_op(x.data ** 3, (x,), lambda g: (g * 3 * x.data ** 2,), "CubeBackward")

    x = Tensor(np.random.randn(4, 3), requires_grad=True, dtype=np.float64)
    gradcheck(cube, x)           # True, or a GradcheckError saying where it differs

Use float64: with float32's 7 digits the finite differences are too noisy to tell a small
bug from rounding. Keep the inputs small (every element costs two calls of ``fn``) and
away from kinks (relu at 0, max with ties), where the derivative does not exist.
"""

from __future__ import annotations

import numpy as np

from .autograd import Tensor, no_grad

__all__ = ["gradcheck", "GradcheckError"]


class GradcheckError(RuntimeError):
    """The analytic and the numerical gradient of an input differ."""


def _as_inputs(inputs) -> tuple:
    if isinstance(inputs, Tensor):
        return (inputs,)
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs)
    raise TypeError(f"inputs must be a Tensor or a sequence of Tensors, got {type(inputs).__name__}")


def _checked_inputs(inputs: tuple) -> list[int]:
    """Indices of the inputs to check (those requiring grad); all must be float64."""
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad; create the inputs to check with "
                         "requires_grad=True")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck needs float64 inputs, but input {i} has dtype "
                            f"{inputs[i].dtype}: float32 is too imprecise for finite "
                            f"differences; use .double() or dtype=np.float64")
    return checked


def _outputs(result) -> list[Tensor]:
    """The floating Tensors among fn's results (a Tensor or a tuple; int indices are skipped)."""
    results = result if isinstance(result, (tuple, list)) else (result,)
    for r in results:
        if not isinstance(r, Tensor):
            raise TypeError(f"gradcheck: fn must return a Tensor or a tuple of Tensors, got "
                            f"{type(r).__name__}")
    return [r for r in results if r.dtype.kind == "f"]


def _projection(outputs: list[Tensor]) -> list[np.ndarray]:
    """One fixed random array R per output: we check the gradient of sum(output * R)."""
    rng = np.random.default_rng(1234)
    return [rng.standard_normal(o.shape) for o in outputs]


def _projected(fn, inputs: tuple, weights: list[np.ndarray]) -> float:
    """sum_k sum(output_k * R_k) with plain NumPy, no graph: one finite-difference sample."""
    with no_grad():
        outputs = _outputs(fn(*inputs))
    return float(sum(np.sum(o.data * r) for o, r in zip(outputs, weights)))


def _analytic(fn, inputs: tuple, checked: list[int]) -> tuple[list[np.ndarray], list]:
    """Gradients of sum(output * R) w.r.t. the checked inputs, from their backward."""
    saved = [inputs[i].grad for i in checked]
    for i in checked:
        inputs[i].grad = None
    try:
        outputs = _outputs(fn(*inputs))
        weights = _projection(outputs)
        for output, weight in zip(outputs, weights):
            if output.requires_grad:
                # retain_graph: several outputs may share one graph
                output.backward(weight.astype(output.dtype), retain_graph=True)
        grads = []
        for i in checked:
            grad = inputs[i].grad
            grads.append(np.zeros(inputs[i].shape) if grad is None else np.asarray(grad))
    finally:
        for i, grad in zip(checked, saved):
            inputs[i].grad = grad
    return grads, weights


def _numerical(fn, inputs: tuple, index: int, weights: list[np.ndarray], eps: float) -> np.ndarray:
    """Central differences (f(x + eps) - f(x - eps)) / (2 eps), one element at a time."""
    data = inputs[index].data
    grad = np.zeros(data.shape)
    for position in np.ndindex(data.shape):
        original = data[position]
        data[position] = original + eps
        plus = _projected(fn, inputs, weights)
        data[position] = original - eps
        minus = _projected(fn, inputs, weights)
        data[position] = original
        grad[position] = (plus - minus) / (2 * eps)
    return grad


def _compare(index: int, analytic: np.ndarray, numerical: np.ndarray, shape: tuple,
             atol: float, rtol: float) -> str | None:
    """None if |analytic - numerical| <= atol + rtol |numerical| everywhere, else a message."""
    if analytic.shape != shape:
        return (f"gradcheck: the gradient of input {index} has shape {analytic.shape}, but the "
                f"input has shape {shape}")
    excess = np.abs(analytic - numerical) - (atol + rtol * np.abs(numerical))
    if not np.all(np.isfinite(analytic)):
        excess = np.where(np.isfinite(analytic), excess, np.inf)
    if excess.size == 0 or np.max(excess) <= 0:
        return None
    worst = np.unravel_index(int(np.argmax(excess)), shape)
    return (f"gradcheck: gradient mismatch for input {index} (shape {shape}); worst element "
            f"{tuple(int(i) for i in worst)}: analytic {float(analytic[worst]):.8g}, numerical "
            f"{float(numerical[worst]):.8g} (difference {abs(analytic[worst] - numerical[worst]):.3g}, "
            f"allowed atol + rtol*|numerical| = {atol + rtol * abs(numerical[worst]):.3g})")


def gradcheck(fn, inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              raise_exception: bool = True) -> bool:
    """Compare ``fn``'s backward with central finite differences, for every input that
    requires grad.

    ``inputs`` is a Tensor or a sequence of them (other items, such as ints, are passed to
    ``fn`` unchanged); those with ``requires_grad`` must be float64. ``fn(*inputs)``
    returns a Tensor, or a tuple of Tensors whose integer ones (indices) are ignored. To
    check non-scalar outputs with one backward, the function checked is
    ``sum(fn(*inputs) * R)`` for a fixed random array R of the output's shape.

    An element passes if ``|analytic - numerical| <= atol + rtol * |numerical|``. Returns
    True if every element passes. Otherwise raises :class:`GradcheckError` naming the
    input, the worst element and both values (or returns False if not
    ``raise_exception``). The inputs' ``.grad`` are left as they were.
    """
    inputs = _as_inputs(inputs)
    checked = _checked_inputs(inputs)
    analytic, weights = _analytic(fn, inputs, checked)
    for index, grad in zip(checked, analytic):
        numerical = _numerical(fn, inputs, index, weights, eps)
        problem = _compare(index, grad, numerical, inputs[index].shape, atol, rtol)
        if problem is not None:
            if raise_exception:
                raise GradcheckError(problem)
            return False
    return True
