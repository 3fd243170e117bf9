"""Collectives on picklable Python objects, built on the tensor collectives (as PyTorch does).

Objects are pickled to byte arrays; sizes travel first, then the bytes padded to the largest
size. This is the only place where the layer unpickles anything received, and what it unpickles
comes from the group's peers only: over sockets every connection passed the job-secret handshake,
over shared memory only the same user could map the segment. Objects that plain pickle refuses
(lambdas, local classes) are pickled with cloudpickle.
"""
from __future__ import annotations

import pickle

import numpy as np

from . import api


def _dumps(obj) -> np.ndarray:
    try:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, AttributeError, TypeError):
        import cloudpickle

        data = cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return np.frombuffer(data, np.uint8)


def _loads(buf: np.ndarray, size: int):
    return pickle.loads(buf[:size].tobytes())


def _padded(data: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros(size, np.uint8)
    out[: data.size] = data
    return out


def all_gather_object(object_list: list, obj, group=None) -> None:
    """``object_list[k]`` becomes rank k's ``obj``."""
    pg = api._group(group)  # noqa: SLF001
    if pg is None:
        return
    n = pg.size()
    if len(object_list) != n:
        raise ValueError(f"object_list must have one slot per rank ({n}), got {len(object_list)}")
    data = _dumps(obj)
    sizes = [np.zeros(1, np.int64) for _ in range(n)]
    api.all_gather(sizes, np.array([data.size], np.int64), group)
    top = int(max(s[0] for s in sizes))
    outs = [np.empty(top, np.uint8) for _ in range(n)]
    api.all_gather(outs, _padded(data, top), group)
    for k in range(n):
        object_list[k] = _loads(outs[k], int(sizes[k][0]))


def gather_object(obj, object_gather_list=None, dst: int | None = None, group=None, group_dst: int | None = None):
    """On ``dst``, ``object_gather_list[k]`` becomes rank k's ``obj``."""
    pg = api._group(group)  # noqa: SLF001
    if pg is None:
        return
    root = api._root(pg, dst, group_dst, "dst")  # noqa: SLF001
    n = pg.size()
    if pg.rank() == root and (object_gather_list is None or len(object_gather_list) != n):
        raise ValueError(f"object_gather_list must have one slot per rank ({n}) on the destination rank")
    data = _dumps(obj)
    sizes = [np.zeros(1, np.int64) for _ in range(n)]
    api.all_gather(sizes, np.array([data.size], np.int64), group)
    top = int(max(s[0] for s in sizes))
    outs = [np.empty(top, np.uint8) for _ in range(n)] if pg.rank() == root else None
    api.gather(_padded(data, top), outs, group=group, group_dst=root)
    if pg.rank() == root:
        for k in range(n):
            object_gather_list[k] = _loads(outs[k], int(sizes[k][0]))


def broadcast_object_list(object_list: list, src: int | None = None, group=None, device=None,
                          group_src: int | None = None) -> None:
    """Every rank's ``object_list`` becomes rank ``src``'s (same length on every rank)."""
    pg = api._group(group)  # noqa: SLF001
    if pg is None:
        return
    root = api._root(pg, src, group_src, "src")  # noqa: SLF001
    count = len(object_list)
    sizes = np.zeros(count, np.int64)
    if pg.rank() == root:
        blobs = [_dumps(o) for o in object_list]
        sizes[:] = [b.size for b in blobs]
        payload = np.concatenate(blobs) if blobs else np.zeros(0, np.uint8)
    api.broadcast(sizes, group=group, group_src=root)
    if pg.rank() != root:
        payload = np.empty(int(sizes.sum()), np.uint8)
    api.broadcast(payload, group=group, group_src=root)
    if pg.rank() != root:
        start = 0
        for i, s in enumerate(sizes):
            object_list[i] = _loads(payload[start:start + int(s)], int(s))
            start += int(s)


def scatter_object_list(scatter_object_output_list: list, scatter_object_input_list=None, src: int | None = None,
                        group=None, group_src: int | None = None) -> None:
    """``scatter_object_output_list[0]`` of rank k becomes rank ``src``'s ``scatter_object_input_list[k]``."""
    pg = api._group(group)  # noqa: SLF001
    if pg is None:
        return
    if not isinstance(scatter_object_output_list, list) or len(scatter_object_output_list) < 1:
        raise ValueError("scatter_object_output_list must be a list with at least one element")
    root = api._root(pg, src, group_src, "src")  # noqa: SLF001
    n = pg.size()
    sizes = np.zeros(n, np.int64)
    blobs = None
    if pg.rank() == root:
        if scatter_object_input_list is None or len(scatter_object_input_list) != n:
            raise ValueError(f"scatter_object_input_list must have one object per rank ({n}) on the source rank")
        blobs = [_dumps(o) for o in scatter_object_input_list]
        sizes[:] = [b.size for b in blobs]
    api.broadcast(sizes, group=group, group_src=root)
    top = int(sizes.max()) if n else 0
    out = np.empty(top, np.uint8)
    api.scatter(out, [_padded(b, top) for b in blobs] if blobs is not None else None, group=group, group_src=root)
    scatter_object_output_list[0] = _loads(out, int(sizes[pg.rank()]))
