"""A tiny span recorder that writes Chrome-trace / Perfetto JSON, one file per process.

    from disttorch.profiler import trace
    with trace.span("forward", "compute", step=3):
        ...

When tracing is off (``ACTIVE`` is False, the default) ``span`` returns one shared do-nothing
context manager, so instrumented code pays a function call and a flag check. When it is on, each
span becomes a complete event (``"ph": "X"``) with ``pid`` = this process's rank and ``tid`` = the
thread it ran on; spans on one thread nest as the ``with`` blocks do. Events stay in memory and
are written to ``DIR/ranks/rank<R>-attempt<K>.json`` at exit, on SIGTERM (the launcher's way of
stopping a job), and whenever ``flush()`` is called (before an injected fault kills this rank).
``disttorch-run --trace-dir DIR`` merges those files into ``DIR/trace.json``.

Times are wall-clock nanoseconds (``time.time_ns``): processes on one host share that clock, so
their tracks line up; each file stores its origin and the events relative to it. This module
imports nothing of disttorch, so any layer (autograd, nn, distributed) may record spans.
"""
from __future__ import annotations

import atexit
import json
import os
import signal
import threading
import time

from disttorch_launcher import settings

#: True while this process records spans. Read it before building span arguments in hot code.
ACTIVE = False

ENV_DIR = "DISTTORCH_TRACE_DIR"
#: set in the environment by the process that records, so that its child processes (DataLoader
#: workers, spawned or forked) do not write the same rank's file
ENV_OWNER = "DISTTORCH_TRACE_OWNER"
MAX_EVENTS = 2_000_000


class _NullSpan:
    __slots__ = ()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_NULL = _NullSpan()


class _Recorder:
    """The events of one process, and where they go."""

    def __init__(self, path: str, rank: int, attempt: int):
        self.path, self.rank, self.attempt = path, rank, attempt
        self.origin_ns = time.time_ns()
        self.events: list[tuple] = []   # (name, cat, start_ns, end_ns | None, thread key, args)
        self.threads: dict = {}         # thread key -> display name, in order of first use
        self.dropped = 0
        self.owner_pid = os.getpid()
        self.lock = threading.Lock()    # flush vs. flush (a signal may arrive during atexit's)

    def add(self, name, cat, start_ns, end_ns, key, args) -> None:
        if key not in self.threads:
            self.threads[key] = key if isinstance(key, str) else threading.current_thread().name
        if len(self.events) < MAX_EVENTS:
            self.events.append((name, cat, start_ns, end_ns, key, args))
        else:
            self.dropped += 1


_rec: _Recorder | None = None


class _Span:
    __slots__ = ("name", "cat", "args", "start")

    def __init__(self, name, cat, args):
        self.name, self.cat, self.args = name, cat, args

    def __enter__(self):
        self.start = time.time_ns()
        return self

    def __exit__(self, *exc):
        rec = _rec
        if rec is not None:
            rec.add(self.name, self.cat, self.start, time.time_ns(), threading.get_ident(), self.args)
        return False


def span(name: str, cat: str = "user", **args):
    """A context manager timing its block as one span (a no-op unless tracing is on)."""
    if not ACTIVE:
        return _NULL
    return _Span(name, cat, args or None)


def complete(name: str, cat: str, start_ns: int, end_ns: int, track: str | None = None, **args) -> None:
    """Records a span with known times; ``track`` names a virtual thread (e.g. a simulated NIC)."""
    rec = _rec
    if ACTIVE and rec is not None:
        rec.add(name, cat, start_ns, end_ns, track if track is not None else threading.get_ident(), args or None)


def instant(name: str, cat: str = "user", **args) -> None:
    """Records a point in time (a fault firing, a restart) on the calling thread."""
    rec = _rec
    if ACTIVE and rec is not None:
        rec.add(name, cat, time.time_ns(), None, threading.get_ident(), args or None)


class record_function:
    """``torch.profiler.record_function``: a named span, as a context manager or a decorator."""

    def __init__(self, name: str, args: str | None = None):
        self.name, self.args, self._span = name, args, _NULL

    def __enter__(self):
        self._span = span(self.name, "user", **({"args": self.args} if self.args else {}))
        self._span.__enter__()
        return self

    def __exit__(self, *exc):
        return self._span.__exit__(*exc)

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapped(*a, **k):
            with record_function(self.name, self.args):
                return fn(*a, **k)
        return wrapped


