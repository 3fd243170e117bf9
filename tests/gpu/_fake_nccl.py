"""An in-process stand-in for ``cupy.cuda.nccl``: ranks are threads, each with its own fake GPU.

``install(fake_cupy)`` adds ``fake_cupy.cuda.nccl``. Like NCCL it sees only raw device pointers: a
buffer must lie inside a live device array of the stand-in CuPy, on the communicator's device, or
the call fails (``NCCL_ERROR_INVALID_ARGUMENT``). Collectives meet at a barrier, check that every rank
called the same thing (real NCCL would hang instead; a test should fail loudly) and write each
rank's receive buffer. ``groupStart``/``groupEnd`` defer a thread's sends and receives to the end of
the group, so two ranks may exchange in both directions. Every wait times out (no hung test).
"""
from __future__ import annotations

import ctypes
import os
import queue
import threading
import types

import numpy as np

TIMEOUT_S = 10.0

CONSTANTS = dict(NCCL_SUM=0, NCCL_PROD=1, NCCL_MAX=2, NCCL_MIN=3, NCCL_AVG=4,
                 NCCL_INT8=0, NCCL_CHAR=0, NCCL_UINT8=1, NCCL_INT32=2, NCCL_INT=2, NCCL_UINT32=3, NCCL_INT64=4,
                 NCCL_UINT64=5, NCCL_FLOAT16=6, NCCL_HALF=6, NCCL_FLOAT32=7, NCCL_FLOAT=7, NCCL_FLOAT64=8,
                 NCCL_DOUBLE=8)
_NP = {0: np.int8, 1: np.uint8, 2: np.int32, 3: np.uint32, 4: np.int64, 5: np.uint64, 6: np.float16, 7: np.float32,
       8: np.float64}
_REDUCE = {0: np.add, 1: np.multiply, 2: np.maximum, 3: np.minimum}


class NcclError(RuntimeError):
    pass


class _World:
    """The ranks of one unique id: a barrier, the per-call deposits and the point-to-point mailboxes."""

    def __init__(self, n):
        self.n = n
        self.barrier = threading.Barrier(n, timeout=TIMEOUT_S)
        self.deposits = [None] * n
        self.boxes = {}
        self.lock = threading.Lock()

    def box(self, src, dst):
        with self.lock:
            return self.boxes.setdefault((src, dst), queue.Queue())


