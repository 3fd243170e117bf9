"""Exceptions of the collective layer, with torch.distributed's names.

``DistError`` is the base (a ``RuntimeError``, as in PyTorch). Every message names the values that
were wrong: ranks, ports, the collective and its sequence number, shapes and dtypes.
"""
from __future__ import annotations


class DistError(RuntimeError):
    """Base class of every error raised by disttorch.distributed."""


class DistBackendError(DistError):
    """A collective failed: a peer died, stopped answering, or sent something that cannot be used."""


class DistNetworkError(DistError):
    """A socket could not be bound or reached (port in use, host unreachable)."""


class DistStoreError(DistError):
    """The key/value store failed or timed out (rendezvous included)."""


class RendezvousError(DistStoreError):
    """The job's ranks do not fit together: duplicate or out-of-range ranks, world sizes that differ."""


class DistTimeoutError(DistBackendError, TimeoutError):
    """A collective or store operation passed its deadline."""


class PeerFailureError(DistBackendError):
    """A peer process exited, was killed, or lost its connection while a collective waited for it."""

    def __init__(self, message: str, rank: int | None = None):
        super().__init__(message)
        self.rank = rank


class CollectiveMismatchError(DistBackendError):
    """Ranks called different collectives, or the same one with different shapes / dtypes / roots."""


class ProcessGroupAbortedError(DistBackendError):
    """The process group failed earlier (or a peer aborted it); it cannot run more collectives."""
