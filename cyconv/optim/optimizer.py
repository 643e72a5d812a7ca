"""The optimizer base class: parameter groups, per-parameter state, and their state dict.

An optimizer holds

- ``param_groups``: a list of dicts. Each has ``"params"`` (a list of Tensors) and the
  hyper-parameters used for them (``"lr"``, ``"momentum"``, ...). Giving several groups
  lets one model train its parts with different settings, e.g. a smaller learning rate for
  a pretrained backbone::

      SGD([{"params": backbone.parameters(), "lr": 1e-3},
           {"params": head.parameters()}], lr=1e-2, momentum=0.9)

  Hyper-parameters a group does not give are taken from the keyword arguments (the
  ``defaults``).
- ``state``: a dict from each parameter (the Tensor object itself) to a dict of what the
  update rule remembers between steps (a momentum buffer, Adam's running averages, the
  step count). It is filled in lazily, on a parameter's first update.

``step()`` updates every parameter whose ``.grad`` is not None, in place on ``.data``;
``zero_grad()`` clears the gradients before the next backward pass.

``state_dict()`` / ``load_state_dict()`` use PyTorch's layout, in which parameters are
named by their position (counted across all groups, in order), since Tensors cannot be
saved::

    {"state": {0: {"momentum_buffer": array(...)}, 1: {...}},
     "param_groups": [{"lr": 0.1, "momentum": 0.9, ..., "params": [0, 1]}]}
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping

import numpy as np

from ..autograd import Tensor, enable_grad

__all__ = ["Optimizer", "required"]


class _Required:
    """Marks a hyper-parameter without a default: every group must give it."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _Required()


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_number(name: str, value, *, low=0.0, low_inclusive=True, high=None,
                 high_inclusive=False) -> None:
    """Raise TypeError/ValueError naming ``name`` unless ``value`` is a number in range.

    NaN is never in range. The message gives the allowed range and the value received.
    """
    if not _is_real(value):
        raise TypeError(f"{name} must be a real number, got {value!r} "
                        f"(type {type(value).__name__})")
    ok = value >= low if low_inclusive else value > low
    if high is not None:
        ok = ok and (value <= high if high_inclusive else value < high)
    if not ok:  # also catches NaN, for which every comparison is False
        lo = f"{'>=' if low_inclusive else '>'} {low}"
        hi = "" if high is None else f" and {'<=' if high_inclusive else '<'} {high}"
        raise ValueError(f"Invalid {name}: {value!r} (must be {lo}{hi})")