# -- turning it on and off --------------------------------------------------------------------------
def rank_file(directory: str, rank: int, attempt: int) -> str:
    return os.path.join(directory, "ranks", f"rank{rank}-attempt{attempt}.json")


def enable(directory: str, rank: int = 0, attempt: int = 0) -> bool:
    """Starts recording into ``directory``; False when another process of this job records for us."""
    global ACTIVE, _rec
    if _rec is not None:
        return True
    owner = os.environ.get(ENV_OWNER)
    if owner and owner != str(os.getpid()):
        return False  # a DataLoader worker (or other child) of the traced process
    path = rank_file(os.path.abspath(directory), rank, attempt)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.environ[ENV_OWNER] = str(os.getpid())
    _rec = _Recorder(path, rank, attempt)
    ACTIVE = True
    atexit.register(flush)
    _chain_sigterm()
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_forget_in_child)
    return True


def enable_from_env() -> bool:
    """``DISTTORCH_TRACE_DIR`` set: record, as rank ``RANK``, attempt ``DISTTORCH_RESTART_COUNT``."""
    directory = (settings.get(ENV_DIR) or "").strip()
    if not directory:
        return False
    restart = settings.first_int("DISTTORCH_RESTART_COUNT", "TORCHELASTIC_RESTART_COUNT")
    return enable(directory, settings.first_int("RANK"), restart)


def disable() -> None:
    """Stops recording (what was recorded is written first)."""
    global ACTIVE, _rec
    flush()
    ACTIVE, _rec = False, None


def enabled() -> bool:
    return ACTIVE


def _forget_in_child() -> None:
    global ACTIVE, _rec
    ACTIVE, _rec = False, None


def _chain_sigterm() -> None:
    """Write the trace when the launcher stops this worker with SIGTERM, then do what SIGTERM
    did before (the bootstrap's handler, or the default: die of it)."""
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except (ValueError, OSError):
        return

    def on_sigterm(signum, frame):
        flush()
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    try:
        signal.signal(signal.SIGTERM, on_sigterm)
    except (ValueError, OSError):
        pass


# -- writing ----------------------------------------------------------------------------------------
def _thread_label(name: str) -> str:
    if name == "MainThread":
        return "main"
    if name.startswith("disttorch-pg-"):
        return f"comm ({name[len('disttorch-pg-'):]})"
    return name


def to_chrome(rec: _Recorder) -> dict:
    """The recorder's events as a Chrome-trace JSON object (times relative to ``origin_ns``)."""
    pid, origin = rec.rank, rec.origin_ns
    tids: dict = {}
    events = []
    suffix = f" (attempt {rec.attempt})" if rec.attempt else ""
    for i, (key, name) in enumerate(list(rec.threads.items())):
        tid = rec.attempt * 1000 + i
        tids[key] = tid
        label = _thread_label(name)
        # rows: the main thread, then communication threads, then the rest; a virtual track last
        order = 0 if label == "main" else 1 if label.startswith("comm") else 3 if isinstance(key, str) else 2
        events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": label + suffix}})
        events.append({"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": tid,
                       "args": {"sort_index": rec.attempt * 1000 + order * 100 + i}})
    events.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": f"rank {pid}"}})
    events.append({"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "args": {"sort_index": pid}})
    for name, cat, start, end, key, args in list(rec.events):
        ev = {"name": name, "cat": cat, "pid": pid, "tid": tids[key], "ts": (start - origin) / 1000}
        if end is None:
            ev.update(ph="i", s="t")
        else:
            ev.update(ph="X", dur=max(0, end - start) / 1000)
        if args:
            ev["args"] = args
        events.append(ev)
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"rank": pid, "attempt": rec.attempt, "origin_ns": origin, "pid": rec.owner_pid,
                          "dropped_events": rec.dropped}}


def flush() -> str | None:
    """Writes everything recorded so far (atomically: a reader never sees half a file)."""
    rec = _rec
    if rec is None or rec.owner_pid != os.getpid():
        return None
    if not rec.lock.acquire(timeout=5):
        return None
    try:
        data = to_chrome(rec)
        tmp = f"{rec.path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, separators=(",", ":"), default=str)
        os.replace(tmp, rec.path)
        return rec.path
    except OSError as e:
        import sys

        sys.stderr.write(f"disttorch trace: cannot write {rec.path}: {e}\n")
        return None
    finally:
        rec.lock.release()
