"""Indexing: ``x[...]`` reads and writes (basic indexing gives views, advanced indexing copies),
gather/scatter, index_select, masks, sort/topk, nonzero."""
from __future__ import annotations

import numpy as np

from .. import _dtype as D
from ..autograd.grad_mode import STATE
from ._base import Op, unbroadcast
from .pointwise import _xp, cast, _is_scalar, _py_scalar
from .shape import AliasBackward0, SelectBackward0, SliceBackward0, UnsqueezeBackward0, _SliceView
from ..tensor import Tensor, _wrap_dim


def _convert_index(index, shape=None):
    """PyTorch index -> NumPy index; returns (numpy_index, is_advanced)."""
    if not isinstance(index, tuple):
        index = (index,)
    out, advanced = [], False
    for item in index:
        if isinstance(item, Tensor):
            arr = item._data
            if arr.dtype == np.bool_ or arr.dtype.kind in "iu":
                advanced = True
                out.append(arr)
            elif arr.ndim == 0:
                raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
            else:
                raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
        elif isinstance(item, (list, np.ndarray)):
            arr = np.asarray(item)
            if arr.dtype == object:
                arr = np.asarray([x._data if isinstance(x, Tensor) else x for x in item])
            if arr.dtype.kind == "f":
                raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
            advanced = True
            out.append(arr)
        elif isinstance(item, bool):
            advanced = True
            out.append(item)
        elif isinstance(item, (int, np.integer)):
            out.append(int(item))
        elif item is None or item is Ellipsis or isinstance(item, slice):
            if isinstance(item, slice) and item.step is not None and item.step <= 0:
                raise ValueError("step must be greater than zero")
            out.append(item)
        else:
            try:
                out.append(int(item.__index__()))
            except AttributeError:
                raise IndexError(f"only integers, slices (`:`), ellipsis (`...`), None and long or byte Variables are valid indices (got {type(item).__name__})") from None
    return tuple(out), advanced


def _check_bounds(idx, shape):
    dim = 0
    n_explicit = sum(1 for i in idx if i is not None and i is not Ellipsis and not (isinstance(i, np.ndarray) and i.dtype == np.bool_))
    n_explicit += sum(i.ndim for i in idx if isinstance(i, np.ndarray) and i.dtype == np.bool_)
    if n_explicit > len(shape):
        raise IndexError(f"too many indices for tensor of dimension {len(shape)}")
    for i in idx:
        if i is Ellipsis:
            dim = len(shape) - (n_explicit - dim)
            continue
        if i is None:
            continue
        if isinstance(i, int):
            n = shape[dim]
            if not -n <= i < n:
                raise IndexError(f"index {i} is out of bounds for dimension {dim} with size {n}")
        dim += i.ndim if isinstance(i, np.ndarray) and i.dtype == np.bool_ else 1


class IndexBackward0(Op):
    """Advanced indexing: the result is a copy; repeated indices accumulate in backward."""

    def forward(self, x, index):
        self.src, self.index = x.shape, index
        try:
            return x[index]
        except IndexError as e:
            raise IndexError(str(e).replace("axis", "dimension")) from None

    def backward(self, g, ns):
        return (ns.index_add(self.src, self.index, g, g),)


def getitem(x, index):
    idx, advanced = _convert_index(index)
    if advanced:
        return IndexBackward0.apply(x, index=idx)
    _check_bounds(idx, x._data.shape)
    if all(i is None for i in idx) and idx:
        cls = UnsqueezeBackward0 if len(idx) == 1 else SliceBackward0
        if cls is UnsqueezeBackward0:
            return cls.apply(x, axis=0)
    ints = [i for i in idx if isinstance(i, int)]
    if ints:
        cls = SelectBackward0
    elif any(isinstance(i, slice) for i in idx):
        cls = SliceBackward0
    else:
        cls = AliasBackward0
    return cls.apply(x, index=idx)


