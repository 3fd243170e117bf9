"""The ``nccl`` backend: collectives of CUDA tensors through NCCL, driven by CuPy (``cupy.cuda.nccl``).

``NcclProcessGroup`` implements ``backend.CollectiveBackend``, as ``ProcessGroup`` does: the flat-array
collective methods (``all_reduce(buf,
op, async_op, after)``, ``broadcast``, ``reduce``, ``all_gather``, ``gather``, ``scatter``,
``reduce_scatter``, ``all_to_all``, ``barrier``, ``send``, ``recv``) on CuPy arrays. Everything else
(object collectives, host tensors, the group's bookkeeping) belongs to the ZeroMQ group it wraps,
so one job can mix CPU and CUDA tensors as PyTorch's "cpu:gloo,cuda:nccl" does. Without a host
group, host arrays are refused with a clear error.

Setup: rank 0 of the group asks NCCL for a unique id and publishes it in the rendezvous store
(JSON list of the 128 id bytes, exactly as ``get_unique_id`` returns them); every rank reads it
and joins the communicator on its GPU (``ncclCommInitRank``, a collective among the ranks).

Semantics: a collective is queued on the caller's current CUDA stream and returns (``async_op``
gives a completed Work, as PyTorch's NCCL work is ordered by the stream, not the host); later GPU
work on that stream sees the result. ``barrier`` also waits on the host. AVG is a NCCL sum divided
on the device (integers truncate, as PyTorch). Bool SUM / PRODUCT are logical or / and (NCCL max /
min on bytes, as PyTorch maps them); complex tensors are reduced as pairs of reals (SUM, AVG).
Non-contiguous arrays go through a contiguous device copy. NCCL itself cannot tell mismatched
calls apart (it waits); ranks must issue the same collectives in the same order.
"""
from __future__ import annotations

import json
import threading

import numpy as np

from .. import _backend
from .backend import CollectiveBackend
from .config import collective_timeout_s
from .reduce_op import ReduceOp, as_reduce_op, check_op_dtype, finalize
from .work import Work

UNIQUE_ID_BYTES = 128

_DTYPES = {np.dtype(np.int8): "NCCL_INT8", np.dtype(np.uint8): "NCCL_UINT8", np.dtype(np.int32): "NCCL_INT32",
           np.dtype(np.uint32): "NCCL_UINT32", np.dtype(np.int64): "NCCL_INT64",
           np.dtype(np.uint64): "NCCL_UINT64", np.dtype(np.float16): "NCCL_FLOAT16",
           np.dtype(np.float32): "NCCL_FLOAT32", np.dtype(np.float64): "NCCL_FLOAT64"}
_OPS = {ReduceOp.SUM: "NCCL_SUM", ReduceOp.AVG: "NCCL_SUM", ReduceOp.PRODUCT: "NCCL_PROD",
        ReduceOp.MIN: "NCCL_MIN", ReduceOp.MAX: "NCCL_MAX"}
_BOOL_OPS = {ReduceOp.SUM: "NCCL_MAX", ReduceOp.PRODUCT: "NCCL_MIN", ReduceOp.MIN: "NCCL_MIN",
             ReduceOp.MAX: "NCCL_MAX"}


def encode_unique_id(uid) -> bytes:
    """The store value for an NCCL unique id (a tuple of 128 small ints, signed or not per platform)."""
    vals = [int(b) for b in uid]
    if len(vals) != UNIQUE_ID_BYTES or any(not -128 <= b <= 255 for b in vals):
        raise ValueError(f"an NCCL unique id is {UNIQUE_ID_BYTES} byte values, got {len(vals)}")
    return json.dumps(vals).encode()


def decode_unique_id(raw) -> tuple:
    """The unique id tuple from its store value; a clear error for anything else."""
    try:
        vals = json.loads(bytes(raw).decode())
    except (ValueError, UnicodeDecodeError):
        vals = None
    if not isinstance(vals, list) or len(vals) != UNIQUE_ID_BYTES or \
            any(not isinstance(b, int) or not -128 <= b <= 255 for b in vals):
        raise ValueError(f"the rendezvous store holds no valid NCCL unique id (got {bytes(raw)[:40]!r}...)")
    return tuple(vals)


