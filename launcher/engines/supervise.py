"""One supervision loop for any engine: first failure stops all, report, restarts."""
from __future__ import annotations

import time

from .. import output
from ..process import signal_name
from ..signals import SignalState
from . import Engine, RankExit

__all__ = ["supervise", "JobOutcome"]


class JobOutcome:
    """How a supervised job ended: exit status per rank (None: lost), the launcher's status,
    and the first failure (None on success)."""

    def __init__(self, world_size: int) -> None:
        self.statuses: list[int | None] = [None] * world_size
        self.exit_code = 1
        self.first_failure: RankExit | None = None
        self.restarts = 0


def supervise(engine: Engine, *, max_restarts: int, monitor_interval: float, grace: float,
              signals: SignalState | None = None, entrypoint: str = "") -> JobOutcome:
    """Runs attempts until every rank exits 0, a signal arrives, or restarts run out."""
    outcome = JobOutcome(engine.world_size)
    attempt = 0
    while True:
        engine.start(attempt)
        ended: dict[int, RankExit] = {}
        failure: RankExit | None = None
        stop_signal: int | None = None
        while len(ended) < engine.world_size:
            for exit_ in engine.poll():
                ended[exit_.rank] = exit_
                if exit_.failed and failure is None:
                    failure = exit_
            if failure is not None:
                break
            if signals is not None and signals.received is not None:
                stop_signal = signals.received
                engine.signal(stop_signal)
                break
            time.sleep(monitor_interval)
        if len(ended) < engine.world_size:
            for exit_ in engine.stop(0.0 if signals is not None and signals.hurry() else grace):
                ended.setdefault(exit_.rank, exit_)
        for rank, exit_ in ended.items():
            outcome.statuses[rank] = exit_.returncode
        if failure is None and stop_signal is None:
            outcome.exit_code = 0
            return outcome
        if stop_signal is not None:
            output.say(f"the launcher received {signal_name(stop_signal)}: stopped "
                       f"{engine.world_size} ranks")
            outcome.exit_code = 128 + stop_signal
            return outcome
        outcome.first_failure = failure
        if attempt < max_restarts:
            attempt += 1
            outcome.restarts = attempt
            output.say(f"attempt failed: {failure.summary()}; restarting all {engine.world_size} "
                       f"ranks (restart {attempt} of {max_restarts})")
            continue
        stopped = sorted(r for r, e in ended.items() if e is not failure and e.failed)
        lines = ["=" * 78, f"{entrypoint or 'job'} FAILED (restarts {attempt}/{max_restarts})",
                 "-" * 78, "first failure: " + failure.summary()]
        if failure.output_tail:
            lines += ["  last output:"] + [f"    {line}" for line in failure.output_tail]
        if stopped:
            lines.append("then stopped: " + ", ".join(
                f"rank {r} ({_short(ended[r])})" for r in stopped))
        lines.append("=" * 78)
        output.say("\n".join(lines))
        outcome.exit_code = 1
        return outcome


def _short(exit_: RankExit) -> str:
    if exit_.returncode is None:
        return "lost"
    if exit_.returncode < 0:
        return signal_name(-exit_.returncode)
    return f"exit code {exit_.returncode}"
