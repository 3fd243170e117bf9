"""disttorch.cuda: device queries and controls, backed by CuPy when a GPU is present."""
from __future__ import annotations

from .. import _backend


def is_available() -> bool:
    """True when CuPy is installed and sees a working GPU."""
    return _backend.cuda_available()


def device_count() -> int:
    return _backend.device_count()


def _cp():
    return _backend.require_cupy("CUDA")


def current_device() -> int:
    return int(_cp().cuda.Device().id)


def set_device(device) -> None:
    """Makes GPU ``device`` (int, 'cuda:N' or disttorch.device) current for new CUDA tensors."""
    from .._device import as_device
    if isinstance(device, int):
        idx = device
    else:
        idx = as_device(device).index or 0
    n = device_count()
    if not 0 <= idx < max(n, 1):
        raise RuntimeError(f"CUDA error: invalid device ordinal {idx} (device_count() = {n})")
    _cp().cuda.Device(idx).use()


def synchronize(device=None) -> None:
    _cp().cuda.Device().synchronize()


def manual_seed(seed) -> None:
    """Seeds the CUDA stream; disttorch draws GPU randoms from the default generator too."""
    from ..random import manual_seed as _seed
    _seed(seed)
    if is_available():
        _cp().random.seed(int(seed) % (2 ** 32))


manual_seed_all = manual_seed


def memory_allocated(device=None) -> int:
    if not is_available():
        return 0
    return int(_cp().get_default_memory_pool().used_bytes())


def memory_reserved(device=None) -> int:
    if not is_available():
        return 0
    return int(_cp().get_default_memory_pool().total_bytes())


def max_memory_allocated(device=None) -> int:
    return memory_allocated(device)


def empty_cache() -> None:
    if is_available():
        _cp().get_default_memory_pool().free_all_blocks()


def get_device_name(device=None) -> str:
    props = _cp().cuda.runtime.getDeviceProperties(0 if device is None else int(device))
    name = props.get("name", b"")
    return name.decode() if isinstance(name, bytes) else str(name)


class device:
    """Context manager switching the current GPU."""

    def __init__(self, idx):
        self.idx = idx

    def __enter__(self):
        self.prev = current_device()
        set_device(self.idx)

    def __exit__(self, *exc):
        set_device(self.prev)
        return False