def install(fake_cupy):
    """Adds a fresh ``cuda.nccl`` stand-in to ``fake_cupy``; returns it."""
    rt = fake_cupy._runtime
    worlds, worlds_lock = {}, threading.Lock()
    local = threading.local()  # per thread: the open group's deferred sends / receives
    mod = types.SimpleNamespace(**CONSTANTS)
    mod.available = True
    mod.NcclError = NcclError
    mod.calls = []  # (rank, name) of every call, for the tests

    def view(ptr, count, datatype, device):
        """The memory of a device buffer as a NumPy array (checked: live device memory on ``device``)."""
        dtype = np.dtype(_NP[datatype])
        nbytes = count * dtype.itemsize
        owner_dev = rt.device_of_pointer(ptr, nbytes)
        if owner_dev is None:
            raise NcclError("NCCL_ERROR_INVALID_ARGUMENT: buffer is not device memory")
        if owner_dev != device:
            raise NcclError(f"NCCL_ERROR_INVALID_ARGUMENT: buffer on device {owner_dev}, communicator on {device}")
        if nbytes == 0:
            return np.empty(0, dtype)
        return np.frombuffer((ctypes.c_byte * nbytes).from_address(ptr), dtype=dtype, count=count)

    def get_unique_id():
        return tuple(int(b) for b in np.frombuffer(os.urandom(128), np.int8))

    class NcclCommunicator:
        def __init__(self, ndev, commId, rank):
            if len(commId) != 128:
                raise AssertionError("unique id of 128 bytes expected")
            with worlds_lock:
                world = worlds.setdefault(tuple(commId), _World(ndev))
            if world.n != ndev or not 0 <= rank < ndev:
                raise NcclError("NCCL_ERROR_INVALID_ARGUMENT: ranks disagree on the communicator size")
            self.world, self._rank, self._device = world, rank, rt.current
            self._destroyed = False
            self._sync(("init", ndev))  # ncclCommInitRank is collective

        # -- bookkeeping
        def device_id(self):
            return self._device

        def rank_id(self):
            return self._rank

        def size(self):
            return self.world.n

        def destroy(self):
            self._destroyed = True

        def abort(self):
            self._destroyed = True

        def _sync(self, signature, payload=None):
            """Deposits (signature, payload); returns every rank's deposit once all arrived."""
            if self._destroyed:
                raise NcclError("NCCL_ERROR_INVALID_USAGE: communicator destroyed")
            if getattr(local, "group", None) is not None:
                raise NcclError("NCCL stand-in: collectives inside groupStart/groupEnd are not simulated")
            w = self.world
            w.deposits[self._rank] = (signature, payload)
            w.barrier.wait()
            got = list(w.deposits)
            w.barrier.wait()  # nobody overwrites a deposit before all have read them
            if any(sig != signature for sig, _ in got):
                raise NcclError(f"mismatched collectives across ranks: {[sig for sig, _ in got]}")
            return [p for _, p in got]

        def _reduced(self, payloads, op):
            acc = payloads[0].copy()
            for p in payloads[1:]:
                if op == 4:
                    np.add(acc, p, out=acc)
                else:
                    _REDUCE[op](acc, p, out=acc)
            if op == 4:
                acc = (acc / self.world.n).astype(acc.dtype)
            return acc

        # -- collectives
        def allReduce(self, sendbuf, recvbuf, count, datatype, op, stream):
            mod.calls.append((self._rank, "allReduce"))
            send = view(sendbuf, count, datatype, self._device).copy()
            got = self._sync(("allReduce", count, datatype, op), send)
            view(recvbuf, count, datatype, self._device)[...] = self._reduced(got, op)

        def reduce(self, sendbuf, recvbuf, count, datatype, op, root, stream):
            mod.calls.append((self._rank, "reduce"))
            send = view(sendbuf, count, datatype, self._device).copy()
            got = self._sync(("reduce", count, datatype, op, root), send)
            if self._rank == root:
                view(recvbuf, count, datatype, self._device)[...] = self._reduced(got, op)

        def broadcast(self, sendbuf, recvbuf, count, datatype, root, stream):
            mod.calls.append((self._rank, "broadcast"))
            send = view(sendbuf, count, datatype, self._device).copy() if self._rank == root else None
            got = self._sync(("broadcast", count, datatype, root), send)
            view(recvbuf, count, datatype, self._device)[...] = got[root]

        def bcast(self, buff, count, datatype, root, stream):
            self.broadcast(buff, buff, count, datatype, root, stream)

        def reduceScatter(self, sendbuf, recvbuf, recvcount, datatype, op, stream):
            mod.calls.append((self._rank, "reduceScatter"))
            send = view(sendbuf, recvcount * self.world.n, datatype, self._device).copy()
            got = self._sync(("reduceScatter", recvcount, datatype, op), send)
            whole = self._reduced(got, op)
            view(recvbuf, recvcount, datatype, self._device)[...] = \
                whole[self._rank * recvcount:(self._rank + 1) * recvcount]

        def allGather(self, sendbuf, recvbuf, count, datatype, stream):
            mod.calls.append((self._rank, "allGather"))
            send = view(sendbuf, count, datatype, self._device).copy()
            got = self._sync(("allGather", count, datatype), send)
            view(recvbuf, count * self.world.n, datatype, self._device)[...] = np.concatenate(got)

        def send(self, sendbuf, count, datatype, peer, stream):
            mod.calls.append((self._rank, "send"))
            data = view(sendbuf, count, datatype, self._device).copy()
            op = ("send", peer, data, datatype)
            if getattr(local, "group", None) is not None:
                local.group.append((self, op))
            else:
                self._do(op)

        def recv(self, recvbuf, count, datatype, peer, stream):
            mod.calls.append((self._rank, "recv"))
            op = ("recv", peer, view(recvbuf, count, datatype, self._device), datatype)
            if getattr(local, "group", None) is not None:
                local.group.append((self, op))
            else:
                self._do(op)

        def _do(self, op):
            kind, peer, arr, datatype = op
            if not 0 <= peer < self.world.n or peer == self._rank:
                raise NcclError(f"NCCL_ERROR_INVALID_ARGUMENT: peer {peer}")
            if kind == "send":
                self.world.box(self._rank, peer).put((arr, datatype))
                return
            try:
                data, dt = self.world.box(peer, self._rank).get(timeout=TIMEOUT_S)
            except queue.Empty:
                raise NcclError(f"stand-in timeout: rank {self._rank} waited for a send from {peer}") from None
            if dt != datatype or data.size != arr.size:
                raise NcclError(f"send/recv mismatch: {data.size} x {_NP[dt]} sent, {arr.size} x {_NP[datatype]} "
                                "expected")
            arr[...] = data

    def groupStart():
        local.depth = getattr(local, "depth", 0) + 1
        if local.depth == 1:
            local.group = []

    def groupEnd():
        local.depth -= 1
        if local.depth:
            return
        ops, local.group = local.group, None
        for comm, op in ops:  # sends first: a group's receives may wait on peers' sends
            if op[0] == "send":
                comm._do(op)
        for comm, op in ops:
            if op[0] == "recv":
                comm._do(op)

    mod.get_unique_id = get_unique_id
    mod.NcclCommunicator = NcclCommunicator
    mod.groupStart, mod.groupEnd = groupStart, groupEnd
    mod.get_version = lambda: 22105
    mod.get_build_version = lambda: 22105
    fake_cupy.cuda.nccl = mod
    return mod
