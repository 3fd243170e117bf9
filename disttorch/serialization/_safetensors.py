"""safetensors files (flat ``{name: tensor}`` dicts), the format many model hubs use."""
from __future__ import annotations

import json
import os
import struct

import numpy as np

from .. import _backend
from ..tensor import Tensor
from ._common import CheckpointError, atomic_write


def _require_safetensors():
    try:
        import safetensors.numpy
        from safetensors import safe_open  # noqa: F401
    except ImportError:
        raise ImportError("safetensors support needs the optional 'safetensors' package: pip install safetensors") \
            from None
    return safetensors


def save_safetensors(state_dict, path, metadata=None):
    """Writes a flat ``{name: tensor}`` dict as a safetensors file (atomically) that
    ``safetensors.torch.load_file`` reads into PyTorch. ``metadata`` is a ``{str: str}`` dict."""
    st = _require_safetensors()
    arrays = {}
    for name, value in state_dict.items():
        if not isinstance(name, str):
            raise TypeError(f"safetensors keys must be strings, got {name!r}")
        if isinstance(value, Tensor):
            arr = _backend.to_host(value._data)
        elif isinstance(value, np.ndarray):
            arr = value
        else:
            raise TypeError(f"safetensors holds only tensors, but {name!r} is a {type(value).__name__}")
        if arr.dtype == np.complex128:
            raise TypeError(f"safetensors has no complex128 dtype (tensor {name!r})")
        arrays[name] = np.ascontiguousarray(arr)
    if metadata is not None:
        bad = {k: v for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)}
        if bad:
            raise TypeError(f"safetensors metadata must map str to str, got {bad!r}")

    # safetensors writes the temporary file through its own handle; fsync on ours syncs the same inode.
    atomic_write(path, lambda fh, tmp: st.numpy.save_file(arrays, tmp, metadata=metadata))


def _read_bf16_as_float32(path, name):
    """Reads a BF16 tensor (which NumPy lacks) from a safetensors file, widened exactly to float32."""
    with open(path, "rb") as fh:
        (hlen,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(hlen))
        info = header[name]
        begin, end = info["data_offsets"]
        fh.seek(8 + hlen + begin)
        raw = np.frombuffer(fh.read(end - begin), dtype="<u2")
    return (raw.astype(np.uint32) << 16).view(np.float32).reshape(info["shape"])


def load_safetensors(path):
    """Reads a safetensors file into ``{name: Tensor}`` (writable CPU tensors). BF16 tensors
    are widened to float32, the nearest dtype NumPy has."""
    st = _require_safetensors()
    path = os.fspath(path)
    out = {}
    try:
        with st.safe_open(path, framework="np") as f:
            for name in f.keys():  # noqa: SIM118 (a safe_open handle, not a dict)
                dtype = f.get_slice(name).get_dtype()
                if dtype == "BF16":
                    arr = _read_bf16_as_float32(path, name)
                else:
                    arr = f.get_tensor(name)
                    if not arr.flags.writeable:
                        arr = arr.copy()
                out[name] = Tensor._wrap(arr)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path!r}: cannot read as a safetensors file ({e})") from e
    except Exception as e:  # safetensors' own SafetensorError (header/format problems)
        if type(e).__name__ == "SafetensorError":
            raise CheckpointError(f"{path!r}: not a valid safetensors file ({e})") from e
        raise
    return out
