"""Rank functions for test_direct_reduce.py (module level: the harness spawns them by reference)."""
from __future__ import annotations

import os

import numpy as np


def _pg():
    from disttorch.distributed.api import _group
    return _group(None)


def rounds(rank: int, world: int, numel: int, dtype: str) -> dict:
    """Five rounds (both halves of the double buffer, twice over) summed into arrays of several
    shapes, against the sums every rank can compute itself."""
    from disttorch.distributed.direct_reduce import DirectAllReduce
    area = DirectAllReduce.create(_pg(), numel, dtype)
    if area is None:
        return {"created": False}
    shapes = [(3, 5), (numel - 15 - 7,), (7,)]
    failures = []
    for rnd in range(5):
        mine = area.area()
        mine[:] = (np.arange(numel) % 97 + 10 * rank + rnd).astype(dtype)
        outs, start = [], 0
        for shape in shapes:
            outs.append((start, np.full(shape, -1, dtype)))
            start += int(np.prod(shape))
        area.all_reduce_into(outs)
        want = sum((np.arange(numel) % 97 + 10 * r + rnd).astype(dtype) for r in range(world))
        got = np.concatenate([a.reshape(-1) for _, a in outs])
        if not np.array_equal(got, want):
            failures.append(f"round {rnd}: max error {np.abs(got - want).max()}")
    gone = not os.path.exists(area._own.path)  # unlinked once every rank had mapped it
    area.close()
    return {"created": True, "failures": failures, "file_gone": gone}


def direct_against_plain(rank: int, world: int) -> str:
    """Rank 0 runs a direct all-reduce while the others run a plain one of the same size: the
    fingerprint check at the first barrier must name the mismatch instead of mixing the data."""
    import disttorch.distributed as dist
    from disttorch.distributed.direct_reduce import DirectAllReduce
    area = DirectAllReduce.create(_pg(), 8, "float32")
    if rank == 0:
        area.all_reduce_into([(0, np.zeros(8, np.float32))])
    else:
        dist.all_reduce(np.zeros(8, np.float32))
    return "no error"


def created_over_sockets(rank: int, world: int) -> bool:
    from disttorch.distributed.direct_reduce import DirectAllReduce
    return DirectAllReduce.create(_pg(), 16, "float32") is not None


def one_rank_out_of_shm(rank: int, world: int) -> dict:
    """Rank 1's /dev/shm is full (posix_fallocate fails as a 64 MiB Docker tmpfs would): every rank
    must get None, and no file may be left behind."""
    import errno
    from disttorch.distributed.direct_reduce import DirectAllReduce
    if rank == 1:
        def full(fd, offset, length):
            raise OSError(errno.ENOSPC, "No space left on device")
        os.posix_fallocate = full
    before = set(os.listdir("/dev/shm"))
    area = DirectAllReduce.create(_pg(), 1 << 16, "float32")
    import disttorch.distributed as dist
    dist.barrier()
    mine = f"p{os.getpid()}n"
    return {"created": area is not None,
            "left": [f for f in set(os.listdir("/dev/shm")) - before if mine in f]}


def peer_dies_before_combining(rank: int, world: int) -> dict:
    """The last rank exits after filling its area but before the collective: the others must get an
    error naming it (no hang), and the group must refuse further work."""
    import time
    import disttorch.distributed as dist
    from disttorch.distributed.direct_reduce import DirectAllReduce
    area = DirectAllReduce.create(_pg(), 1000, "float32")
    area.area()[:] = 1
    if rank == world - 1:
        os._exit(3)
    t0 = time.monotonic()
    try:
        area.all_reduce_into([(0, np.zeros(1000, np.float32))])
        return {"error": None}
    except Exception as e:  # noqa: BLE001
        elapsed = time.monotonic() - t0
        try:
            dist.all_reduce(np.zeros(3, np.float32))
            again = "no error"
        except Exception as e2:  # noqa: BLE001
            again = type(e2).__name__
        return {"error": type(e).__name__, "message": str(e), "elapsed": elapsed, "again": again}
