"""PyTorch's legacy checkpoint format (``torch.save(..., _use_new_zipfile_serialization=False)``, and
every file before PyTorch 1.6), read only.

The file is a run of pickles and raw data::

    pickle  the magic number 0x1950a86a20f9469cfc6c
    pickle  the protocol version (1001)
    pickle  sys_info: {"protocol_version", "little_endian", "type_sizes"}
    pickle  the object; storages as persistent ids ('storage', torch.FloatStorage, key, location,
            numel, view_metadata)
    pickle  the storage keys, in the order their data follows
    per key an int64 element count, then the storage's raw bytes

The data comes after the object, so storages are allocated when the object names them and filled
once the object is read; the tensors built over them see the data then.
"""
from __future__ import annotations

import io
import pickle
import struct

import numpy as np

from ._common import CheckpointError
from ._torch_names import LoadedStorage, Rebuilder, StorageType, read_storage_array
from ._unpickler import FullUnpickler, RestrictedUnpickler

MAGIC_NUMBER = 0x1950a86a20f9469cfc6c
PROTOCOL_VERSION = 1001


def is_legacy(head: bytes) -> bool:
    """Whether a file starting with ``head`` is a legacy PyTorch checkpoint (its first pickle is the magic)."""
    if head[:1] != b"\x80":
        return False
    try:  # through the restricted unpickler: these are bytes from an unknown file
        return RestrictedUnpickler(io.BytesIO(head), None, "").load() == MAGIC_NUMBER
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, struct.error):
        return False


def _next_plain_pickle(fh, name, what):
    """The next small pickle in the file (numbers, dicts, lists), through the restricted unpickler."""
    try:
        return RestrictedUnpickler(fh, None, name).load()
    except EOFError:
        raise CheckpointError(f"{name}: truncated checkpoint: the file ended inside the {what}") from None


def load_legacy_checkpoint(fh, name, map_location, weights_only, pickle_load_args):
    if _next_plain_pickle(fh, name, "magic number") != MAGIC_NUMBER:
        raise CheckpointError(f"{name}: not a PyTorch legacy checkpoint (wrong magic number)")
    version = _next_plain_pickle(fh, name, "protocol version")
    if version != PROTOCOL_VERSION:
        raise CheckpointError(f"{name}: legacy checkpoint protocol version {version!r} is not supported")
    sys_info = _next_plain_pickle(fh, name, "system information")
    little = bool(sys_info.get("little_endian", True)) if isinstance(sys_info, dict) else True

    storages = {}   # key -> (LoadedStorage, element dtype, numel)
    views = {}      # (key, offset, numel) -> LoadedStorage over a slice of the root storage

    def persistent_load(pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
                and isinstance(pid[1], StorageType) and isinstance(pid[2], str)):
            raise pickle.UnpicklingError(f"{name}: unsupported persistent id {str(pid)[:100]}")
        _, storage_type, key, location, numel = pid[:5]
        view_metadata = pid[5] if len(pid) > 5 else None
        numel = int(numel)
        if numel < 0:
            raise pickle.UnpicklingError(f"{name}: negative storage size {numel}")
        if key not in storages:
            dtype = storage_type.dtype
            dt = np.float32 if dtype == "bfloat16" else (dtype or np.uint8)
            storages[key] = (LoadedStorage(np.empty(numel, dtype=dt), str(location)), dtype, numel)
        root = storages[key][0]
        if view_metadata is None:
            return root
        view_key, offset, size = view_metadata
        offset, size = int(offset), int(size)
        if offset < 0 or size < 0 or offset + size > root.array.size:
            raise pickle.UnpicklingError(f"{name}: storage view {view_key!r} lies outside storage {key!r}")
        return views.setdefault((key, offset, size), LoadedStorage(root.array[offset:offset + size], root.location))

    def read_object(rebuilder):
        try:
            if weights_only:
                return RestrictedUnpickler(fh, rebuilder.table(), name, persistent_load).load()
            return FullUnpickler(fh, rebuilder.table(), persistent_load, **{"encoding": "utf-8", **pickle_load_args}).load()
        except EOFError:
            raise CheckpointError(f"{name}: truncated checkpoint: the file ended inside the saved object") from None

    # The data follows the object, so the object is read once to learn its storages (placed nowhere);
    # with a map_location it is read again once the data is in, so placement sees real values.
    object_start = fh.tell()
    obj = read_object(Rebuilder(None if map_location is None else "cpu"))
    keys = _next_plain_pickle(fh, name, "storage key list")
    if not isinstance(keys, list):
        raise CheckpointError(f"{name}: corrupt checkpoint: the storage key list is a {type(keys).__name__}")
    for key in keys:
        if key not in storages:
            raise CheckpointError(f"{name}: corrupt checkpoint: data for storage {key!r} that nothing uses")
        storage, dtype, numel = storages[key]
        head = fh.read(8)
        if len(head) != 8:
            raise CheckpointError(f"{name}: truncated checkpoint: the file ended before storage {key!r}")
        (count,) = struct.unpack("<q" if little else ">q", head)
        if count != numel:
            raise CheckpointError(f"{name}: corrupt checkpoint: storage {key!r} holds {count} elements, "
                                  f"its tensors expect {numel}")
        itemsize = 2 if dtype == "bfloat16" else np.dtype(dtype or np.uint8).itemsize
        raw = np.empty(count * itemsize, dtype=np.uint8)
        if fh.readinto(memoryview(raw)) != raw.nbytes:
            raise CheckpointError(f"{name}: truncated checkpoint: the file ended inside storage {key!r}")
        storage.array[...] = read_storage_array(raw, dtype, numel, little)
    if map_location is None:
        return obj
    fh.seek(object_start)
    return read_object(Rebuilder(map_location))

