"""The simulated network: when a message sent now would arrive, and what the algorithms cost.

Each rank is a host with one NIC (``LinkModel``) of the spec's bandwidth, full duplex, on a
non-blocking switch. A message of ``b`` bytes (header included) starts to leave once the NIC has
sent what was queued before it, leaves ``wire_bytes(b) * 8 / bandwidth`` later, and arrives
``latency + jitter`` after that.

``wire_bytes`` is what TCP over Ethernet (MTU 1500) puts on the link for ``b`` bytes of data:
segments of at most 1448 bytes (the MSS with TCP timestamps), each with 90 bytes of framing
(Ethernet header, FCS, preamble and gap 38, IPv4 20, TCP 32), plus the receiver's delayed ACKs,
one minimum frame (84 bytes with preamble and gap) per two segments. So 1 Gbit carries 0.92 Gbit
of data, as real TCP on Ethernet does (a model that counted data alone predicted DDP steps on the
test hosts 8-19% too fast; ``tests/cluster/test_simulator_vs_rig.py`` compares). The ACKs travel on the
receiver's link; they are booked on the sender's, which in a collective carries as many the
other way. So concurrent transfers from one rank, to any peers and from any thread or
process group, share its bandwidth, and a rank that sends twice as much takes twice as long.
Arrivals on one route never overtake each other (TCP keeps order), whatever the jitter.

Not modelled: the receiving NIC (many senders to one receiver, e.g. gather, come out optimistic),
switch buffers, congestion control, packet loss (``--inject-fault ... kind=drop`` loses whole
messages instead).

The model only computes times; ``transport.py`` makes the receiver wait for them. All times are
``time.time_ns()`` nanoseconds.
"""
from __future__ import annotations

import random
import threading
from typing import NamedTuple

from .spec import NetworkSpec

JITTER_CLIP = 3.0  # jitter draws are clipped to +-3 standard deviations
MSS = 1448              # data per TCP segment (MTU 1500 - IPv4 20 - TCP 32 with timestamps)
SEGMENT_FRAMING = 90    # Ethernet 14 + FCS 4 + preamble and gap 20 + IPv4 20 + TCP 32
ACK_PER_SEGMENT = 42    # a delayed ACK (64-byte frame + 20 preamble and gap) per two segments


def wire_bytes(nbytes: int) -> int:
    """Bytes on the link for a message of ``nbytes`` (see the module docstring); an empty message
    still takes one segment."""
    segments = max(1, -(-nbytes // MSS))
    return nbytes + segments * (SEGMENT_FRAMING + ACK_PER_SEGMENT)


class Transfer(NamedTuple):
    tx_start_ns: int   # the NIC starts sending this message
    tx_end_ns: int     # ... and has sent its last byte
    arrival_ns: int    # the receiver has it


class LinkModel:
    """One rank's NIC (see the module docstring); thread-safe."""

    def __init__(self, spec: NetworkSpec, rng: random.Random):
        self.spec = spec
        self.rng = rng
        self._ns_per_byte = 8e9 / spec.bandwidth_bps if spec.bandwidth_bps else 0.0
        self._free_at = 0
        self._last_arrival: dict = {}
        self._lock = threading.Lock()
        self.bytes_sent = 0

    def delay_ns(self) -> int:
        """Latency plus this message's jitter (never negative)."""
        s = self.spec
        if not s.jitter_s:
            return int(s.latency_s * 1e9)
        z = max(-JITTER_CLIP, min(JITTER_CLIP, self.rng.gauss(0.0, 1.0)))
        return max(0, int((s.latency_s + s.jitter_s * z) * 1e9))

    def schedule(self, now_ns: int, nbytes: int, route) -> Transfer:
        """Books ``nbytes`` for ``route`` (any hashable naming the destination) at ``now_ns``."""
        with self._lock:
            start = max(now_ns, self._free_at)
            end = start + int(wire_bytes(nbytes) * self._ns_per_byte)
            self._free_at = end
            arrival = max(end + self.delay_ns(), self._last_arrival.get(route, 0))
            self._last_arrival[route] = arrival
            self.bytes_sent += nbytes
        return Transfer(start, end, arrival)


# -- analytical costs (tests and benchmarks/simulate.py compare the simulation with these) ----------
def ring_all_reduce_seconds(nbytes: int, world: int, spec: NetworkSpec) -> float:
    """Ring reduce-scatter + all-gather: ``2(N-1)`` steps, each moving ``S/N`` bytes per rank:
    ``2(N-1) * wire_bytes(S/N)*8/B + 2(N-1) * latency``."""
    if world < 2:
        return 0.0
    steps = 2 * (world - 1)
    bw = steps * wire_bytes(nbytes // world) * 8 / spec.bandwidth_bps if spec.bandwidth_bps else 0.0
    return bw + steps * spec.latency_s


def doubling_all_reduce_seconds(nbytes: int, world: int, spec: NetworkSpec) -> float:
    """Recursive doubling on a power of two ``N``: ``log2 N`` rounds, each exchanging all ``S``
    bytes: ``log2(N) * (wire_bytes(S)*8/B + latency)``."""
    rounds = max(0, world.bit_length() - 1)
    per_round = (wire_bytes(nbytes) * 8 / spec.bandwidth_bps if spec.bandwidth_bps else 0.0) + spec.latency_s
    return rounds * per_round
