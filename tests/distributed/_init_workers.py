"""Rank functions for test_init.py's start-up timing tests (module level: the harness spawns them)."""
from __future__ import annotations

import time


def store_served_until_every_rank_is_done(rank: int, world: int, timeout: float, delay_s: float) -> dict:
    """Rank 1 sends the shared-memory setup's last store request (the wait for every doorbell)
    ``delay_s`` late, as a rank descheduled on a loaded machine would; rank 0, which serves the
    store, returns from init_process_group and destroys the group (and the store) at once."""
    import disttorch.distributed as dist
    from disttorch.distributed.api import _group
    from disttorch.distributed.store import TCPStore

    if rank == 1:
        real = TCPStore.wait

        def late_wait(self, keys, timeout=None):
            if any("/bells/" in str(k) for k in ([keys] if isinstance(keys, str) else keys)):
                time.sleep(delay_s)
            return real(self, keys, timeout)
        TCPStore.wait = late_wait
    t0 = time.monotonic()
    dist.init_process_group("zmq", timeout=timeout)
    try:
        return {"shm": _group(None).shm is not None, "init_s": time.monotonic() - t0}
    finally:
        dist.destroy_process_group()
