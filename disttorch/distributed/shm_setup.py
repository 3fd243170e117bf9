"""Shared-memory setup for the ranks of one group that share a host.

``setup_shared_memory`` is a collective among a group's local members, coordinated through the
store: the first local member (the host's leader) creates the segment and its doorbell and
publishes the segment's name; the others attach and report ``ok`` or ``fail``; the leader then
publishes one verdict that every local member follows. Any failure (no /dev/shm, a full one, an
attach that fails on one rank) leaves the whole host on sockets, because a collective cannot run
half on shared memory. Paths are unlinked as soon as everyone holds them, so nothing leaks on
/dev/shm when a process dies later.
"""
from __future__ import annotations

import logging
import os
import time

from .config import Config
from .transport import shm as shm_mod

log = logging.getLogger("disttorch.distributed")

# verdicts the leader publishes under ``<key>/ready``
_SOCKETS = b"0"
_SHM = b"1"
_SHM_OVERSUBSCRIBED = b"1o"  # more local ranks than cores: rounds are cut larger (process_group._shm_cap)


def setup_shared_memory(*, group_name: str, group_id: int, job_id: int, global_ranks: list[int], rank: int,
                        local_members: list[int], store, config: Config, prefix: str,
                        deadline: float) -> shm_mod.ShmComm | None:
    """Creates / attaches this host's segment for the group; None means: use sockets.

    ``rank`` and ``local_members`` are group ranks; ``global_ranks`` maps them to the job's ranks
    (the store keys use global ranks, unique across groups). Every local member must call this
    with the same ``prefix``; all of them get a ShmComm or all get None."""
    local = local_members
    if len(local) < 2 or config.transport != "auto" or not shm_mod.supported():
        return None
    me = local.index(rank)
    leader = global_ranks[local[0]]
    key = f"{prefix}/shm/{leader}"
    slot = config.shm_slot_bytes
    seg = bell = None
    remaining = lambda: max(1.0, deadline - time.monotonic())  # noqa: E731
    if me == 0:
        name = f"dt{job_id & 0xffffffff:08x}g{group_id}r{leader}p{os.getpid()}"
        try:
            seg = shm_mod.ShmSegment(name, shm_mod.segment_size(len(local), slot), create=True)
            bell = doorbell(name, 0)
        except OSError as e:
            log.warning("disttorch: no shared memory for group %s (%s); using sockets", group_name, e)
            if seg is not None:
                seg.unlink()
                seg.close()
                seg = None
            name = ""
        store.set(key, name)
        if seg is not None:
            keys = [f"{key}/attached/{global_ranks[g]}" for g in local[1:]]
            store.wait(keys, remaining())
            ok = all(store.get(k) == b"ok" for k in keys)
            seg.unlink()  # everyone has it mapped: nothing can leak from here on
            # the leader decides whether ranks outnumber cores: the round size depends on it,
            # and every rank must cut the same rounds
            verdict = (_SHM_OVERSUBSCRIBED if len(local) > cores() else _SHM) if ok else _SOCKETS
            store.set(f"{key}/ready", verdict)
    else:
        name = store.get(key).decode()
        if name:
            try:
                seg = shm_mod.ShmSegment(name)
                bell = doorbell(name, me)
                status = b"ok"
            except OSError as e:
                log.warning("disttorch: could not attach shared memory %s (%s)", name, e)
                status = b"fail"
            store.set(f"{key}/attached/{global_ranks[rank]}", status)
    verdict = store.get(f"{key}/ready") if name else _SOCKETS
    if not verdict.startswith(_SHM):
        for res in (bell, seg):
            if res is not None:
                res.close()
        return None
    # every doorbell exists now; open the others', then unlink our path once all have ours
    bell.open_peers({k: doorbell_path(name, k) for k in range(len(local)) if k != me})
    store.set(f"{key}/bells/{global_ranks[rank]}", b"1")
    store.wait([f"{key}/bells/{global_ranks[g]}" for g in local], remaining())
    bell.unlink()
    return shm_mod.ShmComm(seg, len(local), me, slot, oversubscribed=verdict == _SHM_OVERSUBSCRIBED,
                           doorbell=bell)


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def doorbell_path(segment_name: str, local_rank: int) -> str:
    from .security import runtime_dir

    return os.path.join(runtime_dir(), f"{segment_name}-{local_rank}.bell")


def doorbell(segment_name: str, local_rank: int) -> shm_mod.Doorbell:
    return shm_mod.Doorbell(doorbell_path(segment_name, local_rank))
