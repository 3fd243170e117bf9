"""disttorch's own checkpoint format (the default of earlier versions): still read by ``load``;
written only on request (``save_native``), since ``save`` now writes PyTorch's zip format.

File layout (little-endian)::

    8 bytes   magic  b"\\x89DTCKPT\\n"
    8 bytes   u64    length of the JSON header
    H bytes   JSON   header: format version, the object tree, tensor and storage tables
    padding   to a 64-byte boundary (the data section's start)
    storages  raw array bytes, each at a 64-byte aligned offset into the data section
    8 bytes   end marker b"DTCKEND\\n" (truncation check for streams)

The object tree is JSON with single-key tagged objects for what JSON lacks: ``{"$dict":
[[key, value], ...]}`` (any key type), ``{"$tuple": [...]}``, ``{"$tensor": index}``,
``{"$pickle": index}`` and so on; lists, strings, numbers, booleans and null are themselves.
Loading a file therefore never runs code from it: only objects nothing else can express are
pickled, and those load only with ``weights_only=False``.

Tensors that share memory in the saved object (a tensor and its views, or two tensors over one
array) share one storage and share memory again after loading; a tensor that shares with
nothing is stored compactly (a small view of a large array writes only its own elements).
Writes to a path are atomic: a temporary file in the same directory, fsync, ``os.replace``.
"""
from __future__ import annotations

import base64
import io
import json
import os
import pickle
import struct
from collections import Counter, OrderedDict

import numpy as np

from .. import _backend
from .._device import device as _device
from .._dtype import _NAMES as _DTYPE_NAMES
from .._dtype import dtype as _dtype
from .._size import Size
from ..tensor import Tensor
from ._common import CheckpointError, atomic_write, place_tensor
from ._unpickler import restricted_loads

MAGIC = b"\x89DTCKPT\n"
END_MARKER = b"DTCKEND\n"
FORMAT_VERSION = 1
ALIGN = 64
_MAX_HEADER = 1 << 32  # a header this large means a damaged length field, not a real checkpoint
_ALLOWED_KINDS = "biufc"  # bool, signed, unsigned, float, complex: never object or structured dtypes


def _align(n):
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _typename(obj):
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


# ==== encoding: object -> JSON tree + storages ========================================================
class _Encoder:
    """Turns an object into a JSON-able tree plus the arrays and pickles the tree refers to."""

    def __init__(self, pickle_module, pickle_protocol):
        self.pickle_module = pickle_module
        self.pickle_protocol = pickle_protocol
        self.arrays = []        # (kind, host ndarray, requires_grad, device str) per tensor/ndarray entry
        self.array_index = {}   # id(Tensor or ndarray) -> entry index: the same object saves once
        self.keep_alive = []    # objects whose id() is in array_index
        self.pickles = []       # (bytes, type name)

    def encode(self, obj):
        if obj is None or type(obj) in (bool, int, str):
            return obj
        if type(obj) is float:
            return obj
        if isinstance(obj, Tensor):
            return {"$tensor": self._array_entry(obj, "tensor")}
        if type(obj) is np.ndarray and obj.dtype.kind in _ALLOWED_KINDS and obj.dtype.fields is None:
            return {"$ndarray": self._array_entry(obj, "ndarray")}
        if isinstance(obj, np.generic) and obj.dtype.kind in _ALLOWED_KINDS:
            return {"$npscalar": self._array_entry(np.asarray(obj), "ndarray")}
        t = type(obj)
        if t is list:
            return [self.encode(v) for v in obj]
        if t is Size:
            return {"$size": [int(v) for v in obj]}
        if t is tuple:
            return {"$tuple": [self.encode(v) for v in obj]}
        if t is dict:
            return {"$dict": [[self.encode(k), self.encode(v)] for k, v in obj.items()]}
        if t is OrderedDict:
            return {"$odict": [[self.encode(k), self.encode(v)] for k, v in obj.items()]}
        if t is Counter:
            return {"$counter": [[self.encode(k), self.encode(v)] for k, v in obj.items()]}
        if t in (set, frozenset):
            return {"$set" if t is set else "$frozenset": [self.encode(v) for v in obj]}
        if t is complex:
            return {"$complex": [obj.real, obj.imag]}
        if t is bytes:
            return {"$bytes": base64.b64encode(obj).decode("ascii")}
        if t is _dtype:
            return {"$dtype": obj.name}
        if t is _device:
            return {"$device": str(obj)}
        return self._pickle(obj)

    def _array_entry(self, obj, kind):
        key = id(obj)
        if key in self.array_index:
            return self.array_index[key]
        if kind == "tensor":
            arr = _backend.to_host(obj._data)
            entry = (kind, arr, bool(obj.requires_grad), str(obj.device))
        else:
            entry = (kind, obj, False, "cpu")
        self.array_index[key] = len(self.arrays)
        self.keep_alive.append(obj)
        self.arrays.append(entry)
        return self.array_index[key]

    def _pickle(self, obj):
        try:
            blob = self.pickle_module.dumps(obj, protocol=self.pickle_protocol)
        except Exception as e:
            raise TypeError(f"disttorch.save cannot store an object of type {_typename(obj)}: it is not a tensor, "
                            f"array, number, string or container, and pickling it failed ({e})") from e
        self.pickles.append((blob, _typename(obj)))
        return {"$pickle": len(self.pickles) - 1}


