"""torch.distributed's functions: process groups, collectives on tensors, point-to-point.

Arguments are validated here, before any message moves, and every error names the bad value;
the group then runs the collective on flat host arrays (``process_group.py``). Ranks given as
``src`` / ``dst`` are global ranks, ``group_src`` / ``group_dst`` ranks inside ``group`` (as in
PyTorch 2.x).
"""
from __future__ import annotations

import datetime
import json
import os
import socket
import threading
import time

import numpy as np

from disttorch_launcher.net import is_loopback

from . import env as _env
from . import _runtime, security
from . import simulation as _simulation
from ._arrays import Staged, commit_all
from .backend import CollectiveBackend
from .config import Config, collective_timeout_s, join_timeout_s
from .errors import DistError, RendezvousError
from .process_group import ProcessGroup, wrap_transport
from .reduce_op import ReduceOp, as_reduce_op, check_op_dtype
from .rendezvous import assign_local_ranks
from .store import Store, TCPStore, seconds
from .transport.zmq import ZmqTransport
from .work import Work

#: torch.distributed's default_pg_timeout
default_pg_timeout = datetime.timedelta(minutes=30)


class Backend(str):
    """Backend names. ``zmq`` is disttorch's; ``gloo`` is accepted as its alias. ``nccl`` runs the
    collectives of CUDA tensors through NCCL (``nccl.py``, CuPy's ``cupy.cuda.nccl``) over a zmq
    group that keeps the rest (the store, object collectives, host tensors)."""

    UNDEFINED = "undefined"
    ZMQ = "zmq"
    GLOO = "gloo"
    NCCL = "nccl"

    def __new__(cls, name: str):
        value = str(name).lower()
        if value not in ("zmq", "gloo", "nccl", "undefined"):
            raise ValueError(f"unknown backend {name!r}; expected 'zmq' (or 'gloo' / 'nccl')")
        return super().__new__(cls, value)


class _NonGroupMember:
    def __repr__(self):
        return "GroupMember.NON_GROUP_MEMBER"


class GroupMember:
    """``GroupMember.WORLD`` (the default group once initialized) and ``NON_GROUP_MEMBER``."""

    WORLD: ProcessGroup | None = None
    NON_GROUP_MEMBER = _NonGroupMember()


group = GroupMember  # torch spells it dist.group.WORLD


class _State:
    def __init__(self):
        self.lock = threading.RLock()
        self.world: ProcessGroup | None = None
        self.groups: list[ProcessGroup] = []
        self.store: TCPStore | None = None
        self.owns_store = False
        self.next_group_id = 1
        self.local_rank: int | None = None
        self.host_id: str | None = None


_state = _State()


# -- initialization -------------------------------------------------------------------------------
def is_available() -> bool:
    return True


def is_initialized() -> bool:
    return _state.world is not None


def is_torchelastic_launched() -> bool:
    return os.environ.get("TORCHELASTIC_RUN_ID") is not None


def _backend_name(backend) -> str:
    if backend is None:
        return Backend.ZMQ
    text = str(backend).lower()
    if ":" in text:  # "cpu:gloo,cuda:nccl"
        names = {part.split(":", 1)[1] for part in text.split(",") if ":" in part}
        text = "gloo" if "gloo" in names else sorted(names)[0]
    name = Backend(text)
    return str(name)


def _parse_tcp(init_method: str):
    rest = init_method[len("tcp://"):]
    rest, _, query = rest.partition("?")
    if rest.startswith("["):
        host, _, port = rest[1:].partition("]:")
    else:
        host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"init_method {init_method!r} is not tcp://host:port")
    params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
    return host, int(port), params


