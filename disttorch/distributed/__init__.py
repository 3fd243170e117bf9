"""disttorch.distributed: torch.distributed's API over ZeroMQ and shared memory.

    import disttorch.distributed as dist
    dist.init_process_group("zmq")          # env:// — RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    work = dist.all_reduce(bucket, async_op=True); ...; work.wait()

Layout: ``api.py`` (the functions; ``resolve_group`` gives layers above a group's engine),
``object_collectives.py``, ``work.py`` (async handles), ``reduce_op.py`` (ReduceOp and its
kernels), ``backend.py`` (the interface both engines implement), ``process_group.py`` (the
ZeroMQ / shared-memory engine: engine choice per collective, watchdog and wait reports,
point-to-point), ``executor.py`` (call order, sequence numbers, deadlines, abort),
``fingerprints.py`` (the same-collective check), ``shm_setup.py`` (a host's shared segment),
``stacks.py`` (stack dumps on timeout), ``algorithms.py`` (pure schedules), ``collectives_zmq.py`` /
``collectives_shm.py`` (the schedules over each engine), ``direct_reduce.py`` (DDP's shared-memory
gradient sum), ``nccl.py`` (the CUDA backend), ``transport/`` (ZeroMQ, shared memory),
``mailbox.py`` (message matching), ``wire.py`` (the message header), ``store.py`` +
``rendezvous.py`` (TCPStore and the join), ``security.py`` (job secret, ZAP, CURVE),
``_runtime.py`` (the process's ZeroMQ context and credentials), ``liveness.py`` (same-host peer
checks), ``_arrays.py`` (tensor <-> array staging), ``env.py`` (torchrun / SLURM / MPI variables),
``config.py`` (tunables; every variable is declared in ``launcher/settings.py``), ``simulation/``
(``disttorch-run --simulate``), ``errors.py``. docs/architecture.md draws how they fit.
"""
from .api import (Backend, GroupMember, P2POp, all_gather, all_gather_into_tensor, all_reduce, all_to_all,
                  all_to_all_single, barrier, batch_isend_irecv, broadcast, default_pg_timeout, destroy_process_group,
                  gather, get_backend, get_global_rank, get_group_rank, get_node_local_rank, get_process_group_ranks,
                  get_rank, get_world_size, group, init_process_group, irecv, is_available, is_initialized,
                  is_torchelastic_launched, isend, monitored_barrier, new_group, recv, reduce, reduce_scatter,
                  reduce_scatter_tensor, scatter, send, _all_gather_base, _reduce_scatter_base)
from .errors import (CollectiveMismatchError, DistBackendError, DistError, DistNetworkError, DistStoreError,
                     DistTimeoutError, PeerFailureError, ProcessGroupAbortedError, RendezvousError)
from .object_collectives import all_gather_object, broadcast_object_list, gather_object, scatter_object_list
from .process_group import ProcessGroup
from .reduce_op import ReduceOp
from .store import PrefixStore, Store, TCPStore
from .work import Future, Work

__all__ = [
    "Backend", "GroupMember", "P2POp", "ProcessGroup", "ReduceOp", "Store", "TCPStore", "PrefixStore", "Work",
    "Future", "all_gather", "all_gather_into_tensor", "all_gather_object", "all_reduce", "all_to_all",
    "all_to_all_single", "barrier", "batch_isend_irecv", "broadcast", "broadcast_object_list",
    "default_pg_timeout", "destroy_process_group", "gather", "gather_object", "get_backend", "get_global_rank",
    "get_group_rank", "get_node_local_rank", "get_process_group_ranks", "get_rank", "get_world_size", "group",
    "init_process_group", "irecv", "is_available", "is_initialized", "is_torchelastic_launched", "isend",
    "monitored_barrier", "new_group", "recv", "reduce", "reduce_scatter", "reduce_scatter_tensor", "scatter",
    "scatter_object_list", "send", "DistError", "DistBackendError", "DistNetworkError", "DistStoreError",
    "DistTimeoutError", "PeerFailureError", "CollectiveMismatchError", "ProcessGroupAbortedError",
    "RendezvousError", "_all_gather_base", "_reduce_scatter_base",
]
