"""The reducer: turns gradients into averaged gradients, bucket by bucket, during backward.

Each parameter's post-accumulate-grad hook calls ``mark_ready``: its gradient is copied into its
bucket -- already divided by the world size (PyTorch divides before summing, so sums cannot
overflow; folding the division into the copy saves a pass over the bucket). A bucket whose
gradients are all in is launched: an asynchronous all-reduce, queued on the process group's
communication thread, so it runs while backward goes on. Buckets launch in index order on every
rank, so collectives match across ranks whatever order the hooks fire in.

The last bucket is reduced by the thread that runs backward: it would only block on the
communication thread otherwise, and handing the work over costs a thread switch. The hook that
launches it then waits for every bucket and writes the averaged gradients into ``.grad`` -- so
``backward()`` returns with all gradients reduced.

Without overlap (``overlap=False``: the ranks agreed that no core is free for the communication
thread, see ``_comm.prefers_overlap``) nothing is sent until the last gradient is in; then one
all-reduce per dtype covers all buckets, whose buffers lie back to back in one array. When the
ranks share one host, ``enable_direct`` goes further: each gradient is scaled straight into this
rank's shared-memory input area (``distributed/direct_reduce.py``) instead of a bucket, and one
collective sums every rank's area into the ``.grad`` arrays themselves (one copy and one pass
less per step; the buckets then only track which gradients are in).

Each of these modes (and the comm hook's) is a class in ``_reductions.py``: where a gradient is
copied, and when and how buckets are reduced. All of them end in ``_hand_back``, which sets
``.grad`` as PyTorch does.

Buckets start in reverse registration order, a guess at the order backward produces gradients.
The first iteration records the real order, and before the second the buckets are rebuilt to
follow it (rank 0's order, broadcast, so every rank has the same buckets), as PyTorch does: a
bucket then fills as early in backward as it can, and its all-reduce overlaps more of backward.
"""
from __future__ import annotations

import weakref

import numpy as np

from . import _comm
from ._bucket import GradBucket, allocate_buffers, assign_buckets
from ._reductions import AllAtOnce, BucketOverlap, CommHook, DirectSharedMemory, StagedAcrossHosts
from ...profiler import trace as _trace


