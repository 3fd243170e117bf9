"""Simulating a cluster on one machine: shaped links, injected faults, and a timeline.

``init_process_group`` calls ``install_from_env`` before it creates the default group. The
settings come from the environment, which ``disttorch-run`` fills from its options:

| variable | option | meaning |
| --- | --- | --- |
| DISTTORCH_SIMULATE_NETWORK | --simulate-network | ``latency=2ms,bandwidth=1gbit,jitter=0.5ms`` (``link.py``) |
| DISTTORCH_INJECT_FAULTS | --inject-fault (repeatable) | fault specs separated by ``;`` (``faults.py``) |
| DISTTORCH_FAULT_SEED | --fault-seed | seeds ``rank=random``, ``at`` ranges, jitter, the corrupted byte |
| DISTTORCH_TRACE_DIR | --trace-dir | record spans (``disttorch.profiler``); the collectives' spans are recorded here |
| DISTTORCH_SIM_CHECKSUM | | ``1``: CRC32 on every message (on by itself when a ``corrupt`` fault is injected) |

With a network or faults, every rank behaves as a host of its own: shared memory is off (the
transport becomes ``tcp`` unless ``ipc`` was asked for) and each rank gets its own
``DISTTORCH_HOST_ID``, so every byte crosses the shaped transport, and a peer's death is
noticed the way a cluster notices it (heartbeats), not through /proc.

Layout: ``spec.py`` (parsing, shared with the launcher), ``link.py`` (the network model),
``trailer.py`` (per-message arrival time and checksum), ``transport.py`` (the transport wrapper),
``faults.py`` (the fault actions), this file (wiring, and the per-collective hook).
"""
from __future__ import annotations

import os
import random
import socket
import threading
import time

from disttorch_launcher import settings
from ...profiler import trace
from ..process_group import set_collective_hook, set_transport_wrapper
from .faults import FaultInjector
from .link import LinkModel
from .spec import NetworkSpec, SpecError, parse_faults, parse_network, parse_seed, resolve_faults
from .transport import MessageIntegrityError, SimulatedTransport

__all__ = ["install_from_env", "uninstall", "Simulation", "MessageIntegrityError", "SpecError"]

ENV_NETWORK = "DISTTORCH_SIMULATE_NETWORK"
ENV_FAULTS = "DISTTORCH_INJECT_FAULTS"
ENV_SEED = "DISTTORCH_FAULT_SEED"
ENV_CHECKSUM = "DISTTORCH_SIM_CHECKSUM"


class Simulation:
    """This rank's simulation: its link, its faults, and the hooks that apply them."""

    def __init__(self, rank: int, network: NetworkSpec | None, faults: FaultInjector | None, integrity: bool,
                 seed: int):
        self.rank = rank
        self.network = network
        self.link = LinkModel(network, random.Random(f"disttorch-link/{seed}/{rank}")) if network else None
        self.faults = faults
        self.integrity = integrity
        self.count = 0  # collectives called so far (the ``n`` of at=collective:n)
        self._lock = threading.Lock()

    @property
    def shapes_transport(self) -> bool:
        return self.link is not None or self.faults is not None or self.integrity

    def wrap(self, transport):
        """``process_group.set_transport_wrapper``'s callback."""
        return SimulatedTransport(transport, self.link, self.faults, self.integrity)

    def collective(self, pg, label: str, body):
        """``process_group.set_collective_hook``'s callback: numbers the collective when it is
        called, and returns the body that fires its faults and records its span when it runs."""
        with self._lock:
            self.count += 1
            n = self.count
        faults = self.faults
        watched = faults is not None and faults.active
        if not watched and not trace.ACTIVE:
            return body
        due = faults.due(n) if watched else []

        def run(seq: int, deadline: float) -> None:
            if watched:
                if due:
                    faults.fire(due, n, label)
                if faults.dropped:
                    deadline += pg.timeout  # the peer's timeout, naming this rank, must come first
                faults.straggle_before()
            started = time.monotonic()
            if trace.ACTIVE:
                transport = pg.transport
                sent = transport.sent_bytes() if isinstance(transport, SimulatedTransport) else None
                with trace.span(label, "comm", n=n, seq=seq, group=pg.name) as span:
                    body(seq, deadline)
                    if sent is not None:
                        span.args["sent_bytes"] = transport.sent_bytes() - sent
            else:
                body(seq, deadline)
            if watched:
                faults.straggle_after(started)
        return run


_current: Simulation | None = None


def current() -> Simulation | None:
    """The simulation installed by the last ``init_process_group`` (None when off)."""
    return _current


def _read(name: str, parse):
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        return parse(text)
    except SpecError as e:
        raise ValueError(f"{name}={text!r}: {e}") from None


def _act_as_separate_host(rank: int) -> None:
    """Shared memory off, and a host identity per rank (see the module docstring)."""
    if settings.get("DISTTORCH_TRANSPORT") in ("auto", "shm"):
        os.environ["DISTTORCH_TRANSPORT"] = "tcp"
    os.environ.setdefault("DISTTORCH_HOST_ID", f"{socket.gethostname()}/simulated-host-{rank}")


def install_from_env(rank: int, world_size: int) -> Simulation | None:
    """Reads the variables above and installs (or removes) the hooks; None when all are unset."""
    global _current
    network = _read(ENV_NETWORK, parse_network)
    specs = _read(ENV_FAULTS, parse_faults) or []
    seed = _read(ENV_SEED, lambda t: parse_seed(t, ENV_SEED)) or 0
    checksum = settings.get(ENV_CHECKSUM)
    if network is None and not specs and not checksum and not trace.ACTIVE:
        uninstall()
        return None
    try:
        faults = resolve_faults(specs, seed, world_size)
    except SpecError as e:
        raise ValueError(f"{ENV_FAULTS}={os.environ.get(ENV_FAULTS)!r}: {e}") from None
    restart = settings.first_int("DISTTORCH_RESTART_COUNT", "TORCHELASTIC_RESTART_COUNT")
    injector = FaultInjector(faults, rank, restart, seed) if faults else None
    integrity = checksum or any(f.kind == "corrupt" for f in faults)
    sim = Simulation(rank, network, injector, integrity, seed)
    if sim.shapes_transport:
        _act_as_separate_host(rank)
        set_transport_wrapper(sim.wrap)
    else:
        set_transport_wrapper(None)
    set_collective_hook(sim.collective)
    _current = sim
    return sim


def uninstall() -> None:
    """Back to plain collectives (for groups created afterwards)."""
    global _current
    set_transport_wrapper(None)
    set_collective_hook(None)
    _current = None
