"""Transports move framed buffers between ranks: ``zmq`` (tcp:// and ipc:// sockets, any topology)
and ``shm`` (a shared-memory segment for the ranks of one host)."""
from .base import Transport, Message
from .zmq import ZmqTransport

__all__ = ["Transport", "Message", "ZmqTransport"]
