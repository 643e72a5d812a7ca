"""Loss layers: ``CrossEntropyLoss`` and ``MSELoss`` (wrappers of the functional losses)."""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ..autograd import Tensor
from ._utils import as_input
from .module import Module

__all__ = ["CrossEntropyLoss", "MSELoss"]

_REDUCTIONS = ("mean", "sum", "none")


class _Loss(Module):
    """Keeps and checks ``reduction``."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction


class CrossEntropyLoss(_Loss):
    """Softmax + negative log-likelihood of the target class, as ``torch.nn.CrossEntropyLoss``.

    ``loss(logits, target)``: logits ``(N, C)`` of raw scores (no softmax before!), target
    ``(N,)`` integer class indices in ``[0, C)``. ``reduction``: ``'mean'`` (default, a
    scalar), ``'sum'`` or ``'none'`` (the ``(N,)`` per-sample losses).

    ``weight`` (keyword-only, ``(C,)``) weighs the classes; it is kept as a buffer, as in
    PyTorch. Unlike PyTorch, the first positional argument is ``reduction`` (as in
    ``cyconv.functional.cross_entropy``); pass ``weight=`` by keyword.
    """

    def __init__(self, reduction: str = "mean", *, weight=None):
        super().__init__(reduction)
        if isinstance(weight, Tensor):
            weight = weight.data
        if weight is not None:
            weight = np.array(weight, dtype=np.float32)
            if weight.ndim != 1:
                raise ValueError(f"weight must be 1-D (one weight per class), got shape {weight.shape}")
        self.register_buffer("weight", weight)

    def forward(self, input, target):
        return F.cross_entropy(as_input(input, "CrossEntropyLoss"), target,
                               reduction=self.reduction, weight=self.weight)


class MSELoss(_Loss):
    """Mean squared error ``mean((input - target)**2)``; input and target of the same shape."""

    def forward(self, input, target):
        return F.mse_loss(as_input(input, "MSELoss"), target, reduction=self.reduction)
