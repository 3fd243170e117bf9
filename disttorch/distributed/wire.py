"""The data path's message format: a fixed binary header, then the raw array bytes. No pickle here.

A message is two ZeroMQ frames: ``[header, payload]``. The header carries what the receiver needs
to validate and place the payload before touching it (and to check that both sides run the same
collective):

    magic 'DTC1', version, kind, dtype code, ndim, job id, group id, source rank, sequence number,
    collective op, reduce op, phase, root, step, tag, element offset, total elements,
    payload byte count, then ``ndim`` int64 dims of the shape both sides must agree on.

``decode`` rejects anything malformed (wrong magic / version, unknown codes, too many dims, a
length that does not match ``ndim``, a payload larger than the receiver allows) with ``WireError``;
the transport drops and logs such messages.
"""
from __future__ import annotations

import enum
import struct
from typing import NamedTuple

import numpy as np

MAGIC = b"DTC1"
VERSION = 1
MAX_NDIM = 32

_FIXED = struct.Struct("<4sBBBBQIIQBBBxiIiQQQ")
FIXED_SIZE = _FIXED.size
MAX_HEADER_SIZE = FIXED_SIZE + 8 * MAX_NDIM


class WireError(ValueError):
    """A received frame is not a valid disttorch message."""


class Kind(enum.IntEnum):
    DATA = 1         # a chunk of a collective
    P2P = 2          # a chunk of send/recv
    ABORT = 3        # the sender gave up on the group; payload is the UTF-8 reason
    FINGERPRINT = 4  # DETAIL-mode pre-check of the next collective (header only)
    GOODBYE = 5      # the sender leaves the group cleanly; seq: the last collective it finished (header only)


class Op(enum.IntEnum):
    """Collective codes, for fingerprints and error messages."""

    BARRIER = 1
    ALL_REDUCE = 2
    BROADCAST = 3
    REDUCE = 4
    ALL_GATHER = 5
    GATHER = 6
    SCATTER = 7
    REDUCE_SCATTER = 8
    ALL_TO_ALL = 9
    SEND = 10
    GROUP_SETUP = 11
    ALL_REDUCE_DIRECT = 12  # direct_reduce.py: inputs written into shared memory by each rank

    @property
    def label(self) -> str:
        return self.name.lower()


# dtype <-> one-byte code. Keys are numpy dtype objects (hashable, cheap to look up).
_CODES = {
    np.dtype(np.bool_): 1, np.dtype(np.uint8): 2, np.dtype(np.int8): 3, np.dtype(np.int16): 4,
    np.dtype(np.int32): 5, np.dtype(np.int64): 6, np.dtype(np.float16): 7, np.dtype(np.float32): 8,
    np.dtype(np.float64): 9, np.dtype(np.complex64): 10, np.dtype(np.complex128): 11,
    np.dtype(np.uint16): 12, np.dtype(np.uint32): 13, np.dtype(np.uint64): 14,
}
try:  # bfloat16 exists when ml_dtypes is installed (the tensor core may use it)
    import ml_dtypes  # noqa: F401

    _CODES[np.dtype(ml_dtypes.bfloat16)] = 15
except Exception:  # pragma: no cover - optional
    pass
_DTYPES = {code: dt for dt, code in _CODES.items()}


def dtype_code(dt: np.dtype) -> int:
    try:
        return _CODES[dt]
    except KeyError:
        raise TypeError(f"dtype {dt} cannot be sent by disttorch.distributed; supported: "
                        f"{', '.join(sorted(str(d) for d in _CODES))}") from None


def dtype_of(code: int) -> np.dtype:
    return _DTYPES[code]


class Header(NamedTuple):
    """A decoded header (a tuple: cheap to build on every received message)."""

    kind: int
    dtype: int          # dtype code
    job_id: int
    group: int
    src: int            # sender's rank in the group
    seq: int            # collective sequence number (P2P: per-peer, per-tag message number)
    op: int             # Op code
    rop: int            # ReduceOp value (0 when not a reduction)
    phase: int          # which part of the algorithm (distinguishes sub-collectives)
    root: int           # root / src / dst of the collective, -1 when none
    step: int           # algorithm step
    tag: int            # P2P tag, or chunk number inside a step
    offset: int         # element offset of this payload in the flat buffer
    numel: int          # elements of the whole buffer this payload belongs to
    nbytes: int         # payload byte count
    shape: tuple        # the shape both sides must agree on

    def encode(self) -> bytes:
        return encode(self)

    @property
    def np_dtype(self) -> np.dtype:
        return _DTYPES[self.dtype]


