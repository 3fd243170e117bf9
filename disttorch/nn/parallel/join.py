"""``Join``: training with uneven inputs (``torch.distributed.algorithms.Join``).

Every step, each rank still training all-reduces a 1 ("I am active") before its collectives.
A rank that ran out of batches leaves the ``with`` body and loops: it all-reduces a 0 and, while
the sum says someone is still active, runs each joinable's ``main_hook`` -- which issues the same
collectives an active step would, with zeros -- so the active ranks never wait on a missing peer.
When the sum reaches 0 everybody has joined and ``post_hook`` runs once on every rank.
"""
from __future__ import annotations

import threading

import numpy as np

from . import _comm

_state = threading.local()


class JoinHook:
    """What a joinable does while its rank has joined (``main_hook``) and after all have
    (``post_hook(is_last_joiner)``). The defaults do nothing, as PyTorch's."""

    def main_hook(self):
        return None

    def post_hook(self, is_last_joiner: bool):
        return None


class Joinable:
    """Mixin for classes usable with ``Join``: provide ``join_hook``, ``join_device`` and
    ``join_process_group``."""

    def __init__(self):
        self._join_config = None

    def join_hook(self, **kwargs) -> JoinHook:
        return JoinHook()

    @property
    def join_device(self):
        return None

    @property
    def join_process_group(self):
        return None


class Join:
    """Context manager letting ranks with fewer inputs finish while the others go on.

    Args:
        joinables: the objects (e.g. DDP models) taking part.
        enable: False turns the context into a no-op.
        throw_on_early_termination: raise on every rank as soon as one rank runs out of inputs,
            instead of shadowing its collectives.
    """

    def __init__(self, joinables, enable=True, throw_on_early_termination=False, **kwargs):
        if not joinables:
            raise ValueError("The join context manager requires at least one joinable")
        self._joinables = list(joinables)
        self._hooks = [j.join_hook(**kwargs) for j in self._joinables]
        self._enable = bool(enable)
        self._throw = bool(throw_on_early_termination)
        self._group = self._joinables[0].join_process_group

    def __enter__(self):
        if self._enable:
            for j in self._joinables:
                j._join_config = self
        return self

    def __exit__(self, exc_type, exc, tb):
        if not self._enable:
            return False
        try:
            if exc_type is not None:
                return False  # let the user's error through; do not shadow collectives for a dead loop
            is_last_joiner = True
            while True:
                active = self._all_reduce_count(0.0)
                if active == 0:
                    break
                is_last_joiner = False
                if self._throw:
                    raise RuntimeError(f"Rank {_comm.rank(self._group)} exhausted all inputs.")
                for hook in self._hooks:
                    hook.main_hook()
            for hook in self._hooks:
                hook.post_hook(is_last_joiner)
        finally:
            for j in self._joinables:
                j._join_config = None
        return False

    def _all_reduce_count(self, value):
        from ...tensor import Tensor
        t = Tensor._wrap(np.array([value], np.float64))
        _comm.all_reduce(t, self._group)
        return float(t._data[0])

    def _notify_active(self):
        active = self._all_reduce_count(1.0)
        if self._throw and active < _comm.world_size(self._group):
            raise RuntimeError("Detected at least one rank that exhausted inputs. Throwing across all ranks.")

    @staticmethod
    def notify_join_context(joinable):
        """Called by a joinable before its per-step collectives; a no-op outside a Join context."""
        config = getattr(joinable, "_join_config", None)
        if config is not None and config._joinables[0] is joinable:
            config._notify_active()
        return None
