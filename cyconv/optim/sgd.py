"""Stochastic gradient descent, with optional momentum, dampening, Nesterov and weight decay.

The update of one parameter ``p`` with gradient ``g`` (PyTorch's rule, step by step)::

    g = g + weight_decay * p                      # L2 penalty (weight_decay/2 * |p|^2)
    if momentum != 0:
        if first step:  buf = g                   # no dampening on the first step
        else:           buf = momentum * buf + (1 - dampening) * g
        g = g + momentum * buf if nesterov else buf
    p = p - lr * g

Note for readers of papers: PyTorch's (and so cyconv's) momentum multiplies the learning
rate *after* the buffer is formed (``p -= lr * buf``), whereas some texts write
``v = mu * v - lr * g; p += v``. Both agree while ``lr`` stays constant, and differ when a
scheduler changes it.
"""

from __future__ import annotations

import numpy as np

from .optimizer import Optimizer, check_number

__all__ = ["SGD"]


class SGD(Optimizer):
    """Stochastic gradient descent: ``SGD(params, lr=1e-3, momentum=0, dampening=0,
    weight_decay=0, nesterov=False)``.

    ``params`` is an iterable of Tensors (e.g. ``model.parameters()``) or of parameter-group
    dicts. State per parameter: ``"momentum_buffer"`` (only when momentum is used).
    The default ``lr=1e-3`` is PyTorch's (since 2.0); real training usually sets it.
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
                 nesterov=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov)
        # check the arguments before looking at params, so that a bad keyword is reported
        # as such even when params is also bad
        self._check_group(dict(defaults))
        super().__init__(params, defaults)

    def _check_group(self, group: dict) -> None:
        check_number("learning rate (lr)", group["lr"])
        check_number("momentum", group["momentum"])
        check_number("dampening", group["dampening"], low=-np.inf)
        check_number("weight_decay", group["weight_decay"])
        if not isinstance(group["nesterov"], (bool, np.bool_)):
            raise TypeError(f"nesterov must be True or False, got {group['nesterov']!r}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(f"Nesterov momentum requires a momentum > 0 and zero dampening, "
                             f"got momentum={group['momentum']!r}, "
                             f"dampening={group['dampening']!r}")

    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns ``closure()``'s loss."""
        loss = self._call_closure(closure)
        for index, group, p in self._indexed_params():
            grad = self._grad_of(p, index)
            if grad is None:
                continue
            lr, momentum = group["lr"], group["momentum"]
            dampening, weight_decay = group["dampening"], group["weight_decay"]

            if weight_decay != 0:
                grad = grad + weight_decay * p.data  # a new array: .grad stays as it was
            if momentum != 0:
                state = self.state.setdefault(p, {})
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = np.array(grad, dtype=p.data.dtype, copy=True)
                    state["momentum_buffer"] = buf
                else:
                    buf *= momentum
                    buf += (1 - dampening) * grad
                if group["nesterov"]:
                    grad = grad + momentum * buf
                else:
                    grad = buf
            p.data -= lr * grad
        return loss
