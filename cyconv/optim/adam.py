"""Adam and AdamW: per-parameter step sizes from running averages of the gradient.

The update of one parameter ``p`` with gradient ``g`` at step ``t = 1, 2, ...``
(PyTorch's rule)::

    Adam:   g = g + weight_decay * p             # L2 penalty, folded into the gradient
    AdamW:  p = p * (1 - lr * weight_decay)      # decoupled weight decay, g unchanged
    m = beta1 * m + (1 - beta1) * g              # exp_avg: running mean of g
    v = beta2 * v + (1 - beta2) * g * g          # exp_avg_sq: running mean of g^2
    v_max = max(v_max, v); use v_max for v       # only with amsgrad=True
    m_hat = m / (1 - beta1**t)                   # bias corrections: m and v start at 0
    v_hat = v / (1 - beta2**t)
    p = p - lr * m_hat / (sqrt(v_hat) + eps)     # eps is added after the square root

Why AdamW: with Adam, the decay term passes through the division by ``sqrt(v_hat)``, so
weights with large gradients are barely decayed. AdamW shrinks every weight by the same
factor instead (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", 2019).
Note the different defaults: ``weight_decay=0`` for Adam, ``1e-2`` for AdamW (as PyTorch).
"""

from __future__ import annotations

import math

import numpy as np

from .optimizer import Optimizer, check_number

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """Adam: ``Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
    amsgrad=False)``.

    State per parameter: ``"step"`` (int), ``"exp_avg"``, ``"exp_avg_sq"`` and, with
    ``amsgrad``, ``"max_exp_avg_sq"`` (arrays of the parameter's shape and dtype).
    ``weight_decay`` is an L2 penalty added to the gradient; see :class:`AdamW` for the
    decoupled kind.
    """

    #: AdamW sets this: decay the weights directly instead of adding to the gradient
    _decoupled_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad)
        self._check_group(defaults)  # normalises betas to a tuple
        super().__init__(params, defaults)

    def _check_group(self, group: dict) -> None:
        check_number("learning rate (lr)", group["lr"])
        check_number("eps", group["eps"])
        check_number("weight_decay", group["weight_decay"])
        betas = group["betas"]
        if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        for i, beta in enumerate(betas):
            check_number(f"beta parameter at index {i} (betas[{i}])", beta, high=1.0)
        group["betas"] = tuple(betas)
        if not isinstance(group["amsgrad"], (bool, np.bool_)):
            raise TypeError(f"amsgrad must be True or False, got {group['amsgrad']!r}")

    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns ``closure()``'s loss."""
        loss = self._call_closure(closure)
        for index, group, p in self._indexed_params():
            grad = self._grad_of(p, index)
            if grad is None:
                continue
            lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]
            beta1, beta2 = group["betas"]
            data = p.data

            state = self.state.setdefault(p, {})
            if "step" not in state:
                state["step"] = 0
                state["exp_avg"] = np.zeros_like(data)
                state["exp_avg_sq"] = np.zeros_like(data)
            if group["amsgrad"] and "max_exp_avg_sq" not in state:
                state["max_exp_avg_sq"] = np.zeros_like(data)
            state["step"] = step = int(state["step"]) + 1
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]

            if weight_decay != 0:
                if self._decoupled_weight_decay:
                    data *= 1 - lr * weight_decay
                else:
                    grad = grad + weight_decay * data  # new array: .grad stays as it was

            exp_avg *= beta1
            exp_avg += (1 - beta1) * grad
            exp_avg_sq *= beta2
            exp_avg_sq += (1 - beta2) * (grad * grad)

            bias_correction1 = 1 - beta1 ** step
            bias_correction2_sqrt = math.sqrt(1 - beta2 ** step)
            if group["amsgrad"]:
                second = state["max_exp_avg_sq"]
                np.maximum(second, exp_avg_sq, out=second)
            else:
                second = exp_avg_sq
            denom = np.sqrt(second)
            denom /= bias_correction2_sqrt
            denom += eps
            data -= (lr / bias_correction1) * (exp_avg / denom)
        return loss


class AdamW(Adam):
    """Adam with decoupled weight decay: ``AdamW(params, lr=1e-3, betas=(0.9, 0.999),
    eps=1e-8, weight_decay=1e-2, amsgrad=False)``.

    Before the Adam step every parameter is multiplied by ``1 - lr * weight_decay``; the
    gradient itself is not changed. Same state as :class:`Adam`.
    """

    _decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad)

