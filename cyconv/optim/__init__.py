"""Optimizers: turn the gradients left by ``loss.backward()`` into parameter updates.

A training step::

    optimizer = cyconv.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for x, y in loader:
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()

The update rules are PyTorch's, to the formula: the same starting parameters and the same
gradients give the same parameters. Each optimizer's module docstring writes its rule out.

- :class:`Optimizer`: the base class (parameter groups, state, ``state_dict``).
- :class:`SGD`: plain, momentum, Nesterov, weight decay.
- :class:`Adam`, :class:`AdamW`: adaptive step sizes; L2 vs decoupled weight decay.
- :mod:`cyconv.optim.lr_scheduler`: :class:`StepLR`, :class:`CosineAnnealingLR`.
"""

from . import lr_scheduler
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler"]