def init_process_group(backend=None, init_method=None, timeout=None, world_size: int = -1, rank: int = -1,
                       store: Store | None = None, group_name: str = "", pg_options=None, device_id=None) -> None:
    """Joins this process to the job and creates the default group (torch's signature).

    ``env://`` (default) reads RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT (and LOCAL_RANK), or the
    SLURM / Open MPI / PMI variables when those are absent (``env.py``). ``tcp://host:port`` names
    the master; rank and world size then come from the arguments or the environment.
    """
    with _state.lock:
        if _state.world is not None:
            raise ValueError("trying to initialize the default process group twice!")
        backend_name = _backend_name(backend)
        # an explicit timeout wins; else DISTTORCH_TIMEOUT (disttorch-run --timeout); else torch's 30 min
        timeout_s = seconds(timeout) if timeout is not None else collective_timeout_s()
        join_s = join_timeout_s(timeout_s)
        launch = _env.resolve()
        rank = rank if rank is not None and rank >= 0 else launch.rank
        world = world_size if world_size is not None and world_size > 0 else launch.world_size
        addr, port = launch.master_addr, launch.master_port
        if init_method is not None and init_method != "env://":
            if init_method.startswith("tcp://"):
                addr, port, params = _parse_tcp(init_method)
                rank = int(params["rank"]) if rank is None and "rank" in params else rank
                world = int(params["world_size"]) if world is None and "world_size" in params else world
            else:
                raise ValueError(f"init_method {init_method!r} is not supported; use 'env://' or 'tcp://host:port'")
        if world == 1 and rank in (None, 0) and store is None:
            rank, addr, port = 0, addr or "127.0.0.1", port if port is not None else 0
        missing = [name for name, v in (("RANK", rank), ("WORLD_SIZE", world)) if v is None]
        if store is None:
            missing += [name for name, v in (("MASTER_ADDR", addr), ("MASTER_PORT", port)) if v is None]
        if missing:
            raise ValueError(f"init_process_group: {', '.join(missing)} not set (pass rank= / world_size=, "
                             f"set the environment variables, or start the job with disttorch-run)")
        if world < 1 or rank < 0:
            raise ValueError(f"init_process_group: rank {rank} / world_size {world} are invalid")
        if port is not None and not 0 <= port <= 65535:
            raise ValueError(f"MASTER_PORT {port} is not a valid port")
        if port == 0 and world > 1 and store is None:
            raise ValueError("MASTER_PORT=0 works only for world_size 1: the other ranks must know the port")
        _simulation.install_from_env(rank, world)  # disttorch-run --simulate-network / --inject-fault / --trace-dir
        _state.world = _create_world(backend_name, timeout_s, rank, world, addr, port, store, launch,
                                     group_name or "world", join_s)
        GroupMember.WORLD = _state.world


def _create_world(backend_name, timeout_s, rank, world, addr, port, store, launch, name,
                  join_s=None) -> ProcessGroup:
    join_s = timeout_s if join_s is None else join_s
    deadline = time.monotonic() + join_s
    _runtime.ensure_fd_limit(world)
    owns_store = store is None
    if store is None:
        creds, provider = _runtime.job_credentials(addr, port, rank == 0, join_s)
        store_host = "127.0.0.1" if is_loopback(addr, resolve=True) else addr
        store = TCPStore(store_host, port, world, is_master=(rank == 0), timeout=timeout_s,
                         credentials=creds, credentials_provider=provider)
    else:
        if not isinstance(store, TCPStore):
            raise TypeError(f"store must be a disttorch TCPStore, got {type(store).__name__}")
        creds = store._credentials  # noqa: SLF001
        addr = addr or store.host
    transport = None
    try:
        ctx = _runtime.context(creds)
        config = Config.from_env()
        host_id = _runtime.host_id()
        single_host = is_loopback(addr, resolve=True) or os.environ.get("LOCAL_WORLD_SIZE") == str(world)
        bind_host = "127.0.0.1" if single_host else _runtime.routable_address(addr)
        transport = _new_transport(ctx, creds, rank, world, 0, 0, bind_host, config)
        registration = {"rank": rank, "world_size": world, "host_id": host_id, "hostname": socket.gethostname(),
                        "pid": os.getpid(), "tcp": transport.tcp_endpoint, "ipc": transport.ipc_endpoint,
                        "local_rank": launch.local_rank, "config": config.to_json() if rank == 0 else None}
        table = store.join(registration, max(1.0, deadline - time.monotonic()))
        config = Config.from_json(table["config"])
        transport.job_id = table["job_id"]
        transport.max_payload = config.chunk_bytes
        peers = table["peers"]
        _connect(transport, rank, peers, host_id, config)
        pg = ProcessGroup(name=name, group_id=0, global_ranks=list(range(world)), group_rank=rank, peers=peers,
                          job_id=table["job_id"], transport=wrap_transport(transport), store=store,
                          timeout_s=timeout_s, config=config, host_id=host_id, backend=backend_name)
        pg.setup_shm("pg/0", deadline)
        if backend_name == Backend.NCCL:  # CUDA tensors through NCCL; the ZeroMQ group keeps the rest
            from .nccl import NcclProcessGroup
            pg = NcclProcessGroup(pg, store, key="nccl/0")
        _store_owner_waits(store, "pg/0/up", range(world), rank, _serves(store), time.monotonic() + timeout_s)
    except BaseException as e:
        if transport is not None:
            transport.close()
        if owns_store:
            if isinstance(e, RendezvousError) and store.server is not None:
                _linger_for_late_ranks(store.server, world)
            store.close()
        raise
    local = assign_local_ranks(peers)[rank]
    _state.store, _state.owns_store = store, owns_store
    _state.local_rank = launch.local_rank if launch.local_rank is not None else local
    _state.host_id = host_id
    _state.next_group_id = 1
    _state.groups = [pg]
    return pg


