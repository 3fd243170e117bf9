"""Elementwise vector kernels through Intel oneMKL, NumPy otherwise.

An optimizer's update is memory-bound: each NumPy pass reads and writes whole parameter-sized
arrays, and SGD with momentum took four of them (``buf *= m``, ``buf += g``, ``tmp = buf * -lr``,
``param += tmp``: about 40 bytes of traffic per float32 element). MKL's BLAS-1 and vector math
(VML) routines fuse a scale and an add into one pass (``cblas_saxpby``: ``y = a*x + b*y`` reads
two arrays and writes one), so the same update is two passes and 24 bytes. The kernels here are
those passes, each in place or into a given output:

====================================  ===========================  ==========================
kernel                                computes                     MKL routine
====================================  ===========================  ==========================
``axpby_(y, a, x, b)``                ``y = a*x + b*y``            ``cblas_?axpby``
``axpy_(y, a, x)``                    ``y = y + a*x``              ``cblas_?axpy``
``scal_(x, a)``                       ``x = a*x``                  ``cblas_?scal``
``sqr(x, out)``                       ``out = x*x``                ``vm?Sqr``
``sqrt(x, out)``                      ``out = sqrt(x)``            ``vm?Sqrt``
``linear_frac(a, b, sa, ha, sb, hb,   ``out = (sa*a + ha) /        ``vm?LinearFrac``
out)``                                (sb*b + hb)``
====================================  ===========================  ==========================

Rules:

- MKL takes float32 / float64 NumPy arrays that are C-contiguous and writeable, all of one dtype
  and size, of at least ``MIN_ELEMENTS`` and at most 2**31 - 1 elements (MKL's LP64 interface
  counts in 32-bit ints), and whose outputs overlap no other operand unless they are the very
  same array.
  Everything else (CuPy arrays, integers, strided views, small or huge arrays, no MKL installed,
  ``DISTTORCH_BLAS=numpy``) runs the NumPy expression in the same function. Both give the same
  values up to rounding (a few ulp: MKL's ``axpby`` rounds ``b*y`` and then adds ``a*x`` in one
  fused multiply-add, NumPy rounds every product).
- MKL is loaded through ``_gemm._mkl()`` (one loader, its sequential layer: no OpenMP thread ever
  starts) and only by the first call large enough to use it.
- VML calls run in high-accuracy mode with denormals kept and errors ignored, the mode PyTorch's
  own CPU kernels pass to VML; its ``vmsSqrt`` is then PyTorch's ``sqrt`` to the bit (NumPy's
  differs from both in about 0.6% of float32 elements, by one ulp).
- A hot sequence over arrays checked once (the optimizers' updates, ``optim/_fused.py``) takes
  the routines themselves from ``routines(*arrays)`` and calls them on ``address(array)``,
  saving each kernel's own checks.
- ctypes releases the GIL during every MKL call, so ``_intra_op.split_flat`` still spreads an
  update over the intra-op threads chunk by chunk.
"""
from __future__ import annotations

import ctypes

import numpy as np

from . import _gemm

__all__ = ["MIN_ELEMENTS", "accelerated", "routines", "address", "VML_MODE", "axpby_", "axpy_", "scal_", "sqr",
           "sqrt", "linear_frac"]

#: arrays below this many elements stay in NumPy. An MKL call costs about 1 us more than a ufunc's
#: (the ctypes call, the addresses), which the passes it saves repay from here on (one core, ten
#: parameters per step, us per parameter, fused MKL against NumPy: SGD with momentum 6.3 vs 6.1
#: at 4096 elements, 7.1 vs 7.5 at 8192, 34.9 vs 38.6 at 65536; Adam 16.1 vs 15.0, 19.6 vs 21.9,
#: 90 vs 122). A job whose arrays are all this small never maps MKL's libraries (13 ms on first use).
MIN_ELEMENTS = 1 << 13

_INT_MAX = 2**31 - 1
_KINDS = {np.dtype(np.float32): "s", np.dtype(np.float64): "d"}
# VML_HA (high accuracy, 1 ulp) | VML_FTZDAZ_OFF (denormals computed, not flushed) |
# VML_ERRMODE_IGNORE (no errno, no callback, no status): the mode PyTorch passes to VML
VML_MODE = 0x2 | 0x140000 | 0x100
_c_char, _addressof = ctypes.c_char, ctypes.addressof


class _Routines:
    """The MKL entry points of one precision (``kind`` "s" or "d"), with their C signatures."""

    __slots__ = ("axpby", "axpy", "scal", "sqr", "sqrt", "linear_frac", "erf", "exp")

    def __init__(self, lib, kind):
        i, p, mode = ctypes.c_int, ctypes.c_void_p, ctypes.c_longlong  # MKL_INT (LP64), pointer, MKL_INT64
        real = ctypes.c_float if kind == "s" else ctypes.c_double
        signatures = {
            "axpby": (f"cblas_{kind}axpby", [i, real, p, i, real, p, i]),
            "axpy": (f"cblas_{kind}axpy", [i, real, p, i, p, i]),
            "scal": (f"cblas_{kind}scal", [i, real, p, i]),
            "sqr": (f"vm{kind}Sqr", [i, p, p, mode]),
            "sqrt": (f"vm{kind}Sqrt", [i, p, p, mode]),
            "linear_frac": (f"vm{kind}LinearFrac", [i, p, p, real, real, real, real, p, mode]),
            "erf": (f"vm{kind}Erf", [i, p, p, mode]),
            "exp": (f"vm{kind}Exp", [i, p, p, mode]),
        }
        for slot, (name, argtypes) in signatures.items():
            fn = getattr(lib, name)
            fn.restype = None
            fn.argtypes = argtypes
            setattr(self, slot, fn)


