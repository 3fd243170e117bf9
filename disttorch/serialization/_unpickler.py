"""Unpicklers for checkpoints: the restricted one behind ``weights_only=True`` and the full one.

The restricted unpickler resolves a global only from an explicit table (PyTorch's tensor and storage
rebuild names, which map to disttorch's own functions; containers; primitives; dtypes and devices;
NumPy arrays; whatever ``add_safe_globals`` registered) and never imports a module. Everything else,
``os.system`` included, is refused with an ``UnpicklingError`` that names the global, as PyTorch's
weights-only loader words it. ``BUILD`` (setting an object's state) is allowed only on the
containers and on types the user registered, so state cannot reach an arbitrary ``__setstate__``.
"""
from __future__ import annotations

import _compat_pickle
import codecs
import contextlib
import importlib
import io
import pickle
from collections import Counter, OrderedDict
from typing import ClassVar

import numpy as np

__all__ = ["add_safe_globals", "clear_safe_globals", "get_safe_globals", "restricted_loads", "safe_globals"]

_BLOCKED_MODULES = ("sys", "os", "posix", "nt", "subprocess")
_user_safe_globals: set = set()


# ---- the user's allow-list --------------------------------------------------------------------------
def _global_name(entry):
    if isinstance(entry, tuple):
        if len(entry) != 2 or not isinstance(entry[1], str):
            raise TypeError(f"safe global entries are callables or (callable, 'module.name') pairs, got {entry!r}")
        return entry[1], entry[0]
    module = getattr(entry, "__module__", None)
    qualname = getattr(entry, "__qualname__", None) or getattr(entry, "__name__", None)
    if module is None or qualname is None:
        raise TypeError(f"cannot allow-list {entry!r}: it has no __module__ / __qualname__ (pass (obj, 'module.name'))")
    return f"{module}.{qualname}", entry


def add_safe_globals(safe_globals):
    """Allows ``weights_only`` loads to rebuild these classes/functions (``torch.serialization.add_safe_globals``).

    Each entry is a class or function, or a ``(obj, "module.name")`` pair for an object saved under
    another name. Only add what you trust: a registered callable is called with the file's arguments.
    """
    for entry in safe_globals:
        _global_name(entry)  # validates
    _user_safe_globals.update(safe_globals)


def get_safe_globals():
    """The entries ``add_safe_globals`` registered."""
    return list(_user_safe_globals)


def clear_safe_globals():
    """Forgets every ``add_safe_globals`` entry."""
    _user_safe_globals.clear()


@contextlib.contextmanager
def safe_globals(safe_globals):
    """Context manager: these globals are allowed inside the block only (``torch.serialization.safe_globals``)."""
    before = set(_user_safe_globals)
    add_safe_globals(safe_globals)
    try:
        yield
    finally:
        _user_safe_globals.clear()
        _user_safe_globals.update(before)


def _user_table():
    return dict(_global_name(entry) for entry in _user_safe_globals)


# ---- the built-in allow-list --------------------------------------------------------------------------
def _numpy_globals():
    try:
        from numpy._core import multiarray
        core = "numpy._core.multiarray"
    except ImportError:  # NumPy 1.x
        from numpy.core import multiarray
        core = "numpy.core.multiarray"
    table = {"numpy.ndarray": np.ndarray, "numpy.dtype": np.dtype}
    for module in (core, "numpy.core.multiarray", "numpy._core.multiarray"):  # files from either NumPy
        table[f"{module}._reconstruct"] = multiarray._reconstruct
        table[f"{module}.scalar"] = multiarray.scalar
    return table


_PLAIN_GLOBALS = {
    "collections.OrderedDict": OrderedDict,
    "collections.Counter": Counter,
    "builtins.set": set,
    "builtins.frozenset": frozenset,
    "builtins.complex": complex,
    "builtins.bytearray": bytearray,
    "builtins.slice": slice,
    "_codecs.encode": codecs.encode,  # protocol 2 stores bytes as _codecs.encode(str, "latin1")
    **_numpy_globals(),
}
_BUILD_TYPES = (OrderedDict, Counter, np.ndarray, np.dtype, np.generic)