def _serves(store) -> bool:
    """Whether this process serves ``store`` (its server goes away with this process's groups)."""
    return getattr(store, "server", None) is not None


def _store_owner_waits(store, key: str, ranks, me: int, owner: bool, deadline: float) -> None:
    """The last step of a group's set-up: every rank says it is done with the store, and the rank
    that serves the store returns only once all have.

    Otherwise the serving rank, whose own last wait is answered first, could return, run a short
    script and destroy the store while a peer's last request (the shared-memory setup's final
    wait) is still on its way: that peer then waits its whole timeout for an answer that never
    comes (the 5-rank flake of test_direct_reduce on the loaded machine)."""
    if not owner:
        store.set(f"{key}/{me}", b"1")
        return
    others = [f"{key}/{r}" for r in ranks if r != me]
    if others:
        store.wait(others, max(1.0, deadline - time.monotonic()))


def _linger_for_late_ranks(server, world: int, grace_s: float = 3.0) -> None:
    """Rank 0 keeps serving a failed rendezvous briefly, so ranks still starting learn why."""
    rdzv = server.rendezvous
    end = time.monotonic() + grace_s
    while rdzv is not None and len(rdzv.told | {0}) < world and time.monotonic() < end:
        time.sleep(0.05)


def _new_transport(ctx, creds, rank, world, job_id, group_id, bind_host, config: Config) -> ZmqTransport:
    ipc_dir = security.runtime_dir() if config.transport != "tcp" else None
    if ipc_dir is not None and group_id == 0:
        security.clean_runtime_dir(ipc_dir)
    return ZmqTransport(ctx, creds, rank, world, job_id=job_id, group_id=group_id, bind_host=bind_host,
                        ipc_dir=ipc_dir, max_payload=config.chunk_bytes,
                        heartbeat_timeout_s=config.heartbeat_timeout_s)


def _connect(transport: ZmqTransport, me: int, peers: list[dict], host_id: str, config: Config) -> None:
    endpoints = {}
    for g, p in enumerate(peers):
        if g == me:
            continue
        same_host = p["host_id"] == host_id
        endpoints[g] = p["ipc"] if same_host and p.get("ipc") and config.transport != "tcp" else p["tcp"]
    transport.connect(endpoints)


def _world() -> ProcessGroup:
    if _state.world is None:
        raise ValueError("Default process group has not been initialized, please make sure to call "
                         "init_process_group.")
    return _state.world


