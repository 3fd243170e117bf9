"""A strict, NumPy-backed stand-in for CuPy, so the device dispatch runs (and fails) in CI without a GPU.

``make_fake_cupy()`` returns a fresh module to install with ``disttorch._backend.set_cupy_for_testing``.
Its ``ndarray`` is deliberately *not* a NumPy subclass: like ``cupy.ndarray`` it wraps memory NumPy may
not touch implicitly, so every mistake that breaks on a real GPU breaks here too:

- ``np.asarray(device_array)`` / ``np.array(...)`` raise CuPy's TypeError (no implicit device->host copy);
- mixing a host ``numpy.ndarray`` (any rank, 0-d included) into a ufunc, an operator or a ``cupy.*``
  function raises ``TypeError: Unsupported type <class 'numpy.ndarray'>``, as CuPy's kernels do;
- writing a host array of rank > 0 into a device array raises CuPy's ValueError;
- reductions and integer indexing give 0-d device arrays, never NumPy scalars;
- arrays on two different devices in one call raise CuPy's peer-access ValueError; new arrays land on
  the current device (``cuda.Device(i)`` as a context manager or ``.use()``, per thread like CUDA's).

NumPy functions called on device arrays dispatch to the stand-in (NEP 18/13), as they do with CuPy.
``asnumpy``/``asarray``/``.get()``/``.set()`` are the only host<->device doors, and they count
``transfers``. The memory pool reports the bytes of live device arrays.
"""
from __future__ import annotations

import operator
import threading
import types
import weakref

import numpy as np

_NO_NUMPY_MSG = ("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a NumPy "
                 "array explicitly.")


class CUDARuntimeError(RuntimeError):
    """cupy_backends.cuda.api.runtime.CUDARuntimeError."""


class _Runtime:
    """Per-module state: device count, the current device of each thread, the pool, the transfer count."""

    def __init__(self, device_count):
        self.device_count = device_count
        self.local = threading.local()
        self.live = {}  # id(owner numpy array) -> nbytes of device memory in use
        self.ranges = {}  # id(owner numpy array) -> (address, nbytes, device): what counts as device memory
        self.peak = 0
        self.transfers = 0
        self.synchronized = 0

    @property
    def current(self) -> int:
        return getattr(self.local, "device", 0)

    @current.setter
    def current(self, index):
        self.local.device = index

    def track(self, arr: np.ndarray, dev: int) -> None:
        owner = arr
        while isinstance(owner.base, np.ndarray):
            owner = owner.base
        key = id(owner)
        if key in self.live or owner.base is not None:
            return
        self.live[key] = owner.nbytes
        self.ranges[key] = (int(owner.__array_interface__["data"][0]), owner.nbytes, dev)
        self.peak = max(self.peak, sum(self.live.values()))
        weakref.finalize(owner, self._forget, key)

    def _forget(self, key):
        self.live.pop(key, None)
        self.ranges.pop(key, None)

    def device_of_pointer(self, ptr: int, nbytes: int):
        """The device holding ``[ptr, ptr + nbytes)``, or None when that is not device memory."""
        for start, size, dev in list(self.ranges.values()):
            if start <= ptr and ptr + nbytes <= start + size:
                return dev
        return None


_RUNTIME = None  # the runtime of the module made last (arrays made outside a module call use it)


def _rt() -> _Runtime:
    return _RUNTIME


# ---- wrapping and unwrapping -------------------------------------------------------------------------
def _unsupported(x):
    return TypeError(f"Unsupported type {type(x)}")


def _unwrap(x, devs, strict=True):
    """Device arrays -> their NumPy memory (recording owner -> device in ``devs``); host arrays refused
    when strict."""
    if isinstance(x, ndarray):
        devs[id(_owner(x._a))] = x._dev
        return x._a
    if isinstance(x, np.ndarray):
        if strict:
            raise _unsupported(x)
        return x
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, devs, strict) for v in x)
    if hasattr(x, "_data") and hasattr(x, "grad_fn"):  # a disttorch Tensor reaching CuPy is a bug
        raise _unsupported(x)
    return x


def _unwrap_kwargs(kwargs, devs, strict=True):
    return {k: _unwrap(v, devs, strict) for k, v in kwargs.items()}


