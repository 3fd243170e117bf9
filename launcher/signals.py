"""The launcher's own signals: SIGINT, SIGTERM and SIGHUP are recorded, then forwarded to every
worker by the supervision loop (a handler must not do the work: it can run at any bytecode of
the main thread, e.g. while it holds a lock).

SIGUSR1 asks for the Python stacks of every worker: the handler passes it on at once to this
node's workers (kill(2) takes no lock; the bootstrap made each worker print its threads' stacks
on SIGUSR1) and counts it, so that a multi-node launcher relays the request to the other nodes.
A rank whose collective timed out sends its launcher SIGUSR1 itself."""
from __future__ import annotations

import os
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
        self.dump_requests = 0  # SIGUSR1s received (a multi-node launcher relays them)
        self.relay_dumps = False  # True: dump_local_workers is left to the relay

    def install(self) -> "SignalState":
        """Take over SIGINT/SIGTERM/SIGHUP and SIGUSR1 (main thread only); returns self."""
        for sig in FORWARDED_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        if hasattr(signal, "SIGUSR1"):
            self._previous[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, self._dump)
        return self

    def _dump(self, signum, frame) -> None:
        self.dump_requests += 1
        if not self.relay_dumps:
            dump_local_workers()

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


def dump_local_workers() -> int:
    """SIGUSR1 to every worker this launcher started (its children running the bootstrap,
    which print their stacks on it); returns how many were signalled. Other children (ssh to
    remote nodes, programs started with --no-python) would die of SIGUSR1 and are skipped."""
    me = os.getpid()
    count = 0
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                data = f.read()
            if int(data[data.rindex(b")") + 2:].split()[1]) != me:
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        # Forked workers carry the fork server template's command line; the template itself
        # ignores SIGUSR1.
        if any(arg.endswith((b"_bootstrap.py", b"_forkserver_template.py")) for arg in argv[:3]):
            try:
                os.kill(pid, signal.SIGUSR1)
                count += 1
            except OSError:
                pass
    return count
