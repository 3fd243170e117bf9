"""Is a same-host peer still alive? Read from /proc without signalling it (psutil elsewhere)."""
from __future__ import annotations

import os


def process_state(pid: int) -> str:
    """"running", "stopped" (SIGSTOP / traced), "dead" (zombie or gone) or "unknown"."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        state = data[data.rindex(b")") + 2:][:1]  # the command name may contain spaces and ')'
        if state in (b"Z", b"X", b"x"):
            return "dead"
        if state in (b"T", b"t"):
            return "stopped"
        return "running"
    except FileNotFoundError:
        return "dead"
    except (OSError, ValueError):
        pass
    try:
        import psutil

        status = psutil.Process(pid).status()
        if status in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return "dead"
        if status in (psutil.STATUS_STOPPED, getattr(psutil, "STATUS_TRACING_STOP", "tracing-stop")):
            return "stopped"
        return "running"
    except Exception as e:  # noqa: BLE001
        if type(e).__name__ == "NoSuchProcess":
            return "dead"
        try:
            os.kill(pid, 0)
            return "running"
        except ProcessLookupError:
            return "dead"
        except OSError:
            return "unknown"
