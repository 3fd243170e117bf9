"""Closing a ZeroMQ socket that may carry a connection monitor (the store's client and the
transport's peer sockets both watch their handshakes through one)."""
from __future__ import annotations

import zmq


def close_monitored(sock: zmq.Socket, monitor: zmq.Socket | None, linger_ms: int = 0) -> None:
    """Stop ``sock``'s monitor (if it has one), close the monitor's socket, then ``sock`` itself,
    waiting up to ``linger_ms`` for its queued messages."""
    if monitor is not None:
        try:
            sock.disable_monitor()
        except zmq.ZMQError:  # failing to stop the monitor must not leave either socket open
            pass
        monitor.close(0)
    sock.close(linger_ms)
