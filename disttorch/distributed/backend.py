"""The interface between ``api.py`` and a process group's engine (c10d's Backend).

Two engines implement it: ``process_group.ProcessGroup`` (ZeroMQ sockets and shared memory, host
arrays) and ``nccl.NcclProcessGroup`` (CUDA arrays through NCCL, host arrays handed to the ZeroMQ
group it carries). ``api.py`` and DDP see only this: a group's identity (``rank``, ``size``,
``global_ranks``, ``name``, ``timeout``, ``backend``), the collectives on flat arrays, and
``host()`` for what only the host engine offers (object collectives through pickled bytes,
shared memory for DDP's direct reduction).

Collectives take flat-reshapeable arrays and return None (``async_op=False``, done) or a ``Work``;
``after`` runs once the result is in place (api.py copies staged results back there).
``device_arrays`` says whether the engine takes device (CuPy) arrays as they are, so api.py stages
CUDA tensors through host memory only for engines that do not.
"""
from __future__ import annotations

import abc


class CollectiveBackend(abc.ABC):
    """A process group as ``api.py`` uses it."""

    #: collectives take CuPy arrays as they are (no staging through host memory)
    device_arrays: bool = False

    # -- identity ------------------------------------------------------------------------------
    name: str
    global_ranks: list[int]

    @abc.abstractmethod
    def rank(self) -> int:
        """This process's rank in the group."""

    @abc.abstractmethod
    def size(self) -> int:
        """The number of ranks in the group."""

    @property
    @abc.abstractmethod
    def backend(self) -> str:
        """The backend's name as ``get_backend`` reports it (``"zmq"``, ``"nccl"``)."""

    @property
    @abc.abstractmethod
    def timeout(self) -> float:
        """Seconds a collective may take before it fails with DistTimeoutError."""

    @abc.abstractmethod
    def describe_rank(self, g: int) -> str:
        """Group rank ``g`` as error messages name it (``"rank 3 (rank 1 of group g1)"``)."""

    @abc.abstractmethod
    def host(self):
        """The ZeroMQ ProcessGroup that carries host arrays for this group (itself for that
        engine), or None for an engine without one."""

    # -- collectives on flat arrays ------------------------------------------------------------
    @abc.abstractmethod
    def all_reduce(self, buf, op, async_op: bool = False, after=None): ...

    def all_reduce_staged(self, buf, op, cuts):
        """An all-reduce that starts while ``buf`` is still being written, ``(work, gate)``; None
        where the engine has no such form (``process_group.ProcessGroup.all_reduce_staged``)."""
        return None

    @abc.abstractmethod
    def broadcast(self, buf, root: int, async_op: bool = False, after=None): ...

    @abc.abstractmethod
    def reduce(self, buf, op, root: int, async_op: bool = False, after=None): ...

    @abc.abstractmethod
    def all_gather(self, inp, outs, async_op: bool = False, after=None): ...

    @abc.abstractmethod
    def gather(self, inp, outs, root: int, async_op: bool = False, after=None): ...

    @abc.abstractmethod
    def scatter(self, ins, out, root: int, async_op: bool = False, after=None): ...

    @abc.abstractmethod
    def reduce_scatter(self, ins, out, op, async_op: bool = False, after=None): ...

    @abc.abstractmethod
    def all_to_all(self, ins, outs, async_op: bool = False, after=None): ...

    @abc.abstractmethod
    def barrier(self, async_op: bool = False): ...

    # -- point to point ------------------------------------------------------------------------
    @abc.abstractmethod
    def send(self, buf, dst: int, tag: int, wait: bool = True): ...

    @abc.abstractmethod
    def recv(self, buf, src: int | None, tag: int, after=None): ...

    # -- teardown ------------------------------------------------------------------------------
    @abc.abstractmethod
    def close(self) -> None:
        """Releases the engine's resources; later calls raise."""