def _owner(a):
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _check_devices(devs) -> None:
    """Arrays of two GPUs in one kernel: CuPy's peer-access error (the stand-in assumes no peer access)."""
    found = set(devs.values())
    if len(found) > 1:
        a, b = sorted(found)[:2]
        raise ValueError(f"The device where the array resides ({b}) is different from the current device ({a}). "
                         "Peer access is unavailable between these devices.")


def _wrap(r, devs):
    """NumPy results -> device arrays; NumPy scalars become 0-d arrays (CuPy has no scalars). A view of
    an input stays on the input's device; new memory is allocated on the current device, as in CuPy."""
    if isinstance(r, np.ndarray):
        if r.dtype == object:
            raise TypeError("Unsupported dtype object")
        dev = devs.get(id(_owner(r)), _rt().current) if isinstance(devs, dict) else devs
        return ndarray._make(r, dev)
    if isinstance(r, np.generic):
        return ndarray._make(np.asarray(r), _rt().current if isinstance(devs, dict) else devs)
    if isinstance(r, tuple):
        return tuple(_wrap(v, devs) for v in r)
    if isinstance(r, list):
        return [_wrap(v, devs) for v in r]
    return r


def _call(fn, args, kwargs, strict=True, wrap=True, devs=None):
    devs = {} if devs is None else devs
    a = _unwrap(args, devs, strict)
    k = _unwrap_kwargs(kwargs, devs, strict)
    _check_devices(devs)
    r = fn(*a, **k)
    return _wrap(r, devs) if wrap else r


_OPERAND_TYPES = (int, float, complex, bool, np.generic, np.ndarray)
_SCATTER_UFUNCS = {"add", "subtract", "maximum", "minimum", "bitwise_and", "bitwise_or", "bitwise_xor"}  # CuPy's ufunc.at


def _binary(ufunc, a, b):
    """An operator: CuPy defers to objects it does not know (a Tensor's reflected operator)."""
    if not isinstance(b, (ndarray,) + _OPERAND_TYPES):
        return NotImplemented
    return _ufunc_call(ufunc, "__call__", (a, b), {})


def _ufunc_call(ufunc, method, inputs, kwargs):
    devs = {}
    if method == "at" and ufunc.__name__ not in _SCATTER_UFUNCS:
        raise NotImplementedError(f"`{ufunc.__name__}.at` is not supported by CuPy")
    if method == "at":  # index arrays may live on the host (CuPy copies them over)
        ins = (_unwrap(inputs[0], devs), _unwrap(inputs[1], devs, strict=False)) + _unwrap(inputs[2:], devs)
    else:
        ins = _unwrap(inputs, devs)
    out = kwargs.get("out")
    kw = _unwrap_kwargs(kwargs, devs)
    _check_devices(devs)
    r = getattr(ufunc, method)(*ins, **kw)
    if method == "at":
        return None
    if out is not None:
        return out[0] if isinstance(out, tuple) and len(out) == 1 else out
    return _wrap(r, devs)


# ---- the array -----------------------------------------------------------------------------------------
class _MemoryPointer:
    __slots__ = ("ptr", "device_id")

    def __init__(self, ptr, device_id):
        self.ptr, self.device_id = ptr, device_id


