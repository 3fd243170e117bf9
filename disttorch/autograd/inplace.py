"""In-place writes and views under autograd: the one module that owns their contract.

The contract, which every in-place path (Tensor's ``<op>_`` methods, ``x[i] = v``, ``copy_``,
``nn.functional``'s ``inplace=True``) follows:

1. **Version counter.** ``t._vc`` is a one-element list shared by a tensor and every view of it
   (``Tensor._view_of``). Every write into a tensor's memory adds 1 (``t._vc[0] += 1``, or
   ``bump``); an op saving a tensor for backward records the version (``node._saved_versions``)
   and the engine raises PyTorch's "modified by an inplace operation" error when it changed.
2. **Leaves.** ``check_inplace_allowed`` refuses an in-place write into a leaf that requires grad,
   or into a view of one, with PyTorch's message, before anything is written.
3. **Overlap.** ``check_no_internal_overlap`` refuses a write into an expanded tensor (a stride-0
   dim longer than 1), unless the new values do not depend on the old (``zero_``, ``fill_``).
4. **History.** A recorded in-place op on a tensor that is not a view takes a snapshot of the old
   value as the op's input (through ``HistoryHandle``, which links the op to the tensor's previous
   history) and the tensor's ``grad_fn`` becomes the op's node (``apply_inplace``).
5. **Views.** A recorded write into a view is recorded on its base as ``base[region] = new``
   (node ``CopySlices``, PyTorch's name; ``view_region`` maps the view's elements to the base's),
   and the view's history is re-derived from the base's new one (``write_through_view``).
   Views taken with autograd are registered on their base (``register_view``, weak references in
   ``ViewRefs``); after the base's history changes, ``refresh_views`` re-derives theirs
   (``AsStridedBackward0``), so gradients through an old view see the in-place op.

Layering: this module sits above the ops. It records ops' index nodes (``IndexBackward0``,
``CopySlices``, ``AsStridedBackward0`` in ``ops/index.py``) and casts through ``ops/pointwise.py``,
importing them when first needed because ``ops/_base.py`` (loaded before them) registers views
through this module. See docs/architecture.md.
"""
from __future__ import annotations

from weakref import ref as _weakref

import numpy as np

from .. import _backend
from .. import _dtype as D
from ..tensor import Tensor
from .grad_mode import STATE


def _index_ops():
    from ..ops import index
    return index


def _cast(t, dtype):
    from ..ops.pointwise import cast
    return cast(t, dtype)


def bump(t):
    """Counts one write into ``t``'s memory (seen by ``t`` and all its views)."""
    t._vc[0] += 1


# ---- the view registry -------------------------------------------------------------------------
class ViewRefs(list):
    """Weak references to the views taken of one base with autograd; ``limit``: the length at which
    dead entries are dropped next (twice the survivors, so pruning stays amortised O(1) whatever
    number of views stays alive)."""

    __slots__ = ("limit",)

    def __init__(self, refs=()):
        super().__init__(refs)
        self.limit = max(8, 2 * len(self))


def register_view(view):
    """Notes a view taken with autograd on its base, so an in-place op on the base can re-derive the
    view's history (``refresh_views``). Dead entries are dropped as the list grows (a weight's
    ``.t()`` in every forward would pile them up)."""
    base = view._base
    refs = base._views
    if refs is None:
        refs = base._views = ViewRefs()
    elif len(refs) >= refs.limit:
        refs = base._views = ViewRefs(r for r in refs if r() is not None)
    refs.append(_weakref(view))


