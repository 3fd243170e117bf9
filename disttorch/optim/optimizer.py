"""``Optimizer``: the loop every algorithm shares, with PyTorch's contract.

Parameter groups (each with its own options), per-parameter ``state`` (a ``defaultdict(dict)``
keyed by the parameter tensor), ``zero_grad``, step hooks, and ``state_dict`` /
``load_state_dict`` in PyTorch's layout: ``state`` keyed by parameter index and ``param_groups``
whose ``params`` are those indices, so a state dict moves between disttorch and PyTorch.

Algorithms subclass ``Optimizer`` and implement ``step(closure=None)``; they update
``p._data`` in place through NumPy ``out=`` ufuncs and reuse scratch arrays from
``self._workspace`` so a step allocates nothing of parameter size. SGD and Adam hand their
updates to ``_updates.run``, which runs a whole step as one split over the intra-op threads
(each thread's range with its own workspace, ``_workspace_for``).
"""
from __future__ import annotations

import functools
import itertools
import warnings
from collections import OrderedDict, defaultdict
from copy import deepcopy

import numpy as np

from .. import _backend
from .._dtype import float64, get_default_dtype
from ..autograd.grad_mode import enable_grad
from ..tensor import Tensor

__all__ = ["Optimizer", "required", "register_optimizer_step_pre_hook", "register_optimizer_step_post_hook"]


class _RequiredParameter:
    """Marks an option a parameter group must set itself (no default)."""

    def __repr__(self):
        return "<required parameter>"


required = _RequiredParameter()

_global_step_pre_hooks: "OrderedDict[int, object]" = OrderedDict()
_global_step_post_hooks: "OrderedDict[int, object]" = OrderedDict()


class RemovableHandle:
    """Returned by ``register_*_hook``; ``remove()`` unregisters the hook."""

    _next_id = itertools.count()

    def __init__(self, hooks_dict):
        self.hooks_dict = hooks_dict
        self.id = next(RemovableHandle._next_id)

    def remove(self):
        self.hooks_dict.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def _register(hooks_dict, hook, prepend=False):
    handle = RemovableHandle(hooks_dict)
    hooks_dict[handle.id] = hook
    if prepend:
        hooks_dict.move_to_end(handle.id, last=False)
    return handle


def register_optimizer_step_pre_hook(hook):
    """``hook(optimizer, args, kwargs) -> None | (args, kwargs)`` runs before every optimizer's step."""
    return _register(_global_step_pre_hooks, hook)


def register_optimizer_step_post_hook(hook):
    """``hook(optimizer, args, kwargs)`` runs after every optimizer's step."""
    return _register(_global_step_post_hooks, hook)


def _typename(obj):
    """torch.typename: ``torch.FloatTensor`` for tensors, the qualified class name otherwise."""
    if isinstance(obj, Tensor):
        return obj.type()
    cls = type(obj)
    module = cls.__module__
    return cls.__qualname__ if module in ("", "builtins") else f"{module}.{cls.__qualname__}"


def _with_step_hooks(step):
    """Wraps a subclass's ``step`` so the global and per-optimizer step hooks run around it."""

    @functools.wraps(step)
    def hooked_step(self, *args, **kwargs):
        # A subclass's step that calls super().step() must not run the hooks twice.
        if self.__dict__.get("_in_hooked_step"):
            return step(self, *args, **kwargs)
        for pre_hook in itertools.chain(_global_step_pre_hooks.values(), self._optimizer_step_pre_hooks.values()):
            result = pre_hook(self, args, kwargs)
            if result is not None:
                if isinstance(result, tuple) and len(result) == 2:
                    args, kwargs = result
                else:
                    raise RuntimeError(f"{step} must return None or a tuple of (new_args, new_kwargs), "
                                       f"but got {result}.")
        self._in_hooked_step = True
        try:
            out = step(self, *args, **kwargs)
        finally:
            self._in_hooked_step = False
        for post_hook in itertools.chain(self._optimizer_step_post_hooks.values(), _global_step_post_hooks.values()):
            post_hook(self, args, kwargs)
        return out

    hooked_step._hooked = True
    return hooked_step


def _scalar_dtype():
    """dtype of ``state['step']`` and other scalar state: float32 unless the default is float64."""
    return np.float64 if get_default_dtype() is float64 else np.float32


def _new_scalar(value=0.0):
    """A 0-d state tensor (``state['step']``, NAdam's ``mu_product``)."""
    return Tensor._wrap(np.array(value, dtype=_scalar_dtype()))


