"""`--dry-run`: print what would run where, start nothing, create nothing.

Worker environments show only what the launcher sets; the job secret is shown as <secret>.
"""
from __future__ import annotations

import os
import shlex
from dataclasses import replace

from .config import LaunchConfig
from .local import plan_workers

__all__ = ["describe_node", "describe_hosts"]

_SECRET_VARS = ("DISTTORCH_SECRET",)
_PLACEHOLDER_SECRET = "<secret>"


class _NoFiles:
    """RunFiles' interface without touching the disk."""

    def __init__(self, log_dir: str | None, run_id: str) -> None:
        self.root = os.path.join(os.path.abspath(log_dir), run_id) if log_dir else "<tmpdir>"
        self.logs = log_dir is not None

    def rank_dir(self, attempt: int, rank: int) -> str:
        return os.path.join(self.root, f"attempt_{attempt}", f"rank{rank}")


def _worker_lines(cfg: LaunchConfig, *, node_rank: int, nnodes: int, rank_offset: int,
                  world_size: int, master_port: int | str, run_id: str) -> list[str]:
    base = dict(os.environ)
    plans = plan_workers(cfg, files=_NoFiles(cfg.log_dir, run_id), attempt=0, restart_count=0,
                         rank_offset=rank_offset, world_size=world_size, node_rank=node_rank,
                         nnodes=nnodes, master_port=master_port, secret=_PLACEHOLDER_SECRET,
                         run_id=run_id, base_env=base)
    lines = []
    if plans:
        lines.append("  command: " + shlex.join(plans[0].argv))
    for plan in plans:
        changed = {k: v for k, v in plan.env.items() if base.get(k) != v}
        for var in _SECRET_VARS:
            if var in changed:
                changed[var] = _PLACEHOLDER_SECRET
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(changed.items()))
        lines.append(f"  rank {plan.rank} (local rank {plan.local_rank}): {env}")
    return lines


def _workers(n: int) -> str:
    return f"{n} worker" + ("s" if n != 1 else "")


def describe_node(cfg: LaunchConfig, *, run_id: str, master_port: int | str) -> str:
    """The plan of a single-node job, or of this node in a scheduler / manual multi-node job."""
    if cfg.multi_node:
        nodes = cfg.min_nodes if not cfg.elastic else f"{cfg.min_nodes}:{cfg.max_nodes}"
        control = cfg.control_port or (master_port + 1 if isinstance(master_port, int)
                                       else "<master port + 1>")
        head = (f"disttorch-run dry run: node {cfg.node_rank} of {nodes} nodes, "
                f"{_workers(cfg.nproc_per_node)} here, master {cfg.master_addr}:{master_port}, "
                f"control port {control}, run id {run_id}"
                + (f" (from {cfg.scheduler})" if cfg.scheduler else ""))
        lines = [head, "  ranks and world size are assigned by node 0 at rendezvous; shown as if "
                       "this node were alone"]
        lines += _worker_lines(cfg, node_rank=cfg.node_rank, nnodes=cfg.max_nodes,
                               rank_offset=0, world_size=cfg.nproc_per_node,
                               master_port=master_port, run_id=run_id)
        return "\n".join(lines)
    lines = [f"disttorch-run dry run: 1 node, {_workers(cfg.nproc_per_node)}, master "
             f"{cfg.master_addr}:{master_port}, run id {run_id}"]
    lines += _worker_lines(cfg, node_rank=0, nnodes=1, rank_offset=0,
                           world_size=cfg.nproc_per_node, master_port=master_port, run_id=run_id)
    return "\n".join(lines)


def describe_hosts(cfg: LaunchConfig, nodes, commands: dict[int, str], *, master_addr: str,
                   master_port: int, control_port: int, run_id: str) -> str:
    """The plan of a `--hosts` / `--hostfile` job: every node, how it starts, its ranks."""
    world = sum(n.nproc for n in nodes)
    lines = [f"disttorch-run dry run: {len(nodes)} nodes, {_workers(world)}, master "
             f"{master_addr}:{master_port}, control port {control_port}, run id {run_id}"]
    offset = 0
    for n in nodes:
        ranks = f"ranks {offset}-{offset + n.nproc - 1}" if n.nproc > 1 else f"rank {offset}"
        if n.local:
            lines.append(f"node {n.node_rank} on {n.host} (this machine): {_workers(n.nproc)}, "
                         f"{ranks}")
            node_cfg = replace(cfg, master_addr=master_addr, nproc_per_node=n.nproc)
            lines += _worker_lines(node_cfg, node_rank=n.node_rank, nnodes=len(nodes),
                                   rank_offset=offset, world_size=world,
                                   master_port=master_port, run_id=run_id)
        else:
            argv = [*cfg.ssh_command, n.host, commands[n.node_rank]]
            lines.append(f"node {n.node_rank} on {n.host} (via {cfg.ssh_command[0]}): "
                         f"{_workers(n.nproc)}, {ranks}; secret sent on stdin")
            lines.append("  " + shlex.join(argv))
        offset += n.nproc
    return "\n".join(lines)
