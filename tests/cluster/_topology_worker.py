"""Prints how this rank reaches every other rank (shared memory, ipc:// or tcp://), which hosts
the process group sees, and checks a cross-host all-reduce of 1M floats against its exact sum."""
import json
import socket

import numpy as np

import disttorch as torch
import disttorch.distributed as dist
from disttorch.distributed import api

dist.init_process_group("zmq")
rank, world = dist.get_rank(), dist.get_world_size()
pg = api._state.world
x = torch.arange(1 << 20, dtype=torch.float32) * (rank + 1)
dist.all_reduce(x)
expected = np.arange(1 << 20, dtype=np.float64) * (world * (world + 1) / 2)
report = {
    "rank": rank,
    "hostname": socket.gethostname(),
    "host_id": pg.host_id,
    "hosts": [[pg.global_ranks[g] for g in members] for members in pg.hosts],
    "shared_memory_with": [pg.global_ranks[g] for g in pg.local_members] if pg.shm else [],
    "hierarchical": bool(pg.shm is not None and not pg.shm_all and len(pg.hosts) > 1),
    "endpoints": {str(p): peer.endpoint for p, peer in pg.transport._peers.items()},
    "allreduce_max_error": float(np.abs(x.numpy() - expected).max()),
}
print("TOPOLOGY " + json.dumps(report), flush=True)
dist.destroy_process_group()
