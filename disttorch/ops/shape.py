"""Shape ops. Views (view, reshape when possible, permute, transpose, squeeze, unsqueeze, expand,
narrow, unbind/split/chunk pieces, movedim) share memory and the version counter with their input,
exactly where PyTorch's do."""
from __future__ import annotations

import math

import numpy as np

from .. import _backend
from .._device import device as _device_cls
from ._base import Op
from .._dtype import result_dtype
from .pointwise import _xp, cast
from ..tensor import Tensor, _wrap_dim


def _shape_arg(shape):
    """``(2, 3)``, ``((2, 3),)`` or ``([2, 3],)`` as a tuple of ints (``view(2, 3)`` / ``view((2, 3))``)."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    for s in shape:
        if type(s) is not int:  # sizes given as tensors, NumPy ints or Size entries: convert all
            return tuple(int(s) for s in shape)
    return shape


def _infer(shape, numel):
    """``shape`` with its one ``-1`` (if any) inferred from ``numel``; PyTorch's errors otherwise."""
    known, neg = 1, -1
    for i, s in enumerate(shape):
        if s == -1:
            if neg >= 0:
                raise RuntimeError("only one dimension can be inferred")
            neg = i
        elif s < 0:
            raise RuntimeError(f"invalid shape dimension {s}")
        else:
            known *= s
    if neg >= 0:
        if known == 0 or numel % known:
            raise RuntimeError(f"shape '[{', '.join(map(str, shape))}]' is invalid for input of size {numel}")
        return shape[:neg] + (numel // known,) + shape[neg + 1:]
    if known != numel:
        raise RuntimeError(f"shape '[{', '.join(map(str, shape))}]' is invalid for input of size {numel}")
    return shape


class ViewBackward0(Op):
    is_view = True
    fresh_grads = False

    def forward(self, x, shape, strict=True):
        self.src = x.shape
        if strict:
            try:
                return _backend.reshape_view(x, shape)
            except ValueError:
                raise RuntimeError(
                    "view size is not compatible with input tensor's size and stride (at least one dimension spans "
                    "across two contiguous subspaces). Use .reshape(...) instead.") from None
        return x.reshape(shape)

    def backward(self, g, ns):
        return (ns.reshape(g, self.src),)


class UnsafeViewBackward0(ViewBackward0):
    """reshape that had to copy."""

    is_view = False


def view(input, *shape):
    if len(shape) == 1 and not isinstance(shape[0], (tuple, list, int)) and shape[0] is not None:
        from .._dtype import as_dtype
        dt = as_dtype(shape[0])
        return Tensor._wrap(input._data.view(dt.np))
    shape = _infer(_shape_arg(shape), input._data.size)
    return ViewBackward0.apply(input, shape=shape)


def reshape(input, *shape):
    shape = _infer(_shape_arg(shape), input._data.size)
    x = input._data
    try:
        _backend.reshape_view(x, shape)
        return ViewBackward0.apply(input, shape=shape, strict=False)  # viewable: checked just now
    except ValueError:
        # as PyTorch: copy to contiguous memory (CloneBackward0), then view it (UnsafeViewBackward0)
        return UnsafeViewBackward0.apply(CloneBackward0.apply(input), shape=shape)


def flatten(input, start_dim=0, end_dim=-1):
    shp = input._data.shape
    nd = len(shp)
    if nd == 0:
        return reshape(input, 1)
    s, e = _wrap_dim(start_dim, nd), _wrap_dim(end_dim, nd)
    if s > e:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    if s == e:
        return input
    return reshape(input, shp[:s] + (math.prod(shp[s:e + 1]),) + shp[e + 1:])


def unflatten(input, dim, sizes):
    d = _wrap_dim(dim, input.ndim)
    shp = list(input.shape)
    sizes = list(sizes)
    if -1 in sizes:
        known = int(np.prod([s for s in sizes if s != -1]))
        sizes[sizes.index(-1)] = shp[d] // known
    if int(np.prod(sizes)) != shp[d]:
        raise RuntimeError(f"unflatten: Provided sizes {sizes} don't multiply up to the size of dim {dim} ({shp[d]}) in the input tensor")
    return view(input, tuple(shp[:d] + sizes + shp[d + 1:]))


class PermuteBackward0(Op):
    is_view = True
    fresh_grads = False

    def forward(self, x, dims):
        inv = [0] * len(dims)
        for i, d in enumerate(dims):
            inv[d] = i
        self.inv = tuple(inv)
        return x.transpose(dims)

    def backward(self, g, ns):
        return (ns.transpose(g, self.inv),)


def permute(input, *dims):
    dims = _shape_arg(dims)
    nd = input._data.ndim
    if len(dims) != nd:
        raise RuntimeError(f"permute(sparse_coo): number of dimensions in the tensor input does not match the length of the desired ordering of dimensions i.e. input.dim() = {nd} is not equal to len(dims) = {len(dims)}")
    dims = tuple([d if 0 <= d < nd else _wrap_dim(d, nd) for d in dims])
    if len(set(dims)) != nd:
        raise RuntimeError("permute(): duplicate dims are not allowed.")
    return PermuteBackward0.apply(input, dims=dims)


class TransposeBackward0(Op):
    is_view = True
    fresh_grads = False

    def forward(self, x, d0, d1):
        self.d0, self.d1 = d0, d1
        return x.swapaxes(d0, d1)

    def backward(self, g, ns):
        return (ns.swapaxes(g, self.d0, self.d1),)


class TBackward0(TransposeBackward0):
    """``t()`` of a matrix."""


def transpose(input, dim0, dim1):
    nd = input.ndim
    if nd == 0:
        return input
    return TransposeBackward0.apply(input, d0=_wrap_dim(dim0, nd), d1=_wrap_dim(dim1, nd))


swapaxes = swapdims = transpose


def t(input):
    if input.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {input.ndim}D")
    if input.ndim < 2:
        return input
    return TBackward0.apply(input, d0=0, d1=1)


def T(input):
    if input.ndim <= 1:
        return input
    return PermuteBackward0.apply(input, dims=tuple(range(input.ndim - 1, -1, -1)))


def mT(input):
    return transpose(input, -2, -1)


def movedim(input, source, destination):
    nd = input.ndim
    src = [source] if isinstance(source, int) else list(source)
    dst = [destination] if isinstance(destination, int) else list(destination)
    src = [_wrap_dim(s, nd) for s in src]
    dst = [_wrap_dim(d, nd) for d in dst]
    order = [i for i in range(nd) if i not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return permute(input, order)


moveaxis = movedim


class SqueezeBackward0(Op):
    is_view = True
    fresh_grads = False

    def forward(self, x, axes):
        self.src = x.shape
        return x.reshape([s for i, s in enumerate(x.shape) if i not in axes])

    def backward(self, g, ns):
        return (ns.reshape(g, self.src),)


class SqueezeBackward1(SqueezeBackward0):
    """squeeze(dim)."""


class SqueezeBackward2(SqueezeBackward0):
    """squeeze(dims)."""


def squeeze(input, dim=None):
    nd = input.ndim
    if dim is None:
        axes = tuple(i for i, s in enumerate(input.shape) if s == 1)
        cls = SqueezeBackward0
    else:
        dims = dim if isinstance(dim, (tuple, list)) else (dim,)
        axes = tuple(d for d in (_wrap_dim(x, nd) for x in dims) if nd and input.shape[d] == 1)
        cls = SqueezeBackward2 if isinstance(dim, (tuple, list)) else SqueezeBackward1
    return cls.apply(input, axes=axes)


class UnsqueezeBackward0(Op):
    is_view = True
    fresh_grads = False

    def forward(self, x, axis):
        self.axis = axis
        shape = x.shape
        return x.reshape(shape[:axis] + (1,) + shape[axis:])  # a view, cheaper than expand_dims

    def backward(self, g, ns):
        return (ns.reshape(g, tuple(s for i, s in enumerate(g.shape) if i != self.axis)),)


def unsqueeze(input, dim):
    return UnsqueezeBackward0.apply(input, axis=_wrap_dim(dim, input.ndim + 1))


class ExpandBackward0(Op):
    is_view = True
    fresh_grads = False  # an expand to the same shape hands the incoming gradient straight back

    def forward(self, x, shape):
        self.src = x.shape
        return _xp(x).broadcast_to(x, shape)

    def backward(self, g, ns):
        from ._base import unbroadcast
        return (unbroadcast(ns, g, self.src),)


def expand(input, *sizes):
    sizes = list(_shape_arg(sizes))
    nd = input.ndim
    if len(sizes) < nd:
        raise RuntimeError(
            f"expand(torch.FloatTensor{{{list(input.shape)}}}, size=[{', '.join(map(str, sizes))}]): the number of sizes "
            f"provided ({len(sizes)}) must be greater or equal to the number of dimensions in the tensor ({nd})")
    lead = len(sizes) - nd
    for i in range(nd):
        if sizes[lead + i] == -1:
            sizes[lead + i] = input.shape[i]
    err = _expand_error(tuple(input.shape), sizes)
    if err is not None:
        raise err
    return ExpandBackward0.apply(input, shape=tuple(sizes))


def _expand_error(shape, sizes):
    """PyTorch's error for expanding ``shape`` to ``sizes`` (checked from the last dim), or None."""
    lead = len(sizes) - len(shape)
    for i in range(len(shape) - 1, -1, -1):
        if shape[i] != 1 and shape[i] != sizes[lead + i]:
            return RuntimeError(
                f"The expanded size of the tensor ({sizes[lead + i]}) must match the existing size ({shape[i]}) at "
                f"non-singleton dimension {lead + i}.  Target sizes: [{', '.join(map(str, sizes))}].  "
                f"Tensor sizes: [{', '.join(map(str, shape))}]")
    return None


def expand_as(input, other):
    return expand(input, tuple(other.shape))


def broadcast_to(input, shape):
    return expand(input, tuple(shape))


def broadcast_tensors(*tensors):
    shape = np.broadcast_shapes(*[tuple(t.shape) for t in tensors])
    return tuple(expand(t, shape) for t in tensors)


def broadcast_shapes(*shapes):
    from .._size import Size
    return Size(np.broadcast_shapes(*[tuple(s) if not isinstance(s, int) else (s,) for s in shapes]))


class RepeatBackward0(Op):
    def forward(self, x, reps):
        self.src = x.shape
        self.reps = reps
        lead = len(reps) - x.ndim
        self.xshape = (1,) * lead + tuple(x.shape)
        return _xp(x).tile(x.reshape(self.xshape), reps)

    def backward(self, g, ns):
        # fold each repeated dim into (rep, size) and sum over the reps
        shp = []
        for r, s in zip(self.reps, self.xshape):
            shp += [r, s]
        g = ns.reshape(g, tuple(shp))
        g = ns.sum(g, axis=tuple(range(0, len(shp), 2)))
        return (ns.reshape(g, self.src),)


def repeat(input, *sizes):
    sizes = _shape_arg(sizes)
    if len(sizes) < input.ndim:
        raise RuntimeError("Number of dimensions of repeat dims can not be smaller than number of dimensions of tensor")
    return RepeatBackward0.apply(input, reps=tuple(sizes))


def tile(input, dims):
    dims = tuple(dims)
    if len(dims) < input.ndim:
        dims = (1,) * (input.ndim - len(dims)) + dims
    return repeat(input, dims)


class CatBackward0(Op):
    fresh_grads = False  # hands back the incoming gradient (or views of it)

    def forward(self, *xs, axis):
        self.axis = axis
        self.sizes = [x.shape[axis] for x in xs]
        return _xp(xs[0]).concatenate(xs, axis=axis)

    def backward(self, g, ns):
        out, start = [], 0
        for n, need in zip(self.sizes, self.needs_input_grad):
            if need:
                idx = [slice(None)] * g.ndim
                idx[self.axis] = slice(start, start + n)
                out.append(ns.getitem(g, tuple(idx)))
            else:
                out.append(None)
            start += n
        return tuple(out)


def cat(tensors, dim=0, *, out=None):
    """Concatenates along an existing dim (1-d empty tensors are skipped, as in PyTorch)."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("torch.cat(): expected a non-empty list of Tensors")
    dt = result_dtype(tensors)
    ts = [cast(t, dt) for t in tensors if t._data.shape != (0,)] or [cast(tensors[0], dt)]
    ref = ts[0]._data.shape
    nd = len(ref)
    axis = _wrap_dim(dim, nd)
    for i, t in enumerate(ts):
        shape = t._data.shape
        if len(shape) != nd:
            raise RuntimeError(f"Tensors must have same number of dimensions: got {nd} and {len(shape)}")
        for d in range(nd):
            if d != axis and shape[d] != ref[d]:
                raise RuntimeError(
                    f"Sizes of tensors must match except in dimension {axis}. Expected size {ref[d]} but got size {shape[d]} for tensor number {i} in the list.")
    res = CatBackward0.apply(*ts, axis=axis)
    if out is not None:
        from .creation import _copy_into
        return _copy_into(out, res)
    return res


concat = concatenate = cat


class StackBackward0(Op):
    fresh_grads = False  # hands back the incoming gradient (or views of it)

    def forward(self, *xs, axis):
        self.axis = axis
        return _xp(xs[0]).stack(xs, axis=axis)

    def backward(self, g, ns):
        n = g.shape[self.axis]
        out = []
        for i in range(n):
            idx = [slice(None)] * g.ndim
            idx[self.axis] = i
            out.append(ns.getitem(g, tuple(idx)) if self.needs_input_grad[i] else None)
        return tuple(out)


def stack(tensors, dim=0, *, out=None):
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    ref = tensors[0].shape
    for i, t in enumerate(tensors):
        if t.shape != ref:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got {list(ref)} at entry 0 and {list(t.shape)} at entry {i}")
    dt = result_dtype(tensors)
    tensors = [cast(t, dt) for t in tensors]
    res = StackBackward0.apply(*tensors, axis=_wrap_dim(dim, len(ref) + 1))
    if out is not None:
        from .creation import _copy_into
        return _copy_into(out, res)
    return res


def hstack(tensors):
    return cat(tensors, 0 if tensors[0].ndim == 1 else 1)


def vstack(tensors):
    return cat([t.reshape(1, -1) if t.ndim == 1 else t for t in tensors], 0)


class _SliceView(Op):
    """A basic-indexing view of input 0 (gradient placed back at the same index)."""

    is_view = True

    def forward(self, x, index):
        self.src, self.index = x.shape, index
        return x[index]

    def backward(self, g, ns):
        return (ns.index_put_zeros(self.src, self.index, g),)


class SliceBackward0(_SliceView):
    """``x[a:b]``, ``narrow``."""


class SelectBackward0(_SliceView):
    """``x[i]``, ``select``."""


class SplitBackward0(_SliceView):
    """A piece of ``split`` / ``chunk``."""


class SplitWithSizesBackward0(_SliceView):
    """A piece of ``split`` with a list of sizes."""


class UnbindBackward0(_SliceView):
    """A piece of ``unbind``."""


class AliasBackward0(_SliceView):
    """``x[...]`` / ``x[:]``: the whole tensor as a view."""


def narrow(input, dim, start, length):
    d = _wrap_dim(dim, input.ndim)
    start = int(start)
    if start < 0:
        start += input.shape[d]
    if start + length > input.shape[d] or length < 0:
        raise RuntimeError(f"start ({start}) + length ({length}) exceeds dimension size ({input.shape[d]}).")
    idx = [slice(None)] * input.ndim
    idx[d] = slice(start, start + length)
    return SliceBackward0.apply(input, index=tuple(idx))


def select(input, dim, index):
    d = _wrap_dim(dim, input.ndim)
    n = input.shape[d]
    if not -n <= index < n:
        raise IndexError(f"select(): index {index} out of range for tensor of size {list(input.shape)} at dimension {d}")
    idx = [slice(None)] * input.ndim
    idx[d] = int(index)
    return SelectBackward0.apply(input, index=tuple(idx))


def split(tensor, split_size_or_sections, dim=0):
    """Splits into chunks of ``split_size`` (last may be smaller) or of the given section sizes."""
    d = _wrap_dim(dim, tensor.ndim)
    n = tensor.shape[d]
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        if step <= 0 and n:
            raise RuntimeError(f"split_size can only be 0 if dimension size is 0, but got dimension size of {n}")
        sizes = [min(step, n - s) for s in range(0, n, step)] if n else [0]
    else:
        sizes = list(split_size_or_sections)
        if builtins_sum(sizes) != n:
            raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to {n} (input tensor's size at dimension {d}), but got split_sizes={sizes}")
    cls = SplitBackward0 if isinstance(split_size_or_sections, int) else SplitWithSizesBackward0
    out, start = [], 0
    for s in sizes:
        idx = [slice(None)] * tensor.ndim
        idx[d] = slice(start, start + s)
        out.append(cls.apply(tensor, index=tuple(idx)))
        start += s
    return tuple(out)


def chunk(input, chunks, dim=0):
    if chunks <= 0:
        raise RuntimeError(f"chunk expects `chunks` to be greater than 0, got: {chunks}")
    n = input.shape[_wrap_dim(dim, input.ndim)]
    size = -(-n // chunks) if n else 1
    return split(input, max(size, 1), dim)


def tensor_split(input, indices_or_sections, dim=0):
    d = _wrap_dim(dim, input.ndim)
    n = input.shape[d]
    if isinstance(indices_or_sections, int):
        k = indices_or_sections
        sizes = [n // k + (1 if i < n % k else 0) for i in range(k)]
    else:
        bounds = [0] + list(indices_or_sections) + [n]
        sizes = [max(0, min(b, n) - min(a, n)) for a, b in zip(bounds, bounds[1:])]
    return split(input, sizes, d)


def unbind(input, dim=0):
    d = _wrap_dim(dim, input.ndim)
    out = []
    for i in range(input.shape[d]):
        idx = [slice(None)] * input.ndim
        idx[d] = i
        out.append(UnbindBackward0.apply(input, index=tuple(idx)))
    return tuple(out)


builtins_sum = sum


class FlipBackward0(Op):
    def forward(self, x, axes):
        self.axes = axes
        return _xp(x).flip(x, axes).copy()

    def backward(self, g, ns):
        return (ns.flip(g, self.axes),)


def flip(input, dims):
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    return FlipBackward0.apply(input, axes=tuple(_wrap_dim(d, input.ndim) for d in dims))


def fliplr(input):
    return flip(input, 1)


def flipud(input):
    return flip(input, 0)


class RollBackward0(Op):
    def forward(self, x, shifts, axes):
        self.shifts, self.axes = shifts, axes
        return _xp(x).roll(x, shifts, axes)

    def backward(self, g, ns):
        neg = tuple(-s for s in self.shifts) if isinstance(self.shifts, tuple) else -self.shifts
        return (ns.roll(g, neg, self.axes),)


def roll(input, shifts, dims=None):
    if dims is None:
        flat = RollBackward0.apply(input.reshape(-1), shifts=shifts if isinstance(shifts, int) else tuple(shifts), axes=None)
        return flat.reshape(input.shape)
    shifts = (shifts,) if isinstance(shifts, int) else tuple(shifts)
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    return RollBackward0.apply(input, shifts=shifts, axes=tuple(_wrap_dim(d, input.ndim) for d in dims))


class TrilBackward0(Op):
    def forward(self, x, k):
        self.k = k
        return _xp(x).tril(x, k)

    def backward(self, g, ns):
        return (ns.tril(g, self.k),)


class TriuBackward0(Op):
    def forward(self, x, k):
        self.k = k
        return _xp(x).triu(x, k)

    def backward(self, g, ns):
        return (ns.triu(g, self.k),)


def tril(input, diagonal=0):
    if input.ndim < 2:
        raise RuntimeError("tril: input tensor must have at least 2 dimensions")
    return TrilBackward0.apply(input, k=diagonal)


def triu(input, diagonal=0):
    if input.ndim < 2:
        raise RuntimeError("triu: input tensor must have at least 2 dimensions")
    return TriuBackward0.apply(input, k=diagonal)


class CloneBackward0(Op):
    fresh_grads = False

    def forward(self, x):
        return x.copy()

    def backward(self, g, ns):
        return (g,)


def clone(input, *, memory_format=None):
    return CloneBackward0.apply(input)


def contiguous(input):
    if input._data.flags.c_contiguous:
        return input
    return CloneBackward0.apply(input)


class DiagonalBackward0(Op):
    """A writable view of a diagonal (NumPy's own ``diagonal`` view is read-only)."""

    is_view = True

    def forward(self, x, offset, a1, a2):
        self.src, self.args = x.shape, (offset, a1, a2)
        idx = [slice(None)] * x.ndim
        idx[a2 if offset >= 0 else a1] = slice(builtins_abs(offset), None)
        base = x[tuple(idx)]
        rest = [d for d in range(x.ndim) if d not in (a1, a2)]
        n = max(min(base.shape[a1], base.shape[a2]), 0)
        shape = tuple(base.shape[d] for d in rest) + (n,)
        strides = tuple(base.strides[d] for d in rest) + (base.strides[a1] + base.strides[a2],)
        return _xp(x).lib.stride_tricks.as_strided(base, shape, strides)

    def backward(self, g, ns):
        return (ns.diagonal_scatter_zeros(self.src, g, *self.args),)


def diagonal(input, offset=0, dim1=0, dim2=1):
    return DiagonalBackward0.apply(input, offset=offset, a1=_wrap_dim(dim1, input.ndim), a2=_wrap_dim(dim2, input.ndim))


class DiagEmbedBackward0(Op):
    """``diag(vector)``: a square matrix with the vector on the (offset) diagonal."""

    def forward(self, x, offset):
        xp = _xp(x)
        n = x.shape[0] + builtins_abs(offset)
        idx = xp.arange(x.shape[0])
        self.rc = (idx, idx + offset) if offset >= 0 else (idx - offset, idx)
        out = xp.zeros((n, n), dtype=x.dtype)
        out[self.rc] = x
        return out

    def backward(self, g, ns):
        return (ns.getitem(g, self.rc),)


def diag(input, diagonal=0):
    if input.ndim == 1:
        return DiagEmbedBackward0.apply(input, offset=diagonal)
    if input.ndim != 2:
        raise RuntimeError(f"diag(): Supports 1D or 2D tensors. Got {input.ndim}D")
    return clone(globals()["diagonal"](input, diagonal, 0, 1))  # diag copies (diagonal is the view)


builtins_abs = abs


class ToDeviceBackward(Op):
    """Copy between host and GPU; the gradient travels back (PyTorch names it ToCopyBackward0)."""

    def forward(self, x, dev):
        from .. import _backend
        self.src_cuda = _backend.is_cuda_array(x)
        self.src_index = _backend.device_index_of(x) or 0
        if dev.type == "cuda":
            return _backend.to_cuda(x, dev.index)
        return _backend.to_host(x)

    def backward(self, g, ns):
        from .. import _backend
        if ns.graph:
            return (g.to(_device_cls("cuda", self.src_index) if self.src_cuda else "cpu"),)
        return (_backend.to_cuda(g, self.src_index) if self.src_cuda else _backend.to_host(g),)


ToDeviceBackward.__name__ = "ToCopyBackward0"


def to_device(x, dev):
    if dev.type == "cpu":
        if type(x._data) is np.ndarray:
            return x
    elif dev.type == "cuda":
        from .. import _backend
        _backend.require_cupy("CUDA")
        if _backend.is_cuda_array(x._data):
            want = dev.index if dev.index is not None else _backend.current_device_index()
            if _backend.device_index_of(x._data) == want:
                return x
    else:
        raise RuntimeError(f"unsupported device {dev}")
    return ToDeviceBackward.apply(x, dev=dev)


def meshgrid(*tensors, indexing=None):
    """Coordinate grids from 0-D/1-D tensors: output ``i`` varies along dimension ``i`` ("ij") or,
    for the first two inputs swapped, along the other ("xy", NumPy's default for 2-D plots).

    Each output is an expanded view of its input, so gradients flow back by summation.
    """
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing is None:
        import warnings
        warnings.warn("torch.meshgrid: in an upcoming release, it will be required to pass the indexing argument.",
                      UserWarning, stacklevel=2)
        indexing = "ij"
    if indexing not in ("ij", "xy"):
        raise RuntimeError(f'torch.meshgrid: indexing must be one of "xy" or "ij", but received: {indexing}')
    if not tensors:
        raise RuntimeError("meshgrid expects a non-empty TensorList")
    for t in tensors:
        if t.ndim > 1:
            raise RuntimeError(f"torch.meshgrid: Expected 0D or 1D tensor in the tensor list but got: {t}")
    if any(t.dtype != tensors[0].dtype for t in tensors):
        raise RuntimeError("meshgrid expects all tensors to have the same dtype")
    if any(t.device != tensors[0].device for t in tensors):
        raise RuntimeError("meshgrid expects all tensors to have the same device")
    order = list(range(len(tensors)))
    if indexing == "xy" and len(tensors) >= 2:
        order[0], order[1] = 1, 0  # "xy" is "ij" with the first two output dimensions exchanged
    sizes = [t.numel() for t in tensors]
    shape = tuple(sizes[i] for i in order)
    grids = []
    for i, t in enumerate(tensors):
        view = [1] * len(tensors)
        view[order.index(i)] = sizes[i]
        grids.append(expand(reshape(t, tuple(view)), shape))
    return tuple(grids)
