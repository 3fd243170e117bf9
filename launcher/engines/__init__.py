"""Ways to start a job's workers, behind one small interface.

An engine starts every rank of one attempt, tells which ranks ended, forwards signals and stops
what still runs. `supervise` (in `supervise.py`) drives any engine the same way: the first
failure stops every rank, the report names rank, node and cause, `--max-restarts` restarts the
whole group. A new engine is one module with a class that has these four methods, plus one
`disttorch-run` option that dispatches to it.

Engines behind this interface: local processes (`engines/local.py`, over
`disttorch_launcher.local.WorkerGroup`), Ray actors (`engines/ray.py`, `--ray`) and ssh (`engines/ssh.py`,
`--hosts`/`--hostfile`: its units are the remote node launchers, whose ranks node 0's
coordinator supervises across nodes, with the richer multi-node report). `disttorch-run`'s
default one-node path (`disttorch_launcher.local.run_single_node`) still runs its own loop. SLURM, MPI and
Kubernetes start the workers (or one launcher per node) themselves; for those the launcher and
`init_process_group` only read their variables (`disttorch_launcher.schedulers`, `disttorch_launcher.engines.k8s`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["RankExit", "Engine"]


@dataclass
class RankExit:
    """One rank that ended: its exit status, or `returncode=None` with a `cause` when the
    engine lost it (its actor, host or node went away) and no status exists."""

    rank: int
    local_rank: int
    node_rank: int
    host: str
    pid: int
    returncode: int | None
    time: float
    cause: str | None = None
    output_tail: list[str] | None = None

    @property
    def failed(self) -> bool:
        return self.returncode != 0

    def summary(self) -> str:
        """'rank 1 (node 0, host h, pid 12): exit code 1' / '...: lost: the actor died'."""
        from ..process import describe_status

        where = f"rank {self.rank} (node {self.node_rank}, host {self.host}, pid {self.pid})"
        if self.returncode is None:
            return f"{where}: lost: {self.cause}"
        return f"{where}: {describe_status(self.returncode)}" + (f": {self.cause}" if self.cause else "")


class Engine(Protocol):
    """What `supervise` needs from a way of running one attempt's ranks."""

    world_size: int

    def start(self, attempt: int) -> None:
        """Start every rank of attempt `attempt` (0 first, then one more per restart)."""

    def poll(self) -> list[RankExit]:
        """The ranks that ended since the last call (also relays their output)."""

    def signal(self, sig: int) -> None:
        """Forward `sig` to every running rank."""

    def stop(self, grace: float) -> list[RankExit]:
        """SIGTERM every running rank, SIGKILL after `grace` seconds; returns how they ended."""
