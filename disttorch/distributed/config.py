"""Job-wide settings of the collective layer, read from the environment of rank 0.

Every rank adopts rank 0's settings (they travel in the peer table), so ranks never disagree on
chunk sizes or algorithm switch points even when their environments differ.

| variable | default | meaning |
| --- | --- | --- |
| DISTTORCH_TRANSPORT | auto | ``auto``: shared memory + ipc:// on one host, tcp:// between hosts; ``ipc``: no shared memory; ``tcp``: tcp:// only |
| DISTTORCH_CHUNK_BYTES | 4 MiB | largest message payload (libzmq slows down on huge frames; 4 MiB measured best of 1 / 4 MiB) |
| DISTTORCH_ALLREDUCE_SWITCH | 2 MiB | all-reduces smaller than this use recursive doubling, larger ones the ring (sockets path; measured below) |
| DISTTORCH_SHM_SLOT_BYTES | 4 MiB | per-rank shared-memory slot (two per rank); one round moves at most this much per rank |
| DISTTORCH_SHM_CHUNK_BYTES | 1 MiB; the slot size when ranks outnumber cores | data per shared-memory round (at most the slot size) |
| DISTTORCH_DEBUG | off | ``detail``: every collective first exchanges fingerprints (PyTorch's DETAIL mode) |
| DISTTORCH_NAN_CHECK | 0 | 1: reductions raise on NaN input |
| DISTTORCH_HEARTBEAT_TIMEOUT | 5 | seconds without a heartbeat answer before a peer counts as lost |
| DISTTORCH_MAX_UNEXPECTED_BYTES | 1 GiB | bytes that may arrive before they are wanted |
| DISTTORCH_IO_THREADS | 2 | libzmq I/O threads per process (2: sending and receiving proceed in parallel) |
| DISTTORCH_TIMEOUT | 1800 | seconds a collective may wait before it raises (``init_process_group(timeout=)`` wins; ``disttorch-run --timeout``) |
| DISTTORCH_JOIN_TIMEOUT | the collective timeout | seconds the ranks' rendezvous may take (``disttorch-run --join-timeout``) |
| DISTTORCH_REPORT_PERIOD | 30 | seconds between "waiting for rank N" reports while a collective or the rendezvous waits |
| DISTTORCH_CURVE | on when MASTER_ADDR is not a loopback address | ``1``: encrypt tcp links with CURVE; ``0``: plain (trusted fabrics) |

The all-reduce switch point, measured over tcp on a 2-core machine (median ms of 2 runs, forcing
each algorithm; 4 ranks share the 2 cores):

| ranks | algorithm | 16K | 64K | 256K | 1M | 4M |
| --- | --- | --- | --- | --- | --- | --- |
| 2 | doubling | 0.28 | 0.29 | 0.38 | 0.66 | 4.72 |
| 2 | ring | 0.45 | 0.52 | 0.60 | 1.10 | 4.11 |
| 4 | doubling | 0.67 | 0.75 | 1.54 | 4.70 | 17.4 |
| 4 | ring | 2.48 | 2.36 | 2.65 | 5.05 | 16.4 |

Doubling wins through 1 MiB, the ring from 4 MiB on, for 2 and 4 ranks: the switch is 2 MiB.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields

MiB = 1024 * 1024


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        out = int(float(value))
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a number") from None
    if out <= 0:
        raise ValueError(f"{name}={value!r} must be positive")
    return out


def env_seconds(name: str, default: float | None, environ=None) -> float | None:
    """A positive number of seconds from the environment variable ``name`` (``default`` when unset)."""
    value = (os.environ if environ is None else environ).get(name)
    if value is None or value.strip() == "":
        return default
    try:
        out = float(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a number of seconds") from None
    if not out > 0 or out == float("inf"):
        raise ValueError(f"{name}={value!r} must be a positive number of seconds")
    return out


#: torch.distributed's default_pg_timeout, in seconds; DISTTORCH_TIMEOUT replaces it
DEFAULT_TIMEOUT_S = 1800.0
DEFAULT_REPORT_PERIOD_S = 30.0


def collective_timeout_s(environ=None) -> float:
    """The default collective timeout: ``DISTTORCH_TIMEOUT``, else torch's 30 minutes."""
    return env_seconds("DISTTORCH_TIMEOUT", DEFAULT_TIMEOUT_S, environ)


def join_timeout_s(collective_timeout: float, environ=None) -> float:
    """How long the ranks' rendezvous may take: ``DISTTORCH_JOIN_TIMEOUT``, else the collective timeout."""
    return env_seconds("DISTTORCH_JOIN_TIMEOUT", collective_timeout, environ)


def report_period_s(environ=None) -> float:
    """Seconds between reports of a wait: ``DISTTORCH_REPORT_PERIOD`` (30)."""
    return env_seconds("DISTTORCH_REPORT_PERIOD", DEFAULT_REPORT_PERIOD_S, environ)


@dataclass
class Config:
    transport: str = "auto"
    chunk_bytes: int = 4 * MiB
    allreduce_switch_bytes: int = 2 * MiB
    shm_slot_bytes: int = 4 * MiB
    shm_chunk_bytes: int = 0          # 0: 1 MiB, or the slot size when ranks outnumber cores
    debug: str = "off"
    nan_check: bool = False
    heartbeat_timeout_s: float = 5.0
    max_unexpected_bytes: int = 1024 * MiB

    @staticmethod
    def from_env() -> "Config":
        transport = os.environ.get("DISTTORCH_TRANSPORT", "auto").strip().lower() or "auto"
        if transport not in ("auto", "shm", "ipc", "tcp"):
            raise ValueError(f"DISTTORCH_TRANSPORT={transport!r}: expected auto, ipc or tcp")
        debug = (os.environ.get("DISTTORCH_DEBUG") or os.environ.get("TORCH_DISTRIBUTED_DEBUG") or "off").lower()
        if debug not in ("off", "info", "detail"):
            raise ValueError(f"DISTTORCH_DEBUG={debug!r}: expected off, info or detail")
        return Config(
            transport="auto" if transport == "shm" else transport,
            chunk_bytes=_env_int("DISTTORCH_CHUNK_BYTES", Config.chunk_bytes),
            allreduce_switch_bytes=_env_int("DISTTORCH_ALLREDUCE_SWITCH", Config.allreduce_switch_bytes),
            shm_slot_bytes=_env_int("DISTTORCH_SHM_SLOT_BYTES", Config.shm_slot_bytes),
            shm_chunk_bytes=_env_int("DISTTORCH_SHM_CHUNK_BYTES", 0) if os.environ.get("DISTTORCH_SHM_CHUNK_BYTES") else 0,
            debug=debug,
            nan_check=os.environ.get("DISTTORCH_NAN_CHECK", "0").lower() in ("1", "true", "yes", "on"),
            heartbeat_timeout_s=float(os.environ.get("DISTTORCH_HEARTBEAT_TIMEOUT", Config.heartbeat_timeout_s)),
            max_unexpected_bytes=_env_int("DISTTORCH_MAX_UNEXPECTED_BYTES", Config.max_unexpected_bytes),
        )

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_json(data: dict) -> "Config":
        known = {f.name for f in fields(Config)}
        return Config(**{k: v for k, v in (data or {}).items() if k in known})
