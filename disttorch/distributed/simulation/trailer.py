"""What a simulated message carries besides its data: arrival time, flight time, CRC32.

The words travel as extra trailing dimensions of the header's shape. ``wire.py``'s header holds
up to 32 dimensions and its decoder checks only that they are non-negative, so the data path
carries them untouched; the receiving ``SimulatedTransport`` strips them before the mailbox sees
the header, and nothing above the transport notices. This keeps the wire format (and every rank
that is not simulating) unchanged.

The last word is the marker ``MAGIC << 48 | flags << 32 | crc32``; before it, when the
``TIMED`` flag is set, come the arrival time and the flight time (nanoseconds). A tensor with so
many dimensions that the words do not fit (more than 29) travels without them: no delay, no
integrity check, for that message only.
"""
from __future__ import annotations

import zlib
from typing import NamedTuple

import numpy as np

from ..wire import MAX_NDIM, Header, decode, encode

MAGIC = 0x5D7C  # 15 bits: the marker word stays a valid (non-negative) int64 dimension
HAS_CRC = 1
TIMED = 2
_UNLIMITED = 1 << 62


class Trailer(NamedTuple):
    flags: int
    crc: int
    arrival_ns: int
    flight_ns: int


def checksum(header: bytes, payload) -> int:
    """CRC32 of the header bytes and then the payload bytes (zlib's: about 3 GB/s)."""
    crc = zlib.crc32(header)
    if payload is not None:
        data = payload.reshape(-1).view(np.uint8) if isinstance(payload, np.ndarray) else memoryview(payload)
        if data.nbytes:
            crc = zlib.crc32(data, crc)
    return crc


def attach(header: bytes, *, crc: int | None, arrival_ns: int | None, flight_ns: int = 0) -> bytes:
    """``header`` with the trailer words appended (unchanged when they would not fit)."""
    h = decode(header, _UNLIMITED)
    flags = (HAS_CRC if crc is not None else 0) | (TIMED if arrival_ns is not None else 0)
    words = (arrival_ns, max(0, flight_ns)) if arrival_ns is not None else ()
    words += ((MAGIC << 48) | (flags << 32) | (crc or 0),)
    if len(h.shape) + len(words) > MAX_NDIM:
        return header
    return encode(h._replace(shape=tuple(h.shape) + words))


def detach(h: Header) -> tuple[Header, Trailer | None]:
    """The header as its sender built it, and the trailer (None when there is none)."""
    shape = h.shape
    if not shape or shape[-1] >> 48 != MAGIC:
        return h, None
    marker = shape[-1]
    flags, crc = (marker >> 32) & 0xFFFF, marker & 0xFFFFFFFF
    if flags & TIMED and len(shape) >= 3:
        return h._replace(shape=shape[:-3]), Trailer(flags, crc, shape[-3], shape[-2])
    return h._replace(shape=shape[:-1]), Trailer(flags & ~TIMED, crc, 0, 0)


def header_bytes(h: Header) -> bytes:
    """The bytes the sender's checksum covered (the header without its trailer)."""
    return encode(h)
