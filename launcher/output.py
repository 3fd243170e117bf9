"""Worker output: rank-prefixed console lines, per-rank log files, and the launcher's own notes.

Each worker stream is read by one thread, line by line, and every console line is written with
one `write` under one lock shared by stdout and stderr, so lines of different ranks never
interleave mid-line.

Progress bars: when the console is a terminal, a worker's carriage-return redraws (tqdm's way of
updating a bar in place) are shown as they come, on one live line at the bottom of the terminal;
other ranks' lines are printed above it (the live line is cleared, the line written, the bar
drawn again). Log files and pipes get complete lines only, never the redraws.
"""
from __future__ import annotations

import collections
import os
import sys
import threading
from typing import BinaryIO

__all__ = ["say", "print_text", "write_line", "start_pump", "set_node_tag", "terminal_env", "TAIL_LINES"]

TAIL_LINES = 20  # stderr lines kept per worker for the failure report
_CLEAR_LINE = b"\r\x1b[2K"  # back to column 0 and erase the line (ANSI, any terminal emulator)
_CLEAR_TO_END = b"\x1b[K"

_console_lock = threading.Lock()
_node_tag = ""
_live = None  # (stream name, bytes drawn) of the progress line on screen, or None


def set_node_tag(node_rank: int | None) -> None:
    """Make the launcher's own messages read 'disttorch-run[node N]:' in multi-node jobs."""
    global _node_tag
    _node_tag = "" if node_rank is None else f"[node {node_rank}]"


def _console(stream_name: str) -> BinaryIO | None:
    stream = getattr(sys, stream_name, None)
    return getattr(stream, "buffer", None)


def console_is_terminal(stream_name: str) -> bool:
    stream = getattr(sys, stream_name, None)
    try:
        return bool(stream is not None and stream.isatty())
    except (ValueError, OSError):
        return False


def terminal_env(prefix: str) -> dict[str, str]:
    """Variables for a worker whose stderr is shown on this launcher's console: when that is a
    terminal, progress bars are on (``DISTTORCH_PROGRESS=1``) and ``COLUMNS`` is the width left
    after the rank prefix; nothing otherwise (logs and pipes get no bars)."""
    if not console_is_terminal("stderr"):
        return {}
    try:
        columns = os.get_terminal_size(sys.stderr.fileno()).columns or 80  # 0: a terminal with no size set
    except (OSError, ValueError):
        columns = 80
    return {"DISTTORCH_PROGRESS": "1", "COLUMNS": str(max(columns - len(prefix), 20))}


def _write(out: BinaryIO, data: bytes) -> None:
    try:
        out.write(data)
        out.flush()
    except (BrokenPipeError, ValueError, OSError):
        pass  # the console went away (e.g. piped into `head`); keep draining the workers


def write_line(stream_name: str, data: bytes, *, ends_live: bool = False) -> None:
    """Write one complete line to 'stdout' or 'stderr' without interleaving with other lines.

    A progress line on screen is cleared first and drawn again below the new line, unless
    ``ends_live`` (the line is that bar's own last state, which replaces it)."""
    global _live
    if not data.endswith(b"\n"):
        data += b"\n"
    out = _console(stream_name)
    if out is None:
        return
    with _console_lock:
        live = _live
        if live is not None:
            live_out = _console(live[0])
            if live_out is not None:
                _write(live_out, _CLEAR_LINE)
            if ends_live:
                _live = live = None
        _write(out, data)
        if live is not None and live_out is not None:
            _write(live_out, b"\r" + live[1] + _CLEAR_TO_END)


def draw_live(stream_name: str, prefix: bytes, state: bytes) -> None:
    """Show ``prefix + state`` (a bar's latest state) on the live line; a blank state clears it."""
    global _live
    out = _console(stream_name)
    if out is None:
        return
    text = prefix + state
    with _console_lock:
        if not state.strip():
            _write(out, _CLEAR_LINE)
            _live = None
            return
        if _live is not None and _live[0] != stream_name:
            other = _console(_live[0])
            if other is not None:
                _write(other, _CLEAR_LINE)
        _write(out, b"\r" + text + _CLEAR_TO_END)
        _live = (stream_name, text)


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


def _last_state(line: bytes) -> bytes:
    """What a line full of carriage-return redraws finally shows: the text after the last \\r."""
    body = line[:-1] if line.endswith(b"\n") else line
    if body.endswith(b"\r"):
        body = body[:-1]  # a \r\n line ending, not a redraw
    return body.rsplit(b"\r", 1)[-1] + (b"\n" if line.endswith(b"\n") else b"")


def _pump_live(pipe: BinaryIO, prefix: bytes, console: str, log: BinaryIO | None,
               tail: collections.deque | None) -> None:
    """Like ``_pump`` for a terminal console: partial lines ending in a redraw are shown live."""
    fd = pipe.fileno()
    pending = b""
    drawn = False  # this stream owns the live line
    try:
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                line = _last_state(raw + b"\n") if b"\r" in raw else raw + b"\n"
                if log is not None:
                    log = _log(log, line)
                write_line(console, prefix + line, ends_live=drawn)
                drawn = False
                if tail is not None:
                    tail.append(line)
            if b"\r" in pending:
                head, _, latest = pending.rpartition(b"\r")
                if not latest:  # the redraw's text has not arrived yet: show the one before
                    latest = head.rsplit(b"\r", 1)[-1]
                draw_live(console, prefix, latest)
                drawn = True
                pending = pending[pending.rfind(b"\r"):]  # older states are gone from the screen
    except (OSError, ValueError):
        pass  # pipe closed under us while stopping
    finally:
        if drawn:
            draw_live(console, prefix, b"")
        if pending.strip(b"\r "):
            line = _last_state(pending)
            if line.strip():
                write_line(console, prefix + line)
                if log is not None:
                    log = _log(log, line + b"\n")
        if log is not None:
            log.close()
        pipe.close()


def _log(log: BinaryIO, line: bytes) -> BinaryIO | None:
    try:
        log.write(line)
        log.flush()
        return log
    except OSError:
        return None


def _pump(pipe: BinaryIO, prefix: bytes, console: str | None, log: BinaryIO | None,
          tail: collections.deque | None) -> None:
    try:
        for line in iter(pipe.readline, b""):
            if b"\r" in line:
                line = _last_state(line)  # a bar forced on into a pipe: its final state only
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
    live = console is not None and console_is_terminal(console)
    thread = threading.Thread(target=_pump_live if live else _pump, args=(pipe, prefix, console, log, tail),
                              name="disttorch-output", daemon=True)
    thread.start()
    return thread
