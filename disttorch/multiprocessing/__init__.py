"""torch.multiprocessing: Python's multiprocessing plus tensors that live in shared memory.

Everything of :mod:`multiprocessing` is here (``Process``, ``Queue``, ``get_context``, ...).
``Tensor.share_memory_()`` / ``Module.share_memory()`` move data into POSIX shared memory, and
shared tensors sent to a child (spawn arguments, queues) arrive as views of the same pages, so
Hogwild-style training sees every process's updates. ``spawn(fn, args, nprocs)`` runs
``fn(i, *args)`` in ``nprocs`` processes and re-raises a child's failure naming its index.
"""
from __future__ import annotations

import multiprocessing
from multiprocessing import *  # noqa: F403  (torch.multiprocessing re-exports it)

from ._shared_storage import register_reductions
from .spawn import (
    ProcessContext,
    ProcessException,
    ProcessExitedException,
    ProcessRaisedException,
    spawn,
    start_processes,
)

__all__ = list(multiprocessing.__all__) + [
    "ProcessContext", "ProcessException", "ProcessExitedException", "ProcessRaisedException", "spawn",
    "start_processes", "get_sharing_strategy", "set_sharing_strategy", "get_all_sharing_strategies",
    "init_reductions"]

# Data always travels as named POSIX segments; PyTorch's two strategy names are accepted.
_SHARING_STRATEGIES = {"file_descriptor", "file_system"}
_sharing_strategy = "file_descriptor"


def get_all_sharing_strategies():
    return set(_SHARING_STRATEGIES)


def get_sharing_strategy():
    return _sharing_strategy


def set_sharing_strategy(new_strategy):
    """Accepts PyTorch's strategy names (both map to named POSIX segments here)."""
    global _sharing_strategy
    if new_strategy not in _SHARING_STRATEGIES:
        raise AssertionError(f"invalid sharing strategy {new_strategy!r}; expected one of "
                             f"{sorted(_SHARING_STRATEGIES)}")
    _sharing_strategy = new_strategy


def init_reductions():
    register_reductions()


register_reductions()