class Optimizer:
    """Base class of the optimizers: holds the parameter groups and the per-parameter state.

    Subclasses call ``super().__init__(params, defaults)`` with a dict of default
    hyper-parameters, implement ``step()``, and may override ``_check_group(group)`` to
    validate (and normalise) a group's hyper-parameters; it runs for every group given to
    the constructor or to ``add_param_group``, and for every group loaded from a state dict.
    """

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.state: dict = {}
        self.param_groups: list[dict] = []

        if isinstance(params, Tensor):
            raise TypeError("params must be an iterable of Tensors or of dicts (parameter "
                            "groups), got a single Tensor; wrap it in a list: [tensor]")
        if isinstance(params, (set, frozenset)):
            raise TypeError("params must be an ordered iterable (a list, tuple or generator), "
                            "not a set: the order of the parameters names them in state_dict()")
        if isinstance(params, Mapping):
            raise TypeError("params must be an iterable of Tensors or of dicts; got a single "
                            "dict: for one parameter group, pass a list holding it: [group]")
        if not isinstance(params, Iterable):
            raise TypeError(f"params must be an iterable of Tensors or of dicts (parameter "
                            f"groups), got {type(params).__name__}")
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list: nothing to optimize "
                             "(does the model have parameters?)")
        n_dicts = sum(isinstance(p, Mapping) for p in params)
        if n_dicts == 0:
            groups = [{"params": params}]
        elif n_dicts == len(params):
            groups = params
        else:
            raise TypeError("params must be either all Tensors or all dicts (parameter "
                            "groups), not a mixture of the two")
        for group in groups:
            self.add_param_group(group)

    # --- parameter groups --------------------------------------------------------------
    def add_param_group(self, param_group: Mapping) -> None:
        """Add a group of parameters (a dict with ``"params"`` and optional hyper-parameters).

        Useful to unfreeze layers during fine-tuning. Hyper-parameters the group does not
        give come from the optimizer's defaults.
        """
        if not isinstance(param_group, Mapping):
            raise TypeError(f"a parameter group must be a dict, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError("a parameter group must have a 'params' entry with its Tensors, "
                             f"got keys {sorted(map(str, param_group))}")
        group = dict(param_group)
        params = group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError("a group's params must be an ordered iterable (list, tuple or "
                            "generator), not a set")
        elif not isinstance(params, Iterable):
            raise TypeError(f"a group's params must be a Tensor or an iterable of Tensors, "
                            f"got {type(params).__name__}")
        params = list(params)
        n_before = sum(len(g["params"]) for g in self.param_groups)
        for i, p in enumerate(params):
            where = f"parameter {n_before + i}"
            if not isinstance(p, Tensor):
                raise TypeError(f"an optimizer can only optimize Tensors, but {where} is "
                                f"{type(p).__name__}")
            # a frozen parameter (requires_grad False) is accepted, as in PyTorch: it gets
            # no gradient, so step() leaves it alone, and unfreezing it later just works
            if not p.is_leaf:
                raise ValueError(f"{where} (shape {tuple(p.shape)}) is not a leaf Tensor "
                                 f"(it is the result of an operation); only leaves can be "
                                 f"optimized")
        ids = [id(p) for p in params]
        if len(set(ids)) != len(ids):
            raise ValueError("a parameter group contains the same parameter more than once; "
                             "it would be updated twice per step")
        known = {id(p) for g in self.param_groups for p in g["params"]}
        if known.intersection(ids):
            raise ValueError("some parameters appear in more than one parameter group")
        group["params"] = params

        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"parameter group didn't specify a value of required "
                                 f"optimization parameter {name}")
            group.setdefault(name, default)
        self._check_group(group)
        self.param_groups.append(group)

    def _check_group(self, group: dict) -> None:
        """Validate a group's hyper-parameters in place (raise ValueError/TypeError)."""
        if "lr" in group:
            check_number("learning rate (lr)", group["lr"])

    # --- the update ----------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients of all parameters.

        ``set_to_none=True`` (the default, as in PyTorch) sets ``.grad`` to None, which
        frees the memory and makes ``step()`` skip parameters that get no new gradient;
        ``False`` fills the existing gradient arrays with zeros instead.
        """
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad[...] = 0

    def step(self, closure=None):
        """Update the parameters once; ``closure`` (optional) recomputes and returns the loss."""
        raise NotImplementedError(f"{type(self).__name__} does not implement step()")

    def _call_closure(self, closure):
        if closure is None:
            return None
        with enable_grad():
            return closure()

    @staticmethod
    def _grad_of(p: Tensor, index: int) -> np.ndarray | None:
        """The parameter's gradient as an array of its dtype (None if it has none)."""
        if p.grad is None:
            return None
        grad = np.asarray(p.grad)
        if grad.shape != p.data.shape:
            raise ValueError(f"the gradient of parameter {index} has shape {grad.shape}, "
                             f"but the parameter has shape {p.data.shape}")
        return grad.astype(p.data.dtype, copy=False)

    def _indexed_params(self):
        """(index across groups, group, param) for every parameter, in order."""
        index = 0
        for group in self.param_groups:
            for p in group["params"]:
                yield index, group, p
                index += 1

    # --- state dict ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The optimizer's state in PyTorch's layout (see the module docstring).

        Unlike PyTorch, the arrays are copies, not the live buffers: the result is a
        snapshot that later steps do not change, so it can be kept in memory as a
        checkpoint.
        """
        index_of = {}
        groups = []
        for group in self.param_groups:
            saved = {k: v for k, v in group.items() if k != "params"}
            saved["params"] = []
            for p in group["params"]:
                index_of.setdefault(id(p), len(index_of))
                saved["params"].append(index_of[id(p)])
            groups.append(saved)
        state = {}
        for _, _, p in self._indexed_params():
            if p in self.state:
                state[index_of[id(p)]] = {
                    name: (value.copy() if isinstance(value, np.ndarray) else value)
                    for name, value in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Restore the state saved by ``state_dict()`` (maybe from another run).

        The optimizer must have been built for the same parameters: as many groups, each
        with as many parameters, in the same order. Hyper-parameters are taken from the
        state dict; arrays are copied and cast to each parameter's dtype. Nothing changes
        if the state dict does not fit (the error says where).
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        missing = [k for k in ("state", "param_groups") if k not in state_dict]
        if missing:
            raise ValueError(f"optimizer state_dict has no {' or '.join(map(repr, missing))} "
                             f"entry; it has keys {sorted(map(str, state_dict))}")
        saved_groups = list(state_dict["param_groups"])
        saved_state = state_dict["state"]
        if not isinstance(saved_state, Mapping):
            raise TypeError(f"state_dict['state'] must be a dict, got "
                            f"{type(saved_state).__name__}")
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(saved_groups)} parameter group(s), "
                             f"but the optimizer has {len(self.param_groups)}")

        param_of = {}  # saved index -> current parameter
        new_groups = []
        for g, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if not isinstance(saved, Mapping) or "params" not in saved:
                raise ValueError(f"parameter group {g} of the loaded state dict is not a "
                                 f"dict with a 'params' entry")
            indices = list(saved["params"])
            if len(indices) != len(group["params"]):
                raise ValueError(f"parameter group {g}: the loaded state dict has "
                                 f"{len(indices)} parameter(s), but the optimizer's group "
                                 f"has {len(group['params'])}")
            for index, p in zip(indices, group["params"]):
                param_of[_as_index(index)] = p
            new_group = {k: v for k, v in group.items() if k != "params"}
            new_group.update((k, v) for k, v in saved.items() if k != "params")
            new_group["params"] = group["params"]
            try:
                self._check_group(new_group)
            except (TypeError, ValueError) as error:
                raise type(error)(f"parameter group {g} of the loaded state dict: "
                                  f"{error}") from None
            new_groups.append(new_group)

        new_state = {}
        for key, entries in saved_state.items():
            index = _as_index(key)
            if index not in param_of:
                raise ValueError(f"the loaded state dict has state for parameter {key!r}, "
                                 f"which is in none of its parameter groups")
            if not isinstance(entries, Mapping):
                raise TypeError(f"the state of parameter {index} must be a dict, got "
                                f"{type(entries).__name__}")
            p = param_of[index]
            restored = {}
            for name, value in entries.items():
                if isinstance(value, Tensor):
                    value = value.data
                if isinstance(value, np.ndarray):
                    if value.ndim > 0 and value.shape != p.data.shape:
                        raise ValueError(f"state {name!r} of parameter {index} has shape "
                                         f"{value.shape}, but the parameter has shape "
                                         f"{p.data.shape}")
                    dtype = p.data.dtype if value.dtype.kind == "f" else value.dtype
                    value = np.array(value, dtype=dtype, copy=True)
                restored[name] = value
            new_state[p] = restored

        self.param_groups[:] = new_groups
        self.state = new_state

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(group):
                if key != "params":
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


def _as_index(key) -> int:
    """A parameter index from a state dict: an int, or a string of digits (e.g. from JSON)."""
    if isinstance(key, (bool, np.bool_)):
        raise TypeError(f"parameter indices in a state dict must be ints, got {key!r}")
    if isinstance(key, numbers.Integral):
        return int(key)
    if isinstance(key, str) and key.isdigit():
        return int(key)
    raise TypeError(f"parameter indices in a state dict must be ints, got {key!r}")