def _root_array(arr):
    """The array owning ``arr``'s memory, when that memory is one contiguous block; else None."""
    root = arr
    while isinstance(root.base, np.ndarray):
        root = root.base
    if root.flags.c_contiguous or root.flags.f_contiguous:
        return root
    return None


def _as_bytes(arr):
    """A contiguous array's memory as a 1-D uint8 view (no copy)."""
    block = arr if arr.flags.c_contiguous else arr.T
    return block.reshape(-1).view(np.uint8)


def _plan_storages(arrays):
    """Groups array entries by shared memory; returns (storage blocks, per-entry layout records)."""
    roots = {}
    for i, (_, arr, _, _) in enumerate(arrays):
        root = _root_array(arr)
        if root is not None:
            roots.setdefault(id(root), (root, []))[1].append(i)
    storages, records = [], [None] * len(arrays)
    shared = {}
    for root, members in roots.values():
        if len(members) > 1:  # several saved arrays over one block: keep the block, restore views into it
            shared[id(root)] = len(storages)
            storages.append(_as_bytes(root))
    for i, (kind, arr, requires_grad, dev) in enumerate(arrays):
        root = _root_array(arr)
        rec = {"kind": kind, "dtype": arr.dtype.str, "shape": list(arr.shape), "requires_grad": requires_grad,
               "device": dev}
        if root is not None and id(root) in shared:
            rec["storage"] = shared[id(root)]
            rec["offset"] = int(arr.__array_interface__["data"][0] - root.__array_interface__["data"][0])
            rec["strides"] = list(arr.strides)
        else:
            rec["storage"] = len(storages)
            rec["offset"] = 0
            storages.append(_as_bytes(np.ascontiguousarray(arr)))
        records[i] = rec
    return storages, records


def _write_checkpoint(fh, obj, pickle_module, pickle_protocol):
    enc = _Encoder(pickle_module, pickle_protocol)
    tree = enc.encode(obj)
    storages, records = _plan_storages(enc.arrays)
    offset = 0
    storage_table = []
    for block in storages:
        storage_table.append({"offset": offset, "nbytes": int(block.nbytes)})
        offset = _align(offset + block.nbytes)
    pickle_table = []
    for blob, tname in enc.pickles:
        pickle_table.append({"offset": offset, "nbytes": len(blob), "type": tname})
        offset = _align(offset + len(blob))
    header = {"format": "disttorch.checkpoint", "version": FORMAT_VERSION, "root": tree, "arrays": records,
              "storages": storage_table, "pickles": pickle_table,
              "data_size": offset}
    hbytes = json.dumps(header, separators=(",", ":"), allow_nan=True).encode("utf-8")
    prefix = MAGIC + struct.pack("<Q", len(hbytes)) + hbytes
    fh.write(prefix + b"\0" * (_align(len(prefix)) - len(prefix)))
    _write_payload(fh, storages, [blob for blob, _ in enc.pickles], storage_table + pickle_table)
    fh.write(END_MARKER)