def new_group(ranks=None, timeout=None, backend=None, pg_options=None, use_local_synchronization: bool = False,
              group_desc: str | None = None, device_id=None):
    """A group of ``ranks`` (global ranks, sorted). Every rank of the job must call it, in the same
    order as the other ``new_group`` calls; non-members get ``GroupMember.NON_GROUP_MEMBER``."""
    world = _world().host()  # the peer table, config and job id live in the host engine (also under nccl)
    with _state.lock:
        gid = _state.next_group_id
        _state.next_group_id += 1
    n = world.size()
    if ranks is None:
        members = list(range(n))
    else:
        members = [int(r) for r in ranks]
        bad = [r for r in members if not 0 <= r < n]
        if bad:
            raise ValueError(f"new_group: ranks {bad} are out of range for world_size {n}")
        dup = sorted({r for r in members if members.count(r) > 1})
        if dup:
            raise ValueError(f"new_group: ranks {dup} appear more than once in {list(ranks)}")
        members = sorted(members)
    me = world.rank()
    timeout_s = seconds(timeout) if timeout is not None else world.timeout
    deadline = time.monotonic() + timeout_s
    if me not in members:
        if _serves(_state.store):  # the members' set-up still needs the store this rank serves
            _store_owner_waits(_state.store, f"pg/{gid}/up", members, me, True, deadline)
        return GroupMember.NON_GROUP_MEMBER
    config, store = world.config, _state.store
    creds = store._credentials  # noqa: SLF001
    ctx = _runtime.context(creds)
    my_tcp = world.peers[me]["tcp"]
    bind_host = my_tcp[len("tcp://"):].rsplit(":", 1)[0].strip("[]")
    grank = members.index(me)
    transport = _new_transport(ctx, creds, grank, len(members), world.job_id, gid, bind_host, config)
    try:
        store.set(f"pg/{gid}/addr/{me}", json.dumps({"tcp": transport.tcp_endpoint, "ipc": transport.ipc_endpoint}))
        peers = []
        for r in members:
            addr = json.loads(store.get(f"pg/{gid}/addr/{r}"))
            peers.append({**world.peers[r], "tcp": addr["tcp"], "ipc": addr["ipc"], "rank": r})
        _connect(transport, grank, peers, world.host_id, config)
        name = group_desc or f"group{gid}"
        pg = ProcessGroup(name=name, group_id=gid, global_ranks=members, group_rank=grank, peers=peers,
                          job_id=world.job_id, transport=wrap_transport(transport), store=store,
                          timeout_s=timeout_s, config=config, host_id=world.host_id, backend=world.backend)
        pg.setup_shm(f"pg/{gid}", deadline)
        if world.backend == Backend.NCCL:
            from .nccl import NcclProcessGroup
            pg = NcclProcessGroup(pg, store, key=f"nccl/{gid}")
        _store_owner_waits(store, f"pg/{gid}/up", members, me, _serves(store), time.monotonic() + timeout_s)
    except BaseException:
        transport.close()
        raise
    with _state.lock:
        _state.groups.append(pg)
    return pg


def _goodbye_at_exit() -> None:
    """A script that ends without ``destroy_process_group`` still leaves its groups cleanly."""
    for pg in list(_state.groups):
        try:
            pg.host().say_goodbye()
        except Exception:  # noqa: BLE001 - one broken group must not keep the others' goodbyes
            pass


_runtime.before_shutdown(_goodbye_at_exit)


def destroy_process_group(group=None) -> None:
    """Closes ``group``'s sockets and shared memory, or, without an argument, every group and the store."""
    with _state.lock:
        if group is None or group is _state.world:
            groups, _state.groups = list(_state.groups), []
            for pg in reversed(groups):
                pg.close()
            if _state.store is not None and _state.owns_store:
                _state.store.close()
            _state.store = None
            _state.world = None
            GroupMember.WORLD = None
            _runtime.remove_key_files()
        elif group is GroupMember.NON_GROUP_MEMBER:
            return
        else:
            group.close()
            if group in _state.groups:
                _state.groups.remove(group)


def _on_gpu(pg) -> bool:
    """True for an NCCL group: CUDA tensors go to it as they are (no staging through the host)."""
    return pg.device_arrays


def resolve_group(group=None) -> CollectiveBackend | None:
    """The engine behind a ``group`` argument (None or ``group.WORLD``: the default group), None
    on a rank that is not a member. What DDP and other layers above use to reach a group's
    engine (``backend.CollectiveBackend``) without going through the tensor-level functions."""
    if group is None or group is GroupMember.WORLD:
        return _world()
    if group is GroupMember.NON_GROUP_MEMBER:
        return None
    if not isinstance(group, CollectiveBackend):
        raise TypeError(f"group must be a ProcessGroup from new_group(), got {type(group).__name__}")
    return group


_group = resolve_group  # this module's and object_collectives.py's short name