# ---- views written in place ----------------------------------------------------------------------
def view_region(view):
    """For a view of a NumPy-backed base: the advanced index (one int array per base dim, each of the
    view's shape) of the base elements the view aliases; None for non-views and what it cannot map."""
    base = view._base
    if base is None:
        return None
    v, b = view._data, base._data
    if type(v) is not type(b) or not _backend.is_array(v) or v.dtype != b.dtype or b.ndim == 0 or b.size == 0:
        return None

    def offsets(a, start):
        off = np.full(a.shape, start, np.int64)
        for k, (n, st) in enumerate(zip(a.shape, a.strides)):
            off = off + (np.arange(n, dtype=np.int64) * st).reshape([-1 if i == k else 1 for i in range(a.ndim)])
        return off

    # only shapes, strides and addresses are read: the region is host index arrays for NumPy or CuPy data
    v_off = offsets(v, _backend.data_ptr(v) - _backend.data_ptr(b))
    if b.flags.c_contiguous:  # the usual case: byte offset / itemsize is the flat index
        flat = v_off // b.itemsize
        if v_off.size and (flat.min() < 0 or flat.max() >= b.size):
            return None
        return np.unravel_index(flat, b.shape)
    b_off = offsets(b, 0).reshape(-1)
    order = np.argsort(b_off, kind="stable")
    ranked = b_off[order]
    pos = np.minimum(np.searchsorted(ranked, v_off), ranked.size - 1)
    if not (ranked[pos] == v_off).all():  # the base's memory was replaced: not a view any more
        return None
    return np.unravel_index(order[pos], b.shape)


def write_through_view(view, region, target, value, node_cls):
    """Records ``base[target] = value`` on ``view``'s base and re-derives the view (``base[region]``)
    from the base's new history, as PyTorch rebases a view written in place."""
    base = view._base
    node = node_cls()
    node._run((HistoryHandle.of(base), value), {"index": target})
    base.grad_fn = node
    base._requires_grad = True
    base._history_rewritten()
    view.grad_fn = _index_ops().IndexBackward0.apply(HistoryHandle.of(base), index=region).grad_fn
    view._requires_grad = True
    view._history_rewritten()
    refresh_views(base, skip=view)


def refresh_views(base, skip=None):
    """After an in-place op rewrote ``base``'s history, the views taken of it earlier (with
    autograd) get their history re-derived from the new one, as PyTorch regenerates a stale view's
    grad_fn: otherwise gradients through such a view would skip the in-place op."""
    refs = base._views
    if not refs:
        return
    live = []
    for ref in refs:
        v = ref()
        if v is None or v._base is not base:
            continue
        live.append(ref)
        if v is skip:
            continue
        region = view_region(v)
        if region is not None:
            v.grad_fn = _index_ops().AsStridedBackward0.apply(HistoryHandle.of(base), index=region).grad_fn
            v._requires_grad = True
            v._history_rewritten()
    base._views = ViewRefs(live)


class HistoryHandle:
    """Stands in for a tensor whose memory an in-place op overwrites: the op's node links to the
    tensor's *previous* history without keeping it reachable as the tensor itself."""

    @staticmethod
    def of(x):
        h = Tensor._wrap(x._data)
        h._vc = x._vc
        h._requires_grad = x._requires_grad
        h.grad_fn = x.grad_fn
        if x.grad_fn is None and x._requires_grad:
            h._acc = x._grad_accumulator()
        return h


_OVERLAP_MSG = ("unsupported operation: more than one element of the written-to tensor refers to a single memory "
                "location. Please clone() the tensor before performing the operation.")


def check_no_internal_overlap(x):
    """PyTorch's refusal to write into a tensor whose elements share memory (an ``expand``ed one:
    a stride of 0 along a dim longer than 1). ``x``: a tensor or the array about to be written."""
    a = x._data if isinstance(x, Tensor) else x
    for n, st in zip(a.shape, a.strides):
        if st == 0 and n > 1:
            raise RuntimeError(_OVERLAP_MSG)


def check_inplace_allowed(x, view=False):
    """PyTorch's refusal of an in-place write into a leaf that requires grad, or a view of one."""
    if x.grad_fn is None and x._requires_grad:
        raise RuntimeError(f"a {'view of a ' if view else ''}leaf Variable that requires grad is being used in an "
                           "in-place operation.")
    base = x._base
    if base is not None and base.grad_fn is None and base._requires_grad:
        raise RuntimeError("a view of a leaf Variable that requires grad is being used in an in-place operation.")