def _refusal(full_name):
    module = full_name.rsplit(".", 1)[0]
    if any(module == b or module.startswith(b + ".") for b in _BLOCKED_MODULES):
        why = f"Trying to load unsupported GLOBAL {full_name} whose module {module} is blocked."
    else:
        why = (f"Unsupported global: GLOBAL {full_name} was not an allowed global by default. Please use "
               f"`torch.serialization.add_safe_globals([{full_name}])` or the "
               f"`torch.serialization.safe_globals([{full_name}])` context manager to allowlist this global if "
               "you trust this class/function.")
    return why


def _weights_only_error(source, why):
    return pickle.UnpicklingError(
        f"Weights only load failed{' for ' + source if source else ''}. Re-running `torch.load` with `weights_only` "
        "set to `False` will likely succeed, but it can result in arbitrary code execution. Do it only if you got "
        f"the file from a trusted source.\n\n{why}")


def _py2_name(module, name):
    """Python 2 pickles (protocol 2 files written by old PyTorch) name some builtins differently."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


class RestrictedUnpickler(pickle._Unpickler):
    """Resolves globals only from ``table`` plus the built-in and user allow-lists; imports nothing."""

    dispatch: ClassVar[dict] = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, table=None, source="", persistent_load=None):
        super().__init__(file, encoding="utf-8")
        self._table = {**_PLAIN_GLOBALS, **(table or {})}
        self._user = _user_table()
        self._source = source
        if persistent_load is not None:
            self.persistent_load = persistent_load

    def find_class(self, module, name):
        module, name = _py2_name(module, name)
        full = f"{module}.{name}"
        if full in self._user:
            return self._user[full]
        blocked = any(module == b or module.startswith(b + ".") for b in _BLOCKED_MODULES)
        if not blocked and full in self._table:
            return self._table[full]
        raise _weights_only_error(self._source, _refusal(full))

    def persistent_load(self, pid):
        raise _weights_only_error(self._source, f"a persistent id {pid!r} where none was expected")

    def _load_build_checked(self):
        inst = self.stack[-2]
        allowed = isinstance(inst, _BUILD_TYPES) or type(inst) in self._user.values()
        if not allowed:
            raise _weights_only_error(self._source, f"Unsupported operation: BUILD (setting the state) of an object "
                                                    f"of type {type(inst).__module__}.{type(inst).__qualname__}")
        pickle._Unpickler.load_build(self)

    dispatch[pickle.BUILD[0]] = _load_build_checked


def restricted_loads(data: bytes, source="", table=None):
    """Unpickles ``data`` with the restricted unpickler (``weights_only`` semantics)."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), table, source).load()
    except pickle.UnpicklingError:
        raise
    except (EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        raise _weights_only_error(source, f"malformed pickle data ({type(e).__name__}: {e})") from None


class FullUnpickler(pickle.Unpickler):
    """``weights_only=False``: any global, PyTorch's names first mapped to disttorch's (``torch.nn.Linear``
    to ``disttorch.nn.Linear``, when disttorch has it). Runs whatever the file says: trusted files only."""

    def __init__(self, file, table=None, persistent_load=None, **kwargs):
        super().__init__(file, **kwargs)
        self._table = {**_PLAIN_GLOBALS, **(table or {})}
        if persistent_load is not None:
            self.persistent_load = persistent_load

    def find_class(self, module, name):
        full = f"{module}.{name}"
        if full in self._table:
            return self._table[full]
        if module == "torch" or module.startswith("torch."):
            try:
                target = importlib.import_module("disttorch" + module[len("torch"):])
                obj = target
                for part in name.split("."):
                    obj = getattr(obj, part)
                return obj
            except (ImportError, AttributeError):
                raise pickle.UnpicklingError(f"{full} has no disttorch counterpart, so this file cannot be loaded "
                                             "by disttorch") from None
        return super().find_class(module, name)