class ndarray:
    """Device memory (NumPy underneath, out of NumPy's reach)."""

    __slots__ = ("_a", "_dev", "__weakref__")
    __hash__ = None

    def __init__(self, shape, dtype=float):
        self._a = np.empty(shape, dtype)
        self._dev = _rt().current
        _rt().track(self._a, self._dev)

    @classmethod
    def _make(cls, arr, dev):
        self = object.__new__(cls)
        self._a, self._dev = arr, dev
        _rt().track(arr, dev)
        return self

    # -- attributes CuPy has
    shape = property(lambda s: s._a.shape, lambda s, v: setattr(s._a, "shape", v))
    dtype = property(lambda s: s._a.dtype)
    ndim = property(lambda s: s._a.ndim)
    size = property(lambda s: s._a.size)
    itemsize = property(lambda s: s._a.itemsize)
    nbytes = property(lambda s: s._a.nbytes)
    strides = property(lambda s: s._a.strides)
    flags = property(lambda s: s._a.flags)
    T = property(lambda s: _wrap(s._a.T, s._dev))
    real = property(lambda s: _wrap(s._a.real, s._dev))
    imag = property(lambda s: _wrap(s._a.imag, s._dev))
    mT = property(lambda s: _wrap(np.swapaxes(s._a, -1, -2), s._dev))

    @property
    def base(self):
        return None if self._a.base is None else _wrap(self._a.base, self._dev) if isinstance(self._a.base, np.ndarray) else None

    @property
    def data(self):
        return _MemoryPointer(int(self._a.__array_interface__["data"][0]), self._dev)

    @property
    def device(self):
        return _FAKE_DEVICE_CLS[0](self._dev)

    @property
    def __cuda_array_interface__(self):
        return {"shape": self._a.shape, "typestr": self._a.dtype.str, "version": 3,
                "data": (self.data.ptr, False), "strides": None if self._a.flags.c_contiguous else self._a.strides}

    # -- explicit transfers
    def get(self, stream=None, order="C", out=None):
        _rt().transfers += 1
        return np.array(self._a, copy=True, order=order)

    def set(self, arr, stream=None):
        if not isinstance(arr, np.ndarray) or arr.shape != self._a.shape:
            raise ValueError("Shape mismatch or not a numpy.ndarray")
        _rt().transfers += 1
        self._a[...] = arr

    def __array__(self, *args, **kwargs):
        raise TypeError(_NO_NUMPY_MSG)

    # -- every other method: NumPy's, on the device memory, strict about host operands
    def __getattr__(self, name):
        if name.startswith("__") or name in ("_a", "_dev"):  # no __array_interface__ etc.: NumPy must not see in
            raise AttributeError(f"'cupy.ndarray' object has no attribute '{name}'")
        attr = getattr(self._a, name)
        if name in ("tolist", "item", "tobytes"):
            return attr
        if not callable(attr):
            return _wrap(attr, self._dev)

        def method(*args, **kwargs):
            return _call(attr, args, kwargs, strict=name not in ("take", "put", "choose", "compress"),
                         devs={id(_owner(self._a)): self._dev})
        return method

    def __dir__(self):
        return dir(self._a)

    # -- indexing
    def __getitem__(self, index):
        devs = {id(_owner(self._a)): self._dev}
        idx = _unwrap(index, devs, strict=False)
        _check_devices(devs)
        return _wrap(self._a[idx], devs)

    def __setitem__(self, index, value):
        devs = {id(_owner(self._a)): self._dev}
        idx = _unwrap(index, devs, strict=False)
        if isinstance(value, np.ndarray):
            if value.ndim:
                raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
            value = value.item()
        val = _unwrap(value, devs)
        _check_devices(devs)
        self._a[idx] = val

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(len(self._a)))

    # -- conversions to Python numbers synchronize, as CuPy's do
    def __bool__(self):
        return bool(self._a)

    def __int__(self):
        return int(self._a)

    def __float__(self):
        return float(self._a)

    def __complex__(self):
        return complex(self._a)

    def __index__(self):
        return operator.index(self._a[()]) if self._a.ndim == 0 else operator.index(self._a)

    def __repr__(self):
        return repr(self._a).replace("array(", "array(", 1)

    def __str__(self):
        return str(self._a)

    def __copy__(self):
        return _wrap(self._a.copy(), self._dev)

    def __deepcopy__(self, memo):
        return _wrap(self._a.copy(), self._dev)

    def __reduce__(self):
        return (_rebuild, (np.array(self._a), self._dev))

    # -- NumPy protocols: np.* on device arrays dispatch here (and refuse host operands)
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _ufunc_call(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types_, args, kwargs):
        if func.__name__ in _NOT_IN_CUPY:
            return NotImplemented
        return _call(func, args, kwargs)

    # -- operators
    def __neg__(self):
        return _ufunc_call(np.negative, "__call__", (self,), {})

    def __pos__(self):
        return _wrap(self._a.copy(), self._dev)

    def __abs__(self):
        return _ufunc_call(np.absolute, "__call__", (self,), {})

    def __invert__(self):
        return _ufunc_call(np.invert, "__call__", (self,), {})


def _rebuild(arr, dev):
    return ndarray._make(arr, dev)


_NOT_IN_CUPY = {"nditer", "frompyfunc", "memmap", "fromfile", "vectorize_unused", "apply_along_axis_unused"}
_FAKE_DEVICE_CLS = [None]


