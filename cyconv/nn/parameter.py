"""``Parameter``: a Tensor that a Module registers as one of its learnable weights."""

from __future__ import annotations

import numpy as np

from ..autograd import Tensor

__all__ = ["Parameter"]


class Parameter(Tensor):
    """A leaf Tensor that requires grad by default and is registered by ``Module``.

    ``Parameter(data, requires_grad=True)``. Assigning a Parameter to an attribute of a
    Module (``self.weight = Parameter(...)``) makes it appear in ``parameters()``,
    ``named_parameters()`` and ``state_dict()``; a plain Tensor is not registered.

    ``data`` may be an ndarray (float32/float64, kept as it is and shared, not copied, as
    ``torch.nn.Parameter`` shares its Tensor's storage), a Tensor (its array is shared) or
    a nested list / number (float32).
    """

    def __init__(self, data=None, requires_grad: bool = True):
        if data is None:
            data = np.empty(0, dtype=np.float32)
        if isinstance(data, Tensor):
            data = data.data
        super().__init__(data)
        if isinstance(data, np.ndarray):
            self.data = data  # share, do not copy (Tensor.__init__ copies)
        if requires_grad:
            self.requires_grad_(True)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()
