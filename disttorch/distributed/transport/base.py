"""The interface between the collective algorithms and whatever moves bytes between ranks.

A transport sends ``[header, payload]`` messages to a peer and hands back validated incoming
messages; everything above it (matching, stashing, fingerprints, timeouts) lives in
``mailbox.Mailbox``. To shape links or inject faults (delays, drops, corruption), wrap a transport
in another class with the same five methods and install it with
``disttorch.distributed.process_group.set_transport_wrapper``.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import numpy as np

from ..wire import Header


class Message(NamedTuple):
    header: Header
    payload: object  # bytes / buffer-protocol object, or None when it was received into a sink array


#: ``sink(header)`` returns the array a payload should be received into (exactly ``header.nbytes``
#: bytes, contiguous, writable), or None to get the payload back as a buffer.
Sink = Callable[[Header], Optional[np.ndarray]]


class Transport:
    """Moves framed messages between the ranks (0..world_size-1) of one group."""

    rank: int
    world_size: int
    stats: dict

    def send(self, dst: int, header: bytes, payload: np.ndarray | None, copy: bool = False) -> None:
        """Queues a message; never blocks on the receiver. ``payload`` must stay unchanged until
        ``sends_done()`` unless ``copy`` is true."""
        raise NotImplementedError

    def recv(self, timeout_ms: int, sink: Sink) -> Message | None:
        """The next valid message, or None when nothing (valid) arrived within ``timeout_ms``."""
        raise NotImplementedError

    def sends_done(self) -> bool:
        """True when no queued send still reads caller memory."""
        raise NotImplementedError

    def peer_problem(self, peer: int) -> str | None:
        """Why ``peer`` looks unreachable ("lost its connection 3.1 s ago"), or None."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError
