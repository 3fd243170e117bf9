"""Process-group signalling: how the launcher stops what it started.

Every worker leads its own session and process group (spawned with start_new_session), so one
`killpg` reaches the worker and every child it forked. Descendants that left the group (setsid,
daemonising) are found with psutil, imported only on this path.
"""
from __future__ import annotations

import os
import signal
import sys

__all__ = ["signal_name", "describe_status", "signal_group", "descendants", "kill_pids",
           "become_subreaper", "own_children", "reap", "raise_open_file_limit"]

_PR_SET_CHILD_SUBREAPER = 36


def signal_name(signum: int) -> str:
    """'SIGKILL' for 9; 'signal 77' for numbers without a name."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def describe_status(returncode: int) -> str:
    """A Popen return code in words: 'exit code 3' or 'signal SIGKILL (9)'."""
    if returncode < 0:
        return f"signal {signal_name(-returncode)} ({-returncode})"
    return f"exit code {returncode}"


def signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to process group `pgid`; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False


def descendants(pid: int) -> list[int]:
    """Pids of every live descendant of `pid` (empty when psutil is missing or pid is gone)."""
    try:
        import psutil
    except ImportError:
        return []
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def kill_pids(pids, sig: int = signal.SIGKILL) -> None:
    """Signal each pid, ignoring the ones already gone."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def become_subreaper() -> bool:
    """Make orphaned descendants (a worker's children after it died, daemonised helpers) become
    this process's children instead of init's, so the launcher can still find and stop them.
    Linux only; returns whether it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def own_children() -> set[int]:
    """Pids of this process's direct children (from /proc, else psutil)."""
    pids: set[int] = set()
    try:
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/children") as f:
                pids.update(int(x) for x in f.read().split())
        return pids
    except OSError:
        pass
    try:
        import psutil
    except ImportError:
        return pids
    try:
        return {p.pid for p in psutil.Process().children()}
    except psutil.Error:
        return pids


def reap(pids) -> None:
    """Collect the exit status of children the launcher did not start through subprocess."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def raise_open_file_limit(needed: int) -> int:
    """Raise this process's soft limit on open files to `needed` (at most the hard limit), so
    that the launcher's pipes and the workers' sockets (which inherit the limit) do not run out
    with many workers. Returns the soft limit now in force."""
    try:
        import resource
    except ImportError:
        return -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft
