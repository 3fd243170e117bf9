"""Indexing: ``x[...]`` reads and writes (basic indexing gives views, advanced indexing copies),
gather/scatter, index_select, masks, sort/topk, nonzero."""
from __future__ import annotations

import numpy as np

from .. import _backend
from .. import _dtype as D
from ..autograd.grad_mode import STATE
from ._base import Op, unbroadcast
from .pointwise import _xp, cast, _py_scalar, check_broadcast_many
from .shape import AliasBackward0, SelectBackward0, SliceBackward0, UnsqueezeBackward0
from ..autograd.inplace import (HistoryHandle, check_inplace_allowed, check_no_internal_overlap, refresh_views,
                                view_region, write_through_view)
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
                out.append(arr.astype(bool) if arr.dtype == np.uint8 else arr)  # uint8 indexes as a mask
            elif arr.ndim == 0:
                raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
            else:
                raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
        elif _backend.is_cuda_array(item):  # a raw device index array (masked_scatter passes one)
            advanced = True
            out.append(item)
        elif isinstance(item, (list, range, np.ndarray)):
            arr = np.arange(item.start, item.stop, item.step) if type(item) is range else np.asarray(item)
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
    n_explicit = sum(1 for i in idx if i is not None and i is not Ellipsis and not (_is_mask(i)))
    n_explicit += sum(i.ndim for i in idx if _is_mask(i))
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
        dim += i.ndim if _is_mask(i) else 1


def _is_mask(i):
    """A boolean index array (host or device)."""
    return _backend.is_array(i) and i.dtype == np.bool_


def _index_error(err, idx, shape):
    """NumPy's IndexError in PyTorch's words (mask shape mismatches, out-of-bounds indices)."""
    n_used = sum(i.ndim if _is_mask(i) else 1
                 for i in idx if i is not None and i is not Ellipsis and not isinstance(i, bool))
    dim = 0
    for i in idx:
        if i is Ellipsis:
            dim = len(shape) - (n_used - dim)
        elif _is_mask(i):
            for j, (m, s) in enumerate(zip(i.shape, shape[dim:])):
                if m != s:
                    return IndexError(f"The shape of the mask {list(i.shape)} at index {j} does not match the shape "
                                      f"of the indexed tensor {list(shape)} at index {dim + j}")
            dim += i.ndim
        elif i is not None and not isinstance(i, bool):
            dim += 1
    return IndexError(str(err).replace("axis", "dimension"))


class IndexBackward0(Op):
    """Advanced indexing: the result is a copy; repeated indices accumulate in backward."""

    def forward(self, x, index):
        self.src, self.index = x.shape, index
        try:
            return x[index]
        except IndexError as e:
            raise _index_error(e, index, x.shape) from None

    def backward(self, g, ns):
        return (ns.index_add(self.src, self.index, g, g),)


def _split_ints(idx):
    """PyTorch applies integer indices (as selects) before the advanced ones; NumPy counts an int next to
    an index array as advanced too, which moves the result's dims (``x[1, :, [0, 3]]``). Returns the
    (basic, advanced) pair of indices that reproduces PyTorch's order, or None when no int meets an array."""
    if not any(type(i) is int for i in idx) or not any(_backend.is_array(i) for i in idx):
        return None
    basic, adv = [], []
    for i in idx:
        if _backend.is_array(i):
            basic.extend([slice(None)] * (i.ndim if i.dtype == np.bool_ else 1))
            adv.append(i)
        elif type(i) is int:
            basic.append(i)
        elif i is None or isinstance(i, slice):
            basic.append(i)
            adv.append(slice(None))
        elif i is Ellipsis:
            basic.append(i)
            adv.append(i)
        else:  # a Python bool: leave it to NumPy
            return None
    return tuple(basic), tuple(adv)


def _check_index_device(x, idx):
    """PyTorch: a CPU tensor cannot be indexed by CUDA index tensors (the reverse is fine)."""
    if type(x._data) is np.ndarray and any(_backend.is_cuda_array(i) for i in idx):
        raise RuntimeError("indices should be either on cpu or on the same device as the indexed tensor (cpu)")


