"""Run a training script on a Ray cluster from Python, e.g. from a notebook.

    import disttorch.ray
    statuses = disttorch.ray.run("train.py", ["--epochs", "3"], num_workers=4, cpus_per_worker=1)
    # [0, 0, 0, 0]: every rank's exit status

The same engine as ``disttorch-run --ray`` (``disttorch_launcher.engines.ray``): one placement-group bundle
and one actor per rank, each actor running its rank as a child process with torchrun's variables.
``ray`` is imported only when this module is used; ``pip install 'disttorch[ray]'`` provides it.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

__all__ = ["run"]


def run(script: str, args: Sequence[str] = (), *, num_workers: int, cpus_per_worker: float = 1.0,
        gpus_per_worker: float = 0.0, num_nodes: int | None = None, address: str | None = None,
        max_restarts: int = 0, module: bool = False, env: dict[str, str] | None = None,
        echo_output: bool = True) -> list[int | None]:
    """Runs ``script`` (or module ``script`` with ``module=True``) as ``num_workers`` ranks.

    ``num_nodes`` spreads the ranks evenly over exactly that many Ray nodes (``num_workers`` must
    divide); by default they are packed wherever they fit. ``address``: ``"local"`` starts a
    private Ray instance for this call, ``"auto"`` or ``"HOST:PORT"`` joins a cluster; by default
    an already-initialised Ray is used, else a local one is started. Returns each rank's exit
    status (negative: killed by that signal; ``None``: its actor or node was lost). The first
    failing rank stops all others, as under ``disttorch-run``; ``max_restarts`` restarts the
    group.
    """
    from disttorch_launcher.engines.ray import RayJob, bootstrap_argv, run_ray_job
    from disttorch_launcher.remote import _forwarded_env

    if not isinstance(num_workers, int) or num_workers < 1:
        raise ValueError(f"num_workers: expected an int >= 1, got {num_workers!r}")
    if num_nodes is not None and (num_nodes < 1 or num_workers % num_nodes):
        raise ValueError(f"num_nodes={num_nodes} does not divide num_workers={num_workers}")
    if not module and not os.path.exists(script):
        raise FileNotFoundError(f"script {script!r} not found (cwd {os.getcwd()})")
    if address is None:
        import ray
        address = "auto" if ray.is_initialized() else "local"
    forwarded = _forwarded_env(dict(os.environ))
    forwarded.update(env or {})
    job = RayJob(argv=bootstrap_argv(script, [str(a) for a in args], module=module),
                 nproc_per_node=num_workers // (num_nodes or 1), nnodes=num_nodes,
                 cpus_per_rank=cpus_per_worker, gpus_per_rank=gpus_per_worker,
                 max_restarts=max_restarts, env=forwarded, echo_output=echo_output)
    return run_ray_job(job, address=address).statuses
