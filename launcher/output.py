"""Worker output: rank-prefixed console lines, per-rank log files, and the launcher's own notes.

Each worker stream is read by one thread, line by line, and every console line is written with
one `write` under one lock shared by stdout and stderr, so lines of different ranks never
interleave mid-line.
"""
from __future__ import annotations

import collections
import os
import sys
import threading
from typing import BinaryIO

__all__ = ["say", "print_text", "write_line", "start_pump", "set_node_tag", "TAIL_LINES"]

TAIL_LINES = 20  # stderr lines kept per worker for the failure report

_console_lock = threading.Lock()
_node_tag = ""


def set_node_tag(node_rank: int | None) -> None:
    """Make the launcher's own messages read 'disttorch-run[node N]:' in multi-node jobs."""
    global _node_tag
    _node_tag = "" if node_rank is None else f"[node {node_rank}]"


def _console(stream_name: str) -> BinaryIO | None:
    stream = getattr(sys, stream_name, None)
    return getattr(stream, "buffer", None)


def write_line(stream_name: str, data: bytes) -> None:
    """Write one complete line to 'stdout' or 'stderr' without interleaving with other lines."""
    if not data.endswith(b"\n"):
        data += b"\n"
    out = _console(stream_name)
    if out is None:
        return
    with _console_lock:
        try:
            out.write(data)
            out.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass  # the console went away (e.g. piped into `head`); keep draining the workers


def print_text(text: str) -> None:
    """Print to stdout, quietly when the reader went away (e.g. piped into `head`)."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        sys.stdout = open(os.devnull, "w")  # nothing more can reach the reader


def say(message: str) -> None:
    """A note from the launcher itself, on stderr, one line per message line."""
    prefix = f"disttorch-run{_node_tag}: "
    for line in message.splitlines() or [""]:
        write_line("stderr", (prefix + line).encode("utf-8", "replace"))


def _pump(pipe: BinaryIO, prefix: bytes, console: str | None, log: BinaryIO | None,
          tail: collections.deque | None) -> None:
    try:
        for line in iter(pipe.readline, b""):
            if log is not None:
                try:
                    log.write(line)
                    log.flush()
                except OSError:
                    log = None
            if console is not None:
                write_line(console, prefix + line)
            if tail is not None:
                tail.append(line)
    except (OSError, ValueError):
        pass  # pipe closed under us while stopping
    finally:
        if log is not None:
            log.close()
        pipe.close()


def start_pump(pipe: BinaryIO, *, prefix: bytes, console: str | None, log_path: str | None,
               tail: collections.deque | None = None) -> threading.Thread:
    """Copy `pipe` line by line to the console (prefixed) and/or a log file, in a thread.

    `console` is 'stdout', 'stderr' or None (not shown). Returns the started daemon thread.
    """
    log = open(log_path, "wb") if log_path else None
    thread = threading.Thread(target=_pump, args=(pipe, prefix, console, log, tail),
                              name="disttorch-output", daemon=True)
    thread.start()
    return thread