class Reducer:
    """Bucketed gradient averaging for one DDP model (not public API)."""

    def __init__(self, params, names, bucket_cap_bytes, first_bucket_cap_bytes, group, rank, world,
                 gradient_as_bucket_view, overlap=True):
        self.params, self.names = params, names
        self.group, self.rank, self.world = group, rank, world
        self.gradient_as_bucket_view = gradient_as_bucket_view
        self.overlap = overlap  # False: every bucket is reduced in the last hook (see overlap_mode)
        self._scale = 1.0 / world
        self._caps = (bucket_cap_bytes, first_bucket_cap_bytes)
        self._build_buckets(None)
        self.comm_hook = None
        self.comm_state = None
        self.ready_order = []     # parameter indices in the order their gradients arrived
        self.rebuild_due = False  # an iteration finished: the next forward rebuilds the buckets
        self.rebuilt = False
        self._handed_out = [None] * len(params)  # weakrefs to the bucket-view .grad tensors given out
        self._fresh = [False] * len(params)      # .grad was None when this iteration began
        self._direct = {}                        # dtype -> DirectAllReduce (enable_direct)
        self.direct_slot = []                   # param index -> (DirectAllReduce, start element)
        self._direct_on = False                  # this iteration reduces through the direct areas
        self._modes = {m: m(self) for m in (BucketOverlap, StagedAcrossHosts, AllAtOnce, DirectSharedMemory, CommHook)}
        self.dest = [None] * len(params)        # direct mode: the array each reduced gradient goes to
        self.sunk = [None] * len(params)        # direct mode: area views a gradient was computed in
        self._sinks_armed = False                # this iteration's backward may compute into the areas
        self.sunk_total = 0                      # gradients computed in the areas so far (tests, benchmarks)
        self.staged_iterations = 0              # iterations that took StagedAcrossHosts' staged all-reduce
        self.may_stage = True                   # False: no collective may wait for backward (SyncBatchNorm)
        self.reset()

    def enable_direct(self):
        """Collective: gives every dtype a shared-memory input area; without one on every rank
        (the group is not all on one host's shared memory) the buckets keep doing the work."""
        from ...distributed.direct_reduce import DirectAllReduce
        pg = _comm.engine(self.group)
        pg = pg.host() if pg is not None else None  # the areas live in the host engine's shared memory
        sizes = {}
        for p in self.params:
            sizes[p._data.dtype] = sizes.get(p._data.dtype, 0) + p._data.size
        areas = {}
        for dtype, numel in sizes.items():  # same dtype order on every rank: the parameters agree
            area = DirectAllReduce.create(pg, numel, dtype)
            if area is None:
                for made in areas.values():
                    made.close()
                return
            areas[dtype] = area
        used = dict.fromkeys(areas, 0)
        self.direct_slot = []
        for p in self.params:
            dt = p._data.dtype
            self.direct_slot.append((areas[dt], used[dt]))
            used[dt] += p._data.size
        self._direct = areas
        for i, p in enumerate(self.params):  # Linear weights' gradients are computed in the areas
            p._grad_accumulator().sink = _GradSink(self, i)

    def take_sink(self, index, shape, dtype):
        """Parameter ``index``'s slice of this rank's input area for its gradient to be computed
        in (``_GradSink``), or None: no direct reduction armed for this backward, the gradient
        will be added to an existing ``.grad``, the area divides before summing, or the slice
        was handed out already this iteration (a weight used twice: the second product gets its
        own array and the engine adds it into the first)."""
        if not self._sinks_armed or self.sunk[index] is not None:
            return None
        p = self.params[index]
        data = p._data
        area, start = self.direct_slot[index]
        if p.grad is not None or shape != data.shape or dtype != data.dtype or not area.sums_then_scales:
            return None
        arr = area.area()[start:start + data.size].reshape(data.shape)
        self.sunk[index] = arr
        self.sunk_total += 1
        return arr

    def _build_buckets(self, order):
        self._order = order
        groups = assign_buckets(self.params, *self._caps, order=order)
        slices, self.arenas = allocate_buffers(self.params, groups)
        self.buckets = [GradBucket(i, [self.params[j] for j in idx], idx, flat, i == len(groups) - 1)
                        for i, (idx, flat) in enumerate(zip(groups, slices))]
        self._where = [None] * len(self.params)  # param index -> (bucket, slot)
        for b in self.buckets:
            for slot, j in enumerate(b.param_indices):
                self._where[j] = (b, slot)
        # where each bucket ends in its dtype's arena, whose slices follow bucket order
        # (StagedAcrossHosts releases the arena up to the end of each bucket that is full)
        self.bucket_ends, used = [], {}
        for b in self.buckets:
            used[b.flat.dtype] = used.get(b.flat.dtype, 0) + b.flat.size
            self.bucket_ends.append(used[b.flat.dtype])

    def rebuild_buckets(self):
        """Once, between iterations on every rank: buckets in the order rank 0's gradients arrived.

        A collective (the broadcast of that order): call it at the same point on every rank.
        """
        from ...tensor import Tensor
        if not self.rebuild_due or self.rebuilt:
            return
        self.rebuild_due, self.rebuilt = False, True
        order = np.array(self.ready_order if len(self.ready_order) == len(self.params) else
                         list(reversed(range(len(self.params)))), np.int64)
        box = Tensor._wrap(order)
        _comm.dist().broadcast(box, src=_comm.global_rank(0, self.group), **_comm.group_kwargs(self.group))
        order = [int(i) for i in box._data]
        if sorted(order) != list(range(len(self.params))):
            raise RuntimeError(f"DDP bucket rebuild on rank {self.rank}: rank 0's gradient order {order} is not a "
                               f"permutation of the {len(self.params)} parameters")
        old = self._where
        self._build_buckets(order)
        if self.gradient_as_bucket_view:  # gradients living in the old buckets move to the new ones
            # (without it, a .grad in an old bucket just keeps that memory: finalize copies into it)
            for i, p in enumerate(self.params):
                bucket, slot = old[i]
                if p.grad is not None and p.grad._data is bucket.views[slot]:
                    new_bucket, new_slot = self._where[i]
                    np.copyto(new_bucket.views[new_slot], p.grad._data)
                    p.grad = type(p.grad)._wrap(new_bucket.views[new_slot])
        self.reset()

    # ---- one iteration --------------------------------------------------------------------------
    def prepare(self):
        """Start of an iteration whose backward will reduce gradients.

        ``.grad`` tensors are handed out as views of the bucket buffers even without
        ``gradient_as_bucket_view`` (it saves copying every gradient back), but PyTorch's
        semantics stay: a ``.grad`` that was None before backward becomes a new tensor, and one
        that existed keeps its identity. So if a view handed out earlier is still held somewhere
        other than ``.grad`` (e.g. saved after ``zero_grad()``), this iteration reduces into new
        buffers and the old tensor keeps its values.
        """
        self.reset()
        if not self.rebuilt:
            self.ready_order = []
        self._release_sunk()
        self._direct_on = bool(self._direct) and self.comm_hook is None
        grads = [p.grad for p in self.params]
        self._fresh = [g is None for g in grads]
        if not self.gradient_as_bucket_view and any(
                ref is not None and ref() is not None and ref() is not g for ref, g in zip(self._handed_out, grads)):
            self._build_buckets(self._order)
            self.reset()
        self._sinks_armed = self._direct_on

    def _release_sunk(self):
        """A ``.grad`` still living in a shared-memory area (its iteration ended in an error before
        the reduction) gets memory of its own: the area is rewritten by the next rounds."""
        from ...tensor import Tensor
        for i, arr in enumerate(self.sunk):
            if arr is not None:
                grad = self.params[i].grad
                if grad is not None and grad._data is arr:
                    self.params[i].grad = Tensor._wrap(arr.copy())
        self.sunk = [None] * len(self.params)

    def disarm_sinks(self):
        """No gradient is computed in the areas until the next ``prepare`` (a forward whose
        backward DDP does not reduce: ``no_sync``, or grad mode off)."""
        self._sinks_armed = False
        self._release_sunk()

    def reset(self):
        self._sinks_armed = False
        staged, self.staged = getattr(self, "staged", None), None
        if staged is not None:  # an iteration that ended without its last bucket (an error in backward)
            staged.cancel(f"DDP on rank {self.rank} began a new iteration before all gradients were in")
        for b in self.buckets:
            b.reset()
        self._next_launch = 0
        self._futures = [None] * len(self.buckets)
        self.started = False      # some gradient arrived this iteration
        self.locally_used = None  # per-parameter 0/1 when unused parameters are tracked
        self._unused = ()         # parameters to mark ready (gradient zero) at the first hook

    def mark_ready(self, index, grad):
        """Parameter ``index``'s gradient (an array, or None for "counts as zero") is final."""
        if self._unused:
            unused, self._unused = self._unused, ()
            for i in unused:  # at the first hook, as PyTorch: no collective starts during forward
                self.mark_ready(i, None)
        bucket, slot = self._where[index]
        view = bucket.views[slot]
        self.started = True
        # the hook may run again before its bucket left (e.g. reentrant backward): then the new
        # total is simply copied in again below
        recopy = bucket.ready[slot] and self._futures[bucket.index()] is None and grad is not view
        if bucket.ready[slot] and not recopy:
            raise RuntimeError(
                f"Expected to mark a variable ready only once. Parameter index {index} ('{self.names[index]}') on "
                f"rank {self.rank} has been marked as ready twice. This error can be caused by a parameter shared "
                "across reentrant backward passes or used in several forward calls with find_unused_parameters; "
                "consider static_graph=True or not reusing it.")
        if not bucket.ready[slot]:
            bucket.ready[slot] = True
            bucket.pending -= 1
            if not self.rebuilt:
                self.ready_order.append(index)
        mode = self.reduction()
        view = mode.destination(index, view, grad)
        with _trace.span("gradient into bucket", "ddp", param=index):
            if grad is None:
                view.fill(0)
            else:
                scale = mode.copy_scale(index)
                if scale is not None:
                    np.multiply(grad, scale, out=view)  # the copy into the bucket divides too
                elif grad is not view:  # a bucket-view (or sunk) gradient already holds its values in place
                    np.copyto(view, grad)
        if bucket.pending == 0:
            self._launch_ready_buckets(mode)

    def reduction(self):
        """This iteration's mode (``_reductions.py``), from the reducer's settings."""
        if self.comm_hook is not None:
            return self._modes[CommHook]
        if self._direct_on:
            return self._modes[DirectSharedMemory]
        return self._modes[StagedAcrossHosts if self.overlap else AllAtOnce]

    def _launch_ready_buckets(self, mode):
        # Strict index order: every rank issues the same collectives in the same order.
        n = len(self.buckets)
        if not mode.overlaps:
            if all(b.pending == 0 for b in self.buckets):
                mode.reduce_all()
            return
        while self._next_launch < n and self.buckets[self._next_launch].pending == 0:
            bucket = self.buckets[self._next_launch]
            self._next_launch += 1
            with _trace.span("all-reduce bucket", "ddp", bucket=bucket.index(), bytes=bucket.flat.nbytes):
                self._futures[bucket.index()] = mode.launch(bucket, last=self._next_launch == n)
        if self._next_launch == n:
            self.finalize(self._futures)

    def finalize(self, futures):
        """Waits for every bucket's future and writes the averaged gradients into ``.grad``."""
        from ...tensor import Tensor
        self._futures = futures
        self._next_launch = len(self.buckets)
        globally_used = None
        if self.locally_used is not None:
            used = Tensor._wrap(self.locally_used.copy())
            _comm.all_reduce(used, self.group)
            globally_used = used._data
        for bucket, fut in zip(self.buckets, self._futures):
            with _trace.span("wait bucket", "wait", bucket=bucket.index()):
                result = fut.wait()
            if isinstance(result, (list, tuple)):  # torch's Work futures hold [tensor]
                result = result[0] if len(result) == 1 else None
            if result is not None:  # None: the hook reduced the bucket buffer in place
                data = result._data if hasattr(result, "_data") else np.asarray(result)
                if data is not bucket.flat:  # a hook that returned a new tensor rather than the buffer
                    bucket.flat[...] = data.reshape(-1)
            for p, index, view in zip(bucket.params, bucket.param_indices, bucket.views):
                if globally_used is not None and globally_used[index] == 0:
                    continue  # no rank used it: its .grad stays as it was, as in PyTorch
                self._hand_back(index, p, view, from_bucket=True)
        self.staged = None  # complete: nothing for reset to cancel
        self.reset()
        if not self.rebuilt:
            self.rebuild_due = True

    def reduce_direct(self):
        """Sums every rank's input area into each parameter's gradient array, then sets ``.grad``
        as ``finalize`` would: a new tensor where there was none, the same tensor otherwise."""
        outs = {area: [] for area in self._direct.values()}
        dests = []
        for i, p in enumerate(self.params):
            arr = self.dest[i]
            if not _writable_like(arr, p._data):  # no gradient (joined rank) or one we may not write
                arr = np.empty_like(p._data)
            dests.append(arr)
            area, start = self.direct_slot[i]
            outs[area].append((start, arr))
        with _trace.span("all-reduce direct", "ddp", params=len(self.params)):
            for area, pairs in outs.items():
                area.all_reduce_into(pairs, self._scale if area.sums_then_scales else 1.0)
        for i, (p, arr) in enumerate(zip(self.params, dests)):
            self._hand_back(i, p, arr, from_bucket=False)
        self.dest = [None] * len(self.params)
        self.sunk = [None] * len(self.params)  # every .grad in an area was replaced by _hand_back
        self._next_launch = len(self.buckets)
        self.reset()
        if not self.rebuilt:
            self.rebuild_due = True

    def _hand_back(self, index, p, arr, from_bucket):
        """Makes the reduced gradient ``arr`` parameter ``index``'s ``.grad``, as PyTorch would:
        a new tensor where there was none (or it was None when the iteration began), the same
        tensor otherwise (its values overwritten). Every reduction mode ends here.

        ``from_bucket``: ``arr`` is a slice of a bucket buffer; handing it out without a copy is
        recorded (``prepare`` checks that nobody else still holds it before reusing the buffer).
        """
        from ...tensor import Tensor
        grad = p.grad
        if grad is not None and grad._data is arr:
            return  # reduced in place
        view_mode = from_bucket and self.gradient_as_bucket_view
        sunk = grad is not None and grad._data is self.sunk[index]  # a .grad in the shared area
        if view_mode or grad is None or self._fresh[index] or sunk:
            p.grad = Tensor._wrap(arr)  # no copy: .grad is the bucket's slice (see prepare)
            if from_bucket and not view_mode:
                self._handed_out[index] = weakref.ref(p.grad)
        else:
            np.copyto(grad._data, arr)  # a .grad that lives across iterations keeps its identity

    # ---- unused parameters ----------------------------------------------------------------------
    def find_unused(self, output):
        """Notes the parameters ``output``'s graph cannot reach: the first hook of backward marks
        them ready with a zero gradient, and ranks later agree on those no rank used."""
        reached = reachable_leaves(output)
        self.locally_used = np.array([id(p) in reached for p in self.params], np.float64)
        self._unused = [int(i) for i in np.flatnonzero(self.locally_used == 0)]

    def unfinished(self):
        """(indices, names) of the parameters that got no gradient in an unfinished iteration."""
        missing = sorted(i for b in self.buckets for slot, i in enumerate(b.param_indices) if not b.ready[slot])
        return missing, [self.names[i] for i in missing]