def _zeros_like(p):
    """A state buffer shaped like parameter ``p`` (same dtype, same device)."""
    return Tensor._wrap(_backend.array_module(p._data).zeros_like(p._data))


def _empty_like(p):
    """An uninitialised state buffer shaped like parameter ``p`` (filled by the caller)."""
    return Tensor._wrap(_backend.array_module(p._data).empty_like(p._data))


def _to_scalar(x):
    """A hyperparameter as a Python number: a one-element tensor is read once per step, and a
    NumPy float becomes a Python float so it cannot widen float32 arithmetic."""
    return float(x) if isinstance(x, (Tensor, np.floating)) else x


def _real(a):
    """A complex array viewed as real pairs (PyTorch's ``view_as_real``); real arrays unchanged."""
    return a.view(a.real.dtype) if a.dtype.kind == "c" else a


_ARG_LABELS = {"lr": "learning rate", "eps": "epsilon value"}


def _check_nonnegative(**values):
    """PyTorch's constructor checks, in the order given: a Tensor ``lr`` must hold one element, and
    every value must satisfy ``0 <= value`` (NaN fails), else ``Invalid <label>: <value>``."""
    for name, value in values.items():
        if name == "lr" and isinstance(value, Tensor) and value.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if not 0.0 <= value:
            raise ValueError(f"Invalid {_ARG_LABELS.get(name, name + ' value')}: {value}")


def _params_with_grad(group):
    """The parameters of ``group`` that have a gradient; a step leaves the others as they are."""
    return (p for p in group["params"] if p.grad is not None)


def _check_differentiable(differentiable):
    if differentiable:
        raise ValueError("differentiable=True is not supported by disttorch optimizers: "
                         "their step updates parameters in place outside autograd")


class _Workspace:
    """Scratch arrays reused across parameters and steps: a step allocates nothing of parameter size.

    ``get(like, slot)`` returns an uninitialised array shaped and typed like ``like`` that stays
    valid until the next ``get`` of the same slot and dtype.
    """

    def __init__(self):
        self._buffers = {}

    def get(self, like, slot):
        key = (slot, like.dtype, type(like))
        buf = self._buffers.get(key)
        n = like.size
        if buf is None or buf.size < n:
            buf = self._buffers[key] = _backend.array_module(like).empty(n, dtype=like.dtype)
        return buf[:n].reshape(like.shape)


