"""``default_collate`` (a list of samples -> one batch) and ``default_convert`` (arrays -> tensors).

The rules are PyTorch's: tensors and NumPy arrays are stacked along a new first dimension, Python
floats become a float64 tensor, ints an int64 tensor (bools a bool tensor), strings stay a list,
and mappings, namedtuples and sequences are collated field by field (a tuple of fields comes back
as a list, as in PyTorch). Custom types can be added to ``default_collate_fn_map``.

Inside a DataLoader worker, a large stacked batch is written straight into a shared-memory
segment, so handing it to the main process costs no further copy.
"""
from __future__ import annotations

import collections.abc
import copy
import re

import numpy as np

import disttorch

from . import _arrays, _shared_memory

# NumPy dtypes that cannot become tensors: bytes, unicode, object (dtype.str letters).
_np_str_obj_array_pattern = re.compile(r"[SaUO]")

default_collate_err_msg_format = (
    "default_collate: batch must contain tensors, numpy arrays, numbers, "
    "dicts or lists; found {}"
)
default_convert_err_msg_format = (
    "default_convert: batch must contain tensors, numpy arrays, numbers, "
    "dicts or lists; found {}"
)


def _stack_arrays(arrays: list, what: str):
    """Stacks equally shaped NumPy arrays into a new tensor (shared memory inside a worker)."""
    first = arrays[0]
    for position, array in enumerate(arrays):
        if array.shape != first.shape:
            raise RuntimeError(f"stack expects each {what} to be equal size, but got {list(first.shape)} "
                               f"at entry 0 and {list(array.shape)} at entry {position}")
    dtype = first.dtype
    if any(array.dtype != dtype for array in arrays):
        # Mixed dtypes: PyTorch's promotion, not NumPy's (int64 + float32 -> float32).
        result = disttorch._dtype.from_numpy_dtype(dtype)
        for array in arrays:
            result = disttorch._dtype.promote_types(result, disttorch._dtype.from_numpy_dtype(array.dtype))
        dtype = result.np
    out = _shared_memory.empty((len(arrays),) + first.shape, dtype)
    np.stack(arrays, out=out, casting="unsafe")
    return _arrays.wrap(out)


def collate_tensor_fn(batch, *, collate_fn_map=None):
    arrays = [_arrays.array_of(t) for t in batch]
    if not all(isinstance(a, np.ndarray) for a in arrays):
        return disttorch.stack(list(batch), 0)  # device (CuPy) tensors: let the tensor core stack them
    return _stack_arrays(arrays, "tensor")


def collate_numpy_array_fn(batch, *, collate_fn_map=None):
    elem = batch[0]
    if _np_str_obj_array_pattern.search(elem.dtype.str) is not None:
        raise TypeError(default_collate_err_msg_format.format(elem.dtype))
    arrays = [b if isinstance(b, np.ndarray) else np.asarray(b) for b in batch]
    return _stack_arrays(arrays, "array")


def collate_numpy_scalar_fn(batch, *, collate_fn_map=None):
    return _arrays.wrap(np.asarray(batch))


def collate_float_fn(batch, *, collate_fn_map=None):
    return _arrays.wrap(np.asarray(batch, dtype=np.float64))


def collate_int_fn(batch, *, collate_fn_map=None):
    array = np.asarray(batch)
    if array.dtype != np.bool_:
        array = array.astype(np.int64, copy=False)
    return _arrays.wrap(array)


def collate_str_fn(batch, *, collate_fn_map=None):
    return batch


def _rebuild_mapping(original, fields: dict):
    """``fields`` in a mapping like ``original``: a copy of a mutable one (``copy.copy`` keeps its
    type and any extra attributes, e.g. a BatchEncoding), ``type(original)(fields)`` otherwise, and
    the plain dict when the type cannot be rebuilt from one."""
    try:
        if isinstance(original, collections.abc.MutableMapping):
            clone = copy.copy(original)
            clone.update(fields)
            return clone
        return type(original)(fields)
    except TypeError:
        return fields


def _rebuild_sequence(original, items: list):
    """``items`` in a sequence like ``original``, by the rules of ``_rebuild_mapping``."""
    try:
        if isinstance(original, collections.abc.MutableSequence):
            clone = copy.copy(original)
            for i, item in enumerate(items):
                clone[i] = item
            return clone
        return type(original)(items)
    except TypeError:
        return items


def collate(batch, *, collate_fn_map=None):
    """Collates ``batch`` (a non-empty list of samples) by the type of its first element.

    ``collate_fn_map`` maps element types to functions ``fn(batch, *, collate_fn_map)``; an exact
    type match wins, then the first ``isinstance`` match. Containers are handled here.
    """
    elem = batch[0]
    elem_type = type(elem)
    if collate_fn_map is not None:
        if elem_type in collate_fn_map:
            return collate_fn_map[elem_type](batch, collate_fn_map=collate_fn_map)
        for collate_type in collate_fn_map:
            if isinstance(elem, collate_type):
                return collate_fn_map[collate_type](batch, collate_fn_map=collate_fn_map)

    if isinstance(elem, collections.abc.Mapping):
        return _rebuild_mapping(elem, {key: collate([d[key] for d in batch], collate_fn_map=collate_fn_map)
                                       for key in elem})
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # namedtuple
        return elem_type(*(collate(samples, collate_fn_map=collate_fn_map) for samples in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        it = iter(batch)
        elem_size = len(next(it))
        if not all(len(e) == elem_size for e in it):
            sizes = [len(e) for e in batch]
            raise RuntimeError(f"each element in list of batch should be of equal size (got sizes {sizes})")
        transposed = list(zip(*batch))
        items = [collate(samples, collate_fn_map=collate_fn_map) for samples in transposed]
        return items if isinstance(elem, tuple) else _rebuild_sequence(elem, items)
    raise TypeError(default_collate_err_msg_format.format(elem_type))


default_collate_fn_map: dict = {
    disttorch.Tensor: collate_tensor_fn,
    np.ndarray: collate_numpy_array_fn,
    (np.bool_, np.number, np.object_): collate_numpy_scalar_fn,
    float: collate_float_fn,
    int: collate_int_fn,
    str: collate_str_fn,
    bytes: collate_str_fn,
}


def default_collate(batch):
    """Merges a list of samples into a batch (the DataLoader's default ``collate_fn``).

    >>> default_collate([(np.zeros(2), 0), (np.ones(2), 1)])   # -> [tensor 2x2 float64, tensor([0, 1])]
    """
    return collate(batch, collate_fn_map=default_collate_fn_map)


def default_convert(data):
    """Turns NumPy arrays and scalars into tensors, recursing into containers; leaves the rest.

    It is the ``collate_fn`` when automatic batching is off (``batch_size=None``).
    """
    elem_type = type(data)
    if _arrays.is_tensor(data):
        return data
    if isinstance(data, np.ndarray):
        if _np_str_obj_array_pattern.search(data.dtype.str) is not None:
            return data
        return _arrays.wrap(data)
    if isinstance(data, (np.bool_, np.number)):
        return _arrays.wrap(np.asarray(data))
    if isinstance(data, collections.abc.Mapping):
        return _rebuild_mapping(data, {key: default_convert(data[key]) for key in data})
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return elem_type(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, collections.abc.Sequence) and not isinstance(data, (str, bytes)):
        return _rebuild_sequence(data, [default_convert(d) for d in data])
    return data
