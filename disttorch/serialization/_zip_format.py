"""PyTorch's zip checkpoint format (``torch.save`` since 1.6), written and read.

An uncompressed zip whose entries sit under one folder (``archive/``)::

    archive/data.pkl                 the object, pickle protocol 2; tensors as
                                     torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
                                     requires_grad, OrderedDict()) with storage a persistent id
                                     ('storage', torch.FloatStorage, key, location, numel)
    archive/.format_version          "1"
    archive/.storage_alignment       "64": each data record starts at a multiple of 64 in the file
    archive/byteorder                "little"
    archive/data/<key>               one storage's raw bytes
    archive/version                  "3"
    archive/.data/serialization_id   an id unique to this save

Files written here load with PyTorch's ``torch.load(weights_only=True)``; the reader takes files
from PyTorch's ``torch.save`` (any folder name, either byte order).
"""
from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from typing import ClassVar

import numpy as np

from .. import _backend
from .._device import device as _device
from .._dtype import dtype as _dtype
from .._size import Size
from ..tensor import Tensor
from ._common import CheckpointError
from ._torch_names import (
    STORAGE_NAMES,
    LoadedStorage,
    Rebuilder,
    StorageType,
    read_storage_array,
)
from ._unpickler import FullUnpickler, RestrictedUnpickler

ALIGNMENT = 64
_LOCAL_HEADER = 30      # fixed part of a zip local file header
_PAD_FIELD = b"FB"      # the extra-field id PyTorch pads records with (readers skip unknown ids)


# ==== writing ============================================================================================
class _Global:
    """A global to pickle by name (``torch._utils._rebuild_tensor_v2``) without importing its module."""

    _cache: ClassVar[dict] = {}

    def __new__(cls, module, name):
        key = (module, name)
        if key not in cls._cache:  # one object per name, so the pickle memo writes each name once
            obj = super().__new__(cls)
            obj.module, obj.name = module, name
            cls._cache[key] = obj
        return cls._cache[key]

    def __call__(self, *args):  # the pickler requires a reduce function to be callable; it is never called
        raise TypeError(f"{self.module}.{self.name} is a name to pickle, not a function")


class _StorageRef:
    """One storage of the file: the bytes it will hold and its persistent id's fields."""

    def __init__(self, key, array, location):
        self.key, self.array, self.location = key, array, location


def _root(arr):
    """The array that owns ``arr``'s memory when that is one contiguous block; else None."""
    root = arr
    while isinstance(root.base, np.ndarray):
        root = root.base
    return root if root.flags.c_contiguous else None