def get_rank(group=None) -> int:
    pg = _group(group)
    return -1 if pg is None else pg.rank()


def get_world_size(group=None) -> int:
    pg = _group(group)
    return -1 if pg is None else pg.size()


def get_backend(group=None) -> str:
    pg = _group(group)
    if pg is None:
        raise ValueError("Invalid process group specified")
    return pg.backend


def get_global_rank(group, group_rank: int) -> int:
    pg = _group(group)
    if not 0 <= group_rank < pg.size():
        raise ValueError(f"group rank {group_rank} is out of range for a group of size {pg.size()}")
    return pg.global_ranks[group_rank]


get_global_rank_in_group = get_global_rank


def get_group_rank(group, global_rank: int) -> int:
    pg = _group(group)
    try:
        return pg.global_ranks.index(global_rank)
    except ValueError:
        raise ValueError(f"global rank {global_rank} is not part of group {pg.name} "
                         f"(ranks {pg.global_ranks})") from None


def get_process_group_ranks(group) -> list[int]:
    return list(_group(group).global_ranks)


def get_node_local_rank(fallback_rank: int | None = None) -> int:
    """LOCAL_RANK, or this rank's position among the job's ranks on this host."""
    if "LOCAL_RANK" in os.environ:
        return int(os.environ["LOCAL_RANK"])
    if _state.local_rank is not None:
        return _state.local_rank
    if fallback_rank is not None:
        return fallback_rank
    raise RuntimeError("LOCAL_RANK is not set and the process group is not initialized")


def _root(pg: ProcessGroup, rank, group_rank, what: str) -> int:
    """The group rank of a root given as a global rank or as ``group_<what>``."""
    if rank is not None and group_rank is not None:
        raise ValueError(f"pass either {what} or group_{what}, not both ({rank}, {group_rank})")
    if group_rank is not None:
        if not 0 <= group_rank < pg.size():
            raise ValueError(f"group_{what}={group_rank} is out of range for a group of size {pg.size()}")
        return group_rank
    if rank is None:
        raise ValueError(f"either {what} or group_{what} must be given")
    try:
        return pg.global_ranks.index(rank)
    except ValueError:
        raise ValueError(f"{what}={rank} is not a rank of group {pg.name} (ranks {pg.global_ranks})") from None


# -- collectives --------------------------------------------------------------------------------
def _yielding(work: Work | None, value) -> Work | None:
    """``work`` (None for a synchronous call) whose future's value is ``value``, as in PyTorch:
    ``all_reduce(t, async_op=True).get_future().wait()`` is ``[t]``."""
    if work is not None:
        work._result = value  # noqa: SLF001  (a completion with result None keeps it)
    return work


def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op: bool = False) -> Work | None:
    """Reduces ``tensor`` across the group, in place on every rank."""
    pg = _group(group)
    if pg is None:
        return None
    op = as_reduce_op(op)
    st = Staged(tensor, True, keep_device=_on_gpu(pg))
    check_op_dtype(op, st.host.dtype)
    return _yielding(pg.all_reduce(st.host, op, async_op, after=st.commit), [tensor])


def broadcast(tensor, src: int | None = None, group=None, async_op: bool = False, group_src: int | None = None):
    """Copies ``tensor`` of rank ``src`` into ``tensor`` of every rank."""
    pg = _group(group)
    if pg is None:
        return None
    root = _root(pg, src, group_src, "src")
    st = Staged(tensor, True, keep_device=_on_gpu(pg))
    return _yielding(pg.broadcast(st.host, root, async_op, after=st.commit), [tensor])


def reduce(tensor, dst: int | None = None, op=ReduceOp.SUM, group=None, async_op: bool = False,
           group_dst: int | None = None):
    """Reduces into ``tensor`` of rank ``dst``; the other ranks' tensors are left unchanged."""
    pg = _group(group)
    if pg is None:
        return None
    root = _root(pg, dst, group_dst, "dst")
    op = as_reduce_op(op)
    st = Staged(tensor, True, keep_device=_on_gpu(pg))
    check_op_dtype(op, st.host.dtype)
    return _yielding(pg.reduce(st.host, op, root, async_op, after=st.commit), [tensor])