def _add_operators():
    table = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "truediv": np.true_divide,
             "floordiv": np.floor_divide, "mod": np.remainder, "pow": np.power, "matmul": np.matmul,
             "and": np.bitwise_and, "or": np.bitwise_or, "xor": np.bitwise_xor, "lshift": np.left_shift,
             "rshift": np.right_shift, "divmod": np.divmod}
    for name, uf in table.items():
        def fwd(self, other, uf=uf):
            return _binary(uf, self, other)

        def rev(self, other, uf=uf):
            if not isinstance(other, (ndarray,) + _OPERAND_TYPES):
                return NotImplemented
            return _ufunc_call(uf, "__call__", (other, self), {})

        def inplace(self, other, uf=uf):
            if not isinstance(other, (ndarray,) + _OPERAND_TYPES):
                return NotImplemented
            _ufunc_call(uf, "__call__", (self, other), {"out": (self,)})
            return self
        setattr(ndarray, f"__{name}__", fwd)
        setattr(ndarray, f"__r{name}__", rev)
        if name != "divmod":
            setattr(ndarray, f"__i{name}__", inplace)
    for name, uf in {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
                     "gt": np.greater, "ge": np.greater_equal}.items():
        setattr(ndarray, f"__{name}__", lambda self, other, uf=uf: _binary(uf, self, other))


_add_operators()


# ---- module functions -----------------------------------------------------------------------------
class _Ufunc:
    """A CuPy ufunc: callable, with reduce/accumulate/outer/at, refusing host operands."""

    def __init__(self, uf):
        self._uf = uf
        self.__name__ = uf.__name__
        self.nin, self.nout = uf.nin, uf.nout

    def __call__(self, *args, **kwargs):
        return _ufunc_call(self._uf, "__call__", args, kwargs)

    def reduce(self, *args, **kwargs):
        return _ufunc_call(self._uf, "reduce", args, kwargs)

    def accumulate(self, *args, **kwargs):
        return _ufunc_call(self._uf, "accumulate", args, kwargs)

    def outer(self, *args, **kwargs):
        return _ufunc_call(self._uf, "outer", args, kwargs)

    def reduceat(self, *args, **kwargs):
        return _ufunc_call(self._uf, "reduceat", args, kwargs)

    def at(self, a, indices, b=None):
        return _ufunc_call(self._uf, "at", (a, indices) + (() if b is None else (b,)), {})


def _function(fn, name):
    def wrapper(*args, **kwargs):
        return _call(fn, args, kwargs)
    wrapper.__name__ = name
    return wrapper


class _Namespace(types.SimpleNamespace):
    """A CuPy submodule (linalg, fft, lib.stride_tricks): NumPy's functions, strict and wrapped."""

    def __init__(self, np_mod, **extra):
        super().__init__(**extra)
        self._np_mod = np_mod

    def __getattr__(self, name):
        attr = getattr(self._np_mod, name)
        if callable(attr) and not isinstance(attr, type):
            return _function(attr, name)
        return attr


class _Random:
    """cupy.random on a NumPy RandomState; results are device arrays on the current device."""

    def __init__(self):
        self._rs = np.random.RandomState(0)

    def seed(self, seed=None):
        self._rs = np.random.RandomState(seed)

    def __getattr__(self, name):
        fn = getattr(self._rs, name)

        def draw(*args, **kwargs):
            return _wrap(fn(*args, **kwargs), _rt().current)
        return draw


class _MemoryPool:
    def used_bytes(self):
        return sum(_rt().live.values())

    def total_bytes(self):
        return max(_rt().peak, self.used_bytes())

    def free_bytes(self):
        return self.total_bytes() - self.used_bytes()

    def free_all_blocks(self):
        _rt().peak = self.used_bytes()