# ---- in-place ops ---------------------------------------------------------------------------------
def records(self, args):
    """Whether an in-place op on ``self`` with operands ``args`` must be recorded for autograd."""
    if not STATE.enabled:
        return False
    if self._requires_grad:
        return True
    for a in args:
        if isinstance(a, Tensor) and a._requires_grad:
            return True
    return False


def write_in_place(self, fn, *args, **kwargs):
    """Runs NumPy's in-place ``fn``; a write NumPy refuses because the tensor is expanded (its
    broadcast memory is read-only) gets PyTorch's error instead of NumPy's."""
    try:
        fn(*args, **kwargs)
    except ValueError:
        check_no_internal_overlap(self)
        raise


def checkstore(self, res):
    rd, sd = res._data.dtype, self._data.dtype
    if rd != sd and not np.can_cast(rd, sd, casting="same_kind"):
        raise RuntimeError(f"result type {D.LEGACY_NAMES.get(D._FROM_NP[rd].name)} can't be cast to the desired output type {D.LEGACY_NAMES.get(D._FROM_NP[sd].name)}")
    if res._data.shape != self._data.shape:
        raise RuntimeError(f"output with shape {list(self.shape)} doesn't match the broadcast shape {list(res.shape)}")


def store(self, res):
    """Writes an out-of-place result back into ``self`` (same memory, so views see it)."""
    checkstore(self, res)
    self._data[...] = res._data


def _write_on_view(self, region, fn, args, kwargs):
    """An in-place op on a view, recorded on its base (PyTorch's CopySlices): the base's history gets
    ``base[region] = fn(base[region])`` and the view is re-derived from the base's new history."""
    cur = _index_ops().IndexBackward0.apply(HistoryHandle.of(self._base), index=region)
    res = fn(cur, *args, **kwargs)
    checkstore(self, res)
    if res._data.dtype != self._data.dtype:
        res = _cast(res, self.dtype)
    write_through_view(self, region, region, res, _index_ops().CopySlices)
    return self


def apply_inplace(self, fn, args, kwargs, overwrites=False):
    """``self = fn(self, *args)`` in place. ``overwrites``: the new values do not depend on the old
    ones (``zero_``, ``fill_``), which PyTorch allows on an expanded tensor too."""
    if records(self, args):
        if not overwrites:
            check_no_internal_overlap(self)
        check_inplace_allowed(self)
        region = view_region(self)
        if region is not None:
            _write_on_view(self, region, fn, args, kwargs)
            self._vc[0] += 1
            return self
        snap = Tensor._wrap(self._data.copy())
        snap._requires_grad = self._requires_grad
        snap.grad_fn = self.grad_fn
        if self.grad_fn is None and self._requires_grad:
            snap._acc = self._grad_accumulator()
        res = fn(snap, *args, **kwargs)
        store(self, res)
        if res.grad_fn is not None:
            if res._data.dtype != self._data.dtype:
                res = _cast(res, self.dtype)
            self.grad_fn = res.grad_fn
            self._requires_grad = True
            self._history_rewritten()
            refresh_views(self)
    else:
        res = fn(self, *args, **kwargs)
        store(self, res)
    self._vc[0] += 1
    return self


def make_inplace(fn):
    def method(self, *args, **kwargs):
        return apply_inplace(self, fn, args, kwargs)
    method.__name__ = fn.__name__ + "_"
    method.__doc__ = f"In-place version of ``{fn.__name__}``."
    return method




def shape_inplace(fn):
    """``t_``, ``transpose_``, ``squeeze_``, ``unsqueeze_``: the tensor becomes a view of its own memory."""

    def method(self, *args):
        if records(self, ()):
            check_inplace_allowed(self)
            res = fn(HistoryHandle.of(self), *args)
            self.grad_fn = res.grad_fn  # a retain_grad hook stays where it was, as in PyTorch
        else:
            res = fn(self, *args)
        self._data = res._data
        self._vc[0] += 1
        return self
    method.__name__ = fn.__name__ + "_"
    return method