class _Storages:
    """Assigns tensors to storages: tensors over one array share a storage (and memory after loading);
    a tensor covering under half of its array is stored compactly on its own."""

    def __init__(self):
        self.refs = []
        self.by_root = {}   # id(root array) -> (_StorageRef, root)
        self.keep = []

    def place(self, arr, location):
        """(storage ref, element offset, element strides) for host array ``arr``."""
        root = _root(arr)
        itemsize = arr.dtype.itemsize
        if root is not None and root.dtype == arr.dtype and arr.size:
            offset_bytes = arr.__array_interface__["data"][0] - root.__array_interface__["data"][0]
            strides_ok = all(st >= 0 and st % itemsize == 0 for st in arr.strides) and offset_bytes % itemsize == 0
            hit = self.by_root.get(id(root))
            if strides_ok and (hit is not None or 2 * arr.size >= root.size):
                if hit is None:
                    hit = (self._new(root.reshape(-1), location), root)
                    self.by_root[id(root)] = hit
                return hit[0], offset_bytes // itemsize, tuple(st // itemsize for st in arr.strides)
        compact = np.ascontiguousarray(arr)
        strides = tuple(st // itemsize for st in compact.strides) if compact.size else _contiguous_strides(arr.shape)
        return self._new(compact.reshape(-1), location), 0, strides

    def _new(self, flat, location):
        if flat.dtype.byteorder == ">":
            flat = flat.astype(flat.dtype.newbyteorder("<"))
        ref = _StorageRef(str(len(self.refs)), flat, location)
        self.refs.append(ref)
        return ref


def _contiguous_strides(shape):
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= max(n, 1)
    return tuple(reversed(strides))


class UnsaveableObjectError(TypeError):
    """An object in what ``save`` was given cannot be pickled (a lambda, an open file...)."""


class _TorchPickler(pickle._Pickler):
    """Pickles disttorch objects under PyTorch's names, with tensors' data as storage records."""

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)

    def __init__(self, file, storages, protocol=2):
        super().__init__(file, protocol=protocol)
        self.storages = storages

    def save(self, obj, save_persistent_id=True):
        try:
            super().save(obj, save_persistent_id)
        except UnsaveableObjectError:
            raise
        except (pickle.PicklingError, TypeError, AttributeError) as e:  # named at the innermost object
            cls = type(obj)
            raise UnsaveableObjectError(f"disttorch.save cannot store an object of type {cls.__module__}."
                                        f"{cls.__qualname__} ({e})") from e

    def persistent_id(self, obj):
        if isinstance(obj, _StorageRef):
            type_name = STORAGE_NAMES.get(obj.array.dtype.newbyteorder("="))
            if type_name is None:
                raise TypeError(f"torch.save cannot store a tensor of NumPy dtype {obj.array.dtype}")
            return ("storage", _Global("torch", type_name), obj.key, obj.location, int(obj.array.size))
        return None

    def reducer_override(self, obj):
        if isinstance(obj, Tensor):
            return self._reduce_tensor(obj)
        if type(obj) is Size:
            return _Global("torch", "Size"), (tuple(int(v) for v in obj),)
        if type(obj) is _device:
            args = (obj.type,) if obj.index is None else (obj.type, obj.index)
            return _Global("torch", "device"), args
        return NotImplemented

    def _reduce_tensor(self, t):
        from ..nn.parameter import Parameter
        if isinstance(t, Parameter):
            plain = Tensor._wrap(t._data)  # the data, as PyTorch saves a Parameter's .data
            return _Global("torch._utils", "_rebuild_parameter"), (plain, bool(t.requires_grad), OrderedDict())
        arr = _backend.to_host(t._data)
        ref, offset, strides = self.storages.place(arr, str(t.device))
        args = (ref, offset, tuple(int(n) for n in arr.shape), strides, bool(t.requires_grad), OrderedDict())
        return _Global("torch._utils", "_rebuild_tensor_v2"), args

    def _save_global_ref(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    def _save_dtype(self, obj):
        self.write(pickle.GLOBAL + f"torch\n{obj.name}\n".encode())
        self.memoize(obj)

    dispatch[_Global] = _save_global_ref
    dispatch[_dtype] = _save_dtype


def _record_info(zf, name, size):
    """A ZipInfo whose data will start at a multiple of ``ALIGNMENT`` in the file."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    info.file_size = size
    start = zf.fp.tell() + _LOCAL_HEADER + len(name.encode("utf-8"))
    if size * 1.05 > zipfile.ZIP64_LIMIT:
        start += 20  # zipfile adds a zip64 extra field for large records
    pad = (-(start + 4)) % ALIGNMENT
    info.extra = _PAD_FIELD + struct.pack("<H", pad) + b"Z" * pad
    return info


def _write_storage(zf, name, array):
    """Writes one storage record (the step a crash test interrupts)."""
    data = memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
    with zf.open(_record_info(zf, name, data.nbytes), "w", force_zip64=data.nbytes * 1.05 > zipfile.ZIP64_LIMIT) as w:
        w.write(data)


def write_zip_checkpoint(fh, obj, pickle_protocol=2, archive="archive"):
    """Writes ``obj`` to the binary file object ``fh`` in PyTorch's zip format."""
    storages = _Storages()
    buf = io.BytesIO()
    _TorchPickler(buf, storages, protocol=max(2, min(int(pickle_protocol), pickle.HIGHEST_PROTOCOL))).dump(obj)
    with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED) as zf:
        def small(name, data):
            zf.writestr(_record_info(zf, f"{archive}/{name}", len(data)), data)

        small("data.pkl", buf.getvalue())
        small(".format_version", b"1")
        small(".storage_alignment", str(ALIGNMENT).encode())
        small("byteorder", b"little")
        for ref in storages.refs:
            _write_storage(zf, f"{archive}/data/{ref.key}", ref.array)
        small("version", b"3\n")
        small(".data/serialization_id", str(int.from_bytes(os.urandom(16), "little")).zfill(40)[:40].encode())


# ==== reading ============================================================================================
def _readinto_exact(stream, buf, what, name):
    view = memoryview(buf)
    got = 0
    while got < len(view):
        n = stream.readinto(view[got:])
        if not n:
            raise CheckpointError(f"{name}: truncated checkpoint: the record {what} ended after {got} of "
                                  f"{len(view)} bytes")
        got += n


