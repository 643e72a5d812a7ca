"""``Dropout``: randomly zero activations during training (a regulariser)."""

from __future__ import annotations

from .. import functional as F
from ._utils import as_input, check_probability
from .module import Module

__all__ = ["Dropout"]


class Dropout(Module):
    """In training mode, zero each element with probability ``p`` and scale the rest by
    ``1 / (1 - p)`` (so the expected value is unchanged); in eval mode, the identity.

    Any shape in, the same shape out. The mask is drawn from cyconv's generator, so
    ``cyconv.manual_seed`` makes it reproducible. ``inplace`` is accepted for PyTorch
    compatibility and ignored (computed out of place).

    ``p`` must be in [0, 1): PyTorch also accepts p=1 (drop everything, a network that
    cannot learn), cyconv refuses it, here as in ``functional.dropout``.
    """

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        self.p = check_probability(p, "dropout probability p")
        if self.p == 1.0:
            raise ValueError("dropout probability p must be in [0, 1), got 1 (every activation "
                             "would be zeroed)")
        self.inplace = bool(inplace)

    def forward(self, input):
        return F.dropout(as_input(input, "Dropout"), self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"