def _check_like(ref: np.ndarray, arrs: list[np.ndarray], what: str, numel: int | None = None) -> None:
    want = ref.size if numel is None else numel
    for i, a in enumerate(arrs):
        if a.dtype != ref.dtype:
            raise TypeError(f"{what}[{i}] has dtype {a.dtype}, expected {ref.dtype}")
        if a.size != want:
            raise ValueError(f"{what}[{i}] has {a.size} elements (shape {tuple(a.shape)}), expected {want}")


def _list_len(pg: ProcessGroup, lst, what: str) -> None:
    if lst is None or len(lst) != pg.size():
        n = "None" if lst is None else len(lst)
        raise ValueError(f"{what} must hold one tensor per rank of the group ({pg.size()}), got {n}")


def all_gather(tensor_list, tensor, group=None, async_op: bool = False):
    """``tensor_list[k]`` receives rank k's ``tensor``."""
    pg = _group(group)
    if pg is None:
        return None
    _list_len(pg, tensor_list, "tensor_list")
    inp = Staged(tensor, False, keep_device=_on_gpu(pg))
    outs = [Staged(t, True, "tensor_list entry", keep_device=_on_gpu(pg)) for t in tensor_list]
    _check_like(inp.host, [o.host for o in outs], "tensor_list")
    return _yielding(pg.all_gather(inp.host, [o.host for o in outs], async_op, after=commit_all(outs)), [tensor_list])


def all_gather_into_tensor(output_tensor, input_tensor, group=None, async_op: bool = False):
    """``output_tensor`` (``world * n`` elements, e.g. ``(world * d0, ...)`` or ``(world, ...)``)
    receives every rank's ``input_tensor`` in rank order."""
    pg = _group(group)
    if pg is None:
        return None
    inp, out = Staged(input_tensor, False, keep_device=_on_gpu(pg)), Staged(output_tensor, True, keep_device=_on_gpu(pg))
    n = inp.host.size
    _check_like(inp.host, [out.host], "output_tensor", n * pg.size())
    flat = out.host.reshape(-1)
    return _yielding(pg.all_gather(inp.host, [flat[k * n:(k + 1) * n] for k in range(pg.size())], async_op,
                                   after=out.commit), [output_tensor])


_all_gather_base = all_gather_into_tensor


def gather(tensor, gather_list=None, dst: int | None = None, group=None, async_op: bool = False,
           group_dst: int | None = None):
    """Rank ``dst``'s ``gather_list[k]`` receives rank k's ``tensor``."""
    pg = _group(group)
    if pg is None:
        return None
    root = _root(pg, dst, group_dst, "dst")
    inp = Staged(tensor, False, keep_device=_on_gpu(pg))
    outs = None
    if pg.rank() == root:
        _list_len(pg, gather_list, "gather_list")
        outs = [Staged(t, True, "gather_list entry", keep_device=_on_gpu(pg)) for t in gather_list]
        _check_like(inp.host, [o.host for o in outs], "gather_list")
    return pg.gather(inp.host, [o.host for o in outs] if outs else None, root, async_op,
                     after=commit_all(outs or []))


def scatter(tensor, scatter_list=None, src: int | None = None, group=None, async_op: bool = False,
            group_src: int | None = None):
    """``tensor`` of rank k receives rank ``src``'s ``scatter_list[k]``."""
    pg = _group(group)
    if pg is None:
        return None
    root = _root(pg, src, group_src, "src")
    out = Staged(tensor, True, keep_device=_on_gpu(pg))
    ins = None
    if pg.rank() == root:
        _list_len(pg, scatter_list, "scatter_list")
        ins = [Staged(t, False, keep_device=_on_gpu(pg)) for t in scatter_list]
        _check_like(out.host, [i.host for i in ins], "scatter_list")
    return pg.scatter([i.host for i in ins] if ins else None, out.host, root, async_op, after=out.commit)


def reduce_scatter(output, input_list, op=ReduceOp.SUM, group=None, async_op: bool = False):
    """``output`` of rank k receives the reduction of every rank's ``input_list[k]``."""
    pg = _group(group)
    if pg is None:
        return None
    op = as_reduce_op(op)
    _list_len(pg, input_list, "input_list")
    out = Staged(output, True, keep_device=_on_gpu(pg))
    ins = [Staged(t, False, keep_device=_on_gpu(pg)) for t in input_list]
    _check_like(out.host, [i.host for i in ins], "input_list")
    check_op_dtype(op, out.host.dtype)
    return _yielding(pg.reduce_scatter([i.host for i in ins], out.host, op, async_op, after=out.commit), [output])


