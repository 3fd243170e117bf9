"""The NIC model (pure timing arithmetic) and the per-message trailer, without processes."""
import random
import zlib

import numpy as np
import pytest

from disttorch.distributed.simulation import trailer as tr
from disttorch.distributed.simulation.link import (LinkModel, doubling_all_reduce_seconds, ring_all_reduce_seconds,
                                                   wire_bytes)
from disttorch.distributed.simulation.spec import parse_network
from disttorch.distributed.wire import Header, Kind, Op, decode, encode, pack

MS = 1_000_000


US = 1_000


def test_tcp_over_ethernet_framing():
    # one segment: 90 bytes of framing + half a delayed ACK (42); 1448 data bytes fill a segment
    assert wire_bytes(0) == 132
    assert wire_bytes(1000) == 1132
    assert wire_bytes(1448) == 1448 + 132
    assert wire_bytes(1449) == 1449 + 2 * 132
    assert wire_bytes(1 << 20) / (1 << 20) == pytest.approx(1 + 132 / 1448, rel=1e-3)  # 0.917 of the line


def test_serialization_then_latency():
    link = LinkModel(parse_network("latency=2ms,bandwidth=8mbit"), random.Random(0))  # 1 byte per us
    t = link.schedule(0, 1000, "a")
    assert t == (0, 1132 * US, 2 * MS + 1132 * US)


def test_concurrent_transfers_share_the_nic_across_peers():
    link = LinkModel(parse_network("bandwidth=8mbit"), random.Random(0))
    a = link.schedule(0, 1000, "peer1")
    b = link.schedule(0, 1000, "peer2")      # queued behind a: the NIC is busy
    c = link.schedule(5 * MS, 1000, "peer1")  # the NIC is idle again by then
    assert (a.tx_end_ns, b.tx_start_ns, b.arrival_ns) == (1132 * US, 1132 * US, 2264 * US)
    assert (c.tx_start_ns, c.arrival_ns) == (5 * MS, 5 * MS + 1132 * US)
    assert link.bytes_sent == 3000


def test_jitter_is_seeded_clipped_and_never_reorders_a_route():
    spec = parse_network("latency=1ms,jitter=1ms")
    runs = []
    for _ in range(2):
        link = LinkModel(spec, random.Random("seed"))
        runs.append([link.schedule(i * 1000, 0, "r").arrival_ns for i in range(200)])
    assert runs[0] == runs[1]
    arrivals = runs[0]
    assert arrivals == sorted(arrivals)               # TCP keeps order on a route
    delays = [a - i * 1000 for i, a in enumerate(arrivals)]
    assert min(delays) >= 0 and max(delays) <= 4 * MS  # latency + 3 sigma at most
    assert len(set(delays)) > 50                       # and it really varies


def test_analytical_costs():
    gbit = parse_network("bandwidth=1gbit")
    # 6 steps of 250,000 bytes: 173 segments each, 132 bytes of framing per segment
    assert ring_all_reduce_seconds(1_000_000, 4, gbit) == pytest.approx(6 * (250_000 + 173 * 132) * 8 / 1e9)
    assert ring_all_reduce_seconds(1_000_000, 1, gbit) == 0
    lat = parse_network("latency=1ms,bandwidth=1gbit")
    assert ring_all_reduce_seconds(1_000_000, 4, lat) == pytest.approx(0.013096128 + 0.006)
    assert doubling_all_reduce_seconds(1000, 4, parse_network("latency=1ms")) == pytest.approx(0.002)


def _header(shape=(3, 4), nbytes=48):
    return pack(Kind.DATA, 8, 0xABC, 0, 1, 5, Op.ALL_REDUCE, 0, 3, -1, 2, 1, 0, 12, nbytes, shape)


def test_trailer_round_trip_leaves_the_header_as_sent():
    raw = _header()
    assert encode(decode(raw, 1 << 20)) == raw  # the checksum relies on this
    payload = np.arange(12, dtype=np.float32)
    crc = tr.checksum(raw, payload)
    assert crc == zlib.crc32(payload.tobytes(), zlib.crc32(raw))
    sent = tr.attach(raw, crc=crc, arrival_ns=123_456_789, flight_ns=42)
    h, t = tr.detach(decode(sent, 1 << 20))
    assert h == decode(raw, 1 << 20) and tr.header_bytes(h) == raw
    assert (t.crc, t.arrival_ns, t.flight_ns, bool(t.flags & tr.HAS_CRC), bool(t.flags & tr.TIMED)) == \
        (crc, 123_456_789, 42, True, True)
    untimed = tr.detach(decode(tr.attach(raw, crc=7, arrival_ns=None), 1 << 20))[1]
    assert (untimed.crc, untimed.flags) == (7, tr.HAS_CRC)


def test_checksum_sees_one_flipped_byte_and_headers_without_trailer_pass_through():
    raw = _header()
    payload = np.arange(12, dtype=np.float32)
    bad = payload.copy().view(np.uint8)
    bad[17] ^= 0xFF
    assert tr.checksum(raw, payload) != tr.checksum(raw, bad)
    h = decode(raw, 1 << 20)
    assert tr.detach(h) == (h, None)
    assert isinstance(h, Header)


def test_a_tensor_with_too_many_dimensions_travels_without_trailer():
    raw = _header(shape=(1,) * 30, nbytes=4)
    assert tr.attach(raw, crc=1, arrival_ns=5, flight_ns=1) == raw