def getitem(x, index):
    kind = type(index)
    if kind is int:  # x[i], the commonest index: in range on a tensor with dims, it needs no more checks
        shape = x._data.shape
        if shape and -shape[0] <= index < shape[0]:
            return SelectBackward0.apply(x, index=(index,))
    elif kind is slice and x._data.ndim and (index.step is None or index.step > 0):
        return SliceBackward0.apply(x, index=(index,))
    idx, advanced = _convert_index(index)
    if advanced:
        _check_index_device(x, idx)
        split = _split_ints(idx)
        if split is not None:
            _check_bounds(split[0], x._data.shape)
            return IndexBackward0.apply(SelectBackward0.apply(x, index=split[0]), index=split[1])
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
    fresh_grads = False  # hands back the incoming gradient (or views of it)

    def forward(self, x, value, index, accumulate=False, copy=False):
        self.index, self.vshape, self.accumulate = index, value.shape, accumulate
        if copy:  # out-of-place index_put
            x = x.copy()
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


class CopySlices(IndexPutBackward0):
    """``x[basic_index] = value`` recorded in place (PyTorch's name for it); also the node of any
    in-place op on a view, recorded on the view's base (``autograd/inplace.py``)."""


def setitem(x, index, value):
    """``x[index] = value``; in place, with autograd history when needed."""
    idx, advanced = _convert_index(index)
    # PyTorch writes through a view (CopySlices) unless the index is purely advanced
    through_view = not advanced or any(type(i) is int or i is None or (isinstance(i, slice) and i != slice(None))
                                       for i in idx)
    if not advanced:
        _check_bounds(idx, x._data.shape)
        check_no_internal_overlap(x._data[idx])  # x[:, 0] = v on an expanded x: PyTorch refuses
    else:
        _check_index_device(x, idx)
    if advanced and _split_ints(idx) is not None:  # PyTorch's order: as one advanced index over x's own dims
        basic, adv = _split_ints(idx)
        _check_bounds(basic, x._data.shape)
        host_adv = tuple(_backend.to_host(i) if _backend.is_cuda_array(i) else i for i in adv)
        idx = np.unravel_index(np.arange(x._data.size).reshape(x._data.shape)[basic][host_adv], x._data.shape)
    if isinstance(value, Tensor):
        v = value if value._data.dtype == x._data.dtype else cast(value, x.dtype)
        if type(v._data) is not type(x._data) or (type(x._data) is not np.ndarray and v.device != x.device):
            from .shape import to_device
            v = to_device(v, x.device)  # x[i] = t copies across devices, as PyTorch's copy_ does
    else:
        from .creation import _array_from_data
        v = Tensor._wrap(_backend.like(_array_from_data(value, x.dtype), x._data))
    if v.ndim and v._data.shape[0] == 1:
        v = _drop_leading_ones(v, x._data[idx].shape)
    record = STATE.enabled and (x._requires_grad or v._requires_grad)
    if record:
        # x[0] = v writes through a view of x (PyTorch's message says so); x[:] = v and x[[0]] = v do not
        check_inplace_allowed(x, view=not advanced and any(i is not Ellipsis and i != slice(None) for i in idx))
        _check_value_shape(x, idx, v, advanced)
        node_cls = CopySlices if through_view else IndexPutBackward0
        region = view_region(x)
        if region is not None:  # x is a view: the write goes into its base's history
            write_through_view(x, region, tuple(r[idx] for r in region), v, node_cls)
        else:
            node = node_cls()
            node._run((HistoryHandle.of(x), v), {"index": idx})
            x.grad_fn = node
            x._requires_grad = True
            refresh_views(x)
    else:
        try:
            x._data[idx] = v._data
        except ValueError:
            _check_value_shape(x, idx, v, advanced)
            raise
        except IndexError as e:
            raise _index_error(e, idx, x._data.shape) from None
    x._vc[0] += 1


def _drop_leading_ones(v, target):
    """PyTorch drops a value's extra leading size-1 dims (``x[0] = ones(1, 1, 3)``)."""
    n = 0
    while v.ndim - n > len(target) and v._data.shape[n] == 1:
        n += 1
    return v.reshape(v.shape[n:]) if n else v