class IndexPutBackward0(Op):
    """``x[index] = value`` recorded in place: x's old content gets zero gradient at ``index``."""

    def forward(self, x, value, index, accumulate=False):
        self.index, self.vshape, self.accumulate = index, value.shape, accumulate
        if accumulate:
            _xp(x).add.at(x, index, value)
        else:
            x[index] = value
        return x

    def backward(self, g, ns):
        gx = None
        if self.needs_input_grad[0]:
            gx = g if self.accumulate else ns.index_fill_zero(g, self.index)
        gv = None
        if self.needs_input_grad[1]:
            picked = ns.getitem(g, self.index)
            gv = unbroadcast(ns, picked, self.vshape) if picked.ndim >= len(self.vshape) else picked
        return gx, gv


def setitem(x, index, value):
    """``x[index] = value``; in place, with autograd history when needed."""
    idx, advanced = _convert_index(index)
    if not advanced:
        _check_bounds(idx, x._data.shape)
    if isinstance(value, Tensor):
        v = value if value._data.dtype == x._data.dtype else cast(value, x.dtype)
    else:
        from .creation import _array_from_data
        v = Tensor._wrap(_array_from_data(value, x.dtype))
    record = STATE.enabled and (x._requires_grad or v._requires_grad)
    if record:
        _check_inplace_allowed(x)
        node = IndexPutBackward0()
        node._run((_HistoryHandle.of(x), v), {"index": idx})
        x.grad_fn = node
        x._requires_grad = True
    else:
        vd = v._data
        try:
            x._data[idx] = vd
        except ValueError as e:
            raise RuntimeError(f"shape mismatch: value tensor of shape {list(v.shape)} cannot be broadcast to indexing result: {e}") from None
    x._vc[0] += 1


class _HistoryHandle:
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


def _check_inplace_allowed(x):
    if x.grad_fn is None and x._requires_grad:
        raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation.")
    base = x._base
    if base is not None and base.grad_fn is None and base._requires_grad:
        raise RuntimeError("a view of a leaf Variable that requires grad is being used in an in-place operation.")


def index_put(input, indices, values, accumulate=False):
    out = input.clone()
    idx = tuple(i._data if isinstance(i, Tensor) else i for i in indices)
    v = values if isinstance(values, Tensor) else Tensor._wrap(np.asarray(values, dtype=input._data.dtype))
    node = IndexPutBackward0()
    res = node._run((out, cast(v, input.dtype)), {"index": idx, "accumulate": accumulate})
    return res


class GatherBackward0(Op):
    def forward(self, x, index, axis):
        self.src, self.axis, self.idx = x.shape, axis, index
        return _xp(x).take_along_axis(x, index, axis)

    def backward(self, g, ns, *saved):
        return (ns.scatter_add_axis(self.src, self.axis, self.idx, g, g), None)


def _check_index_tensor(index, name):
    if index._data.dtype.kind not in "iu":
        raise RuntimeError(f"{name}(): Expected dtype int64 for index")


def gather(input, dim, index, *, sparse_grad=False):
    _check_index_tensor(index, "gather")
    axis = _wrap_dim(dim, input.ndim)
    if index.ndim != input.ndim:
        raise RuntimeError("Index tensor must have the same number of dimensions as input tensor")
    ix = index._data
    n = input.shape[axis]
    if ix.size and (ix.min() < -n or ix.max() >= n):
        bad = int(ix.max()) if ix.max() >= n else int(ix.min())
        raise RuntimeError(f"index {bad} is out of bounds for dimension {axis} with size {n}")
    # take_along_axis needs matching sizes on the other dims: view the leading block of input
    sl = tuple(slice(0, s) if d != axis else slice(None) for d, s in enumerate(ix.shape))
    x = input if all(input.shape[d] == ix.shape[d] for d in range(input.ndim) if d != axis) else \
        _sliced(input, sl)
    res = GatherBackward0.apply(x, Tensor._wrap(ix), axis=axis)
    return res


