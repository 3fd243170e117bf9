"""disttorch.profiler: where the time of a step goes, as a Chrome-trace / Perfetto timeline.

``DISTTORCH_TRACE_DIR=DIR`` (``disttorch-run --trace-dir DIR`` sets it for every worker) turns
tracing on when disttorch is imported: module forwards, backward and optimizer steps
(``instrument.py``), every collective and DDP's bucket all-reduces and waits (recorded by the
distributed layer) become spans in ``DIR/ranks/rank<R>-attempt<K>.json`` (``trace.py``), which the
launcher merges into ``DIR/trace.json``: open it at https://ui.perfetto.dev or chrome://tracing.

Your own spans::

    from disttorch.profiler import record_function
    with record_function("data loading"):
        batch = next(it)
"""
from . import trace
from .trace import record_function

__all__ = ["record_function", "trace", "enable", "disable"]


def enable(directory: str, rank: int = 0, attempt: int = 0) -> bool:
    """Starts tracing this process into ``directory`` (what ``DISTTORCH_TRACE_DIR`` does)."""
    if not trace.enable(directory, rank, attempt):
        return False
    from . import instrument

    instrument.install()
    return True


def disable() -> None:
    """Stops tracing; the spans recorded so far are written."""
    from . import instrument

    instrument.remove()
    trace.disable()


def _start_from_env() -> None:
    """Called once by ``import disttorch`` (after nn and optim exist): DISTTORCH_TRACE_DIR set
    means trace this process."""
    if trace.enable_from_env():
        from . import instrument

        instrument.install()
