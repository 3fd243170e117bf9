"""What went wrong: worker failures, lost nodes, and the one report printed at the end.

Records are plain dataclasses with JSON round trips, because in a multi-node job every node
sends its failures to node 0 over the control channel, and node 0 prints the one report.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

from .process import describe_status

__all__ = ["WorkerFailure", "NodeLoss", "read_error_file", "format_report", "first_event",
           "early_exit_description", "last_stack_dump"]

_RULE = "=" * 78
_THIN = "-" * 78


@dataclass
class WorkerFailure:
    """A worker that ended badly on its own (not one the launcher stopped)."""

    rank: int
    local_rank: int
    node_rank: int
    host: str
    pid: int
    returncode: int
    time: float  # when it failed: its exception's timestamp, else when it exited
    exc_type: str | None = None
    message: str | None = None
    traceback: str | None = None
    error_file: str | None = None
    stderr_tail: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return describe_status(self.returncode)

    def summary(self) -> str:
        """One line: 'rank 1 (host h, pid 12): exit code 1: ValueError: boom'."""
        line = f"rank {self.rank} (host {self.host}, pid {self.pid}): {self.status}"
        if self.exc_type:
            line += f": {self.exc_type}: {self.message}" if self.message else f": {self.exc_type}"
        return line

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "WorkerFailure":
        names = cls.__dataclass_fields__.keys()
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class NodeLoss:
    """A node whose launcher went away (died, lost its network, or was signalled)."""

    node_rank: int
    host: str
    reason: str
    time: float

    def summary(self) -> str:
        return f"node {self.node_rank} (host {self.host}) lost: {self.reason}"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "NodeLoss":
        return cls(**{k: data[k] for k in ("node_rank", "host", "reason", "time")})


def read_error_file(path: str | None) -> dict | None:
    """The worker's recorded exception: {'exc_type', 'message', 'traceback', 'timestamp'}.

    Reads the bootstrap's format and torchelastic's (`@record`) format; None when the file is
    missing or unreadable (a worker killed by a signal writes nothing).
    """
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    if "traceback" in data:
        return {
            "exc_type": data.get("exc_type"),
            "message": data.get("message"),
            "traceback": data.get("traceback"),
            "timestamp": data.get("timestamp"),
        }
    # torchelastic: {"message": {"message": "ValueError: boom", "extraInfo": {...}}}
    inner = data.get("message")
    if isinstance(inner, dict):
        text = str(inner.get("message", ""))
        extra = inner.get("extraInfo") or {}
        exc_type, _, message = text.partition(": ")
        try:
            stamp = float(extra.get("timestamp"))
        except (TypeError, ValueError):
            stamp = None
        return {"exc_type": exc_type or None, "message": message or None,
                "traceback": extra.get("py_callstack"), "timestamp": stamp}
    return None


#: Exceptions that only relay another rank's failure (a peer aborted the process group): they can
#: be recorded a few ms before the root cause's own record, so they never count as the first.
RELAYED_ERRORS = frozenset({"ProcessGroupAbortedError"})


def first_event(failures: list[WorkerFailure], losses: list[NodeLoss]):
    """The earliest failure or node loss, by time, relayed errors last; None when there is neither."""
    events = [*failures, *losses]
    if not events:
        return None
    return min(events, key=lambda e: (getattr(e, "exc_type", None) in RELAYED_ERRORS, e.time))


def _clock(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) + f".{int(stamp % 1 * 1000):03d}"


def early_exit_description(rank: int, host: str, pid: int, when: float, started_at: float) -> str:
    """A worker that exited with code 0 while others still ran: it ended its part early (a
    script that returns before the last collective), it was not killed."""
    return (f"rank {rank} (host {host}, pid {pid}): exited with code 0 before the job ended "
            f"({when - started_at:.2f} s after start)")


def last_stack_dump(tail: list[str]) -> str | None:
    """The last faulthandler dump in a worker's stderr tail (its main thread's stack, which
    faulthandler prints last), or None. Workers print one on SIGUSR1: when a collective times
    out, the stuck ranks' dumps tell where they were when the launcher stopped them."""
    starts = [i for i, line in enumerate(tail)
              if line.startswith(("Current thread 0x", "Thread 0x", "Stack (most recent call first)"))]
    if not starts:
        return None
    current = [i for i in starts if tail[i].startswith("Current thread")]
    begin = current[-1] if current else starts[-1]
    frames = []
    for line in tail[begin:]:
        if not line.startswith(("Current thread", "Thread 0x", "Stack (", "  File ")):
            break
        frames.append(line.rstrip("\n"))
    return "\n".join(frames) if len(frames) > 1 else None


def _indent(text: str, pad: str) -> list[str]:
    return [pad + line for line in text.rstrip("\n").splitlines()]


def format_report(
    *,
    entrypoint: str,
    run_id: str,
    restart_count: int,
    max_restarts: int,
    started_at: float,
    failures: list[WorkerFailure],
    losses: list[NodeLoss] = (),
    stopped: list[str] = (),
    early_exits: list[str] = (),
    stacks: list[str] = (),
) -> str:
    """The job's failure report: the first failure by time in full, then everything else.

    `stopped` holds one description per worker the launcher stopped ('rank 0 (SIGTERM)');
    `early_exits` one per worker that exited with code 0 while the others still ran (often the
    reason the others then failed waiting for it); `stacks` the last stack dump of each rank
    the launcher stopped, when it printed one (a timed-out collective asks every rank for one).
    """
    losses = list(losses)
    lines = [_RULE, f"disttorch-run: job failed: {entrypoint} (run id {run_id}, "
                    f"restart {restart_count} of {max_restarts})", _THIN]
    first = first_event(failures, losses)
    if isinstance(first, WorkerFailure):
        lines += [
            "first failure (by time):",
            f"  rank      : {first.rank} (local rank {first.local_rank} on node {first.node_rank})",
            f"  host      : {first.host}",
            f"  pid       : {first.pid}",
            f"  exit      : {first.status}",
            f"  time      : {_clock(first.time)} ({first.time - started_at:.2f} s after start)",
        ]
        if first.exc_type:
            lines.append(f"  error     : {first.exc_type}: {first.message}" if first.message
                         else f"  error     : {first.exc_type}")
        if first.traceback:
            lines.append("  traceback :")
            lines += _indent(first.traceback, "    ")
        elif first.stderr_tail:
            lines.append("  last stderr lines:")
            lines += _indent("".join(first.stderr_tail), "    ")
        elif first.returncode < 0:
            lines.append("  traceback : none (killed by a signal before Python could record one)")
    elif isinstance(first, NodeLoss):
        lines += [
            "first failure (by time):",
            f"  node      : {first.node_rank} (host {first.host}) lost",
            f"  reason    : {first.reason}",
            f"  time      : {_clock(first.time)} ({first.time - started_at:.2f} s after start)",
        ]
    others = [e for e in [*failures, *losses] if e is not first]
    others.sort(key=lambda e: e.time)
    lines.append("other failures:" if others else "other failures: none")
    lines += [f"  {e.summary()}" for e in others]
    if early_exits:
        lines.append("ended early:")
        lines += [f"  {e}" for e in early_exits]
    if stopped:
        lines.append("stopped by the launcher: " + ", ".join(stopped))
    if stacks:
        lines.append("where the stopped ranks were (their last Python stack dump):")
        for text in stacks:
            head, _, dump = text.partition("\n")
            lines.append(f"  {head}")
            lines += _indent(dump, "    ")
    lines.append(_RULE)
    return "\n".join(lines)