def _check_value_shape(x, idx, v, advanced):
    """Raises PyTorch's error when ``v`` does not broadcast to the indexing result ``x[idx]``."""
    target = tuple(x._data[idx].shape)
    vs = tuple(v.shape)
    try:
        if np.broadcast_shapes(target, vs) == target:
            return
    except ValueError:
        pass
    if advanced:
        raise RuntimeError(f"shape mismatch: value tensor of shape {list(vs)} cannot be broadcast to indexing result "
                           f"of shape {list(target)}")
    from .shape import _expand_error
    raise _expand_error(vs, list(target))


class AsStridedBackward0(IndexBackward0):
    """The history PyTorch gives a view whose base was written in place after the view was taken:
    the view's elements picked from the base's new history (``autograd/inplace.refresh_views``)."""


def index_put(input, indices, values, accumulate=False):
    idx = tuple(i._data if isinstance(i, Tensor) else i for i in indices)
    v = values if isinstance(values, Tensor) else \
        Tensor._wrap(_backend.like(np.asarray(values, dtype=input._data.dtype), input._data))
    return IndexPutBackward0.apply(input, cast(v, input.dtype), index=idx, accumulate=accumulate, copy=True)


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
    if ix.size and (ix.min() < 0 or ix.max() >= n):
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
    fresh_grads = False  # hands back the incoming gradient (or views of it)

    def forward(self, x, src, index, axis, add):
        self.axis, self.idx, self.add, self.sshape = axis, index, add, src.shape
        out = x.copy()
        xp = _xp(x)
        grid = list(xp.ix_(*[xp.arange(s) for s in index.shape]))
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


class ScatterBackward1(ScatterBackward0):
    """scatter of a number."""


class ScatterAddBackward0(ScatterBackward0):
    """scatter_add / scatter(reduce='add')."""


def _scatter(input, dim, index, src, add):
    _check_index_tensor(index, "scatter")
    axis = _wrap_dim(dim, input.ndim)
    cls = ScatterAddBackward0 if add else ScatterBackward0
    if not isinstance(src, Tensor):
        src = Tensor._wrap(_xp(input._data).full(index.shape, _py_scalar(src, input.dtype), dtype=input._data.dtype))
        cls = ScatterBackward1
    return cls.apply(input, cast(src, input.dtype), index=index._data, axis=axis, add=add)


def scatter(input, dim, index, src=None, value=None, *, reduce=None):
    if src is None:
        src = value
    if reduce is not None and reduce != "add":
        if reduce == "multiply":
            out = input.clone()
            grid = list(np.ix_(*[np.arange(s) for s in index.shape]))
            grid[_wrap_dim(dim, input.ndim)] = _backend.to_host(index._data)
            sv = _backend.to_host(src._data) if isinstance(src, Tensor) else src
            # CuPy has no multiply.at: this rare (deprecated in PyTorch) path runs on the host
            host = np.array(_backend.to_host(out._data))
            np.multiply.at(host, tuple(grid), sv)
            out._data[...] = _backend.like(host, out._data)
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
        bad = int(ix.max()) if ix.max() >= n else int(ix.min())
        raise RuntimeError(f"INDICES element is out of DATA bounds, id={bad} axis_dim={n}")
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
        raise RuntimeError(f"masked_fill_ only supports boolean masks, but got mask with dtype {D.CPP_NAMES[mask.dtype.name]}")
    check_broadcast_many(mask, input)
    if isinstance(value, Tensor):
        if value.ndim != 0:
            raise RuntimeError(f"masked_fill_ only supports a 0-dimensional value tensor, but got tensor with {value.ndim} dimension(s).")
        if value._requires_grad:
            return MaskedFillBackward1.apply(input, cast(value, input.dtype), mask=mask._data)
        value = value.item()
    return MaskedFillBackward0.apply(input, mask=mask._data, value=_py_scalar(value, input.dtype))


class MaskedSelectBackward0(Op):
    """The elements of ``x`` (broadcast with the mask) where the mask is True, as a 1-d copy."""

    def forward(self, x, mask):
        xp = _xp(x)
        shape = np.broadcast_shapes(x.shape, mask.shape)
        self.src, self.shape = x.shape, shape
        self.mask = xp.broadcast_to(mask, shape)
        return xp.broadcast_to(x, shape)[self.mask]

    def backward(self, g, ns):
        return (unbroadcast(ns, ns.index_put_zeros(self.shape, self.mask, g), self.src),)


