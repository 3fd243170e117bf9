"""The binary header: round trip, and rejection of everything malformed."""
import pickle
import struct

import numpy as np
import pytest

from disttorch.distributed import wire
from disttorch.distributed.wire import Header, Kind, Op, WireError


def _header(**kw):
    base = dict(kind=Kind.DATA, dtype=wire.dtype_code(np.dtype(np.float32)), job_id=0xABCDEF, group=3, src=1, seq=42,
                op=Op.ALL_REDUCE, rop=0, phase=1, root=-1, step=2, tag=5, offset=100, numel=1000, nbytes=400,
                shape=(10, 100))
    base.update(kw)
    return Header(**base)


def test_round_trip_and_pack_agree():
    h = _header()
    raw = h.encode()
    assert len(raw) == wire.FIXED_SIZE + 16
    assert wire.decode(raw, 1 << 20) == h
    assert wire.pack(*h) == raw
    assert wire.decode(_header(shape=()).encode(), 1 << 20).shape == ()


@pytest.mark.parametrize("dt", [np.bool_, np.uint8, np.int8, np.int16, np.int32, np.int64, np.float16, np.float32,
                                np.float64, np.complex64, np.complex128, np.uint16, np.uint32, np.uint64])
def test_every_dtype_has_a_code(dt):
    assert wire.dtype_of(wire.dtype_code(np.dtype(dt))) == np.dtype(dt)


def test_unsupported_dtype_names_it():
    with pytest.raises(TypeError, match="object"):
        wire.dtype_code(np.dtype(object))


good = _header().encode()


@pytest.mark.parametrize("frame,match", [
    (b"", "shorter"),
    (good[:20], "shorter"),
    (b"XXXX" + good[4:], "magic"),
    (good[:4] + bytes([9]) + good[5:], "version"),
    (good + b"\0" * 8, "does not match ndim"),
    (good[:-8], "does not match ndim"),
    (good[:5] + bytes([99]) + good[6:], "kind"),
    (good[:6] + bytes([200]) + good[7:], "dtype"),
    (pickle.dumps({"evil": 1}), "magic|shorter"),
    (_header(nbytes=1 << 40).encode(), "exceeds"),
    (_header(shape=(-1, 5)).encode(), "negative"),
])
def test_malformed_headers_are_rejected(frame, match):
    with pytest.raises(WireError, match=match):
        wire.decode(frame, 1 << 20)


def test_too_many_dimensions():
    raw = bytearray(_header(shape=()).encode())
    raw[7] = 40  # ndim
    raw += struct.pack("<40q", *([1] * 40))
    with pytest.raises(WireError, match="dimensions"):
        wire.decode(bytes(raw), 1 << 20)


def test_message_names_fields_and_defaults_the_rest():
    raw = wire.message(Kind.ABORT, job_id=7, group=2, src=1, nbytes=12)
    h = wire.decode(raw, 1 << 20)
    assert (h.kind, h.job_id, h.group, h.src, h.nbytes) == (Kind.ABORT, 7, 2, 1, 12)
    assert (h.dtype, h.seq, h.op, h.root, h.step, h.tag, h.offset, h.numel, h.shape) == (2, 0, 0, -1, 0, 0, 0, 0, ())
    full = _header(kind=Kind.P2P)
    assert wire.message(full.kind, **{k: v for k, v in full._asdict().items() if k != "kind"}) == full.encode()
    with pytest.raises(TypeError):
        wire.message(Kind.ABORT, 7, 2, 1)  # positional fields are refused: the point is naming them