def _routines(mkl):
    """``{"s": _Routines, "d": _Routines}`` bound on the loaded MKL (once per library object)."""
    bound = getattr(mkl, "vector_routines", None)
    if bound is None:  # two threads may both bind: same result, the last assignment wins
        bound = mkl.vector_routines = {kind: _Routines(mkl.lib, kind) for kind in ("s", "d")}
    return bound


def _mkl_for(*arrays):
    """The routines of the arrays' precision when MKL can run a kernel on them, else None."""
    first = arrays[0]
    if type(first) is not np.ndarray:
        return None
    dtype = first.dtype
    kind = _KINDS.get(dtype)
    n = first.size
    if kind is None or n < MIN_ELEMENTS or n > _INT_MAX:
        return None
    for a in arrays:
        if type(a) is not np.ndarray or a.dtype != dtype or a.size != n:
            return None
        flags = a.flags
        if not (flags.c_contiguous and flags.writeable):  # NumPy raises for a read-only output; MKL would write
            return None
    mkl = _gemm._mkl()
    if mkl is None:
        return None
    return _routines(mkl)[kind]


def _address(a) -> int:
    """The address of a writeable C-contiguous array's first element (a third of the cost of
    ``a.ctypes.data``, which read-only arrays, whose buffer ctypes refuses, still take)."""
    try:
        return _addressof(_c_char.from_buffer(a))
    except TypeError:
        return a.ctypes.data


def _apart(nbytes: int, out: int, *inputs: int) -> bool:
    """Whether the output at address ``out`` is each input itself or overlaps none of them (all
    span ``nbytes``): an elementwise routine reading ahead of where it writes would otherwise see
    values it has already overwritten."""
    return all(p == out or abs(p - out) >= nbytes for p in inputs)


def accelerated(*arrays) -> bool:
    """Whether the kernels take these arrays to MKL (callers pick their fused sequence by it)."""
    return _mkl_for(*arrays) is not None


def routines(*arrays):
    """MKL's routines for the arrays' precision (attributes ``axpby``, ``axpy``, ``scal``, ``sqr``,
    ``sqrt``, ``linear_frac``, and VML's ``erf`` and ``exp``, which have no kernel of their own here
    because NumPy has no erf to fall back on: the C functions, called with element counts, scalars, ``address``es
    and, for VML, ``VML_MODE``), or None where the kernels would use NumPy.

    For a hot sequence of passes over arrays checked once (``optim/_fused.py``): each kernel
    call checks its operands again, about 1.5 us that a small parameter's update notices. The
    caller answers for what the kernels check: distinct or identical arrays, never overlapping."""
    return _mkl_for(*arrays)


address = _address


def axpby_(y, a: float, x, b: float):
    """``y = a*x + b*y`` in place; returns ``y``."""
    mkl = _mkl_for(y, x)
    if mkl is not None:
        py, px = _address(y), _address(x)
        if _apart(y.nbytes, py, px):
            mkl.axpby(y.size, a, px, 1, b, py, 1)
            return y
    scaled_x = a * x  # before y changes: x may overlap it
    y *= b
    y += scaled_x
    return y


def axpy_(y, a: float, x):
    """``y = y + a*x`` in place; returns ``y``."""
    mkl = _mkl_for(y, x)
    if mkl is not None:
        py, px = _address(y), _address(x)
        if _apart(y.nbytes, py, px):
            mkl.axpy(y.size, a, px, 1, py, 1)
            return y
    y += a * x
    return y


def scal_(x, a: float):
    """``x = a*x`` in place; returns ``x``."""
    mkl = _mkl_for(x)
    if mkl is not None:
        mkl.scal(x.size, a, _address(x), 1)
        return x
    x *= a
    return x


def _vml_unary(routine: str, x, out) -> bool:
    """Runs VML's ``routine`` ("sqr" or "sqrt") from ``x`` into ``out`` when MKL takes them;
    False where the caller's NumPy expression must run instead."""
    mkl = _mkl_for(x, out)
    if mkl is None:
        return False
    px, po = _address(x), _address(out)
    if not _apart(out.nbytes, po, px):
        return False
    getattr(mkl, routine)(x.size, px, po, VML_MODE)
    return True


def sqr(x, out):
    """``out = x*x``; returns ``out``."""
    if not _vml_unary("sqr", x, out):
        out[...] = x * x
    return out


def sqrt(x, out):
    """``out = sqrt(x)`` (NaN where ``x`` is negative); returns ``out``."""
    if not _vml_unary("sqrt", x, out):
        with np.errstate(invalid="ignore"):
            out[...] = x ** 0.5
    return out


def linear_frac(a, b, scale_a: float, shift_a: float, scale_b: float, shift_b: float, out):
    """``out = (scale_a*a + shift_a) / (scale_b*b + shift_b)``; returns ``out``."""
    mkl = _mkl_for(a, b, out)
    if mkl is not None:
        pa, pb, po = _address(a), _address(b), _address(out)
        if _apart(out.nbytes, po, pa, pb):
            mkl.linear_frac(a.size, pa, pb, scale_a, shift_a, scale_b, shift_b, po, VML_MODE)
            return out
    with np.errstate(divide="ignore", invalid="ignore"):
        out[...] = (a * scale_a + shift_a) / (b * scale_b + shift_b)
    return out
