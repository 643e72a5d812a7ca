"""``Flatten``: merge dimensions, typically between the convolutions and the classifier."""

from __future__ import annotations

from .. import functional as F
from ._utils import as_input, is_int
from .module import Module

__all__ = ["Flatten"]


class Flatten(Module):
    """Merge dims ``start_dim..end_dim`` into one: ``(N, C, H, W) -> (N, C*H*W)`` by default.

    The batch dimension (0) is kept because ``start_dim`` defaults to 1.
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        for name, value in (("start_dim", start_dim), ("end_dim", end_dim)):
            if not is_int(value):
                raise TypeError(f"{name} must be an int, got {value!r}")
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, input):
        return F.flatten(as_input(input, "Flatten"), self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
