"""Every ``DISTTORCH_*`` environment variable, declared once: its type, default and meaning.

Code reads a setting with ``settings.get("DISTTORCH_TRANSPORT")`` (typed, default applied, a bad value
refused with the variable and the value in the message) and names one with the declared string.
The README's "Settings" table is generated from ``SETTINGS`` (``python -m disttorch_launcher.settings``
prints it) and ``tests/test_settings.py`` fails when the table, or a ``DISTTORCH_*`` name used
anywhere in the code, is not declared here.

This module lives in the launcher package because both sides read it: the launcher must import
nothing of the tensor stack (``import disttorch`` loads NumPy and the ops), while ``disttorch``
may import this standard-library-only module freely. See docs/architecture.md, "Settings".
"""
from __future__ import annotations

import os
from dataclasses import dataclass

MiB = 1024 * 1024
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Setting:
    """One variable. ``kind``: ``str``, ``int``, ``float``, ``bytes`` (a positive count of bytes,
    ``4194304`` or ``4e6``), ``flag`` (1/true/yes/on or 0/false/no/off) or ``choice`` (one of
    ``choices``, case-insensitive). ``default`` is what ``get`` returns when the variable is unset
    or empty (``None``: no value). ``set_by``: ``you`` (a switch for users), ``disttorch-run``
    (the launcher hands it to workers; set it yourself only without the launcher)."""

    name: str
    kind: str
    default: object
    meaning: str
    set_by: str = "you"
    choices: tuple = ()
    minimum: float | None = None
    doc_default: str | None = None  # the default as the README shows it, when ``default`` says less

    def raw(self, environ=None) -> str | None:
        """The variable's text; None when unset or empty. Surrounding blanks are dropped except
        from ``str`` values, which are taken as given (a secret is compared byte for byte)."""
        value = (os.environ if environ is None else environ).get(self.name)
        if value is None or not value.strip():
            return None
        return value if self.kind == "str" else value.strip()

    def get(self, environ=None):
        """The typed value (``default`` when unset); ``ValueError`` naming the variable on bad text."""
        text = self.raw(environ)
        if text is None:
            return self.default
        return self.parse(text)

    def parse(self, text: str):
        kind = self.kind
        if kind == "str":
            return text
        if kind == "flag":
            low = text.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError(f"{self.name}={text!r}: expected 1 or 0 (true/false, yes/no, on/off)")
        if kind == "choice":
            low = text.lower()
            if low not in self.choices:
                raise ValueError(f"{self.name}={text!r}: expected {', '.join(self.choices[:-1])} or {self.choices[-1]}")
            return low
        try:
            value = float(text) if kind == "float" else int(float(text)) if kind == "bytes" else int(text)
        except ValueError:
            raise ValueError(f"{self.name}={text!r} is not a number") from None
        if kind == "bytes" and value <= 0:
            raise ValueError(f"{self.name}={text!r} must be positive")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"{self.name}={text!r} must be at least {self.minimum:g}")
        return value

    def default_text(self) -> str:
        if self.doc_default is not None:
            return self.doc_default
        if self.default is None:
            return ""
        if self.kind == "flag":
            return "1" if self.default else "0"
        if self.kind == "bytes" and self.default % MiB == 0:
            return f"{self.default // MiB} MiB"
        return str(self.default)


_LAUNCHER = "disttorch-run"

