"""The collectives DDP uses, through ``disttorch.distributed``'s torch-style API.

Imported lazily: ``nn`` must not import ``distributed`` at module import time (imports point one
way), and a model wrapped in DDP needs an initialised process group anyway.
"""
from __future__ import annotations

import os

import numpy as np

from disttorch_launcher import settings

from ..._threads import get_num_threads


def dist():
    import disttorch.distributed as d
    return d


def require_initialized():
    d = dist()
    if not d.is_initialized():
        raise ValueError("Default process group has not been initialized, please make sure to call "
                         "init_process_group.")
    return d


def rank(group=None) -> int:
    return dist().get_rank(group) if group is not None else dist().get_rank()


def world_size(group=None) -> int:
    return dist().get_world_size(group) if group is not None else dist().get_world_size()


def group_kwargs(group):
    return {} if group is None else {"group": group}


def all_reduce_async(tensor, group=None, op=None):
    """Starts a SUM (or ``op``) all-reduce of ``tensor`` in place; returns its Work."""
    d = dist()
    return d.all_reduce(tensor, op=d.ReduceOp.SUM if op is None else op, async_op=True, **group_kwargs(group))


def all_reduce_staged(arena, group, cuts):
    """Starts a SUM all-reduce of the host array ``arena`` whose parts are still being written:
    ``(work, gate)``, ``gate.mark(stop)`` releasing ``arena[:stop]``; None where the group's engine
    has no staged form (then the caller reduces the finished arena)."""
    pg = engine(group)
    if pg is None or type(arena) is not np.ndarray:
        return None
    return pg.all_reduce_staged(arena, dist().ReduceOp.SUM, cuts)


def all_reduce(tensor, group=None, op=None):
    d = dist()
    d.all_reduce(tensor, op=d.ReduceOp.SUM if op is None else op, **group_kwargs(group))
    return tensor


def all_gather_object(obj, group=None):
    out = [None] * world_size(group)
    dist().all_gather_object(out, obj, **group_kwargs(group))
    return out


def broadcast_arrays(arrays, src=0, group=None):
    """Broadcasts a list of arrays from ``src`` in one collective per dtype, copying back in place.

    Coalescing matters: one message per parameter would cost a round trip each.
    """
    from ...tensor import Tensor
    by_dtype = {}
    for a in arrays:
        by_dtype.setdefault(a.dtype, []).append(a)
    for dtype, group_arrays in by_dtype.items():
        from ..._backend import array_module
        xp = array_module(group_arrays[0])  # coalesce on the arrays' own device
        flat = xp.concatenate([a.reshape(-1) for a in group_arrays])
        t = Tensor._wrap(flat)
        dist().broadcast(t, src=src, **group_kwargs(group))
        flat = t._data  # the backend may hand back a new array rather than fill ours
        off = 0
        for a in group_arrays:
            a[...] = flat[off:off + a.size].reshape(a.shape)
            off += a.size


def engine(group=None):
    """The engine behind ``group`` (``distributed.backend.CollectiveBackend``; None on a rank that
    is not a member), through the public ``distributed.api.resolve_group``."""
    from ...distributed.api import resolve_group
    return resolve_group(group)


def global_rank(group_rank, group=None) -> int:
    """The global rank of ``group_rank`` in ``group`` (collectives name their root globally)."""
    return group_rank if group is None else dist().get_global_rank(group, group_rank)


OVERLAP_ENV = "DISTTORCH_DDP_OVERLAP"


def prefers_overlap(world: int) -> bool:
    """Whether this rank wants bucket all-reduces on the communication thread during backward.

    ``DISTTORCH_DDP_OVERLAP=on|off|auto`` (default auto). Overlap needs a core for the
    communication thread: when every core already runs a rank's compute threads, the thread only
    takes CPU from backward (measured on 2 ranks x 1 thread on 2 cores: backward 0.5 ms slower per
    step, and the early bucket still finished when backward did). The same holds across hosts,
    where the network is the bottleneck: on 2 test hosts x 2 ranks on 2 cores at 1 Gbit (MLP
    784-512-512-10, quiet machine, benchmarks/crosshost.py) overlap cost 1.5-11% in 5 of 5
    comparisons, with 25, 0.5 and 0.25 MiB buckets. With the staged all-reduce across hosts (no
    communication thread; ``_reductions.StagedAcrossHosts``) overlap was faster in 3 of 5 ABBA
    quadruples and slower in 2 (load 1.1-1.7), not enough to turn it on. ``auto`` therefore
    overlaps only when this host has a spare core per rank.
    """
    mode = settings.get(OVERLAP_ENV)
    if mode in ("on", "1", "true"):
        return True
    if mode in ("off", "0", "false"):
        return False
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    return cores >= local_ranks * (get_num_threads() + 1)


DIRECT_ENV = "DISTTORCH_DDP_DIRECT"


def wants_direct(params, gradient_as_bucket_view: bool, find_unused_parameters: bool) -> bool:
    """Whether this rank can reduce gradients through shared-memory input areas
    (``distributed/direct_reduce.py``): host parameters, gradients not living in buckets, no
    unused-parameter bookkeeping. ``DISTTORCH_DDP_DIRECT=off`` declines (for comparisons). Whether
    the group actually runs on shared memory is settled when the areas are created."""
    mode = settings.get(DIRECT_ENV)
    if mode in ("off", "0", "false") or gradient_as_bucket_view or find_unused_parameters:
        return False
    return all(type(p._data) is np.ndarray for p in params)