def reduce_scatter_tensor(output, input, op=ReduceOp.SUM, group=None, async_op: bool = False):  # noqa: A002
    """``output`` of rank k receives the reduction of block k of every rank's ``input``."""
    pg = _group(group)
    if pg is None:
        return None
    op = as_reduce_op(op)
    out, inp = Staged(output, True, keep_device=_on_gpu(pg)), Staged(input, False, keep_device=_on_gpu(pg))
    n = out.host.size
    _check_like(out.host, [inp.host], "input", n * pg.size())
    check_op_dtype(op, out.host.dtype)
    flat = inp.host.reshape(-1)
    return _yielding(pg.reduce_scatter([flat[k * n:(k + 1) * n] for k in range(pg.size())], out.host, op, async_op,
                                       after=out.commit), [output])


_reduce_scatter_base = reduce_scatter_tensor


def all_to_all(output_tensor_list, input_tensor_list, group=None, async_op: bool = False):
    """``output_tensor_list[k]`` of rank r receives rank k's ``input_tensor_list[r]``."""
    pg = _group(group)
    if pg is None:
        return None
    _list_len(pg, output_tensor_list, "output_tensor_list")
    _list_len(pg, input_tensor_list, "input_tensor_list")
    outs = [Staged(t, True, "output_tensor_list entry", keep_device=_on_gpu(pg)) for t in output_tensor_list]
    ins = [Staged(t, False, keep_device=_on_gpu(pg)) for t in input_tensor_list]
    ref = outs[0].host
    for i, s in enumerate(outs + ins):
        if s.host.dtype != ref.dtype:
            raise TypeError(f"all_to_all: tensor {i} has dtype {s.host.dtype}, expected {ref.dtype}")
    return pg.all_to_all([i.host for i in ins], [o.host for o in outs], async_op, after=commit_all(outs))


def all_to_all_single(output, input, output_split_sizes=None, input_split_sizes=None, group=None,  # noqa: A002
                      async_op: bool = False):
    """all_to_all on dim-0 slices of one tensor (equal slices unless split sizes are given)."""
    pg = _group(group)
    if pg is None:
        return None
    out, inp = Staged(output, True, keep_device=_on_gpu(pg)), Staged(input, False, keep_device=_on_gpu(pg))
    if out.host.dtype != inp.host.dtype:
        raise TypeError(f"all_to_all_single: output dtype {out.host.dtype} differs from input dtype {inp.host.dtype}")
    outs = _split_dim0(out.host, output_split_sizes, pg.size(), "output")
    ins = _split_dim0(inp.host, input_split_sizes, pg.size(), "input")
    return pg.all_to_all(ins, outs, async_op, after=out.commit)


