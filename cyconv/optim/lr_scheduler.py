"""Learning-rate schedules: change each group's ``lr`` as training goes on.

Call ``scheduler.step()`` once per epoch, *after* the epoch's ``optimizer.step()`` calls::

    scheduler = StepLR(optimizer, step_size=30, gamma=0.1)
    for epoch in range(100):
        train_one_epoch(model, optimizer)
        scheduler.step()

Creating a scheduler records each group's starting learning rate as ``"initial_lr"`` in the
group (as PyTorch does), and sets ``lr`` to the schedule's value for epoch 0.

The learning rate is computed from the epoch number in closed form (PyTorch computes most
schedules recursively from the previous value, which gives the same numbers up to
rounding). So a change made by hand to ``group["lr"]`` is overwritten by the next
``scheduler.step()``.
"""

from __future__ import annotations

import math
import numbers

from .optimizer import Optimizer, check_number

__all__ = ["LRScheduler", "StepLR", "CosineAnnealingLR"]


class LRScheduler:
    """Base class: subclasses implement ``_lr_at(base_lr, epoch)``.

    ``last_epoch`` counts the calls to ``step()`` (-1 before the first, done by the
    constructor). To resume, either load the scheduler's ``state_dict()``, or pass
    ``last_epoch`` of the last finished epoch to a new scheduler on an optimizer whose
    groups have ``"initial_lr"`` (e.g. restored from the optimizer's state dict).
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a cyconv.optim.Optimizer, got "
                            f"{type(optimizer).__name__}")
        if isinstance(last_epoch, bool) or not isinstance(last_epoch, numbers.Integral):
            raise TypeError(f"last_epoch must be an int, got {last_epoch!r}")
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(f"param 'initial_lr' is not specified in param_groups[{i}] "
                                   f"when resuming an optimizer (last_epoch={last_epoch})")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = int(last_epoch)
        self._last_lr = [group["lr"] for group in optimizer.param_groups]
        self.step()

    def _lr_at(self, base_lr: float, epoch: int) -> float:
        raise NotImplementedError

    def get_lr(self) -> list:
        """The learning rate of every group at ``last_epoch``."""
        return [self._lr_at(base, self.last_epoch) for base in self.base_lrs]

    def get_last_lr(self) -> list:
        """The learning rates set by the last ``step()``, one per group."""
        return list(self._last_lr)

    def step(self) -> None:
        """Advance one epoch and set every group's ``lr``."""
        self.last_epoch += 1
        lrs = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = lrs

    def state_dict(self) -> dict:
        """Everything but the optimizer (which has its own state dict)."""
        return {k: (list(v) if isinstance(v, list) else v)
                for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict) -> None:
        self.__dict__.update({k: (list(v) if isinstance(v, list) else v)
                              for k, v in state_dict.items() if k != "optimizer"})

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.state_dict().items()
                         if not k.startswith("_") and k != "base_lrs")
        return f"{type(self).__name__}({args})"


class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs:
    ``lr = initial_lr * gamma ** (epoch // step_size)``."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1,
                 last_epoch: int = -1):
        if isinstance(step_size, bool) or not isinstance(step_size, numbers.Integral):
            raise TypeError(f"step_size must be an int, got {step_size!r}")
        if step_size < 1:
            raise ValueError(f"Invalid step_size: {step_size} (must be >= 1)")
        check_number("gamma", gamma)
        self.step_size = int(step_size)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def _lr_at(self, base_lr, epoch):
        return base_lr * self.gamma ** (epoch // self.step_size)


class CosineAnnealingLR(LRScheduler):
    """Half a cosine from the initial learning rate down to ``eta_min`` over ``T_max`` epochs:
    ``lr = eta_min + (initial_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2``.

    After ``T_max`` epochs the cosine goes on, so the rate climbs back up (as in PyTorch);
    usually one sets ``T_max`` to the number of epochs.
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0,
                 last_epoch: int = -1):
        if isinstance(T_max, bool) or not isinstance(T_max, numbers.Integral):
            raise TypeError(f"T_max must be an int, got {T_max!r}")
        if T_max < 1:
            raise ValueError(f"Invalid T_max: {T_max} (must be >= 1)")
        check_number("eta_min", eta_min)
        self.T_max = int(T_max)
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def _lr_at(self, base_lr, epoch):
        cosine = (1 + math.cos(math.pi * epoch / self.T_max)) / 2
        return self.eta_min + (base_lr - self.eta_min) * cosine
