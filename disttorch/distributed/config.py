"""Job-wide settings of the collective layer, read from the environment of rank 0.

Every rank adopts rank 0's settings (they travel in the peer table), so ranks never disagree on
chunk sizes or algorithm switch points even when their environments differ.

The variables (``DISTTORCH_TRANSPORT``, ``DISTTORCH_CHUNK_BYTES``, ``DISTTORCH_TIMEOUT``, ...) with
their types, defaults and meanings are declared in ``launcher/settings.py``; the README's Settings
table is generated from it.

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

from disttorch_launcher import settings

MiB = 1024 * 1024


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
    hier_chunk_bytes: int = 0         # 0: hierarchical.DEFAULT_ROUND_BYTES
    hier_ramp: bool = True            # hier_rounds.py: small first and last rounds
    debug: str = "off"
    nan_check: bool = False
    heartbeat_timeout_s: float = 5.0
    max_unexpected_bytes: int = 1024 * MiB

    @staticmethod
    def from_env() -> "Config":
        transport = settings.get("DISTTORCH_TRANSPORT")
        debug_setting = settings.SETTINGS["DISTTORCH_DEBUG"]
        if debug_setting.raw() is not None:
            debug = debug_setting.get()
        else:  # PyTorch's variable, when disttorch's is unset
            debug = debug_setting.parse(os.environ.get("TORCH_DISTRIBUTED_DEBUG") or "off")
        return Config(
            transport="auto" if transport == "shm" else transport,
            chunk_bytes=settings.get("DISTTORCH_CHUNK_BYTES"),
            allreduce_switch_bytes=settings.get("DISTTORCH_ALLREDUCE_SWITCH"),
            shm_slot_bytes=settings.get("DISTTORCH_SHM_SLOT_BYTES"),
            shm_chunk_bytes=settings.get("DISTTORCH_SHM_CHUNK_BYTES") or 0,
            hier_chunk_bytes=settings.get("DISTTORCH_HIER_CHUNK_BYTES") or 0,
            hier_ramp=settings.get("DISTTORCH_HIER_RAMP"),
            debug=debug,
            nan_check=settings.get("DISTTORCH_NAN_CHECK"),
            heartbeat_timeout_s=settings.get("DISTTORCH_HEARTBEAT_TIMEOUT"),
            max_unexpected_bytes=settings.get("DISTTORCH_MAX_UNEXPECTED_BYTES"),
        )

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_json(data: dict) -> "Config":
        known = {f.name for f in fields(Config)}
        return Config(**{k: v for k, v in (data or {}).items() if k in known})
