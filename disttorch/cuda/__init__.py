"""disttorch.cuda: device queries and controls, backed by CuPy when a GPU is present.

The current device is per thread, as in CUDA and PyTorch. On a thread's first CUDA use it becomes
``DISTTORCH_DEVICE_INDEX`` (set by disttorch-run), else ``LOCAL_RANK`` (torchrun), so every local rank
of a job works on its own GPU without a ``set_device`` call; an explicit ``set_device`` wins.
Without CuPy or a GPU the queries answer "nothing here" (``is_available() == False``,
``device_count() == 0``, zero memory) and the controls raise PyTorch's kind of error.
"""
from __future__ import annotations

from .. import _backend


def is_available() -> bool:
    """True when CuPy is installed and sees a working GPU."""
    return _backend.cuda_available()


def is_initialized() -> bool:
    return _backend.cuda_available()


def init() -> None:
    """Chooses this thread's default device now (it otherwise happens on first use)."""
    _cp()


def device_count() -> int:
    return _backend.device_count()


def _cp():
    return _backend.require_cupy("CUDA")


def _index(device, optional=True) -> int:
    """A GPU index from an int, 'cuda[:N]', a disttorch.device or None (None: the current one)."""
    from .._device import as_device, device as _device_cls
    if device is None:
        return current_device()
    if isinstance(device, bool) or not isinstance(device, (int, str, _device_cls)):
        raise ValueError(f"Expected a cuda device, but got: {device!r}")
    if isinstance(device, int):
        idx = device
    else:
        dev = as_device(device)
        if dev.type != "cuda":
            raise ValueError(f"Expected a cuda device, but got: {dev}")
        idx = dev.index if dev.index is not None else current_device()
    n = device_count()
    if not 0 <= idx < n:
        raise RuntimeError(f"CUDA error: invalid device ordinal {idx} (device_count() = {n})")
    return idx


def current_device() -> int:
    """Index of this thread's current GPU."""
    return _backend.current_device_index()


def set_device(device) -> None:
    """Makes GPU ``device`` (int, 'cuda:N' or disttorch.device) current for this thread."""
    cp = _cp()
    if isinstance(device, int) and device < 0:
        return  # PyTorch: a negative index is a no-op
    idx = _index(device)
    _backend.mark_device_chosen()
    cp.cuda.Device(idx).use()


def synchronize(device=None) -> None:
    """Waits for all work queued on GPU ``device`` (default: the current one)."""
    cp = _cp()
    cp.cuda.Device(_index(device)).synchronize()


def manual_seed(seed) -> None:
    """Seeds disttorch's generator: CUDA tensors draw their randoms from it (then move to the GPU),
    so a seed gives the same numbers on every device. CuPy's own stream is seeded too."""
    from ..random import manual_seed as _seed
    _seed(seed)
    if is_available():
        _cp().random.seed(int(seed) % (2 ** 32))


manual_seed_all = manual_seed


def seed() -> None:
    from ..random import seed as _seed
    _seed()


seed_all = seed


def initial_seed() -> int:
    from ..random import initial_seed as _initial
    return _initial()


def _pool():
    return _cp().get_default_memory_pool() if is_available() else None


def memory_allocated(device=None) -> int:
    """Bytes held by live CUDA arrays (CuPy's memory pool, which serves every device of the process)."""
    pool = _pool()
    return 0 if pool is None else int(pool.used_bytes())


def memory_reserved(device=None) -> int:
    """Bytes the pool holds from the driver (in use or cached for reuse)."""
    pool = _pool()
    return 0 if pool is None else int(pool.total_bytes())


_peak = {"allocated": 0, "reserved": 0}


def max_memory_allocated(device=None) -> int:
    """The largest ``memory_allocated`` seen by this or an earlier statistics call since the last reset
    (CuPy keeps no peak, so the peak is sampled, not exact)."""
    _peak["allocated"] = max(_peak["allocated"], memory_allocated(device))
    return _peak["allocated"]


def max_memory_reserved(device=None) -> int:
    _peak["reserved"] = max(_peak["reserved"], memory_reserved(device))
    return _peak["reserved"]


def reset_peak_memory_stats(device=None) -> None:
    _peak["allocated"] = memory_allocated(device)
    _peak["reserved"] = memory_reserved(device)


reset_max_memory_allocated = reset_peak_memory_stats


def memory_stats(device=None) -> dict:
    """A few of PyTorch's ``memory_stats`` keys, from CuPy's pool."""
    return {"allocated_bytes.all.current": memory_allocated(device),
            "allocated_bytes.all.peak": max_memory_allocated(device),
            "reserved_bytes.all.current": memory_reserved(device),
            "reserved_bytes.all.peak": max_memory_reserved(device)}


def mem_get_info(device=None) -> tuple:
    """(free, total) bytes of GPU ``device``."""
    cp = _cp()
    with cp.cuda.Device(_index(device)):
        free, total = cp.cuda.runtime.memGetInfo()
    return int(free), int(total)


def empty_cache() -> None:
    """Returns the pool's cached, unused blocks to the driver."""
    pool = _pool()
    if pool is not None:
        pool.free_all_blocks()


def get_device_properties(device=None) -> dict:
    return _cp().cuda.runtime.getDeviceProperties(_index(device))


def get_device_name(device=None) -> str:
    name = get_device_properties(device).get("name", b"")
    return name.decode() if isinstance(name, bytes) else str(name)


def get_device_capability(device=None) -> tuple:
    props = get_device_properties(device)
    return int(props.get("major", 0)), int(props.get("minor", 0))


class device:
    """Context manager making GPU ``idx`` current inside the block (``torch.cuda.device``)."""

    def __init__(self, idx):
        self.idx = idx

    def __enter__(self):
        self.prev = None
        if self.idx is None or (isinstance(self.idx, int) and self.idx < 0):
            return self  # PyTorch: device(None) / device(-1) change nothing
        self.prev = current_device()
        _cp().cuda.Device(_index(self.idx)).use()
        return self

    def __exit__(self, *exc):
        if self.prev is not None:
            _cp().cuda.Device(self.prev).use()
        return False


class device_of(device):
    """Context manager making the GPU of tensor ``obj`` current (a no-op for CPU tensors)."""

    def __init__(self, obj):
        super().__init__(obj.device.index if obj.is_cuda else -1)


def _reset_for_testing() -> None:
    """Forgets the sampled peaks (tests install and remove CuPy stand-ins)."""
    _peak["allocated"] = _peak["reserved"] = 0


def __getattr__(name):
    # torch.cuda.amp on first use: importing disttorch.amp installs its op wrappers, which every
    # program that never asks for mixed precision should not pay for.
    if name == "amp":
        import importlib
        return importlib.import_module(".amp", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
