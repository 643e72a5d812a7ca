"""``Module``: the base class of every layer and model.

A Module is a Python object whose attributes are watched: assigning a :class:`Parameter`
registers a learnable weight, assigning a Module registers a sub-module, and
:meth:`Module.register_buffer` registers a *buffer*, an ndarray that is part of the
model's state but not learnt by gradient descent (BatchNorm's running mean and variance).
From these registrations come, recursively and with dotted names as in PyTorch:

- ``parameters()`` / ``named_parameters()`` for the optimiser,
- ``state_dict()`` / ``load_state_dict()`` for saving and loading
  (``"features.0.weight"``, ``"bn1.running_mean"``, ``"bn1.num_batches_tracked"``),
- ``train()`` / ``eval()``, ``zero_grad()``, ``requires_grad_()``, ``to(dtype)``,
- a nested ``repr`` that shows the architecture.

Calling a module (``model(x)``) runs its forward pre-hooks, :meth:`Module.forward`, then its
forward hooks.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from ..autograd import Tensor
from .parameter import Parameter

__all__ = ["Module", "RemovableHandle", "IncompatibleKeys"]


class RemovableHandle:
    """Returned by ``register_forward_hook``: ``handle.remove()`` unregisters the hook.

    Also a context manager: ``with model.register_forward_hook(fn): model(x)``.
    """

    _next_id = itertools.count()

    def __init__(self, hooks: OrderedDict):
        self._hooks = hooks
        self.id = next(RemovableHandle._next_id)

    def remove(self) -> None:
        self._hooks.pop(self.id, None)

    def __enter__(self) -> "RemovableHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict(..., strict=False)`` could not match."""

    missing_keys: list
    unexpected_keys: list

    def __repr__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return (f"IncompatibleKeys(missing_keys={self.missing_keys}, "
                f"unexpected_keys={self.unexpected_keys})")


def _indent(text: str, spaces: int) -> str:
    """Indent every line of ``text`` but the first (for nested reprs)."""
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    pad = " " * spaces
    return lines[0] + "\n" + "\n".join(pad + line for line in lines[1:])


def _to_ndarray(value) -> np.ndarray:
    """A state-dict value as an ndarray: ndarrays, cyconv Tensors, torch Tensors, numbers."""
    if isinstance(value, Tensor):
        return value.data
    if not isinstance(value, np.ndarray) and hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()  # a torch.Tensor: no import of torch needed
    return np.asarray(value)


