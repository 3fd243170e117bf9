"""The reduction modes of DDP's reducer, one class each.

The reducer (``_reducer.py``) tracks which gradients are in and hands the reduced gradients back
to ``.grad`` (``Reducer._hand_back``, shared by all modes). What differs between the modes is
where a gradient is copied, when collectives start and what they are:

- ``BucketOverlap``: gradients divided by the world size into their bucket; each full bucket's
  all-reduce starts on the communication thread while backward goes on (the last one in the
  backward thread itself).
- ``StagedAcrossHosts``: the same copies; across hosts one all-reduce of all buckets starts with
  the first and each bucket releases its part (see the class).
- ``AllAtOnce``: the same copies; nothing is sent until the last gradient is in, then one
  all-reduce per dtype covers every bucket (their buffers lie back to back).
- ``DirectSharedMemory``: gradients copied into (Linear weights: computed in) this rank's
  shared-memory input area (``distributed/direct_reduce.py``); one collective sums all areas into
  the ``.grad`` arrays and divides (float16/bfloat16 are divided on the way in instead).
- ``CommHook``: gradients copied undivided into their bucket; the user's hook reduces each
  bucket (as the buckets fill with overlap, all at the end without).

``Reducer.reduction()`` picks the mode for the iteration from its settings.
"""
from __future__ import annotations

import numpy as np

from . import _comm
from ._future import completed, from_work
from ...profiler import trace as _trace


class Reduction:
    """One way to reduce an iteration's gradients (stateless: the reducer holds the state)."""

    #: launch each bucket as soon as it is full (else everything once the last gradient is in)
    overlaps = False
    #: gradients are divided by the world size on their way in
    scales = True

    def __init__(self, reducer):
        self.reducer = reducer

    def destination(self, index: int, view: np.ndarray, grad) -> np.ndarray:
        """Where parameter ``index``'s gradient is copied (``view``: its slot in its bucket)."""
        return view

    def copy_scale(self, index: int):
        """The factor the copy of parameter ``index``'s gradient multiplies by (the world size's
        inverse: PyTorch divides before summing), or None: copied as it is."""
        return self.reducer._scale if self.scales else None

    def launch(self, bucket, last: bool):
        """Starts reducing one full bucket; returns a future of the reduced buffer."""
        raise TypeError(f"{type(self).__name__} does not reduce bucket by bucket")

    def reduce_all(self) -> None:
        """Reduces every bucket once the last gradient is in, then hands the gradients back."""
        raise TypeError(f"{type(self).__name__} reduces bucket by bucket")


class BucketOverlap(Reduction):
    overlaps = True

    def launch(self, bucket, last):
        r = self.reducer
        tensor = bucket.buffer()
        if last:  # the backward thread would only wait for the communication thread
            _comm.all_reduce(tensor, r.group)
            return completed(tensor)
        return from_work(_comm.all_reduce_async(tensor, r.group), tensor)


class StagedAcrossHosts(Reduction):
    """Overlap where the engine can stage (ranks on several hosts, shared memory on each): one
    all-reduce of the whole arena starts when the first bucket is full, and each later bucket
    releases its part of it (``StagedAllReduce.mark``), in the backward thread itself. So the first
    buckets cross the network (on the all-reduce's network thread, which mostly waits on the
    kernel) while backward computes the last ones, with no second collective to set up, no pause
    of the link between buckets and no hand-off to a communication thread. Elsewhere it is
    ``BucketOverlap``."""
    overlaps = True

    def launch(self, bucket, last):
        r = self.reducer
        if bucket.index() == 0:
            r.staged = None
            if len(r.arenas) == 1 and r.may_stage:  # one dtype: the buckets lie back to back in one arena
                arena = next(iter(r.arenas.values()))
                r.staged = _comm.all_reduce_staged(arena, r.group, r.bucket_ends[:-1])
                if r.staged is not None:
                    r.staged_iterations += 1
        if r.staged is None:
            return BucketOverlap.launch(self, bucket, last)
        r.staged.mark(r.bucket_ends[bucket.index()])
        return completed(None)  # None: reduced in place (finalize reads the buckets once the last is marked)


class AllAtOnce(Reduction):
    def reduce_all(self):
        r = self.reducer
        with _trace.span("all-reduce all buckets", "ddp", buckets=len(r.buckets)):
            for arena in r.arenas.values():
                _comm.all_reduce(arena, r.group)
        r.finalize([completed(None)] * len(r.buckets))


class DirectSharedMemory(Reduction):
    def destination(self, index, view, grad):
        r = self.reducer
        if grad is not None and grad is r.sunk[index]:
            # computed in the area itself (the reducer's sink): nothing to copy; the sum needs an
            # array of its own, since every rank reads the area
            r.dest[index] = None
            return grad
        area, start = r.direct_slot[index]
        r.dest[index] = grad  # the sum comes back into ``grad`` itself where it may
        return area.area()[start:start + view.size].reshape(view.shape)

    def copy_scale(self, index):
        area, _ = self.reducer.direct_slot[index]
        return None if area.sums_then_scales else self.reducer._scale

    def reduce_all(self):
        self.reducer.reduce_direct()


class CommHook(Reduction):
    scales = False  # the hook divides (or compresses) as it likes

    @property
    def overlaps(self):
        return self.reducer.overlap

    def launch(self, bucket, last):
        r = self.reducer
        return r.comm_hook(r.comm_state, bucket)

    def reduce_all(self):
        r = self.reducer
        r.finalize([r.comm_hook(r.comm_state, b) for b in r.buckets])  # bucket by bucket, as hooks expect
