"""Injected faults: what this rank does when it reaches the collective a fault names.

Collectives are numbered per process from 1, in the order they are called (DDP's setup
broadcasts and every bucket all-reduce count; the trace shows each collective's number as ``n``).
At the start of its ``collective``-th collective, the rank a fault names

- ``kill``: SIGKILLs itself (after writing its trace). The launcher reports that rank and
  SIGKILL, and restarts the job under ``--max-restarts``.
- ``hang``: stops for good inside the collective (its sockets stay up, as a deadlocked process's
  do). The peers that wait for it raise ``DistTimeoutError`` naming it at their timeout.
- ``slow:Nx``: from then on sleeps so that its compute (the time since its previous collective)
  and its communication take N times as long: a straggler the others wait for.
- ``drop``: its first message of that collective is lost. The peer waiting for it raises
  ``DistTimeoutError`` naming this rank; from then on this rank waits one timeout longer than
  usual, so that the peer's error, not its own, is the job's first failure (this rank then
  learns of it as ``ProcessGroupAbortedError``).
- ``corrupt``: a byte of its first message with data is flipped after the checksum was taken;
  the receiver raises ``MessageIntegrityError`` naming this rank.

Faults fire in the attempt ``restart`` says (default 0, the first): after a restart the job runs
clean, so ``--max-restarts`` recovery can be exercised.
"""
from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time

from ...profiler import trace
from .spec import Fault


def _say(text: str) -> None:
    sys.stderr.write(f"disttorch simulation: {text}\n")
    sys.stderr.flush()


class FaultInjector:
    """The faults of this rank in this attempt (see the module docstring)."""

    def __init__(self, faults: list[Fault], rank: int, restart_count: int, seed: int):
        self.rank = rank
        self.faults = [f for f in faults if f.rank == rank and f.restart in (None, restart_count)]
        self.slow = 1.0                      # current slow-down factor (1: none)
        self.dropped = False                 # a drop fired: this rank's deadlines get longer
        self.message_faults: list[tuple[Fault, int]] = []   # armed drop / corrupt, with the collective
        self._last_end: float | None = None  # when this rank's previous collective ended (slow:Nx)
        self._lock = threading.Lock()
        self.rng = random.Random(f"disttorch-corrupt/{seed}/{rank}")

    def due(self, n: int) -> list[Fault]:
        return [f for f in self.faults if f.collective == n]

    @property
    def active(self) -> bool:
        """Whether anything can still happen (faults left, or a slow-down in force)."""
        return bool(self.faults) or self.slow > 1.0

    # -- at the start / end of a collective ------------------------------------------------------
    def fire(self, faults: list[Fault], n: int, label: str) -> None:
        """Runs the faults due at collective ``n``."""
        for f in faults:
            where = f"rank {self.rank}: {f.label} at collective {n} ({label}) [--inject-fault {f.text}]"
            trace.instant(f"fault: {f.label}", "fault", collective=n, spec=f.text)
            if f.kind == "kill":
                _say(f"{where}: killing this rank with SIGKILL")
                trace.flush()
                os.kill(os.getpid(), signal.SIGKILL)
                time.sleep(10)  # SIGKILL is not delivered synchronously everywhere
            elif f.kind == "hang":
                _say(f"{where}: this rank stops answering")
                trace.flush()
                while True:
                    time.sleep(3600)
            elif f.kind == "slow":
                _say(f"{where}: compute and communication from here on take {f.factor:g}x as long")
                self.slow = f.factor
            else:
                _say(f"{where}: armed for this rank's next message{' with data' if f.kind == 'corrupt' else ''}")
                with self._lock:
                    self.message_faults.append((f, n))
                self.dropped = self.dropped or f.kind == "drop"

    def straggle_before(self) -> None:
        """slow:Nx: stretches the compute since the previous collective by sleeping (N-1) times it."""
        if self.slow > 1.0 and self._last_end is not None:
            self._sleep((self.slow - 1.0) * (time.monotonic() - self._last_end), "compute")

    def straggle_after(self, started: float) -> None:
        """slow:Nx: stretches the collective that started at ``started`` the same way."""
        if self.slow > 1.0:
            self._sleep((self.slow - 1.0) * (time.monotonic() - started), "communication")
        self._last_end = time.monotonic()

    def _sleep(self, seconds: float, what: str) -> None:
        if seconds > 0:
            with trace.span(f"slowed {what} ({self.slow:g}x)", "fault"):
                time.sleep(seconds)

    # -- in the transport -----------------------------------------------------------------------
    def take_message_fault(self, has_data: bool) -> tuple[Fault, int] | None:
        """The armed drop / corrupt for the message being sent, if any (corrupt needs data)."""
        with self._lock:
            for i, (f, n) in enumerate(self.message_faults):
                if f.kind == "drop" or has_data:
                    return self.message_faults.pop(i)
        return None
