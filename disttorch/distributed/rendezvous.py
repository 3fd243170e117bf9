"""Rendezvous bookkeeping: which ranks joined, whether they fit together, and the peer table.

``RendezvousState`` is pure (no sockets); the store server (``store.py``) feeds it JOIN requests
and sends its answers. A rank's registration is a small JSON object::

    {"rank": 2, "world_size": 4, "host_id": "...", "hostname": "n1", "pid": 1234,
     "tcp": "tcp://10.0.0.2:41234", "ipc": "ipc:///run/user/1000/disttorch/...", "local_rank": 2,
     "config": {...}}    # "config" counts only from rank 0: job-wide settings every rank adopts

A bad registration (rank out of range, world size differing from rank 0's, a rank claimed by two
processes) fails the whole rendezvous with a message naming the values, and every waiting rank
gets that message: a misconfigured job stops at once instead of timing out.
"""
from __future__ import annotations

import json
import secrets

MAX_REGISTRATION_BYTES = 64 * 1024
_REQUIRED = {"rank": int, "world_size": int, "host_id": str, "hostname": str, "pid": int, "tcp": str}


class RendezvousState:
    """Collects registrations for a job of ``world_size`` ranks (rank 0's view)."""

    def __init__(self, world_size: int):
        self.world_size = world_size
        self.joined: dict[int, dict] = {}
        self.error: str | None = None
        self.table: dict | None = None
        self.told: set[int] = set()  # ranks that were sent the failure
        self.job_id = secrets.randbits(63) or 1

    def parse(self, payload: bytes) -> dict:
        if len(payload) > MAX_REGISTRATION_BYTES:
            raise ValueError(f"registration of {len(payload)} bytes exceeds {MAX_REGISTRATION_BYTES}")
        info = json.loads(payload.decode("utf-8"))
        if not isinstance(info, dict):
            raise ValueError("registration is not a JSON object")
        for key, typ in _REQUIRED.items():
            if not isinstance(info.get(key), typ) or isinstance(info.get(key), bool):
                raise ValueError(f"registration field {key!r} missing or not {typ.__name__}: {info.get(key)!r}")
        return info

    def join(self, info: dict) -> tuple[str, object]:
        """Returns ("wait", None), ("done", table) or ("error", message) for this registration.

        "done" means every rank has joined: the caller answers all waiting ranks with the table.
        "error" after a failure means the caller answers all waiting ranks with that message.
        """
        if self.error is not None:
            return "error", self.error
        rank, world = info["rank"], info["world_size"]
        who = f"pid {info['pid']} on {info['hostname']}"
        if self.table is not None:
            return "error", (f"rank {rank} ({who}) tried to join a rendezvous that already completed "
                             f"with world_size {self.world_size}")
        if world != self.world_size:
            return self._fail(f"rank {rank} ({who}) was started with world_size={world}, but rank 0 "
                              f"has world_size={self.world_size}")
        if not 0 <= rank < self.world_size:
            return self._fail(f"rank {rank} ({who}) is out of range for world_size {self.world_size} "
                              f"(valid ranks: 0..{self.world_size - 1})")
        prev = self.joined.get(rank)
        if prev is not None and (prev["pid"], prev["host_id"]) != (info["pid"], info["host_id"]):
            return self._fail(f"rank {rank} was claimed twice: by pid {prev['pid']} on {prev['hostname']} "
                              f"and by {who}")
        self.joined[rank] = info
        if len(self.joined) < self.world_size:
            return "wait", None
        config = self.joined[0].get("config") or {}
        self.table = {"job_id": self.job_id, "world_size": self.world_size, "config": config,
                      "peers": [self._peer(self.joined[r]) for r in range(self.world_size)]}
        return "done", self.table

    def _fail(self, message: str) -> tuple[str, str]:
        self.error = f"rendezvous failed: {message}"
        return "error", self.error

    @staticmethod
    def _peer(info: dict) -> dict:
        keep = ("rank", "host_id", "hostname", "pid", "tcp", "ipc", "local_rank")
        return {k: info.get(k) for k in keep}

    def status(self) -> dict:
        missing = [r for r in range(self.world_size) if r not in self.joined]
        return {"world_size": self.world_size, "joined": sorted(self.joined), "missing": missing,
                "error": self.error}


def assign_local_ranks(peers: list[dict]) -> list[int]:
    """Local rank of each peer: its position among the ranks sharing its host, in rank order."""
    counts: dict = {}
    out = []
    for p in peers:
        n = counts.get(p["host_id"], 0)
        out.append(n)
        counts[p["host_id"]] = n + 1
    return out