class NcclProcessGroup(CollectiveBackend):
    """A process group whose CUDA arrays travel through NCCL.

    Args:
        host_group: the group's ZeroMQ ``ProcessGroup`` (host arrays, object collectives, the rest);
            None for an NCCL-only group, which then needs ``rank`` and ``world_size``.
        store: the rendezvous store (``set`` / ``get`` of bytes; ``get`` waits for the key).
        key: the store key of this group's unique id (one per group: ``"nccl/<group id>"``).
        device_index: this rank's GPU (default: the current device, i.e. LOCAL_RANK's GPU).
    """

    device_arrays = True  # collectives take CuPy arrays as they are: no staging through host memory

    def __init__(self, host_group=None, store=None, *, rank: int | None = None, world_size: int | None = None,
                 key: str = "nccl/0", device_index: int | None = None):
        self.host_group = host_group
        self._key = key
        self._rank = host_group.rank() if rank is None else int(rank)
        self._size = host_group.size() if world_size is None else int(world_size)
        if not 0 <= self._rank < self._size:
            raise ValueError(f"NCCL group: rank {self._rank} is outside world size {self._size}")
        if store is None:
            raise ValueError("NCCL group: a rendezvous store is needed to share the NCCL unique id")
        self._cp = _backend.require_cupy("NCCL")
        self._nccl = _backend.nccl_module()
        self.device_index = _backend.current_device_index() if device_index is None else int(device_index)
        self._lock = threading.RLock()  # one NCCL call at a time per communicator (NCCL is not thread safe)
        self._comm = self._join(store, key)

    def _join(self, store, key):
        if self._rank == 0:
            store.set(key, encode_unique_id(self._nccl.get_unique_id()))
        uid = decode_unique_id(store.get(key))
        with self._cp.cuda.Device(self.device_index):
            return self._nccl.NcclCommunicator(self._size, uid, self._rank)

    # -- ProcessGroup ------------------------------------------------------------------------------
    def rank(self) -> int:
        return self._rank

    def size(self) -> int:
        return self._size

    @property
    def backend(self) -> str:
        return "nccl"

    # the group's identity comes from its host group, which the rest of the API knows by it;
    # an NCCL-only group (tests, no host group) names itself
    @property
    def name(self) -> str:
        return self.host_group.name if self.host_group is not None else self._key

    @property
    def global_ranks(self) -> list[int]:
        return list(self.host_group.global_ranks) if self.host_group is not None else list(range(self._size))

    @property
    def timeout(self) -> float:
        return self.host_group.timeout if self.host_group is not None else collective_timeout_s()

    def describe_rank(self, g: int) -> str:
        return self.host_group.describe_rank(g) if self.host_group is not None else f"rank {g}"

    def host(self):
        return self.host_group

    def __repr__(self):
        return f"<NcclProcessGroup rank {self._rank} of {self._size} on cuda:{self.device_index}>"

    # -- helpers -------------------------------------------------------------------------------------
    def _which(self, label, arrays):
        """'nccl' when every array is on this rank's GPU, 'host' when none is (the host group takes them)."""
        on_device = [_backend.is_cuda_array(a) for a in arrays]
        if all(on_device):
            for a in arrays:
                if _backend.device_index_of(a) != self.device_index:
                    raise ValueError(f"{label}: a tensor is on cuda:{_backend.device_index_of(a)} but this rank's "
                                     f"NCCL communicator is on cuda:{self.device_index}")
            return "nccl"
        if any(on_device):
            raise TypeError(f"{label}: tensors must all be CUDA tensors (NCCL) or all host tensors, not a mix")
        if self.host_group is None:
            a = arrays[0]
            raise TypeError(f"{label}: the NCCL backend works on CUDA tensors, got a host array (shape "
                            f"{tuple(a.shape)}, dtype {a.dtype}); move it with .cuda() or use backend 'zmq'")
        return "host"

    def _dtype(self, label, flat, op=None):
        """(array as NCCL sees it, NCCL datatype, NCCL op): bools as bytes, complex as pairs of reals."""
        nccl = self._nccl
        arr, ops = flat, _OPS
        if flat.dtype == np.bool_:
            arr, ops = flat.view(np.uint8), _BOOL_OPS
        elif flat.dtype.kind == "c":
            if op is not None and op not in (ReduceOp.SUM, ReduceOp.AVG):
                raise TypeError(f"{label}: ReduceOp.{op.name} is not defined for complex tensors")
            arr = flat.view(np.float32 if flat.dtype == np.complex64 else np.float64)
        code = _DTYPES.get(arr.dtype)
        if code is None:
            raise TypeError(f"{label}: NCCL has no datatype for {flat.dtype}")
        nop = None
        if op is not None:
            if op not in ops:
                raise TypeError(f"{label}: ReduceOp.{op.name} is not supported by the NCCL backend"
                                + (f" for {flat.dtype} tensors" if op in _OPS else ""))
            nop = getattr(nccl, ops[op])
        return arr, getattr(nccl, code), nop

    def _flat(self, arr):
        """(contiguous flat array, write_back): a device copy for non-contiguous arrays."""
        if arr.flags.c_contiguous:
            return arr.reshape(-1), None
        tmp = self._cp.ascontiguousarray(arr).reshape(-1)

        def write_back():
            arr[...] = tmp.reshape(arr.shape)
        return tmp, write_back

    def _run(self, label, body, async_op, after):
        """Queues ``body(stream)`` on this rank's GPU and current stream, then the caller's ``after``."""
        if self._comm is None:
            raise RuntimeError(f"{label}: the NCCL communicator of this group was closed or aborted")
        with self._lock, self._cp.cuda.Device(self.device_index):
            body(_backend.current_stream_ptr())
            if after is not None:
                after()
        if async_op:
            work = Work(label)
            work._finish(None, None)  # noqa: SLF001  (stream-ordered: the host need not wait)
            return work
        return None

    def _check_root(self, label, root):
        if not 0 <= root < self._size:
            raise ValueError(f"{label}: root {root} is outside the group of size {self._size}")

    # -- collectives ------------------------------------------------------------------------------------
    def all_reduce(self, buf, op=ReduceOp.SUM, async_op: bool = False, after=None):
        """``buf`` reduced over the group, in place on every rank."""
        if self._which("all_reduce", [buf]) == "host":
            return self.host_group.all_reduce(buf, op, async_op, after)
        op = as_reduce_op(op)
        check_op_dtype(op, buf.dtype)

        def body(stream):
            flat, back = self._flat(buf)
            arr, dt, nop = self._dtype("all_reduce", flat, op)
            self._comm.allReduce(arr.data.ptr, arr.data.ptr, arr.size, dt, nop, stream)
            finalize(op, flat, self._size)  # AVG: divide the sum (NumPy ufuncs dispatch to CuPy)
            if back:
                back()
        return self._run("all_reduce", body, async_op, after)

    def broadcast(self, buf, root: int, async_op: bool = False, after=None):
        """Rank ``root``'s ``buf`` into every rank's ``buf``."""
        if self._which("broadcast", [buf]) == "host":
            return self.host_group.broadcast(buf, root, async_op, after)
        self._check_root("broadcast", root)

        def body(stream):
            flat, back = self._flat(buf)
            arr, dt, _ = self._dtype("broadcast", flat)
            self._comm.broadcast(arr.data.ptr, arr.data.ptr, arr.size, dt, root, stream)
            if back:
                back()
        return self._run("broadcast", body, async_op, after)

    def reduce(self, buf, op, root: int, async_op: bool = False, after=None):
        """The reduction lands in ``buf`` of rank ``root``; the others' ``buf`` are unchanged."""
        if self._which("reduce", [buf]) == "host":
            return self.host_group.reduce(buf, op, root, async_op, after)
        op = as_reduce_op(op)
        check_op_dtype(op, buf.dtype)
        self._check_root("reduce", root)

        def body(stream):
            flat, back = self._flat(buf)
            arr, dt, nop = self._dtype("reduce", flat, op)
            # NCCL writes the receive buffer on the root only: the other ranks' tensors stay as they were
            self._comm.reduce(arr.data.ptr, arr.data.ptr, arr.size, dt, nop, root, stream)
            if self._rank == root:
                finalize(op, flat, self._size)
                if back:
                    back()
        return self._run("reduce", body, async_op, after)

    def all_gather(self, inp, outs, async_op: bool = False, after=None):
        """``outs[k]`` receives rank k's ``inp``."""
        if self._which("all_gather", [inp] + list(outs)) == "host":
            return self.host_group.all_gather(inp, outs, async_op, after)
        self._check_list("all_gather", inp, outs)

        def body(stream):
            flat, _ = self._flat(inp)
            arr, dt, _ = self._dtype("all_gather", flat)
            gathered = self._cp.empty((self._size,) + arr.shape, dtype=arr.dtype)
            self._comm.allGather(arr.data.ptr, gathered.data.ptr, arr.size, dt, stream)
            whole = gathered.view(flat.dtype).reshape(self._size, -1)
            for k, out in enumerate(outs):
                out[...] = whole[k].reshape(out.shape)
        return self._run("all_gather", body, async_op, after)

    def gather(self, inp, outs, root: int, async_op: bool = False, after=None):
        """Rank ``root``'s ``outs[k]`` receives rank k's ``inp`` (point-to-point inside one NCCL group)."""
        arrays = [inp] + (list(outs) if outs is not None else [])
        if self._which("gather", arrays) == "host":
            return self.host_group.gather(inp, outs, root, async_op, after)
        self._check_root("gather", root)
        if self._rank == root:
            self._check_list("gather", inp, outs)

        def body(stream):
            flat, _ = self._flat(inp)
            arr = self._dtype("gather", flat)[0]
            if self._rank != root:
                self._p2p([("send", arr, root)], stream)
                return
            recvs, copies = [], []
            for k, out in enumerate(outs):
                if k == root:
                    out[...] = inp.reshape(out.shape)
                    continue
                dst, back = self._flat(out)
                recvs.append(("recv", self._dtype("gather", dst)[0], k))
                if back:
                    copies.append(back)
            self._p2p(recvs, stream)
            for back in copies:
                back()
        return self._run("gather", body, async_op, after)

    def scatter(self, ins, out, root: int, async_op: bool = False, after=None):
        """Rank k's ``out`` receives rank ``root``'s ``ins[k]``."""
        arrays = [out] + (list(ins) if ins is not None else [])
        if self._which("scatter", arrays) == "host":
            return self.host_group.scatter(ins, out, root, async_op, after)
        self._check_root("scatter", root)
        if self._rank == root:
            self._check_list("scatter", out, ins)

        def body(stream):
            dst, back = self._flat(out)
            arr = self._dtype("scatter", dst)[0]
            if self._rank != root:
                self._p2p([("recv", arr, root)], stream)
            else:
                sends = []
                for k, src in enumerate(ins):
                    if k == root:
                        dst[...] = src.reshape(-1)
                        continue
                    sends.append(("send", self._dtype("scatter", self._flat(src)[0])[0], k))
                self._p2p(sends, stream)
            if back:
                back()
        return self._run("scatter", body, async_op, after)

    def reduce_scatter(self, ins, out, op, async_op: bool = False, after=None):
        """Rank k's ``out`` receives the reduction of every rank's ``ins[k]``."""
        if self._which("reduce_scatter", [out] + list(ins)) == "host":
            return self.host_group.reduce_scatter(ins, out, op, async_op, after)
        op = as_reduce_op(op)
        check_op_dtype(op, out.dtype)
        self._check_list("reduce_scatter", out, ins)

        def body(stream):
            send = self._cp.concatenate([i.reshape(-1) for i in ins])
            dst, back = self._flat(out)
            sarr, dt, nop = self._dtype("reduce_scatter", send, op)
            darr = self._dtype("reduce_scatter", dst, op)[0]
            self._comm.reduceScatter(sarr.data.ptr, darr.data.ptr, darr.size, dt, nop, stream)
            finalize(op, dst, self._size)
            if back:
                back()
        return self._run("reduce_scatter", body, async_op, after)

    def all_to_all(self, ins, outs, async_op: bool = False, after=None):
        """Rank k's ``outs[j]`` receives rank j's ``ins[k]`` (sizes may differ per pair)."""
        if self._which("all_to_all", list(ins) + list(outs)) == "host":
            return self.host_group.all_to_all(ins, outs, async_op, after)
        if len(ins) != self._size or len(outs) != self._size:
            raise ValueError(f"all_to_all: needs {self._size} input and output arrays, got {len(ins)} and "
                             f"{len(outs)}")

        def body(stream):
            ops, backs = [], []
            for k in range(self._size):
                if k == self._rank:
                    outs[k][...] = ins[k].reshape(outs[k].shape)
                    continue
                src = self._dtype("all_to_all", self._flat(ins[k])[0])
                dst_flat, back = self._flat(outs[k])
                dst = self._dtype("all_to_all", dst_flat)
                ops += [("send", src[0], k), ("recv", dst[0], k)]
                if back:
                    backs.append(back)
            if ops:
                self._p2p(ops, stream)
            for back in backs:
                back()
        return self._run("all_to_all", body, async_op, after)

    def barrier(self, async_op: bool = False):
        """Every rank reaches this point (a one-element NCCL all-reduce), and this GPU's queue drains."""
        device = self._cp.cuda.Device(self.device_index)
        with device:
            token = self._cp.zeros(1, dtype=np.float32)
        result = self.all_reduce(token, ReduceOp.SUM, async_op)
        device.synchronize()
        return result

    # -- point to point ------------------------------------------------------------------------------------
    def send(self, buf, dst: int, tag: int = 0, wait: bool = True) -> Work:
        """Sends ``buf`` to group rank ``dst`` (NCCL has no tags: messages between two ranks stay in order)."""
        if self._which("send", [buf]) == "host":
            return self.host_group.send(buf, dst, tag, wait)
        self._check_peer("send", dst)

        def body(stream):
            arr, dt, _ = self._dtype("send", self._flat(buf)[0])
            self._comm.send(arr.data.ptr, arr.size, dt, dst, stream)
        self._run(f"send to rank {dst}", body, False, None)
        return _done(f"send to rank {dst}")

    def recv(self, buf, src: int | None, tag: int = 0, after=None) -> Work:
        """Receives into ``buf`` from group rank ``src`` (a specific rank: NCCL cannot match any source)."""
        if self._which("recv", [buf]) == "host":
            return self.host_group.recv(buf, src, tag, after)
        if src is None:
            raise RuntimeError("recv: the NCCL backend needs a source rank (it cannot receive from any source)")
        self._check_peer("recv", src)

        def body(stream):
            flat, back = self._flat(buf)
            arr, dt, _ = self._dtype("recv", flat)
            self._comm.recv(arr.data.ptr, arr.size, dt, src, stream)
            if back:
                back()
        self._run(f"recv from rank {src}", body, False, after)
        work = _done(f"recv from rank {src}")
        work._source_rank = src if self.host_group is None else self.host_group.global_ranks[src]  # noqa: SLF001
        return work

    def _p2p(self, ops, stream):
        """Sends and receives fused in one NCCL group, so pairs that exchange both ways cannot deadlock."""
        nccl = self._nccl
        nccl.groupStart()
        try:
            for kind, arr, peer in ops:
                code = self._dtype(kind, arr)[1]
                if kind == "send":
                    self._comm.send(arr.data.ptr, arr.size, code, peer, stream)
                else:
                    self._comm.recv(arr.data.ptr, arr.size, code, peer, stream)
        finally:
            nccl.groupEnd()

    def _check_peer(self, label, peer):
        if not 0 <= peer < self._size or peer == self._rank:
            raise ValueError(f"{label}: peer rank {peer} is not another rank of the group of size {self._size}")

    def _check_list(self, label, ref, arrays):
        if arrays is None or len(arrays) != self._size:
            n = "None" if arrays is None else len(arrays)
            raise ValueError(f"{label}: needs one array per rank of the group ({self._size}), got {n}")
        for i, a in enumerate(arrays):
            if a.dtype != ref.dtype or a.size != ref.size:
                raise ValueError(f"{label}: array {i} has {a.size} elements of {a.dtype}, expected {ref.size} "
                                 f"of {ref.dtype}")

    # -- teardown ------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Destroys the communicator (then closes the host group)."""
        comm, self._comm = self.__dict__.get("_comm"), None
        if comm is not None:
            with self._cp.cuda.Device(self.device_index):
                comm.destroy()
        if self.host_group is not None:
            self.host_group.close()

    def abort(self) -> None:
        """Aborts the communicator's pending work (a peer failed): later calls raise."""
        comm, self._comm = self.__dict__.get("_comm"), None
        if comm is not None:
            comm.abort()


def _done(label: str) -> Work:
    work = Work(label)
    work._finish(None, None)  # noqa: SLF001
    return work