def encode(h: Header) -> bytes:
    ndim = len(h.shape)
    if ndim > MAX_NDIM:
        raise ValueError(f"tensors with more than {MAX_NDIM} dimensions cannot be sent (got {ndim})")
    fixed = _FIXED.pack(MAGIC, VERSION, h.kind, h.dtype, ndim, h.job_id, h.group, h.src, h.seq,
                        h.op, h.rop, h.phase, h.root, h.step, h.tag, h.offset, h.numel, h.nbytes)
    if ndim == 0:
        return fixed
    return fixed + struct.pack(f"<{ndim}q", *h.shape)


def decode(frame, max_payload: int) -> Header:
    """Parses and validates a header frame; raises WireError naming what is wrong."""
    buf = memoryview(frame)
    n = buf.nbytes
    if n < FIXED_SIZE:
        raise WireError(f"header of {n} bytes is shorter than the fixed {FIXED_SIZE}")
    (magic, version, kind, dtype, ndim, job_id, group, src, seq, op, rop, phase, root, step, tag,
     offset, numel, nbytes) = _FIXED.unpack_from(buf, 0)
    if magic != MAGIC:
        raise WireError(f"bad magic {bytes(magic)!r}")
    if version != VERSION:
        raise WireError(f"protocol version {version}, this rank speaks {VERSION}")
    if n != FIXED_SIZE + 8 * ndim:
        raise WireError(f"header length {n} does not match ndim {ndim}")
    if kind not in _KINDS:
        raise WireError(f"unknown message kind {kind}")
    if dtype not in _DTYPES:
        raise WireError(f"unknown dtype code {dtype}")
    if nbytes > max_payload:
        raise WireError(f"payload of {nbytes} bytes exceeds the limit of {max_payload}")
    if ndim:
        if ndim > MAX_NDIM:
            raise WireError(f"{ndim} dimensions, at most {MAX_NDIM} allowed")
        shape = struct.unpack_from(f"<{ndim}q", buf, FIXED_SIZE)
        if min(shape) < 0:
            raise WireError(f"negative dimension in shape {shape}")
    else:
        shape = ()
    return Header(kind, dtype, job_id, group, src, seq, op, rop, phase, root, step, tag, offset,
                  numel, nbytes, shape)


_KINDS = frozenset(int(k) for k in Kind)


def pack(kind: int, dtype: int, job_id: int, group: int, src: int, seq: int, op: int, rop: int, phase: int,
         root: int, step: int, tag: int, offset: int, numel: int, nbytes: int, shape: tuple) -> bytes:
    """``encode`` without building a Header (the per-chunk hot path)."""
    fixed = _FIXED.pack(MAGIC, VERSION, kind, dtype, len(shape), job_id, group, src, seq, op, rop, phase,
                        root, step, tag, offset, numel, nbytes)
    return fixed + struct.pack(f"<{len(shape)}q", *shape) if shape else fixed


def message(kind: int, *, job_id: int, group: int, src: int, dtype: int = 2, seq: int = 0, op: int = 0,
            rop: int = 0, phase: int = 0, root: int = -1, step: int = 0, tag: int = 0, offset: int = 0,
            numel: int = 0, nbytes: int = 0, shape: tuple = ()) -> bytes:
    """A header built from keyword arguments, for the cold paths (abort, fingerprint pre-checks,
    point-to-point): every field not named takes its neutral value (``dtype`` uint8, ``root`` -1,
    the rest 0). The per-chunk path of the collectives calls ``pack`` positionally instead."""
    return pack(kind, dtype, job_id, group, src, seq, op, rop, phase, root, step, tag, offset, numel, nbytes, shape)