def _sliced(t, sl):
    return SliceBackward0.apply(t, index=sl)


class ScatterBackward0(Op):
    """scatter / scatter_add (``reduce`` None or 'add') out of place."""

    def forward(self, x, src, index, axis, add):
        self.axis, self.idx, self.add, self.sshape = axis, index, add, src.shape
        out = x.copy()
        grid = list(np.ix_(*[np.arange(s) for s in index.shape]))
        grid[axis] = index
        sl = tuple(slice(0, s) for s in index.shape)
        vals = src[sl] if src.shape != index.shape else src
        if add:
            _xp(x).add.at(out, tuple(grid), vals)
        else:
            out[tuple(grid)] = vals
        self.grid = tuple(grid)
        return out

    def backward(self, g, ns):
        gx = g if self.add else ns.index_fill_zero(g, self.grid)
        gs = None
        if len(self.needs_input_grad) > 1 and self.needs_input_grad[1]:
            picked = ns.getitem(g, self.grid)
            gs = ns.pad_to(picked, self.sshape)
        return gx, gs


def _scatter(input, dim, index, src, add):
    _check_index_tensor(index, "scatter")
    axis = _wrap_dim(dim, input.ndim)
    if not isinstance(src, Tensor):
        src = Tensor._wrap(np.full(index.shape, _py_scalar(src, input.dtype), dtype=input._data.dtype))
    return ScatterBackward0.apply(input, cast(src, input.dtype), index=index._data, axis=axis, add=add)


def scatter(input, dim, index, src=None, value=None, *, reduce=None):
    if src is None:
        src = value
    if reduce is not None and reduce != "add":
        if reduce == "multiply":
            out = input.clone()
            grid = list(np.ix_(*[np.arange(s) for s in index.shape]))
            grid[_wrap_dim(dim, input.ndim)] = index._data
            sv = src._data if isinstance(src, Tensor) else src
            np.multiply.at(out._data, tuple(grid), sv)
            return out
        raise RuntimeError(f"reduce argument must be either add or multiply, got {reduce}")
    return _scatter(input, dim, index, src, reduce == "add")


def scatter_add(input, dim, index, src):
    return _scatter(input, dim, index, src, True)


class IndexSelectBackward0(Op):
    def forward(self, x, index, axis):
        self.src, self.axis, self.idx = x.shape, axis, index
        return _xp(x).take(x, index, axis=axis)

    def backward(self, g, ns, *saved):
        full = [slice(None)] * len(self.src)
        full[self.axis] = self.idx
        return (ns.index_add(self.src, tuple(full), g, g), None)


def index_select(input, dim, index):
    if index.ndim > 1:
        raise IndexError("index_select(): Index is supposed to be a vector")
    axis = _wrap_dim(dim, input.ndim)
    ix = index._data.reshape(-1)
    n = input.shape[axis] if input.ndim else 1
    if ix.size and (ix.min() < 0 or ix.max() >= n):
        raise IndexError(f"index out of range in self")
    return IndexSelectBackward0.apply(input, Tensor._wrap(ix), axis=axis)


def take_along_dim(input, indices, dim=None):
    if dim is None:
        return gather(input.reshape(-1), 0, indices.reshape(-1))
    return gather(input, dim, indices)


class MaskedFillBackward0(Op):
    def forward(self, x, mask, value):
        self.mask = mask
        self.src = x.shape
        return _xp(x).where(mask, x.dtype.type(value), x)

    def backward(self, g, ns, *saved):
        m = self.mask if not ns.graph else ns.const(self.mask, g)
        return (unbroadcast(ns, ns.where(m, g * 0, g), self.src), None)


