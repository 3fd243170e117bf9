"""Show where every rank is when a collective times out.

Workers started by ``disttorch-run`` print the Python stack of all their threads on SIGUSR1
(faulthandler, armed by the launcher's bootstrap), and the launcher forwards a SIGUSR1 it
receives to every worker of the job, on every node. A rank whose collective timed out sends
SIGUSR1 to its launcher and gives the dumps a moment to come out before it raises: the ranks
it waited for are still alive and show where they are stuck. Without a launcher, the rank
prints its own stack.
"""
from __future__ import annotations

import faulthandler
import os
import signal
import sys
import time

#: how long a timed-out rank waits for the other ranks' dumps before it raises (and its
#: launcher stops them); the launcher forwards within its monitor interval (0.1 s)
DUMP_WAIT_S = 1.0

_requested = False


def request_stack_dump() -> str:
    """Asks for every live rank's Python stack; returns a sentence for the error message.

    Only the first call in a process asks: later timeouts (the group is already failing)
    would repeat the same stacks.
    """
    global _requested
    if _requested:
        return ""
    _requested = True
    launcher = _launcher_pid()
    if launcher and hasattr(signal, "SIGUSR1"):
        try:
            os.kill(launcher, signal.SIGUSR1)
        except OSError:
            launcher = 0
        else:
            time.sleep(DUMP_WAIT_S)
            return " (the launcher printed the Python stack of every live rank above)"
    try:
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    except (OSError, ValueError, AttributeError):  # stderr closed or replaced by a non-file
        return ""
    return " (this rank's Python stack is printed above)"


def _launcher_pid() -> int:
    try:
        pid = int(os.environ.get("DISTTORCH_LAUNCHER_PID", "0"))
    except ValueError:
        return 0
    # A launcher pid from an outer job (e.g. a script that runs another script) is not ours:
    # only our parent or an ancestor qualifies.
    return pid if pid > 1 and pid in _ancestors() else 0


def _ancestors() -> set[int]:
    out, pid = set(), os.getppid()
    for _ in range(64):
        if pid <= 1 or pid in out:
            break
        out.add(pid)
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                data = f.read()
            pid = int(data[data.rindex(b")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return out