def load_zip_checkpoint(fh, name, path, map_location, weights_only, mmap, pickle_load_args):
    """Reads a PyTorch zip checkpoint from the seekable binary file ``fh``."""
    try:
        zf = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise CheckpointError(f"{name}: truncated or corrupt checkpoint: not a complete zip archive ({e})") from None
    try:
        with zf:
            return _load_from_zip(zf, name, path, map_location, weights_only, mmap, pickle_load_args)
    except (zipfile.BadZipFile, OSError, EOFError) as e:  # a damaged record: bad header, CRC mismatch, bad offset
        raise CheckpointError(f"{name}: truncated or corrupt checkpoint ({type(e).__name__}: {e})") from None


def _load_from_zip(zf, name, path, map_location, weights_only, mmap, pickle_load_args):
    pickles = [n for n in zf.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
    if len(pickles) != 1:
        what = "no data.pkl (a TorchScript archive or not a torch.save file?)" if not pickles else \
            f"{len(pickles)} data.pkl records"
        raise CheckpointError(f"{name}: a zip archive with {what}")
    prefix = pickles[0][:-len("data.pkl")]
    little = True
    if prefix + "byteorder" in zf.namelist():
        order = zf.read(prefix + "byteorder").decode("ascii", "replace").strip()
        if order not in ("little", "big"):
            raise CheckpointError(f"{name}: corrupt checkpoint: unknown byteorder {order!r}")
        little = order == "little"
    storages = {}

    def persistent_load(pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
                and isinstance(pid[1], StorageType) and isinstance(pid[2], str)):
            raise pickle.UnpicklingError(f"{name}: unsupported persistent id {str(pid)[:100]}")
        _, storage_type, key, location, numel = pid[:5]
        if key not in storages:
            storages[key] = LoadedStorage(_read_record(zf, f"{prefix}data/{key}", storage_type.dtype, int(numel),
                                                       little, name, path if mmap else None), str(location))
        return storages[key]

    rebuilder = Rebuilder(map_location)
    data = zf.open(pickles[0])
    try:
        if weights_only:
            unpickler = RestrictedUnpickler(data, rebuilder.table(), name, persistent_load)
        else:
            unpickler = FullUnpickler(data, rebuilder.table(), persistent_load,
                                      **{"encoding": "utf-8", **pickle_load_args})
        return unpickler.load()
    except CheckpointError:
        raise
    except (KeyError, zipfile.BadZipFile, EOFError) as e:
        raise CheckpointError(f"{name}: truncated or corrupt checkpoint ({type(e).__name__}: {e})") from None
    except (ValueError, TypeError) as e:
        if weights_only:
            raise pickle.UnpicklingError(f"Weights only load failed for {name}: {e}") from None
        raise


def _read_record(zf, record, dtype, numel, little, name, mmap_path):
    try:
        info = zf.getinfo(record)
    except KeyError:
        raise CheckpointError(f"{name}: corrupt checkpoint: the storage record {record!r} is missing") from None
    if info.compress_type != zipfile.ZIP_STORED:
        raw = np.frombuffer(bytearray(zf.read(info)), dtype=np.uint8)
    elif mmap_path is not None and info.file_size:
        raw = np.memmap(mmap_path, dtype=np.uint8, mode="c", offset=_data_offset(zf, info), shape=(info.file_size,))
    else:
        # Read straight from the file, as PyTorch's reader does: no CRC check on storage records (a damaged
        # tensor is for the per-tensor checksums of disttorch.training.checkpoint to name), and no copy.
        raw = np.empty(info.file_size, dtype=np.uint8)
        zf.fp.seek(_data_offset(zf, info))
        _readinto_exact(zf.fp, raw, repr(record), name)
    try:
        return read_storage_array(raw, dtype, numel, little)
    except ValueError as e:
        raise CheckpointError(f"{name}: corrupt checkpoint: record {record!r}: {e}") from None


def _data_offset(zf, info):
    """Where a stored record's bytes start in the file (after its local header)."""
    zf.fp.seek(info.header_offset)
    header = zf.fp.read(_LOCAL_HEADER)
    if len(header) != _LOCAL_HEADER or header[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"bad local file header for {info.filename!r}")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + _LOCAL_HEADER + name_len + extra_len