def _write_payload(fh, storages, blobs, table):
    """Writes the data section: every storage and pickle at its aligned offset."""
    pos = 0
    for chunk, entry in zip(list(storages) + list(blobs), table):
        if entry["offset"] > pos:
            fh.write(b"\0" * (entry["offset"] - pos))
        fh.write(memoryview(chunk) if isinstance(chunk, np.ndarray) else chunk)
        pos = entry["offset"] + entry["nbytes"]
    end = _align(pos) if table else 0
    if end > pos:
        fh.write(b"\0" * (end - pos))


def save_native(obj, f, pickle_module=pickle, pickle_protocol=pickle.HIGHEST_PROTOCOL):
    """Saves ``obj`` in disttorch's own format to ``f`` (a path, written atomically, or a binary file
    object). Objects that are none of the supported types are pickled inside."""
    if isinstance(f, (str, os.PathLike)):
        atomic_write(f, lambda fh, tmp: _write_checkpoint(fh, obj, pickle_module, pickle_protocol))
    else:
        _write_checkpoint(f, obj, pickle_module, pickle_protocol)


# ==== decoding ==========================================================================================
class _Reader:
    """Reads and validates one checkpoint, naming the file in every error."""

    def __init__(self, fh, name, size, path=None):
        self.fh, self.name, self.size, self.path = fh, name, size, path

    def fail(self, why):
        return CheckpointError(f"{self.name}: {why}")

    def read_exact(self, n, what):
        data = self.fh.read(n)
        if len(data) != n:
            raise self.fail(f"truncated checkpoint: file ended inside the {what} "
                            f"(expected {n} bytes, got {len(data)})")
        return data

    def read_header(self):
        magic = self.fh.read(len(MAGIC))
        if magic != MAGIC:
            raise self.fail(_describe_foreign(magic))
        (hlen,) = struct.unpack("<Q", self.read_exact(8, "header length"))
        if self.size is not None and 16 + hlen > self.size:
            raise self.fail(f"truncated checkpoint: the header claims {hlen} bytes but the file has {self.size}")
        if hlen > _MAX_HEADER:
            raise self.fail(f"corrupt checkpoint: implausible header length {hlen}")
        try:
            header = json.loads(self.read_exact(hlen, "header").decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise self.fail(f"corrupt checkpoint header ({e})") from None
        if not isinstance(header, dict) or header.get("format") != "disttorch.checkpoint":
            raise self.fail("corrupt checkpoint header (no 'format': 'disttorch.checkpoint')")
        if header.get("version") != FORMAT_VERSION:
            raise self.fail(f"checkpoint format version {header.get('version')!r} is not supported "
                            f"(this disttorch reads version {FORMAT_VERSION})")
        self.data_start = _align(16 + hlen)
        data_size = header.get("data_size")
        if not isinstance(data_size, int) or data_size < 0:
            raise self.fail("corrupt checkpoint header (bad data_size)")
        expected = self.data_start + data_size + len(END_MARKER)
        if self.size is not None and self.size < expected:
            raise self.fail(f"truncated checkpoint: {self.size} bytes, expected {expected}")
        self.read_exact(self.data_start - 16 - hlen, "header padding")
        return header

    def read_blocks(self, table, mmap):
        """Reads each table entry's bytes (in file order) into a fresh uint8 array, or maps it."""
        out = [None] * len(table)
        pos = 0
        for i in sorted(range(len(table)), key=lambda j: table[j]["offset"]):
            off, n = table[i]["offset"], table[i]["nbytes"]
            if mmap and self.path is not None and n:
                out[i] = np.memmap(self.path, dtype=np.uint8, mode="c", offset=self.data_start + off, shape=(n,))
                continue
            if off > pos:
                self.skip(off - pos)
            buf = np.empty(n, dtype=np.uint8)
            got = self.fh.readinto(memoryview(buf)) if n else 0
            if got != n:
                raise self.fail(f"truncated checkpoint: file ended inside a tensor's data ({got} of {n} bytes)")
            out[i] = buf
            pos = off + n
        return out, pos

    def skip(self, n):
        if self.fh.seekable():
            self.fh.seek(n, io.SEEK_CUR)
        else:
            self.read_exact(n, "data section")

    def check_end(self, pos, data_size, mmap):
        if mmap and self.path is not None:
            self.fh.seek(self.data_start + data_size)
        elif data_size > pos:
            self.skip(data_size - pos)
        if self.fh.read(len(END_MARKER)) != END_MARKER:
            raise self.fail("truncated or corrupt checkpoint: the end marker is missing")


def _describe_foreign(magic):
    """Why a file whose first bytes are ``magic`` is none of the formats ``load`` reads."""
    if not magic:
        return "empty file, not a disttorch checkpoint"
    if MAGIC.startswith(magic):
        return f"truncated checkpoint: the file ends after {len(magic)} bytes"
    if magic[:1] == b"\x80":
        return "not a disttorch checkpoint: it is a pickle, but not a PyTorch legacy checkpoint (no magic number)"
    if len(magic) == 8 and magic.endswith(b"\0\0") and magic[:2] != b"\0\0":
        return "not a disttorch checkpoint: it looks like a safetensors file; use disttorch.load_safetensors"
    return f"not a disttorch checkpoint (unexpected leading bytes {magic[:8]!r})"


def _build_arrays(reader, records, blocks):
    """ndarrays for each saved tensor/ndarray record, viewing the storage blocks."""
    arrays = []
    for i, rec in enumerate(records):
        try:
            dt = np.dtype(rec["dtype"])
            if dt.kind not in _ALLOWED_KINDS or dt.fields is not None:
                raise ValueError(f"dtype {rec['dtype']!r} is not allowed")
            shape = tuple(int(s) for s in rec["shape"])
            block = blocks[rec["storage"]]
            offset = int(rec["offset"])
            if any(s < 0 for s in shape) or offset < 0:
                raise ValueError("negative shape or offset")
            if "strides" in rec:
                strides = tuple(int(s) for s in rec["strides"])
                lo = offset + sum(st * (n - 1) for st, n in zip(strides, shape) if st < 0 and n)
                hi = offset + sum(st * (n - 1) for st, n in zip(strides, shape) if st > 0 and n) + dt.itemsize
                if 0 in shape:
                    lo, hi = offset, offset
                if lo < 0 or hi > block.nbytes:
                    raise ValueError("view outside its storage")
                arr = np.ndarray(shape, dtype=dt, buffer=block, offset=offset, strides=strides)
            else:
                n = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
                if offset + n > block.nbytes:
                    raise ValueError("tensor larger than its storage")
                arr = block[offset:offset + n].view(dt).reshape(shape)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise reader.fail(f"corrupt checkpoint: array record {i} is invalid ({e})") from None
        arrays.append(arr)
    return arrays


_MAPPINGS = {"$dict": dict, "$odict": OrderedDict, "$counter": lambda pairs: Counter(dict(pairs))}
_COLLECTIONS = {"$tuple": tuple, "$set": set, "$frozenset": frozenset,
                "$size": lambda values: Size(int(v) for v in values)}


class _Decoder:
    def __init__(self, reader, header, arrays, blobs, weights_only, pickle_module, map_location):
        self.reader, self.header, self.arrays, self.blobs = reader, header, arrays, blobs
        self.weights_only, self.pickle_module, self.map_location = weights_only, pickle_module, map_location
        self.records = header["arrays"]
        self.objects = {}  # entry index -> decoded Tensor: one saved tensor loads as one object
        self.path = []

    def decode(self, node):
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            return [self.decode(v) for v in node]
        if not isinstance(node, dict) or len(node) != 1:
            raise self.reader.fail(f"corrupt checkpoint: unexpected node {str(node)[:80]}")
        (tag, value), = node.items()
        mapping = _MAPPINGS.get(tag)
        if mapping is not None:
            return self.build(mapping, self.pairs(value), tag)
        collection = _COLLECTIONS.get(tag)
        if collection is not None:
            if not isinstance(value, list):
                raise self.reader.fail(f"corrupt checkpoint: {tag} holds {type(value).__name__}, not a list")
            return self.build(collection, [self.decode(v) for v in value], tag)
        if tag == "$complex":
            return self.build(lambda v: complex(v[0], v[1]), value, tag)
        if tag == "$bytes":
            return self.build(base64.b64decode, value, tag)
        if tag == "$dtype":
            if value not in _DTYPE_NAMES:
                raise self.reader.fail(f"corrupt checkpoint: unknown dtype {value!r}")
            return _DTYPE_NAMES[value]
        if tag == "$device":
            return _device(value)
        if tag in ("$tensor", "$ndarray", "$npscalar"):
            return self.array(tag, value)
        if tag == "$pickle":
            return self.unpickle(value)
        raise self.reader.fail(f"corrupt checkpoint: unknown tag {tag!r}")

    def pairs(self, value):
        if not isinstance(value, list) or not all(isinstance(p, list) and len(p) == 2 for p in value):
            raise self.reader.fail("corrupt checkpoint: a mapping is not a list of [key, value] pairs")
        return [(self.decode(k), self.decode(v)) for k, v in value]

    def build(self, factory, value, tag):
        try:
            return factory(value)
        except (TypeError, ValueError, IndexError) as e:  # e.g. an unhashable key or a non-integer size
            raise self.reader.fail(f"corrupt checkpoint: bad {tag} value ({e})") from None

    def array(self, tag, index):
        if not isinstance(index, int) or not 0 <= index < len(self.arrays):
            raise self.reader.fail(f"corrupt checkpoint: array index {index!r} out of range")
        if tag == "$ndarray":
            return self.arrays[index]
        if tag == "$npscalar":
            return self.arrays[index][()]
        if index in self.objects:
            return self.objects[index]
        rec = self.records[index]
        arr = self.arrays[index]
        if not arr.dtype.isnative:  # saved on a machine of the other byte order
            arr = arr.astype(arr.dtype.newbyteorder("="))
        t = Tensor._wrap(arr)
        if rec.get("requires_grad") and t._data.dtype.kind in "fc":
            t._requires_grad = True
        t = self.place(t, rec.get("device", "cpu"))
        self.objects[index] = t
        return t

    def place(self, t, location):
        return place_tensor(t, location, self.map_location)

    def unpickle(self, index):
        if not isinstance(index, int) or not 0 <= index < len(self.blobs):
            raise self.reader.fail(f"corrupt checkpoint: pickle index {index!r} out of range")
        if self.weights_only:  # only allow-listed globals: nothing else is imported or called
            return restricted_loads(bytes(self.blobs[index]), self.reader.name)
        return self.pickle_module.loads(bytes(self.blobs[index]))


def load_native(fh, name, size, path, map_location, pickle_module, weights_only, mmap):
    """Reads a disttorch-format checkpoint from ``fh`` (positioned at its start); ``name`` names it in errors."""
    reader = _Reader(fh, name, size, path)
    header = reader.read_header()
    try:
        records, storages, pickles = header["arrays"], header["storages"], header["pickles"]
        table = [{"offset": int(e["offset"]), "nbytes": int(e["nbytes"])} for e in storages + pickles]
    except (KeyError, TypeError, ValueError) as e:
        raise reader.fail(f"corrupt checkpoint header ({e!r})") from None
    for e in table:
        if e["offset"] < 0 or e["nbytes"] < 0 or e["offset"] + e["nbytes"] > header["data_size"]:
            raise reader.fail("corrupt checkpoint: a storage lies outside the data section")
    blocks, pos = reader.read_blocks(table, mmap)
    reader.check_end(pos, header["data_size"], mmap)
    arrays = _build_arrays(reader, records, blocks[:len(storages)])
    decoder = _Decoder(reader, header, arrays, blocks[len(storages):], weights_only, pickle_module, map_location)
    return decoder.decode(header["root"])


