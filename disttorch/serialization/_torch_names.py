"""PyTorch's pickle vocabulary (``torch._utils._rebuild_tensor_v2``, ``torch.FloatStorage``,
``torch.float32``...) and what each name means in disttorch.

A PyTorch checkpoint pickles a tensor as ``_rebuild_tensor_v2(storage, offset, size, stride,
requires_grad, backward_hooks)``, where ``storage`` is a persistent id ``('storage', StorageType,
key, location, numel)`` naming a raw record of the file. :class:`Rebuilder` turns those into
disttorch tensors over NumPy arrays (tensors over one storage share its memory) and checks every
view against its storage's bounds, so a hostile file cannot reach memory outside its own data.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _dtype as D
from .._device import device as _device
from .._size import Size
from ..tensor import Tensor, _rebuild_tensor
from ._common import place_tensor

# legacy storage class name -> element dtype ("bfloat16" has no NumPy dtype: widened to float32)
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_, "ComplexFloatStorage": np.complex64,
    "ComplexDoubleStorage": np.complex128, "BFloat16Storage": "bfloat16",
}
STORAGE_NAMES = {np.dtype(v): k for k, v in STORAGE_DTYPES.items() if v != "bfloat16"}


class StorageType:
    """What ``torch.FloatStorage`` (etc.) unpickles to: the element dtype of a storage record."""

    def __init__(self, name):
        self.name = name
        self.dtype = STORAGE_DTYPES.get(name)  # None: an untyped (byte) storage

    def __repr__(self):
        return f"StorageType({self.name})"


class LoadedStorage:
    """A storage read from a file: a 1-D array of its elements and the location it was saved at."""

    def __init__(self, array, location):
        self.array = array
        self.location = location


def read_storage_array(raw: np.ndarray, dtype, numel: int, little_endian=True) -> np.ndarray:
    """A storage record's uint8 bytes as a 1-D array of ``numel`` elements of ``dtype``."""
    if dtype == "bfloat16":
        if raw.nbytes != 2 * numel:
            raise ValueError(f"a bfloat16 storage of {numel} elements holds {raw.nbytes} bytes")
        halves = raw.view("<u2" if little_endian else ">u2").astype(np.uint32)
        return (halves << 16).view(np.float32)  # bfloat16 is the high half of a float32: exact
    dt = np.dtype(dtype if dtype is not None else np.uint8)
    if raw.nbytes != numel * dt.itemsize:
        raise ValueError(f"a storage of {numel} {dt} elements holds {raw.nbytes} bytes")
    arr = raw.view(dt)
    if not little_endian and dt.itemsize > 1:
        arr = arr.view(dt.newbyteorder(">")).astype(dt)
    return arr