class MaskedFillBackward1(Op):
    """masked_fill with a 0-dim tensor value (differentiable in the value)."""

    def forward(self, x, value, mask):
        self.mask = mask
        return _xp(x).where(mask, value, x)

    def backward(self, g, ns):
        m = self.mask if not ns.graph else ns.const(self.mask, g)
        return ns.where(m, g * 0, g), ns.sum(ns.where(m, g, g * 0))


def masked_fill(input, mask, value):
    if mask._data.dtype != np.bool_:
        raise RuntimeError(f"masked_fill_ only supports boolean masks, but got mask with dtype {mask.dtype.name}")
    if isinstance(value, Tensor):
        if value.ndim != 0:
            raise RuntimeError(f"masked_fill_ only supports a 0-dimensional value tensor, but got tensor with {value.ndim} dimension(s).")
        if value._requires_grad:
            return MaskedFillBackward1.apply(input, cast(value, input.dtype), mask=mask._data)
        value = value.item()
    return MaskedFillBackward0.apply(input, mask=mask._data, value=_py_scalar(value, input.dtype))


def masked_select(input, mask):
    if mask._data.dtype != np.bool_:
        raise RuntimeError(f"masked_select: expected BoolTensor for mask")
    shape = np.broadcast_shapes(input.shape, mask.shape)
    x = input if tuple(input.shape) == shape else input.expand(shape)
    m = np.broadcast_to(mask._data, shape)
    return IndexBackward0.apply(x, index=(m,))


def masked_scatter(input, mask, source):
    out = input.clone()
    m = np.broadcast_to(mask._data, input.shape)
    n = int(m.sum())
    out._data[m] = source._data.reshape(-1)[:n]
    return out


def nonzero(input, *, as_tuple=False):
    nz = _xp(input._data).nonzero(input._data)
    if as_tuple:
        if input.ndim == 0:
            return (Tensor._wrap(np.zeros(int(bool(input._data)), np.int64)),)
        return tuple(Tensor._wrap(i.astype(np.int64)) for i in nz)
    if input.ndim == 0:
        return Tensor._wrap(np.zeros((int(bool(input._data)), 0), np.int64))
    return Tensor._wrap(np.stack(nz, axis=1).astype(np.int64) if nz else np.zeros((0, 0), np.int64))


def argwhere(input):
    return nonzero(input)


class SortBackward0(Op):
    def forward(self, x, axis, descending, stable):
        xp = _xp(x)
        self.axis, self.src = axis, x.shape
        if x.ndim == 0:
            self.idx = xp.zeros((), np.int64)
            return x.copy()
        idx = xp.argsort(-x if descending and x.dtype.kind != "b" else x, axis=axis, kind="stable")
        if descending and x.dtype.kind == "b":
            idx = xp.flip(xp.argsort(x, axis=axis, kind="stable"), axis)
        self.idx = idx
        return xp.take_along_axis(x, idx, axis)

    def backward(self, g, ns):
        if len(self.src) == 0:
            return (g,)
        return (ns.scatter_add_axis(self.src, self.axis, self.idx, g, g),)


def sort(input, dim=-1, descending=False, stable=False):
    """Sorted values and the indices that sort ``input`` along ``dim`` (stable)."""
    from .reduce import return_types
    node = SortBackward0()
    axis = _wrap_dim(dim, input.ndim) if input.ndim else 0
    vals = node._run((input,), {"axis": axis, "descending": descending, "stable": stable})
    return return_types["sort"](vals, Tensor._wrap(node.idx.astype(np.int64, copy=False)))


def argsort(input, dim=-1, descending=False, stable=False):
    return sort(input, dim, descending, stable).indices


def msort(input):
    return sort(input, 0).values


