"""``disttorch.save`` / ``disttorch.load``: checkpoints in PyTorch's own file formats.

``save`` writes PyTorch's zip format (what ``torch.save`` writes), atomically when given a path, so
``torch.load(path, weights_only=True)`` in PyTorch reads a disttorch state dict and the reverse.
``load`` reads that format, PyTorch's legacy (pre-1.6) format and disttorch's earlier format.

``weights_only=True`` (the default, as in PyTorch 2.6+) rebuilds only tensors, containers,
primitives, dtypes, devices, NumPy arrays and what ``add_safe_globals`` / ``safe_globals`` allow,
through an unpickler that never imports anything else; ``weights_only=False`` unpickles anything
(whole modules saved with ``save(model)``) and must only be used on trusted files.
"""
from __future__ import annotations

import io
import os
import pickle

from ._common import CheckpointError, atomic_write
from ._legacy_format import is_legacy, load_legacy_checkpoint
from ._native import MAGIC as _NATIVE_MAGIC
from ._native import _describe_foreign, load_native, save_native
from ._safetensors import load_safetensors, save_safetensors
from ._unpickler import (
    add_safe_globals,
    clear_safe_globals,
    get_safe_globals,
    safe_globals,
)
from ._zip_format import load_zip_checkpoint, write_zip_checkpoint

__all__ = [
    "DEFAULT_PROTOCOL",
    "CheckpointError",
    "add_safe_globals",
    "clear_safe_globals",
    "get_safe_globals",
    "load",
    "load_safetensors",
    "safe_globals",
    "save",
    "save_native",
    "save_safetensors",
]

DEFAULT_PROTOCOL = 2  # PyTorch's: the pickle protocol inside its files


def save(obj, f, pickle_module=pickle, pickle_protocol=DEFAULT_PROTOCOL, _use_new_zipfile_serialization=True,
         _disable_byteorder_record=False):
    """Saves ``obj`` (tensors, state dicts, containers, or any picklable object such as a whole
    module) to ``f`` in PyTorch's zip format.

    ``f`` is a path (written atomically: a temporary file beside it, fsync, rename) or a writable
    binary file object. ``pickle_module`` and ``_use_new_zipfile_serialization`` are accepted for
    PyTorch compatibility; the file is always the zip format, pickled with protocol
    ``pickle_protocol`` (2 by default, as PyTorch).
    """
    if isinstance(f, (str, os.PathLike)):
        atomic_write(f, lambda fh, tmp: write_zip_checkpoint(fh, obj, pickle_protocol))
    else:
        write_zip_checkpoint(f, obj, pickle_protocol)


def load(f, map_location=None, pickle_module=None, *, weights_only=True, mmap=None, **pickle_load_args):
    """Loads an object saved by ``disttorch.save`` or PyTorch's ``torch.save``.

    Args:
        f: a path or a readable binary file object.
        map_location: where tensors go: None (where they were saved), a device or string, a dict
            mapping saved locations to new ones, or ``fn(tensor, saved_location) -> tensor``.
        weights_only: True (default): only tensors, containers, primitives and allow-listed types
            are rebuilt, and a file naming anything else raises ``pickle.UnpicklingError`` naming
            it; nothing from the file is imported or run. False: full unpickling (trusted files only).
        mmap: map tensor data from the file (copy-on-write) instead of reading it.
    """
    if weights_only is None:
        weights_only = True
    if isinstance(f, (str, os.PathLike)):
        path = os.fspath(f)
        with open(path, "rb") as fh:
            return _load_from(fh, repr(path), path, map_location, pickle_module, weights_only, bool(mmap),
                              pickle_load_args, os.fstat(fh.fileno()).st_size)
    fh = f if _seekable(f) else io.BytesIO(f.read())
    name = repr(getattr(f, "name", "<file object>"))
    return _load_from(fh, name, None, map_location, pickle_module, weights_only, False, pickle_load_args, None)


def _seekable(f):
    try:
        return f.seekable()
    except (AttributeError, OSError):
        return False


def _load_from(fh, name, path, map_location, pickle_module, weights_only, mmap, pickle_load_args, size):
    start = fh.tell()
    head = fh.read(64)
    fh.seek(start)
    if head.startswith(b"PK\x03\x04"):
        return load_zip_checkpoint(fh, name, path, map_location, weights_only, mmap, pickle_load_args)
    if head.startswith(_NATIVE_MAGIC):
        return load_native(fh, name, size, path, map_location, pickle_module or pickle, weights_only, mmap)
    if is_legacy(head):
        return load_legacy_checkpoint(fh, name, map_location, weights_only, pickle_load_args)
    raise CheckpointError(f"{name}: {_describe_foreign(head[:len(_NATIVE_MAGIC)])}")