_DECLARED = (
    # ---- the job, handed to every worker by disttorch-run --------------------------------------
    Setting("DISTTORCH_SECRET", "str", None, "per-job secret that authenticates every connection (64 hex "
            "chars, fresh per job); multi-host jobs without the launcher must set the same one on every rank",
            _LAUNCHER),
    Setting("DISTTORCH_RUN_ID", "str", None, "the job's run id (`--rdzv-id`, also `TORCHELASTIC_RUN_ID`)", _LAUNCHER),
    Setting("DISTTORCH_RESTART_COUNT", "int", 0, "restarts so far, 0 on the first attempt (also "
            "`TORCHELASTIC_RESTART_COUNT`)", _LAUNCHER, minimum=0),
    Setting("DISTTORCH_ERROR_FILE", "str", None, "where the worker bootstrap records an uncaught exception for "
            "the launcher's report (else `TORCHELASTIC_ERROR_FILE`)", _LAUNCHER),
    Setting("DISTTORCH_LAUNCHER_PID", "int", 0, "the launcher's pid: a worker stops itself when it is gone",
            _LAUNCHER, minimum=0),
    Setting("DISTTORCH_STOP_GRACE", "float", 5.0, "seconds a stopped worker's children get between SIGTERM and "
            "SIGKILL", _LAUNCHER, minimum=0),
    Setting("DISTTORCH_DEVICE_INDEX", "int", None, "GPU machines: the local rank's GPU among the visible ones "
            "(else `LOCAL_RANK`)", _LAUNCHER, doc_default="`LOCAL_RANK`"),
    # ---- the collective layer (rank 0's values are adopted by every rank) -------------------------
    Setting("DISTTORCH_TRANSPORT", "choice", "auto", "`auto`: shared memory + ipc:// on one host, tcp:// between "
            "hosts; `ipc`: no shared memory; `tcp`: tcp:// only (`shm` means `auto`)",
            choices=("auto", "shm", "ipc", "tcp")),
    Setting("DISTTORCH_CHUNK_BYTES", "bytes", 4 * MiB, "largest message payload (libzmq slows down on huge "
            "frames; 4 MiB measured best of 1 / 4 MiB)"),
    Setting("DISTTORCH_ALLREDUCE_SWITCH", "bytes", 2 * MiB, "all-reduces smaller than this use recursive "
            "doubling, larger ones the ring (sockets path; measurements in distributed/config.py)"),
    Setting("DISTTORCH_SHM_SLOT_BYTES", "bytes", 4 * MiB, "per-rank shared-memory slot (two per rank); one "
            "round moves at most this much per rank"),
    Setting("DISTTORCH_SHM_CHUNK_BYTES", "bytes", None, "data per shared-memory round (at most the slot size)",
            doc_default="1 MiB; the slot size when ranks outnumber cores"),
    Setting("DISTTORCH_HIER_CHUNK_BYTES", "bytes", None, "round size of the hierarchical all-reduce across "
            "hosts (at most the slot size): one round's network part overlaps the next's shared memory",
            doc_default="2 MiB"),
    Setting("DISTTORCH_HIER_RAMP", "flag", True, "0: the hierarchical all-reduce's first and last rounds keep "
            "the full round size instead of a ramp of 1/8, 1/8, 1/4, 1/2 of it (for comparisons)"),
    Setting("DISTTORCH_SHM_YIELD_S", "float", 50e-6, "seconds a shared-memory waiter spins before it yields the "
            "core (for experiments)", minimum=0),
    Setting("DISTTORCH_DEBUG", "choice", "off", "`detail`: every collective first exchanges fingerprints "
            "(PyTorch's DETAIL mode); else `TORCH_DISTRIBUTED_DEBUG`", choices=("off", "info", "detail")),
    Setting("DISTTORCH_NAN_CHECK", "flag", False, "1: reductions raise on NaN input"),
    Setting("DISTTORCH_HEARTBEAT_TIMEOUT", "float", 5.0, "seconds without a heartbeat answer before a peer "
            "counts as lost", minimum=0),
    Setting("DISTTORCH_MAX_UNEXPECTED_BYTES", "bytes", 1024 * MiB, "bytes that may arrive before they are "
            "wanted", doc_default="1 GiB"),
    Setting("DISTTORCH_IO_THREADS", "int", 2, "libzmq I/O threads per process (2: sending and receiving "
            "proceed in parallel)", minimum=1),
    Setting("DISTTORCH_CURVE", "flag", None, "1: CURVE-encrypt every socket (keys derived from the secret); "
            "0: PLAIN, for trusted fabrics", doc_default="1 when `MASTER_ADDR` is not a loopback address"),
    Setting("DISTTORCH_TIMEOUT", "float", 1800.0, "seconds a collective may wait before it raises and every "
            "rank's stack is printed (`disttorch-run --timeout`; `init_process_group(timeout=)` wins)",
            minimum=1e-3),
    Setting("DISTTORCH_JOIN_TIMEOUT", "float", None, "seconds the ranks' rendezvous may take "
            "(`disttorch-run --join-timeout`)", minimum=1e-3, doc_default="`DISTTORCH_TIMEOUT`"),
    Setting("DISTTORCH_REPORT_PERIOD", "float", 30.0, "seconds between the reports of a collective or a "
            "rendezvous that waits (whom for, since when)", minimum=1e-3),
    Setting("DISTTORCH_HOST_ID", "str", None, "this machine's identity: ranks with equal ids share memory (tests "
            "use it to pretend one machine is several)", doc_default="hostname/boot id/`/dev/shm` device"),
    Setting("DISTTORCH_BIND_ADDR", "str", None, "this host's address as the other hosts reach it, for jobs that "
            "span hosts", doc_default="the interface routing to `MASTER_ADDR`"),
    # ---- DistributedDataParallel ----------------------------------------------------------------------
    Setting("DISTTORCH_DDP_OVERLAP", "choice", "auto", "`on`: bucket all-reduces on a communication thread "
            "during backward (across hosts: one staged all-reduce the buckets release in turn); `off`: after "
            "it; `auto`: on when the host has a spare core per rank",
            choices=("auto", "on", "off", "1", "0", "true", "false")),
    Setting("DISTTORCH_DDP_DIRECT", "choice", "on", "`off`: keep the bucket path where DDP would sum gradients "
            "straight through shared memory", choices=("on", "off", "1", "0", "true", "false")),
    # ---- simulation and tracing (disttorch-run --simulate-*, --inject-fault, --trace-dir) ------------
    Setting("DISTTORCH_SIMULATE_NETWORK", "str", None, "`--simulate-network`: "
            "`latency=2ms,bandwidth=1gbit,jitter=0.5ms`", _LAUNCHER),
    Setting("DISTTORCH_INJECT_FAULTS", "str", None, "`--inject-fault` (repeatable): fault specs separated by "
            "`;`", _LAUNCHER),
    Setting("DISTTORCH_FAULT_SEED", "int", 0, "`--fault-seed`: seeds `rank=random`, `at` ranges, jitter, the "
            "corrupted byte", _LAUNCHER),
    Setting("DISTTORCH_SIM_CHECKSUM", "flag", False, "1: CRC32 on every message (on by itself when a `corrupt` "
            "fault is injected)"),
    Setting("DISTTORCH_TRACE_DIR", "str", None, "`--trace-dir`: every rank records a timeline into this "
            "directory", _LAUNCHER),
    Setting("DISTTORCH_TRACE_OWNER", "str", None, "set by the recording process so its child processes do not "
            "write the same rank's trace", "disttorch"),
    Setting("DISTTORCH_TRACE_MODULE_DEPTH", "int", 3, "module forwards are traced down to this nesting depth",
            minimum=0),
    # ---- the process --------------------------------------------------------------------------------
    Setting("DISTTORCH_BLAS", "choice", "auto", "float products of NumPy arrays (and the SGD/Adam updates' fused "
            "passes): `auto`: Intel MKL's GEMM when the "
            "`mkl` wheel is installed (`pip install disttorch[mkl]`), else NumPy's BLAS; `numpy`: always NumPy's; "
            "`mkl`: MKL or an error", choices=("auto", "mkl", "numpy")),
    Setting("DISTTORCH_MALLOC_TUNING", "flag", True, "0: leave glibc's allocator alone (by default freed memory "
            "stays in the heap so each step reuses the previous step's pages)"),
    Setting("DISTTORCH_PROGRESS", "flag", None, "1: rank 0 draws a progress bar even when stderr is not a "
            "terminal; 0: never", doc_default="when a terminal"),
)

SETTINGS: dict = {s.name: s for s in _DECLARED}


def get(name: str, environ=None):
    """The typed value of the declared setting ``name`` (see ``Setting.get``)."""
    try:
        setting = SETTINGS[name]
    except KeyError:
        raise KeyError(f"{name} is not declared in launcher/settings.py") from None
    return setting.get(environ)


def first_int(*names: str, environ=None) -> int:
    """The first of the variables ``names`` that holds a whole number, else 0: for what the launcher
    hands its workers (``RANK``, ``DISTTORCH_RESTART_COUNT``...), read leniently by code that also
    runs without it."""
    env = os.environ if environ is None else environ
    for name in names:
        value = env.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return 0


def markdown_table() -> str:
    """The README's table of settings."""
    rows = ["| variable | type | default | set by | meaning |", "| --- | --- | --- | --- | --- |"]
    for s in _DECLARED:
        rows.append(f"| `{s.name}` | {s.kind} | {s.default_text()} | {s.set_by} | {s.meaning} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