def _split_dim0(arr: np.ndarray, sizes, n: int, what: str) -> list[np.ndarray]:
    if arr.ndim == 0:
        raise ValueError(f"all_to_all_single: the {what} tensor needs at least one dimension")
    rows = arr.shape[0]
    row = arr.size // rows if rows else int(np.prod(arr.shape[1:], dtype=np.int64))
    if sizes is None or len(sizes) == 0:
        if rows % n:
            raise ValueError(f"all_to_all_single: {what} dim 0 ({rows}) does not divide by the group size {n}; "
                             f"pass {what}_split_sizes")
        sizes = [rows // n] * n
    sizes = [int(s) for s in sizes]
    if len(sizes) != n or sum(sizes) != rows or min(sizes) < 0:
        raise ValueError(f"all_to_all_single: {what}_split_sizes {sizes} must be {n} non-negative sizes summing "
                         f"to dim 0 ({rows})")
    flat, out, start = arr.reshape(-1), [], 0
    for s in sizes:
        out.append(flat[start * row:(start + s) * row])
        start += s
    return out


def barrier(group=None, async_op: bool = False, device_ids=None):
    """Returns once every rank of the group has called it."""
    pg = _group(group)
    if pg is None:
        return None
    return pg.barrier(async_op)


_MONITOR_TAG = 0x7FFFFF00


def monitored_barrier(group=None, timeout=None, wait_all_ranks: bool = False) -> None:
    """A barrier through rank 0 that names the ranks that did not arrive within ``timeout``."""
    pg = _group(group)
    if pg is None:
        return
    limit = seconds(timeout) if timeout is not None else pg.timeout
    token = np.zeros(1, np.uint8)
    if pg.rank() == 0:
        works = {g: pg.recv(np.zeros(1, np.uint8), g, _MONITOR_TAG) for g in range(1, pg.size())}
        deadline = time.monotonic() + limit
        missing = []
        for g, w in works.items():
            try:
                w.wait(max(0.01, deadline - time.monotonic()))
            except DistError:
                missing.append(pg.global_ranks[g])
                if not wait_all_ranks:
                    break
        if missing:
            raise DistError(f"monitored_barrier: ranks {missing} did not arrive within {limit:.1f} s")
        for g in range(1, pg.size()):
            pg.send(token, g, _MONITOR_TAG)
    else:
        pg.send(token, 0, _MONITOR_TAG)
        pg.recv(token, 0, _MONITOR_TAG).wait(limit)


# -- point to point -------------------------------------------------------------------------------
def _peer(pg: ProcessGroup, rank, group_rank, what: str) -> int:
    g = _root(pg, rank, group_rank, what) if (rank is not None or group_rank is not None) else None
    if g is None:
        raise ValueError(f"{what} is required")
    if g == pg.rank():
        raise ValueError(f"Invalid {'destination' if what == 'dst' else 'source'} rank: should not be the same "
                         f"as the rank of the current process ({pg.global_ranks[g]}).")
    return g


def isend(tensor, dst: int | None = None, group=None, tag: int = 0, group_dst: int | None = None) -> Work | None:
    """Starts sending ``tensor`` to ``dst``; do not modify it before the Work completes."""
    pg = _group(group)
    if pg is None:
        return None
    g = _peer(pg, dst, group_dst, "dst")
    return pg.send(Staged(tensor, False, keep_device=_on_gpu(pg)).host, g, int(tag), wait=False)


def send(tensor, dst: int | None = None, group=None, tag: int = 0, group_dst: int | None = None) -> None:
    work = isend(tensor, dst, group, tag, group_dst)
    if work is not None:
        work.wait()


def irecv(tensor, src: int | None = None, group=None, tag: int = 0, group_src: int | None = None) -> Work | None:
    """Receives into ``tensor`` (from any rank when ``src`` is None) when the Work is waited on."""
    pg = _group(group)
    if pg is None:
        return None
    g = None if src is None and group_src is None else _peer(pg, src, group_src, "src")
    st = Staged(tensor, True, keep_device=_on_gpu(pg))
    return pg.recv(st.host, g, int(tag), after=st.commit)


def recv(tensor, src: int | None = None, group=None, tag: int = 0, group_src: int | None = None) -> int:
    """Receives into ``tensor``; returns the sender's global rank (-1 outside ``group``)."""
    work = irecv(tensor, src, group, tag, group_src)
    if work is None:
        return -1
    work.wait()
    return work.source_rank()


class P2POp:
    """One isend / irecv for ``batch_isend_irecv``."""

    def __init__(self, op, tensor, peer: int | None = None, group=None, tag: int = 0, group_peer: int | None = None):
        if op not in (isend, irecv):
            raise ValueError(f"P2POp's op must be disttorch.distributed.isend or irecv, got {op!r}")
        self.op, self.tensor, self.peer, self.group, self.tag, self.group_peer = op, tensor, peer, group, tag, group_peer


def batch_isend_irecv(p2p_op_list: list[P2POp]) -> list[Work]:
    """Starts every send, then every receive; returns their Works in the given order."""
    works: list = [None] * len(p2p_op_list)
    for pass_op in (isend, irecv):
        for i, p in enumerate(p2p_op_list):
            if p.op is pass_op:
                if pass_op is isend:
                    works[i] = isend(p.tensor, p.peer, p.group, p.tag, p.group_peer)
                else:
                    works[i] = irecv(p.tensor, p.peer, p.group, p.tag, p.group_peer)
    return works