def make_fake_cupy(device_count: int = 2) -> types.ModuleType:
    """A fresh stand-in ``cupy`` module with ``device_count`` devices."""
    global _RUNTIME
    rt = _RUNTIME = _Runtime(device_count)
    mod = types.ModuleType("cupy")
    mod.__doc__ = "NumPy-backed stand-in for CuPy (tests only)."
    mod._runtime = rt
    mod.ndarray = ndarray

    class Device:
        """cupy.cuda.Device: selects the current device (per thread) as a context manager or with use()."""

        def __init__(self, device=None):
            self.id = rt.current if device is None else int(device)
            self._prev = []

        def _check(self):
            if not 0 <= self.id < rt.device_count:
                raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")

        def use(self):
            self._check()
            rt.current = self.id

        def __enter__(self):
            self._check()
            self._prev.append(rt.current)
            rt.current = self.id
            return self

        def __exit__(self, *exc):
            rt.current = self._prev.pop()
            return False

        def synchronize(self):
            rt.synchronized += 1

        @property
        def compute_capability(self):
            return "90"

        def __eq__(self, other):
            return isinstance(other, Device) and other.id == self.id

        def __hash__(self):
            return hash(self.id)

        def __repr__(self):
            return f"<CUDA Device {self.id}>"

    _FAKE_DEVICE_CLS[0] = Device

    class Stream:
        null = None

        def __init__(self, non_blocking=False):
            self.ptr = 0

        def synchronize(self):
            rt.synchronized += 1

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def get_device_count():
        return rt.device_count

    def get_device_properties(index):
        if not 0 <= int(index) < rt.device_count:
            raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")
        return {"name": b"Fake GPU (NumPy)", "totalGlobalMem": 16 * 2 ** 30, "major": 9, "minor": 0,
                "multiProcessorCount": 132}

    runtime = types.SimpleNamespace(
        getDeviceCount=get_device_count, getDeviceProperties=get_device_properties,
        getDevice=lambda: rt.current, setDevice=lambda i: Device(i).use(),
        deviceSynchronize=lambda: Device().synchronize(),
        memGetInfo=lambda: (16 * 2 ** 30 - sum(rt.live.values()), 16 * 2 ** 30),
        CUDARuntimeError=CUDARuntimeError)
    mod.cuda = types.SimpleNamespace(Device=Device, runtime=runtime, Stream=Stream,
                                     get_current_stream=lambda: Stream(), MemoryPool=_MemoryPool,
                                     is_available=lambda: rt.device_count > 0)

    def asarray(a, dtype=None, order=None):
        if isinstance(a, ndarray):
            if a._dev == rt.current:
                return a if dtype is None or a.dtype == np.dtype(dtype) else a.astype(dtype)
            return _wrap(np.array(a._a, dtype=dtype, copy=True), rt.current)  # a device-to-device copy
        if hasattr(a, "_data") and hasattr(a, "grad_fn"):
            raise _unsupported(a)
        rt.transfers += 1
        return _wrap(np.array(a, dtype=dtype, copy=True, order=order or "K"), rt.current)

    def array(a, dtype=None, copy=True, order="K", ndmin=0):
        if isinstance(a, ndarray):
            out = np.array(a._a, dtype=dtype, copy=True, order=order, ndmin=ndmin)
            return _wrap(out, rt.current)
        rt.transfers += 1
        return _wrap(np.array(a, dtype=dtype, copy=True, order=order, ndmin=ndmin), rt.current)

    def asnumpy(a, stream=None, order="C", out=None, blocking=True):
        if isinstance(a, ndarray):
            return a.get(order=order)
        return np.asarray(a, order=order)

    def get_array_module(*args):
        return mod if any(isinstance(a, ndarray) for a in args) else np

    pool = _MemoryPool()
    mod.asarray = asarray
    mod.asanyarray = asarray
    mod.array = array
    mod.asnumpy = asnumpy
    mod.get_array_module = get_array_module
    mod.get_default_memory_pool = lambda: pool
    mod.get_default_pinned_memory_pool = lambda: _MemoryPool()
    mod.random = _Random()
    mod.linalg = _Namespace(np.linalg)
    mod.fft = _Namespace(np.fft)
    mod.lib = types.SimpleNamespace(stride_tricks=_Namespace(np.lib.stride_tricks))
    mod.CUDARuntimeError = CUDARuntimeError
    mod.cuda.runtime.CUDARuntimeError = CUDARuntimeError

    cache = {}

    def __getattr__(name):
        if name in cache:
            return cache[name]
        if name in _NOT_IN_CUPY or name.startswith("__"):
            raise AttributeError(f"module 'cupy' has no attribute '{name}'")
        attr = getattr(np, name)
        if isinstance(attr, np.ufunc):
            attr = _Ufunc(attr)
        elif callable(attr) and not isinstance(attr, type) and not isinstance(attr, np.dtype):
            attr = _function(attr, name)
        cache[name] = attr
        return attr

    mod.__getattr__ = __getattr__
    return mod
