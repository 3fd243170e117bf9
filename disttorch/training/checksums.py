"""A crc32 per tensor of a checkpoint, so a damaged file names the tensor it damaged.

The checkpoint layer adds ``{key path: crc32}`` for every tensor and array of the state before it
is saved, and checks them all after loading. A key path joins the keys and list positions from
the top of the state with dots: ``model.fc1.weight``, ``optimizer.state.0.exp_avg``,
``rng.1.numpy.1``. The file format does not matter: any byte that changes inside a tensor's data
changes that tensor's crc32.
"""
from __future__ import annotations

import zlib

import numpy as np

CHECKSUM_KEY = "checksums"


class ChecksumError(RuntimeError):
    """A tensor of a checkpoint whose bytes are not the bytes that were saved."""


def _as_array(value):
    """The NumPy array of a tensor / ndarray, or None for anything else."""
    if isinstance(value, np.ndarray):
        return value
    from ..tensor import Tensor
    if isinstance(value, Tensor):
        return value.detach().cpu().numpy()
    return None


def _walk(value, path):
    """(key path, array) for every tensor and array inside nested dicts, lists and tuples."""
    array = _as_array(value)
    if array is not None:
        yield path, array
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}.{i}" if path else str(i))


def crc32_of(array: np.ndarray) -> int:
    """crc32 of the array's elements in C order (a strided view is hashed as its values)."""
    return zlib.crc32(memoryview(np.ascontiguousarray(array)).cast("B"))


def tensor_checksums(state: dict) -> dict:
    """``{key path: crc32}`` for every tensor of ``state`` (its own checksum table left out)."""
    return {path: crc32_of(array) for path, array in _walk({k: v for k, v in state.items() if k != CHECKSUM_KEY}, "")}


def verify_checksums(state: dict, source: str) -> None:
    """Raises ChecksumError naming the first tensor of ``state`` that fails its stored crc32, or
    one that appeared or vanished; a state saved without checksums is accepted as it is."""
    stored = state.get(CHECKSUM_KEY)
    if stored is None:
        return
    actual = tensor_checksums(state)
    for path, crc in actual.items():
        if path not in stored:
            raise ChecksumError(f"checkpoint {source}: tensor {path!r} has no stored checksum; the file was altered")
        if int(stored[path]) != crc:
            raise ChecksumError(f"checkpoint {source}: tensor {path!r} fails its crc32 check (stored "
                                f"{int(stored[path]):#010x}, read {crc:#010x}); the file is damaged")
    missing = sorted(set(stored) - set(actual))
    if missing:
        raise ChecksumError(f"checkpoint {source}: tensor {missing[0]!r} is missing; the file was altered")
