"""The simulation's settings as text: link specs, fault specs, and their seeded resolution.

    latency=2ms,bandwidth=1gbit,jitter=0.5ms          a link (every key optional, at least one)
    rank=2,at=collective:50,kind=kill                   a fault
    rank=random,at=collective:20-40,kind=slow:3x,restart=any

Standard library only, and no relative imports: ``disttorch-run`` loads this very file by path to
validate options (the launcher must not import the tensor stack), and workers import it as part
of ``disttorch.distributed.simulation``. One parser, so the launcher and every rank read a spec
the same way, and resolve ``random`` choices the same way from the same seed.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

NETWORK_KEYS = ("latency", "bandwidth", "jitter")
FAULT_KEYS = ("rank", "at", "kind", "restart")
FAULT_KINDS = ("kill", "hang", "slow", "drop", "corrupt")

_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
# Decimal prefixes, as NIC speeds are rated; "gbps" is read as gigabits per second (common usage).
_RATE_UNITS = {"bit": 1.0, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12,
               "bps": 1.0, "kbps": 1e3, "mbps": 1e6, "gbps": 1e9, "tbps": 1e12}
_NUMBER = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)\s*([a-zµ/]*)\s*$", re.IGNORECASE)


class SpecError(ValueError):
    """A simulation spec that cannot be used; the message names the bad value."""


def _split(text: str, what: str, keys: tuple) -> dict[str, str]:
    """'a=1,b=2' -> {'a': '1', 'b': '2'}; every key known and given once."""
    out: dict[str, str] = {}
    for item in (s.strip() for s in str(text).split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not value:
            raise SpecError(f"{what} {text!r}: expected KEY=VALUE items, got {item!r}")
        if key not in keys:
            raise SpecError(f"{what} {text!r}: unknown key {key!r} (known: {', '.join(keys)})")
        if key in out:
            raise SpecError(f"{what} {text!r}: {key} is given twice")
        out[key] = value
    if not out:
        raise SpecError(f"{what}: empty spec {text!r}")
    return out


def parse_duration(text: str, what: str) -> float:
    """'2ms', '500us', '1.5s' -> seconds. A unit is required: '2' alone is ambiguous."""
    m = _NUMBER.match(text)
    unit = m.group(2).lower() if m else ""
    if m is None or unit not in _TIME_UNITS:
        raise SpecError(f"{what}={text!r}: expected a duration with a unit (s, ms, us, ns), e.g. 2ms")
    return float(m.group(1)) * _TIME_UNITS[unit]


def parse_bandwidth(text: str, what: str = "bandwidth") -> float:
    """'1gbit', '100mbit', '25gbps' -> bits per second."""
    m = _NUMBER.match(text)
    unit = m.group(2).lower().removesuffix("/s") if m else ""
    if unit in _RATE_UNITS:
        value = float(m.group(1)) * _RATE_UNITS[unit]
        if value > 0:
            return value
        raise SpecError(f"{what}={text!r}: must be positive")
    raise SpecError(f"{what}={text!r}: expected a rate in bits per second with a unit "
                    f"(bit, kbit, mbit, gbit, tbit; gbps means gbit), e.g. 10gbit")


def _format_rate(bps: float) -> str:
    for unit, scale in (("Tbit/s", 1e12), ("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bps >= scale:
            return f"{bps / scale:g} {unit}"
    return f"{bps:g} bit/s"


def _format_time(s: float) -> str:
    if s >= 1:
        return f"{s:g} s"
    if s >= 1e-3:
        return f"{s * 1e3:g} ms"
    return f"{s * 1e6:g} us"


@dataclass(frozen=True)
class NetworkSpec:
    """One simulated link per rank (its host's NIC): what each message it sends costs.

    A message of ``b`` bytes leaves after the ones queued before it (``b * 8 / bandwidth`` of
    serialization each) and arrives ``latency + jitter * z`` later, ``z ~ N(0, 1)`` clipped to
    [-3, 3] and the total kept >= 0.
    """

    latency_s: float = 0.0
    bandwidth_bps: float | None = None  # None: no serialization delay
    jitter_s: float = 0.0

    def to_text(self) -> str:
        """A spec that parses back to this one (what the launcher exports to the workers)."""
        parts = [f"latency={self.latency_s * 1e6:.6g}us"]
        if self.bandwidth_bps is not None:
            parts.append(f"bandwidth={self.bandwidth_bps:.9g}bit")
        parts.append(f"jitter={self.jitter_s * 1e6:.6g}us")
        return ",".join(parts)

    def describe(self) -> str:
        bw = _format_rate(self.bandwidth_bps) if self.bandwidth_bps else "unlimited bandwidth"
        text = f"{bw}, latency {_format_time(self.latency_s)}"
        return text + (f" (jitter {_format_time(self.jitter_s)})" if self.jitter_s else "")


def parse_network(text: str) -> NetworkSpec:
    """``--simulate-network`` / ``DISTTORCH_SIMULATE_NETWORK``: see the module docstring."""
    what = "--simulate-network"
    items = _split(text, what, NETWORK_KEYS)
    latency = parse_duration(items["latency"], "latency") if "latency" in items else 0.0
    jitter = parse_duration(items["jitter"], "jitter") if "jitter" in items else 0.0
    bandwidth = parse_bandwidth(items["bandwidth"]) if "bandwidth" in items else None
    return NetworkSpec(latency, bandwidth, jitter)


@dataclass(frozen=True)
class FaultSpec:
    """A fault as written; ``rank`` None and ranges in ``at`` are chosen by the seed."""

    text: str
    rank: int | None        # None: rank=random
    at_first: int           # the collective number, or the range it is drawn from
    at_last: int
    kind: str               # one of FAULT_KINDS
    factor: float = 1.0     # slow only: how many times slower
    restart: int | None = 0  # the attempt it fires in (DISTTORCH_RESTART_COUNT); None: every attempt


def _parse_kind(value: str, text: str) -> tuple[str, float]:
    name, _, arg = value.lower().partition(":")
    if name not in FAULT_KINDS:
        raise SpecError(f"--inject-fault {text!r}: unknown kind {value!r} "
                        f"(expected kill, hang, slow:Nx, drop or corrupt)")
    if name != "slow":
        if arg:
            raise SpecError(f"--inject-fault {text!r}: kind {name} takes no argument, got {value!r}")
        return name, 1.0
    try:
        factor = float(arg.removesuffix("x"))
    except ValueError:
        factor = 0.0
    if factor <= 1.0:
        raise SpecError(f"--inject-fault {text!r}: expected slow:Nx with N > 1 (e.g. slow:3x), got {value!r}")
    return name, factor


def _parse_int(value: str, what: str, text: str, low: int) -> int:
    if not value.isdigit() or int(value) < low:
        raise SpecError(f"--inject-fault {text!r}: {what} must be an integer >= {low}, got {value!r}")
    return int(value)


def parse_fault(text: str) -> FaultSpec:
    """One ``--inject-fault`` value: rank, at, kind are required; restart defaults to 0."""
    text = str(text).strip()
    items = _split(text, "--inject-fault", FAULT_KEYS)
    missing = [k for k in ("rank", "at", "kind") if k not in items]
    if missing:
        raise SpecError(f"--inject-fault {text!r}: missing {', '.join(missing)} "
                        f"(e.g. rank=2,at=collective:50,kind=kill)")
    rank_text = items["rank"].lower()
    rank = None if rank_text == "random" else _parse_int(rank_text, "rank", text, 0)
    where, sep, number = items["at"].partition(":")
    if where.strip().lower() != "collective" or not sep:
        raise SpecError(f"--inject-fault {text!r}: expected at=collective:N or at=collective:A-B, "
                        f"got at={items['at']!r}")
    lo, dash, hi = number.strip().partition("-")
    first = _parse_int(lo.strip(), "the collective number", text, 1)
    last = _parse_int(hi.strip(), "the collective number", text, 1) if dash else first
    if last < first:
        raise SpecError(f"--inject-fault {text!r}: empty range at=collective:{number}")
    kind, factor = _parse_kind(items["kind"], text)
    restart_text = items.get("restart", "0").lower()
    restart = None if restart_text in ("any", "all", "*") else _parse_int(restart_text, "restart", text, 0)
    return FaultSpec(text, rank, first, last, kind, factor, restart)


def parse_faults(text: str) -> list[FaultSpec]:
    """``DISTTORCH_INJECT_FAULTS``: fault specs separated by ';'."""
    return [parse_fault(part) for part in str(text).split(";") if part.strip()]


@dataclass(frozen=True)
class Fault:
    """A fault with its random choices made: rank ``rank`` meets it at its ``collective``-th collective."""

    rank: int
    collective: int
    kind: str
    factor: float
    restart: int | None
    text: str

    @property
    def label(self) -> str:
        return f"slow:{self.factor:g}x" if self.kind == "slow" else self.kind

    def describe(self) -> str:
        when = "every attempt" if self.restart is None else f"attempt {self.restart}"
        return f"rank {self.rank}: {self.label} at collective {self.collective} ({when})"


def resolve_faults(specs: list[FaultSpec], seed: int, world_size: int | None) -> list[Fault]:
    """Makes each spec's random choices from ``seed`` (fault i uses its own stream, so adding a
    fault does not change the others) and checks ranks against ``world_size`` when it is known."""
    out = []
    for i, s in enumerate(specs):
        rng = random.Random(f"disttorch-fault/{seed}/{i}")
        if s.rank is None:
            if not world_size:
                raise SpecError(f"--inject-fault {s.text!r}: rank=random needs the world size")
            rank = rng.randrange(world_size)
        else:
            rank = s.rank
            if world_size is not None and rank >= world_size:
                raise SpecError(f"--inject-fault {s.text!r}: rank {rank} is out of range for "
                                f"{world_size} workers (ranks 0..{world_size - 1})")
        collective = rng.randint(s.at_first, s.at_last)
        out.append(Fault(rank, collective, s.kind, s.factor, s.restart, s.text))
    return out


def parse_seed(text: str, what: str = "--fault-seed") -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise SpecError(f"{what}={text!r}: expected an integer") from None