class Optimizer:
    """Base class of all optimizers.

    Args:
        params: an iterable of tensors, of ``(name, tensor)`` pairs, or of dicts defining
            parameter groups (``{"params": [...], "lr": ...}``).
        defaults: default values of the optimization options, used by groups that omit them.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("step")
        if step is not None and not getattr(step, "_hooked", False):
            cls.step = _with_step_hooks(step)

    def __init__(self, params, defaults):
        self.defaults = defaults
        self._init_hooks()
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors or dicts, "
                            f"but got {_typename(params)}")
        self.state = defaultdict(dict)
        self.param_groups = []
        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for param_group in param_groups:
            self.add_param_group(param_group)

    def _init_hooks(self):
        self._optimizer_step_pre_hooks = OrderedDict()
        self._optimizer_step_post_hooks = OrderedDict()
        self._optimizer_state_dict_pre_hooks = OrderedDict()
        self._optimizer_state_dict_post_hooks = OrderedDict()
        self._optimizer_load_state_dict_pre_hooks = OrderedDict()
        self._optimizer_load_state_dict_post_hooks = OrderedDict()

    @property
    def _workspace(self):
        ws = self.__dict__.get("_ws")
        if ws is None:
            ws = self.__dict__["_ws"] = _Workspace()
        return ws

    def _workspace_for(self, k: int) -> _Workspace:
        """The scratch of intra-op range ``k`` of a step (``_updates.run``); range 0's is ``_workspace``."""
        if k == 0:
            return self._workspace
        extra = self.__dict__.setdefault("_ws_ranges", {})
        ws = extra.get(k)
        if ws is None:
            ws = extra[k] = _Workspace()
        return ws

    # ---- pickling / copying -------------------------------------------------------------------
    def __getstate__(self):
        return {"defaults": self.defaults, "state": self.state, "param_groups": self.param_groups}

    def __setstate__(self, state):
        self.__dict__.update(state)
        for name in ("_optimizer_step_pre_hooks", "_optimizer_step_post_hooks", "_optimizer_state_dict_pre_hooks",
                     "_optimizer_state_dict_post_hooks", "_optimizer_load_state_dict_pre_hooks",
                     "_optimizer_load_state_dict_post_hooks"):
            if name not in self.__dict__:
                self.__dict__[name] = OrderedDict()
        self.defaults.setdefault("differentiable", False)
        # State dicts from other sources may lack newer options or hold 'step' as a number.
        for group in self.param_groups:
            for name, default in self.defaults.items():
                if default is not required:
                    group.setdefault(name, default)
        for per_param in self.state.values():
            if isinstance(per_param, dict) and "step" in per_param and not isinstance(per_param["step"], Tensor):
                per_param["step"] = _new_scalar(float(per_param["step"]))

    def __repr__(self):
        s = self.__class__.__name__ + " ("
        for i, group in enumerate(self.param_groups):
            s += f"\nParameter Group {i}\n"
            for key in sorted(group.keys()):
                if key != "params":
                    s += f"    {key}: {group[key]}\n"
        return s + ")"

    # ---- hooks ----------------------------------------------------------------------------------
    def register_step_pre_hook(self, hook):
        """``hook(optimizer, args, kwargs) -> None | (new_args, new_kwargs)`` runs before ``step``."""
        return _register(self._optimizer_step_pre_hooks, hook)

    def register_step_post_hook(self, hook):
        """``hook(optimizer, args, kwargs)`` runs after ``step``."""
        return _register(self._optimizer_step_post_hooks, hook)

    def register_state_dict_pre_hook(self, hook, prepend=False):
        """``hook(optimizer)`` runs before ``state_dict`` builds its result."""
        return _register(self._optimizer_state_dict_pre_hooks, hook, prepend)

    def register_state_dict_post_hook(self, hook, prepend=False):
        """``hook(optimizer, state_dict) -> state_dict | None`` may rewrite ``state_dict``'s result."""
        return _register(self._optimizer_state_dict_post_hooks, hook, prepend)

    def register_load_state_dict_pre_hook(self, hook, prepend=False):
        """``hook(optimizer, state_dict) -> state_dict | None`` runs before loading."""
        return _register(self._optimizer_load_state_dict_pre_hooks, hook, prepend)

    def register_load_state_dict_post_hook(self, hook, prepend=False):
        """``hook(optimizer)`` runs after loading."""
        return _register(self._optimizer_load_state_dict_post_hooks, hook, prepend)

    # ---- groups ---------------------------------------------------------------------------------
    def add_param_group(self, param_group):
        """Adds a group of parameters with its own options (e.g. unfreezing layers while training).

        Options the group omits take the optimizer's defaults. A parameter may belong to one group
        only.
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group)}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            param_group["params"] = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the ordering of "
                            "tensors in sets will change between runs. Please use a list instead.")
        else:
            param_group["params"] = list(params)

        tensors, names = [], []
        for param in param_group["params"]:
            if isinstance(param, tuple):
                names.append(param[0])
                tensors.append(param[1])
            else:
                tensors.append(param)
        param_group["params"] = tensors
        if names:
            if len(names) != len(tensors):
                raise ValueError("all optimizer params should be with/without names. Some param names are missing")
            param_group["param_names"] = names

        for param in tensors:
            if not isinstance(param, Tensor):
                raise TypeError("optimizer can only optimize Tensors, but one of the params is " + _typename(param))
            if not self.defaults.get("differentiable", None) and not (param.is_leaf or param.retains_grad):
                raise ValueError("can't optimize a non-leaf Tensor")

        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise ValueError(f"parameter group didn't specify a value of required optimization parameter {name}")
            param_group.setdefault(name, default)

        # Tensors hash by identity (their __eq__ is elementwise), so membership goes through id().
        ids = [id(p) for p in tensors]
        if len(ids) != len(set(ids)):
            warnings.warn("optimizer contains a parameter group with duplicate parameters; in future, this will "
                          "cause an error; see github.com/pytorch/pytorch/issues/40967 for more information",
                          stacklevel=3)
        seen = set()
        for group in self.param_groups:
            seen.update(id(p) for p in group["params"])
            if ("param_names" in param_group) != ("param_names" in group):
                which = "with names" if "param_names" in param_group else "without names"
                raise ValueError("all optimizer param groups should be with/without names. "
                                 f"cannot add param group {which} to the optimizer")
        if not seen.isdisjoint(ids):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(param_group)

    # ---- gradients ------------------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True):
        """Resets the gradients: ``None`` (default, frees memory) or zero-filled in place."""
        for group in self.param_groups:
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    if g.grad_fn is not None:
                        g.detach_()
                    else:
                        g.requires_grad_(False)
                    g._data.fill(0)
                    g._vc[0] += 1

    def step(self, closure=None):
        """Performs one update of every parameter that has a gradient; returns ``closure()``'s loss."""
        raise TypeError(f"{type(self).__name__} does not define step(): Optimizer is an abstract base class")

    @staticmethod
    def _eval_closure(closure):
        """Re-evaluates the model (gradients enabled, as PyTorch does) and returns its loss."""
        if closure is None:
            return None
        with enable_grad():
            return closure()

    def _stepped_state(self, p, *buffers, **scalars):
        """``p``'s state with its ``step`` counted up by one. The first step creates it as PyTorch
        does, in PyTorch's key order (``state_dict`` shows it): ``step``, then ``scalars`` (name:
        initial value), then a zero tensor like ``p`` for each name in ``buffers``."""
        state = self.state[p]
        if len(state) == 0:
            state["step"] = _new_scalar(0.0)
            for name, value in scalars.items():
                state[name] = _new_scalar(value)
            for name in buffers:
                state[name] = _zeros_like(p)
        state["step"]._data += 1
        return state

    # ---- state dict -----------------------------------------------------------------------------
    def state_dict(self):
        """The optimizer's state as ``{"state": {index: {...}}, "param_groups": [{..., "params": [indices]}]}``.

        Parameters are numbered in group order; state tensors are the live buffers (not copies),
        as in PyTorch.
        """
        for pre_hook in self._optimizer_state_dict_pre_hooks.values():
            pre_hook(self)
        mapping = {}
        start = 0

        def pack_group(group):
            nonlocal start
            packed = {k: v for k, v in group.items() if k != "params"}
            mapping.update({id(p): i for i, p in enumerate(group["params"], start) if id(p) not in mapping})
            packed["params"] = [mapping[id(p)] for p in group["params"]]
            start += len(packed["params"])
            return packed

        param_groups = [pack_group(g) for g in self.param_groups]
        packed_state = {(mapping[id(k)] if isinstance(k, Tensor) else k): v for k, v in self.state.items()}
        state_dict = {"state": packed_state, "param_groups": param_groups}
        for post_hook in self._optimizer_state_dict_post_hooks.values():
            result = post_hook(self, state_dict)
            if result is not None:
                state_dict = result
        return state_dict

    @staticmethod
    def _cast_state_value(param, value, key):
        # Buffers follow the parameter's dtype and device; 'step' keeps its own dtype (PyTorch's rule).
        if key == "step":
            return value
        if param.is_floating_point():
            return value.to(dtype=param.dtype, device=param.device)
        return value.to(device=param.device)

    def load_state_dict(self, state_dict):
        """Loads a state dict from ``state_dict()`` (disttorch's or PyTorch's layout).

        The number of groups and the size of each group must match this optimizer's.
        """
        state_dict = state_dict.copy()
        for pre_hook in self._optimizer_load_state_dict_pre_hooks.values():
            result = pre_hook(self, state_dict)
            if result is not None:
                state_dict = result
        groups = self.param_groups
        saved_groups = deepcopy(state_dict["param_groups"])
        if len(groups) != len(saved_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(g["params"]) != len(s["params"]) for g, s in zip(groups, saved_groups)):
            raise ValueError("loaded state dict contains a parameter group "
                             "that doesn't match the size of optimizer's group")
        id_map = dict(zip(itertools.chain.from_iterable(g["params"] for g in saved_groups),
                          itertools.chain.from_iterable(g["params"] for g in groups)))

        def cast(param, value, key=None):
            if isinstance(value, Tensor):
                return Optimizer._cast_state_value(param, value, key)
            if isinstance(value, dict):
                return {k: cast(param, v, k) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return type(value)(cast(param, v) for v in value)
            return value

        state = defaultdict(dict)
        for k, v in state_dict["state"].items():
            if k in id_map:
                param = id_map[k]
                state[param] = cast(param, v)
            else:
                state[k] = v

        def update_group(group, new_group):
            new_group["params"] = group["params"]
            if "param_names" in group and "param_names" not in new_group:
                new_group["param_names"] = group["param_names"]
            return new_group

        param_groups = [update_group(g, ng) for g, ng in zip(groups, saved_groups)]
        self.__setstate__({"state": state, "param_groups": param_groups})
        for post_hook in self._optimizer_load_state_dict_post_hooks.values():
            post_hook(self)