class Rebuilder:
    """PyTorch's rebuild functions bound to one load (its ``map_location``)."""

    def __init__(self, map_location=None):
        self.map_location = map_location

    def table(self):
        """Global name -> object, for the unpicklers."""
        t = {
            "torch._utils._rebuild_tensor": self.rebuild_tensor,
            "torch._utils._rebuild_tensor_v2": self.rebuild_tensor_v2,
            "torch._utils._rebuild_tensor_v3": self.rebuild_tensor_v3,
            "torch._utils._rebuild_parameter": self.rebuild_parameter,
            "torch._utils._rebuild_parameter_with_state": self.rebuild_parameter_with_state,
            "torch._tensor._rebuild_from_type_v2": self.rebuild_from_type_v2,
            "torch.device": _device,
            "torch.Size": Size,
            "torch.Tensor": Tensor,
            "torch.nn.parameter.Parameter": _parameter_class(),
            "torch.serialization._get_layout": _get_layout,
            "torch.storage.UntypedStorage": StorageType("UntypedStorage"),
            "torch.UntypedStorage": StorageType("UntypedStorage"),
            # disttorch's own pickles (Tensor.__reduce_ex__, dtype.__reduce__)
            "disttorch.tensor._rebuild_tensor": _checked_disttorch_rebuild,
            "disttorch._dtype._by_name": D._by_name,
            "disttorch._device.device": _device,
            "disttorch._size.Size": Size,
        }
        for name in STORAGE_DTYPES:
            t[f"torch.{name}"] = StorageType(name)
        for d in D.ALL:
            t[f"torch.{d.name}"] = d
        t["torch.bfloat16"] = D.float32  # no bfloat16 here: its values load widened to float32
        return t

    # ---- rebuild functions ---------------------------------------------------------------------------
    def rebuild_tensor(self, storage, storage_offset, size, stride):
        return self._view(storage, storage_offset, size, stride, False)

    def rebuild_tensor_v2(self, storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                          metadata=None):
        return self._view(storage, storage_offset, size, stride, requires_grad)

    def rebuild_tensor_v3(self, storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype,
                          metadata=None):
        if not isinstance(storage, LoadedStorage):
            raise TypeError(f"_rebuild_tensor_v3 expects a storage, got {type(storage).__name__}")
        if isinstance(dtype, D.dtype) and storage.array.dtype == np.uint8 and dtype.np != np.uint8:
            storage = LoadedStorage(storage.array.view(dtype.np), storage.location)  # an untyped storage
        return self._view(storage, storage_offset, size, stride, requires_grad)

    def rebuild_parameter(self, data, requires_grad, backward_hooks=None):
        if not isinstance(data, Tensor):
            raise TypeError(f"_rebuild_parameter expects a tensor, got {type(data).__name__}")
        return _parameter_class()(data, requires_grad and data._data.dtype.kind in "fc")

    def rebuild_parameter_with_state(self, data, requires_grad, backward_hooks, state):
        param = self.rebuild_parameter(data, requires_grad, backward_hooks)
        if state:
            for key, value in dict(state).items():
                setattr(param, str(key), value)
        return param

    def rebuild_from_type_v2(self, func, new_type, args, state):
        out = func(*args)
        param_cls = _parameter_class()
        if new_type is param_cls and not isinstance(out, param_cls):
            out = param_cls(out, out.requires_grad)
        elif new_type not in (Tensor, type(out)):
            raise TypeError(f"cannot rebuild a tensor of type {getattr(new_type, '__name__', new_type)!r}")
        if state:
            for key, value in dict(state).items():
                setattr(out, str(key), value)
        return out

    def _view(self, storage, offset, size, stride, requires_grad):
        if not isinstance(storage, LoadedStorage):
            raise TypeError(f"a tensor's storage must come from the file, got {type(storage).__name__}")
        arr = storage.array
        size = tuple(int(s) for s in size)
        stride = tuple(int(s) for s in stride)
        offset = int(offset)
        if len(size) != len(stride) or offset < 0 or any(s < 0 for s in size) or any(s < 0 for s in stride):
            raise ValueError(f"invalid tensor view: offset {offset}, size {list(size)}, stride {list(stride)}")
        if math.prod(size) == 0:
            view = np.empty(size, dtype=arr.dtype)
        else:
            last = offset + sum((n - 1) * st for n, st in zip(size, stride))
            if last >= arr.size:
                raise ValueError(f"tensor view (offset {offset}, size {list(size)}, stride {list(stride)}) lies outside "
                                 f"its storage of {arr.size} elements")
            itemsize = arr.dtype.itemsize
            view = np.lib.stride_tricks.as_strided(arr[offset:], shape=size,
                                                   strides=tuple(st * itemsize for st in stride))
        t = Tensor._wrap(view)
        if requires_grad and view.dtype.kind in "fc":
            t._requires_grad = True
        return place_tensor(t, storage.location, self.map_location)


def _parameter_class():
    from ..nn.parameter import (
        Parameter,  # serialization sits above nn; imported late to keep startup light
    )
    return Parameter


def _get_layout(name):
    if name != "torch.strided":
        raise ValueError(f"only strided (dense) tensors are supported, not layout {name!r}")
    return name


def _checked_disttorch_rebuild(array, requires_grad, cls=Tensor, device=None):
    """disttorch's own Tensor pickle, accepted only for tensor classes and real arrays."""
    if not isinstance(array, np.ndarray) or not (isinstance(cls, type) and issubclass(cls, Tensor)):
        raise TypeError("a pickled disttorch tensor must hold an ndarray and a Tensor class")
    return _rebuild_tensor(array, bool(requires_grad), cls, device)

