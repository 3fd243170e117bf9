"""Gradient buckets: groups of parameters whose gradients are reduced by one collective.

Parameters go into buckets in reverse registration order (the order backward usually produces
their gradients); a bucket holds one dtype and closes once it reaches ``cap_bytes``.
"""
from __future__ import annotations

import numpy as np


class GradBucket:
    """``torch.distributed.GradBucket``: the flat gradient buffer a communication hook reduces.

    ``views[i]`` is parameter i's slice of the flat buffer, shaped like the parameter. The views
    are made once and kept: with ``gradient_as_bucket_view`` a parameter's ``.grad`` *is* its view
    (the same array object), which lets the reducer see that a gradient already sits in place.
    """

    def __init__(self, index, params, param_indices, flat, is_last_bucket):
        self._index = index
        self.params = params
        self.param_indices = param_indices       # positions in DDP's parameter list
        self.offsets = []
        total = 0
        for p in params:
            self.offsets.append(total)
            total += p._data.size
        if flat.size != total:
            raise ValueError(f"GradBucket {index}: buffer of {flat.size} elements for {total} gradient elements")
        self.numel = total
        self.flat = flat  # gradients are copied in here and reduced in place
        self.views = [self.flat[off:off + p._data.size].reshape(p._data.shape)
                      for off, p in zip(self.offsets, params)]
        self._buffer_tensor = None
        self._is_last = is_last_bucket
        self.pending = len(params)                # parameters still waiting for their gradient
        self.ready = [False] * len(params)

    # ---- torch's GradBucket API ---------------------------------------------------------------
    def index(self) -> int:
        return self._index

    def buffer(self):
        """The flat gradient buffer as a Tensor sharing memory with the bucket."""
        from ...tensor import Tensor
        if self._buffer_tensor is None:
            self._buffer_tensor = Tensor._wrap(self.flat)
        return self._buffer_tensor

    def set_buffer(self, tensor):
        """Replaces the buffer's contents with ``tensor`` (same number of elements)."""
        data = (tensor._data if hasattr(tensor, "_data") else np.asarray(tensor)).reshape(-1)
        if data.size != self.numel:
            raise ValueError(f"GradBucket.set_buffer: expected {self.numel} elements, got {data.size}")
        self.flat[...] = data

    def gradients(self):
        """Views of the flat buffer, one per parameter, shaped like the parameters."""
        from ...tensor import Tensor
        return [Tensor._wrap(v) for v in self.views]

    def parameters(self):
        return list(self.params)

    def is_last(self) -> bool:
        return self._is_last

    # ---- internals -----------------------------------------------------------------------------
    def reset(self):
        self.pending = len(self.params)
        self.ready = [False] * len(self.params)


def allocate_buffers(params, groups):
    """One zeroed buffer per dtype, cut into consecutive flat slices, one per bucket of ``groups``.

    Buckets of a dtype sit back to back, so all of them can also be reduced by one collective.
    Returns ``(slices, arenas)``: the slice of each bucket and the dtype -> buffer map.
    """
    from ..._backend import array_module
    sizes = [sum(params[j]._data.size for j in idx) for idx in groups]
    dtypes = [params[idx[0]]._data.dtype for idx in groups]
    # buffers live where the parameters live (host or GPU), so gradients never cross devices
    xp = array_module(params[groups[0][0]]._data) if groups and groups[0] else np
    arenas = {dt: xp.zeros(sum(n for n, d in zip(sizes, dtypes) if d == dt), dt) for dt in dict.fromkeys(dtypes)}
    used = dict.fromkeys(arenas, 0)
    slices = []
    for n, dt in zip(sizes, dtypes):
        slices.append(arenas[dt][used[dt]:used[dt] + n])
        used[dt] += n
    return slices, arenas


def assign_buckets(params, cap_bytes, first_cap_bytes=None, order=None):
    """Lists of parameter indices, one per bucket, filled in ``order`` (default: reverse
    registration order, the order backward usually produces gradients in).

    PyTorch's rule: a parameter joins the open bucket of its dtype, and a bucket closes once it
    holds ``cap`` bytes or more (so a large parameter completes the bucket it joins).
    ``first_cap_bytes`` caps the first bucket (the gradients ready first) separately, as PyTorch
    does, so communication starts early in backward.
    """
    buckets = []
    open_by_dtype = {}  # dtype -> (indices, bytes)
    cap = first_cap_bytes if first_cap_bytes else cap_bytes
    for idx in (reversed(range(len(params))) if order is None else order):
        p = params[idx]
        indices, size = open_by_dtype.get(p._data.dtype, ([], 0))
        indices.append(idx)
        size += p._data.nbytes
        if size >= cap:
            buckets.append(indices)
            indices, size = [], 0
            cap = cap_bytes
        open_by_dtype[p._data.dtype] = (indices, size)
    buckets.extend(indices for indices, _ in open_by_dtype.values() if indices)
    return buckets
