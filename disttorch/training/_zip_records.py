"""Which tensor of a checkpoint a damaged zip record holds.

PyTorch's zip format (what ``disttorch.save`` writes) keeps each storage in a record
``<archive>/data/<key>`` with the zip's own CRC-32, so a flipped byte is caught by the reader
before the checkpoint layer sees any tensor -- and the reader can only name the record. This
module reads the object tree (``data.pkl``) with stand-ins for every class, never running code
from the file, and maps the record's key back to the tensor's key path (``model.fc1.weight``).
"""
from __future__ import annotations

import pickle
import re
import zipfile

_RECORD = re.compile(r"Bad CRC-32 for file '([^']*/data/([^'/]+))'")


class _Storage:
    """What a persistent id ('storage', type, key, location, numel) stands for here."""

    def __init__(self, key):
        self.key = str(key)


class _Anything:
    """Any class the tree names: keeps what it was built from, does nothing."""

    def __init__(self, *args, **kwargs):
        self.parts = [list(args), kwargs]

    def __setstate__(self, state):
        self.parts.append(state)

    def __setitem__(self, key, value):
        self.parts.append({key: value})

    def append(self, value):
        self.parts.append(value)

    def extend(self, values):
        self.parts.extend(values)


class _Dict(dict):
    """A dict that also takes attributes (a state_dict's OrderedDict carries ``_metadata``)."""


def _rebuild(storage, *args, **kwargs):
    return storage  # a tensor is its storage, for finding which one a record holds


class _TreeReader(pickle.Unpickler):
    def find_class(self, module, name):
        if name.startswith("_rebuild_tensor") or name == "_rebuild_parameter":
            return _rebuild
        if (module, name) in (("collections", "OrderedDict"), ("builtins", "dict"), ("builtins", "list"),
                              ("builtins", "tuple"), ("builtins", "set")):
            return {"OrderedDict": _Dict, "dict": _Dict, "list": list, "tuple": tuple, "set": list}[name]
        return _Anything

    def persistent_load(self, pid):
        return _Storage(pid[2] if isinstance(pid, tuple) and len(pid) > 2 else pid)


def _paths(value, path):
    if isinstance(value, _Storage):
        yield path, value.key
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _paths(item, f"{path}.{i}" if path else str(i))
    elif isinstance(value, _Anything):
        yield from _paths(value.parts, path)


def damaged_tensor(path: str, message: str) -> str | None:
    """The key path of the tensor whose zip record ``message`` (the reader's CRC error) names,
    or None when the message names no data record or the tree cannot be read."""
    match = _RECORD.search(message)
    if match is None:
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            tree_name = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
            with archive.open(tree_name) as fh:
                tree = _TreeReader(fh).load()
    except Exception:  # noqa: BLE001 - a tree we cannot read names nothing; the caller says so
        return None
    for key_path, key in _paths(tree, ""):
        if key == match.group(2):
            return key_path
    return None