class TopkBackward0(Op):
    def forward(self, x, k, axis, largest, sorted):
        xp = _xp(x)
        self.axis, self.src = axis, x.shape
        key = -x if largest else x
        if k < x.shape[axis]:
            part = xp.argpartition(key, k - 1, axis=axis)
            idx = xp.take(part, xp.arange(k), axis=axis)
        else:
            idx = xp.broadcast_to(xp.arange(x.shape[axis]).reshape([-1 if d == axis else 1 for d in range(x.ndim)]), x.shape).copy()
        vals = xp.take_along_axis(key, idx, axis)
        order = xp.argsort(vals, axis=axis, kind="stable")
        idx = xp.take_along_axis(idx, order, axis)
        self.idx = idx
        return xp.take_along_axis(x, idx, axis)

    def backward(self, g, ns):
        return (ns.scatter_add_axis(self.src, self.axis, self.idx, g, g),)


def topk(input, k, dim=-1, largest=True, sorted=True):
    from .reduce import return_types
    axis = _wrap_dim(dim, input.ndim) if input.ndim else 0
    n = input.shape[axis] if input.ndim else 1
    if not 0 <= k <= n:
        raise RuntimeError(f"selected index k out of range")
    node = TopkBackward0()
    vals = node._run((input,), {"k": k, "axis": axis, "largest": largest, "sorted": sorted})
    return return_types["topk"](vals, Tensor._wrap(node.idx.astype(np.int64, copy=False)))


def kthvalue(input, k, dim=-1, keepdim=False):
    from .reduce import return_types
    vals, idx = sort(input, dim)
    d = _wrap_dim(dim, input.ndim)
    v, i = vals.narrow(d, k - 1, 1), idx.narrow(d, k - 1, 1)
    if not keepdim:
        v, i = v.squeeze(d), i.squeeze(d)
    return return_types["kthvalue"](v, i)


class IndexAddBackward0(Op):
    def forward(self, x, src, axis, index, alpha):
        self.axis, self.idx, self.alpha = axis, index, alpha
        out = x.copy()
        full = [slice(None)] * x.ndim
        full[axis] = index
        _xp(x).add.at(out, tuple(full), src * alpha if alpha != 1 else src)
        return out

    def backward(self, g, ns):
        full = [slice(None)] * g.ndim
        full[self.axis] = self.idx
        gs = ns.getitem(g, tuple(full))
        return g, (gs * self.alpha if self.alpha != 1 else gs)


def index_add(input, dim, index, source, *, alpha=1):
    return IndexAddBackward0.apply(input, cast(source, input.dtype), axis=_wrap_dim(dim, input.ndim), index=index._data, alpha=alpha)


def index_fill(input, dim, index, value):
    full = [slice(None)] * input.ndim
    full[_wrap_dim(dim, input.ndim)] = index._data
    mask = np.zeros(input.shape, bool)
    mask[tuple(full)] = True
    return masked_fill(input, Tensor._wrap(mask), value)


def unique(input, sorted=True, return_inverse=False, return_counts=False, dim=None):
    res = np.unique(input._data if dim is None else input._data, return_inverse=return_inverse,
                    return_counts=return_counts, axis=dim)
    if not (return_inverse or return_counts):
        return Tensor._wrap(res)
    vals = [Tensor._wrap(res[0])]
    i = 1
    if return_inverse:
        vals.append(Tensor._wrap(res[i].reshape(input.shape).astype(np.int64)))
        i += 1
    if return_counts:
        vals.append(Tensor._wrap(res[i].astype(np.int64)))
    return tuple(vals)


def bincount(input, weights=None, minlength=0):
    w = None if weights is None else weights._data
    r = np.bincount(input._data, weights=w, minlength=minlength)
    return Tensor._wrap(r if w is not None else r.astype(np.int64))


def searchsorted(sorted_sequence, values, *, right=False, side=None):
    side = side or ("right" if right else "left")
    v = values._data if isinstance(values, Tensor) else np.asarray(values)
    return Tensor._wrap(np.searchsorted(sorted_sequence._data, v, side=side).astype(np.int64))


def bucketize(input, boundaries, *, right=False):
    return Tensor._wrap(np.searchsorted(boundaries._data, input._data, side="left" if not right else "right").astype(np.int64))
