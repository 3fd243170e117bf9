"""The launcher's own signals: SIGINT, SIGTERM and SIGHUP are recorded, then forwarded to every
worker by the supervision loop (a handler must not do the work: it can run at any bytecode of
the main thread, e.g. while it holds a lock)."""
from __future__ import annotations

import signal

from .process import signal_name

__all__ = ["SignalState", "FORWARDED_SIGNALS"]

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class SignalState:
    """Records the first forwarded signal the launcher receives, and how many arrived."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.count = 0
        self._previous: dict[int, object] = {}

    def install(self) -> "SignalState":
        """Take over SIGINT/SIGTERM/SIGHUP (main thread only); returns self."""
        for sig in FORWARDED_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        if self.received is None:
            self.received = signum
        self.count += 1

    def stop_request(self) -> tuple[str, int] | None:
        """(reason, signal to forward) once a signal arrived, else None."""
        if self.received is None:
            return None
        return f"the launcher received {signal_name(self.received)}", self.received

    def hurry(self) -> bool:
        """A second signal asks for no grace period (e.g. Ctrl-C pressed twice)."""
        return self.count >= 2

    @property
    def exit_code(self) -> int:
        """The shell's convention for death by signal: 128 + signal number."""
        return 128 + (self.received or 0)