class Module:
    """Base class of all layers and models; subclasses define ``__init__`` and ``forward``.

    ::

        class TwoLayer(nn.Module):
            def __init__(self):
                super().__init__()          # must come before any assignment below
                self.fc1 = nn.Linear(4, 8)  # registered as sub-module "fc1"
                self.fc2 = nn.Linear(8, 2)

            def forward(self, x):           # x: (N, 4) -> (N, 2)
                return self.fc2(F.relu(self.fc1(x)))

    ``self.training`` is True after construction; ``eval()`` switches it off recursively
    (Dropout and BatchNorm behave differently in the two modes).
    """

    training: bool

    def __init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "training", True)
        set_(self, "_parameters", OrderedDict())
        set_(self, "_buffers", OrderedDict())
        set_(self, "_non_persistent_buffers", set())
        set_(self, "_modules", OrderedDict())
        set_(self, "_forward_hooks", OrderedDict())
        set_(self, "_forward_pre_hooks", OrderedDict())

    # --- forward -------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward(); subclasses of "
                                  f"Module must define forward()")

    def __call__(self, *args, **kwargs):
        for hook in list(self._forward_pre_hooks.values()):
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        output = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, output)
            if result is not None:
                output = result
        return output

    def register_forward_hook(self, hook) -> RemovableHandle:
        """Call ``hook(module, inputs, output)`` after every forward pass of this module.

        ``inputs`` is the tuple of positional arguments. If the hook returns something other
        than None, that replaces the output. Returns a handle; ``handle.remove()`` unhooks.
        """
        if not callable(hook):
            raise TypeError(f"hook must be callable, got {type(hook).__name__}")
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    def register_forward_pre_hook(self, hook) -> RemovableHandle:
        """Call ``hook(module, inputs)`` before every forward pass; it may return new inputs."""
        if not callable(hook):
            raise TypeError(f"hook must be callable, got {type(hook).__name__}")
        handle = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    # --- registration ----------------------------------------------------------------------
    def _check_new_name(self, name, kind: str) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot register {kind} {name!r} before Module.__init__() "
                                 f"is called: call super().__init__() first")
        if not isinstance(name, str):
            raise TypeError(f"{kind} name must be a str, got {type(name).__name__}")
        if name == "" or "." in name:
            raise KeyError(f"{kind} name must be non-empty and contain no '.', got {name!r}")

    def _forget(self, name: str) -> None:
        for registry in (self.__dict__, self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        self._non_persistent_buffers.discard(name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Register ``param`` (or None: a declared but absent parameter, e.g. ``bias=False``)."""
        self._check_new_name(name, "parameter")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign {type(param).__name__} as parameter {name!r} "
                            f"(cyconv.nn.Parameter or None expected)")
        if hasattr(type(self), name):
            raise KeyError(f"attribute {name!r} already exists on {type(self).__name__}")
        self._forget(name)
        self._parameters[name] = param

    def register_buffer(self, name: str, array: np.ndarray | None, persistent: bool = True) -> None:
        """Register an ndarray that belongs to the state but is not learnt.

        Buffers (BatchNorm's ``running_mean``, ``running_var``, ``num_batches_tracked``) are
        saved in ``state_dict()`` (unless ``persistent=False``) and converted by ``to()``.
        """
        self._check_new_name(name, "buffer")
        if array is not None and not isinstance(array, np.ndarray):
            raise TypeError(f"cannot assign {type(array).__name__} as buffer {name!r} "
                            f"(numpy.ndarray or None expected)")
        if hasattr(type(self), name):
            raise KeyError(f"attribute {name!r} already exists on {type(self).__name__}")
        self._forget(name)
        self._buffers[name] = array
        if not persistent:
            self._non_persistent_buffers.add(name)

    def add_module(self, name: str, module: "Module | None") -> None:
        """Register a sub-module under ``name`` (what ``self.name = module`` does)."""
        self._check_new_name(name, "module")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        if hasattr(type(self), name) and name not in self._modules:
            raise KeyError(f"attribute {name!r} already exists on {type(self).__name__}")
        self._forget(name)
        self._modules[name] = module

    register_module = add_module

    def __setattr__(self, name: str, value) -> None:
        params = self.__dict__.get("_parameters")
        if isinstance(value, Parameter):
            if params is None:
                raise AttributeError("cannot assign parameters before Module.__init__() call")
            self._forget(name)
            params[name] = value
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as parameter {name!r} "
                                f"(cyconv.nn.Parameter or None expected)")
            params[name] = None
        elif isinstance(value, Module):
            if params is None:
                raise AttributeError("cannot assign a sub-module before Module.__init__() call")
            self._forget(name)
            self._modules[name] = value
        elif params is not None and name in self._modules:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as child module {name!r} "
                                f"(Module or None expected)")
            self._modules[name] = None
        elif params is not None and name in self._buffers:
            if value is not None and not isinstance(value, np.ndarray):
                raise TypeError(f"cannot assign {type(value).__name__} as buffer {name!r} "
                                f"(numpy.ndarray or None expected)")
            self._buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str):
        # Called only when normal lookup fails: look in the registries.
        registries = self.__dict__
        for registry in ("_parameters", "_buffers", "_modules"):
            found = registries.get(registry)
            if found is not None and name in found:
                return found[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                del registry[name]
                self._non_persistent_buffers.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers)
                      | set(self._modules))

    # --- walking the tree -------------------------------------------------------------------
    def named_modules(self, memo: set | None = None, prefix: str = "", remove_duplicate: bool = True):
        """Yield ``(name, module)`` for this module (name ``prefix``) and all below it."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is None:
                continue
            child_prefix = f"{prefix}.{name}" if prefix else name
            yield from module.named_modules(memo, child_prefix, remove_duplicate)

    def modules(self):
        """Yield this module and every module below it (each once)."""
        for _, module in self.named_modules():
            yield module

    def named_children(self):
        """Yield ``(name, module)`` for the direct sub-modules (each once)."""
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self):
        for _, module in self.named_children():
            yield module

    def _named_members(self, registry: str, prefix: str, recurse: bool, remove_duplicate: bool = True):
        seen = set()
        modules = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse \
            else [(prefix, self)]
        for module_prefix, module in modules:
            for name, value in getattr(module, registry).items():
                if value is None:
                    continue
                if remove_duplicate:
                    if id(value) in seen:
                        continue
                    seen.add(id(value))
                yield (f"{module_prefix}.{name}" if module_prefix else name), value

    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        """Yield ``(dotted_name, Parameter)``, e.g. ``("features.0.weight", ...)``.

        A Parameter shared by two modules is yielded once (unless ``remove_duplicate=False``).
        """
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True):
        """Yield every Parameter (what an optimiser is given)."""
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        """Yield ``(dotted_name, ndarray)`` for every buffer, e.g. ``("bn1.running_mean", ...)``."""
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True):
        for _, buffer in self.named_buffers(recurse=recurse):
            yield buffer

    def get_submodule(self, target: str) -> "Module":
        """The sub-module at dotted path ``target`` (``""`` is this module)."""
        module = self
        if target == "":
            return module
        for part in target.split("."):
            child = module._modules.get(part)
            if child is None:
                raise AttributeError(f"{type(module).__name__} has no sub-module {part!r} "
                                     f"(looking for {target!r})")
            module = child
        return module

    # --- state dict -------------------------------------------------------------------------
    def _state_entries(self, prefix: str = ""):
        """Yield ``(key, module, registry, name)`` for every entry of the state dict."""
        for module_prefix, module in self.named_modules(prefix=prefix, remove_duplicate=False):
            dot = f"{module_prefix}." if module_prefix else ""
            for name, param in module._parameters.items():
                if param is not None:
                    yield dot + name, module, "_parameters", name
            for name, buffer in module._buffers.items():
                if buffer is not None and name not in module._non_persistent_buffers:
                    yield dot + name, module, "_buffers", name

    def state_dict(self, destination=None, prefix: str = "", keep_vars: bool = False) -> OrderedDict:
        """An ``OrderedDict`` of dotted name -> ndarray for every parameter and buffer.

        The arrays are copies: changing the model later does not change the dictionary.
        Keys are PyTorch's: ``"features.0.weight"``, ``"bn1.running_var"``,
        ``"bn1.num_batches_tracked"``, so a PyTorch state dict converted to NumPy loads here
        and vice versa. With ``keep_vars=True`` the Parameters and buffers themselves are
        returned, not copies.
        """
        destination = OrderedDict() if destination is None else destination
        for key, module, registry, name in self._state_entries(prefix):
            value = getattr(module, registry)[name]
            if keep_vars:
                destination[key] = value
            else:
                array = value.data if isinstance(value, Tensor) else value
                destination[key] = np.array(array, copy=True)
        return destination

    def load_state_dict(self, state_dict: Mapping, strict: bool = True) -> IncompatibleKeys:
        """Copy the values of ``state_dict`` into this module's parameters and buffers.

        Values may be ndarrays, cyconv Tensors or torch Tensors; they are copied into the
        existing arrays (the Parameter objects stay the same, so an optimiser created before
        still updates them), converted to each parameter's dtype.

        Everything is checked before anything is changed: with ``strict=True``, missing keys,
        unexpected keys and shape mismatches are all reported together in one RuntimeError
        and the module is left as it was. With ``strict=False`` the matching keys are loaded
        and the others returned as ``IncompatibleKeys(missing_keys, unexpected_keys)``;
        a shape mismatch is still an error.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping (dict/OrderedDict) of name -> array, "
                            f"got {type(state_dict).__name__}")
        if not isinstance(strict, bool):
            raise TypeError(f"strict must be True or False, got {strict!r}")
        entries = {key: (module, registry, name)
                   for key, module, registry, name in self._state_entries()}
        missing = [key for key in entries if key not in state_dict]
        unexpected = [key for key in state_dict if key not in entries]
        problems, staged = [], []
        for key, (module, registry, name) in entries.items():
            if key not in state_dict:
                continue
            target = getattr(module, registry)[name]
            target_array = target.data if isinstance(target, Tensor) else target
            try:
                value = _to_ndarray(state_dict[key])
            except Exception as error:  # anything that is not array-like
                problems.append(f"cannot read the value of {key}: {error}")
                continue
            if value.dtype.kind not in "fiub":
                problems.append(f"value of {key} has non-numeric dtype {value.dtype}")
            elif value.shape != target_array.shape:
                problems.append(f"size mismatch for {key}: copying a param with shape "
                                f"{value.shape} from checkpoint, the shape in current model is "
                                f"{target_array.shape}.")
            else:
                staged.append((target_array, value))

        errors = []
        if strict and missing:
            errors.append("Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + ".")
        if strict and unexpected:
            errors.append("Unexpected key(s) in state_dict: "
                          + ", ".join(f'"{k}"' for k in unexpected) + ".")
        errors.extend(problems)
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__} "
                               f"(nothing was loaded):\n\t" + "\n\t".join(errors))
        for target_array, value in staged:
            np.copyto(target_array, value, casting="unsafe")
        return IncompatibleKeys(missing, unexpected)

    # --- modes and bulk changes ----------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        """Set training mode (``mode=True``) or evaluation mode on this module and below."""
        if not isinstance(mode, bool):
            raise TypeError(f"training mode must be True or False, got {mode!r}")
        for module in self.modules():
            module.training = mode
        return self

    def eval(self) -> "Module":
        """Evaluation mode: Dropout passes inputs through, BatchNorm uses its running stats."""
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients of all parameters (``None``, or zeros if not ``set_to_none``)."""
        for param in self.parameters():
            if set_to_none or param.grad is None:
                param.grad = None
            else:
                param.grad = np.zeros_like(param.data)

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        """Switch gradient recording of every parameter on or off (freezing for fine-tuning)."""
        for param in self.parameters():
            param.requires_grad_(requires_grad)
        return self

    def apply(self, fn) -> "Module":
        """Call ``fn(module)`` on every sub-module (children first), then on this one."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    def to(self, dtype) -> "Module":
        """Convert floating parameters (and their grads) and floating buffers to ``dtype``.

        The Parameter objects are kept (their ``.data`` is replaced). Integer buffers such as
        ``num_batches_tracked`` are left alone. ``to("cpu")`` is accepted and does nothing.
        """
        if isinstance(dtype, str) and dtype == "cpu":
            return self
        try:
            dtype = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"Module.to() expects a floating dtype, got {dtype!r}") from None
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"Module.to() only accepts floating dtypes (float32, float64), got {dtype}")
        for module in self.modules():
            for param in module._parameters.values():
                if param is not None and param.dtype.kind == "f":
                    param.data = param.data.astype(dtype, copy=False)
                    if param.grad is not None:
                        param.grad = param.grad.astype(dtype, copy=False)
            for name, buffer in module._buffers.items():
                if buffer is not None and buffer.dtype.kind == "f":
                    module._buffers[name] = buffer.astype(dtype, copy=False)
        return self

    def float(self) -> "Module":
        return self.to(np.float32)

    def double(self) -> "Module":
        return self.to(np.float64)

    # --- repr --------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The text inside the parentheses of this module's repr (override in layers)."""
        return ""

    def _get_name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({name}): {_indent(repr(module), 2)}" for name, module in self._modules.items()]
        lines = extra_lines + child_lines
        if not lines:
            return f"{self._get_name()}()"
        if len(extra_lines) == 1 and not child_lines:
            return f"{self._get_name()}({extra_lines[0]})"
        return f"{self._get_name()}(\n  " + "\n  ".join(lines) + "\n)"