class _GradSink:
    """``AccumulateGrad.sink`` of a DDP parameter: asks the reducer (held weakly: the module may
    outlive its DDP wrapper) for the area slice the gradient may be computed in."""

    __slots__ = ("_reducer", "_index")

    def __init__(self, reducer, index):
        self._reducer, self._index = weakref.ref(reducer), index

    def __call__(self, shape, dtype):
        reducer = self._reducer()
        return None if reducer is None else reducer.take_sink(self._index, shape, dtype)


def _writable_like(arr, like) -> bool:
    """True when the reduced gradient may be written into ``arr`` (a gradient array of ``like``'s
    shape and dtype that NumPy lets us write)."""
    return (type(arr) is np.ndarray and arr.shape == like.shape and arr.dtype == like.dtype
            and arr.flags.writeable)


def reachable_leaves(output):
    """ids of the leaf tensors the autograd graph of ``output`` (any nesting of tensors) reaches."""
    tensors = list(tensors_in(output))
    reached = {id(t) for t in tensors if t.grad_fn is None and t.requires_grad}
    stack = [t.grad_fn for t in tensors if t.grad_fn is not None]
    seen = set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        var = getattr(node, "variable", None)
        if var is not None:
            reached.add(id(var))
        stack.extend(nxt for nxt, _ in node.next_functions if nxt is not None)
    return reached


def tensors_in(obj):
    """The tensors inside ``obj`` (a tensor, or lists / tuples / dicts of them)."""
    from ...tensor import Tensor
    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from tensors_in(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from tensors_in(o)
