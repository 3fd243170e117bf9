"""Starting and stopping the process group the way launcher-started scripts expect."""
from __future__ import annotations

import os


def setup_distributed(backend="zmq", timeout=None):
    """Initialises the default group and returns ``(rank, world_size)``.

    A group is joined when the launcher set ``WORLD_SIZE``, or when ``mpirun`` / ``srun`` started
    several copies of the script (their variables, read by ``disttorch.distributed.env``): a job an
    engine started is never silently a set of 1-rank jobs. A plain ``python script.py`` gets
    ``(0, 1)`` and no group.

    ``timeout`` (seconds or a ``timedelta``) bounds every collective; None takes
    ``DISTTORCH_TIMEOUT`` (``disttorch-run --timeout``), else 30 minutes."""
    import disttorch.distributed as dist
    if "WORLD_SIZE" not in os.environ and (dist.env.resolve().world_size or 1) <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://", timeout=timeout)
    return dist.get_rank(), dist.get_world_size()


def is_distributed() -> bool:
    try:
        import disttorch.distributed as dist
    except ImportError:
        return False
    is_initialized = getattr(dist, "is_initialized", None)  # absent while the package is a bare namespace
    return bool(is_initialized and is_initialized())


def cleanup():
    """Destroys the default group if one is up (safe to call in ``finally``)."""
    if is_distributed():
        import disttorch.distributed as dist
        dist.destroy_process_group()


def rank_and_world():
    if is_distributed():
        import disttorch.distributed as dist
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier():
    if is_distributed():
        import disttorch.distributed as dist
        dist.barrier()


def broadcast_object(obj, src=0):
    """Rank ``src``'s ``obj`` on every rank (identity without a group)."""
    if not is_distributed():
        return obj
    import disttorch.distributed as dist
    if hasattr(dist, "broadcast_object_list"):
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out[src]


def all_gather_object(obj):
    if not is_distributed():
        return [obj]
    import disttorch.distributed as dist
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