def masked_select(input, mask):
    if mask._data.dtype != np.bool_:
        raise RuntimeError("masked_select: expected BoolTensor for mask")
    check_broadcast_many(mask, input)
    return MaskedSelectBackward0.apply(input, mask=mask._data)


def masked_scatter(input, mask, source):
    """``input`` with the masked positions filled, in order, from the start of ``source``."""
    check_broadcast_many(mask, input)
    m = np.broadcast_to(mask._data, input.shape)
    n = int(m.sum())
    if source.numel() < n:
        raise RuntimeError("masked_scatter: expected source to have at least as many elements as ones in mask")
    out = input.clone()
    setitem(out, (m,), source.reshape(-1)[:n])  # recorded: gradients reach input and source
    return out


def nonzero(input, *, as_tuple=False):
    xp = _xp(input._data)
    nz = xp.nonzero(input._data)
    if as_tuple:
        if input.ndim == 0:
            return (Tensor._wrap(xp.zeros(int(bool(input._data)), np.int64)),)
        return tuple(Tensor._wrap(i.astype(np.int64)) for i in nz)
    if input.ndim == 0:
        return Tensor._wrap(xp.zeros((int(bool(input._data)), 0), np.int64))
    return Tensor._wrap(xp.stack(nz, axis=1).astype(np.int64) if nz else xp.zeros((0, 0), np.int64))


def argwhere(input):
    return nonzero(input)


def _descending_key(x):
    """An order-reversing key that keeps ties in order: -x for floats, ~x for integers and bools
    (-x would wrap around for unsigned and minimum signed values)."""
    return -x if x.dtype.kind in "fc" else ~x


class SortBackward0(Op):
    fresh_grads = False  # hands back the incoming gradient (or views of it)

    def forward(self, x, axis, descending, stable):
        xp = _xp(x)
        self.axis, self.src = axis, x.shape
        if x.ndim == 0:
            self.idx = xp.zeros((), np.int64)
            return x.copy()
        idx = xp.argsort(_descending_key(x) if descending else x, axis=axis, kind="stable")
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
        key = _descending_key(x) if largest else x
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
        raise RuntimeError("selected index k out of range")
    node = TopkBackward0()
    vals = node._run((input,), {"k": k, "axis": axis, "largest": largest, "sorted": sorted})
    return return_types["topk"](vals, Tensor._wrap(node.idx.astype(np.int64, copy=False)))


def kthvalue(input, k, dim=-1, keepdim=False):
    """The k-th smallest element (1-based ``k``) along ``dim``, with its index."""
    from .reduce import KthvalueBackward0, kth_along
    n = input.shape[_wrap_dim(dim, input.ndim)] if input.ndim else 1
    if not 1 <= k <= n:
        raise RuntimeError(f"kthvalue(): selected number k out of range for dimension {_wrap_dim(dim, input.ndim)}")
    return kth_along("kthvalue", KthvalueBackward0, input, k - 1, dim, keepdim)


class IndexAddBackward0(Op):
    fresh_grads = False  # hands back the incoming gradient (or views of it)

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


class IndexFillBackward0(MaskedFillBackward0):
    """index_fill with a number (a masked fill along one dim)."""


def index_fill(input, dim, index, value):
    full = [slice(None)] * input.ndim
    full[_wrap_dim(dim, input.ndim)] = index._data
    mask = _xp(input._data).zeros(input.shape, bool)
    mask[tuple(full)] = True
    if isinstance(value, Tensor) and value._requires_grad:
        return masked_fill(input, Tensor._wrap(mask), value)
    v = value.item() if isinstance(value, Tensor) else value
    return IndexFillBackward0.apply(input, mask=mask, value=_py_scalar(v, input.dtype))


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
    v = values._data if isinstance(values, Tensor) else _backend.like(np.asarray(values), sorted_sequence._data)
    return Tensor._wrap(_xp(v).searchsorted(sorted_sequence._data, v, side=side).astype(np.int64))


def bucketize(input, boundaries, *, right=False):
    return Tensor._wrap(_xp(input._data).searchsorted(boundaries._data, input._data,
                                                      side="left" if not right else "right").astype(np.int64))
