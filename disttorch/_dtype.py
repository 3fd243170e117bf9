"""dtypes with PyTorch's names, their NumPy equivalents, and PyTorch's type promotion.

PyTorch's rule (``torch.result_type``): operands fall into three priority classes, tensors with
dimensions, zero-dim tensors, and Python numbers. A lower class can only raise the result's
*category* (bool < integer < floating), never its width within a category; a Python float meets
an integer tensor as the default float dtype. NumPy scalars count as Python numbers, so a NumPy
float64 scalar never widens a float32 tensor.
"""
from __future__ import annotations

import builtins

import numpy as np


class dtype:
    """A tensor element type (``disttorch.float32`` ...); compares by identity like torch.dtype."""

    __slots__ = ("name", "np", "is_floating_point", "is_complex", "is_signed", "itemsize", "_category")

    def __init__(self, name, np_dtype, category):
        self.name = name
        self.np = np.dtype(np_dtype)
        self._category = category  # 0 bool, 1 integer, 2 floating, 3 complex
        self.is_floating_point = category == 2
        self.is_complex = category == 3
        self.is_signed = self.np.kind in "fic"
        self.itemsize = self.np.itemsize

    def __repr__(self):
        return f"disttorch.{self.name}"

    def __reduce__(self):
        return (_by_name, (self.name,))

    def to_numpy(self):
        return self.np


float16 = half = dtype("float16", np.float16, 2)
float32 = float = dtype("float32", np.float32, 2)
float64 = double = dtype("float64", np.float64, 2)
complex64 = cfloat = dtype("complex64", np.complex64, 3)
complex128 = cdouble = dtype("complex128", np.complex128, 3)
uint8 = dtype("uint8", np.uint8, 1)
int8 = dtype("int8", np.int8, 1)
int16 = short = dtype("int16", np.int16, 1)
int32 = int = dtype("int32", np.int32, 1)
int64 = long = dtype("int64", np.int64, 1)
bool = dtype("bool", np.bool_, 0)
# bfloat16 is ml_dtypes' NumPy dtype (8-bit exponent, 8-bit significand): real 2-byte storage with
# round-to-nearest-even casts, as PyTorch's. NumPy has no bfloat16 kernels, so matmul / conv compute
# in float32 and round the result (see disttorch/amp). ml_dtypes costs ~0.5 s of CPU to import, so
# it is loaded the first time bfloat16's NumPy dtype is needed, not with disttorch.
class _LazyNumpyDtype(dtype):
    __slots__ = ("_np", "_loader")

    def __init__(self, name, loader, itemsize):
        self.name = name
        self._np = None
        self._loader = loader
        self._category = 2
        self.is_floating_point, self.is_complex, self.is_signed = True, False, True
        self.itemsize = itemsize

    @property
    def np(self):
        if self._np is None:
            self._np = np.dtype(self._loader())
            _FROM_NP[self._np] = self
        return self._np


def _load_bfloat16():
    try:
        import ml_dtypes
    except ImportError:
        raise TypeError("disttorch.bfloat16 needs the ml_dtypes package (pip install ml_dtypes)") from None
    return ml_dtypes.bfloat16


bfloat16 = _LazyNumpyDtype("bfloat16", _load_bfloat16, 2)

# The names PyTorch's error messages use: legacy tensor-type names and C++ scalar type names.
LEGACY_NAMES = {"float32": "Float", "float64": "Double", "float16": "Half", "int64": "Long", "int32": "Int",
                "int16": "Short", "int8": "Char", "uint8": "Byte", "bool": "Bool", "complex64": "ComplexFloat",
                "complex128": "ComplexDouble", "bfloat16": "BFloat16"}
CPP_NAMES = {"float32": "float", "float64": "double", "float16": "c10::Half", "int64": "long int", "int32": "int",
             "int16": "short int", "int8": "signed char", "uint8": "unsigned char", "bool": "bool",
             "complex64": "c10::complex<float>", "complex128": "c10::complex<double>", "bfloat16": "c10::BFloat16"}

ALL = (float16, float32, float64, complex64, complex128, uint8, int8, int16, int32, int64, bool, bfloat16)
_NAMES = {d.name: d for d in ALL}
_FROM_NP = {d.np: d for d in ALL if not isinstance(d, _LazyNumpyDtype)}  # lazy ones register on load


def _by_name(name):
    return _NAMES[name]


_default_float = float32


def get_default_dtype() -> dtype:
    return _default_float


def set_default_dtype(d) -> None:
    """Sets the dtype of new floating tensors (float32, float64 or float16)."""
    global _default_float
    d = as_dtype(d)
    if not d.is_floating_point:
        raise TypeError("only floating-point types are supported as the default type")
    _default_float = d


def from_numpy_dtype(npd) -> dtype:
    d = _FROM_NP.get(np.dtype(npd))
    if d is None and np.dtype(npd).name == "bfloat16":  # ml_dtypes' array before disttorch loaded it
        bfloat16.np  # noqa: B018  (registers the dtype)
        d = _FROM_NP.get(np.dtype(npd))
    if d is None:
        raise TypeError(
            f"can't convert np.ndarray of type numpy.{np.dtype(npd).type.__name__}. The only supported types are: "
            "float64, float32, float16, complex64, complex128, int64, int32, int16, int8, uint8, and bool.")
    return d


def as_dtype(d) -> dtype:
    """Accepts a disttorch dtype, a NumPy dtype, or the Python types float/int/bool."""
    if isinstance(d, dtype):
        return d
    if d is builtins.float:
        return _default_float
    if d is builtins.int:
        return int64
    if d is builtins.bool:
        return bool
    if isinstance(d, str) and d in _NAMES:
        return _NAMES[d]
    try:
        return from_numpy_dtype(d)
    except TypeError:
        raise TypeError(f"invalid dtype: {d!r}") from None


def promote_types(a: dtype, b: dtype) -> dtype:
    """torch.promote_types for two dtypes."""
    if a is b:
        return a
    if {a, b} == {bfloat16, float16}:  # neither holds the other: PyTorch widens to float32
        return float32
    if a._category != b._category:
        hi, lo = (a, b) if a._category > b._category else (b, a)
        if hi._category == 3 and lo._category == 2 and lo.itemsize > hi.itemsize // 2:
            return complex128
        return hi
    return _FROM_NP[np.promote_types(a.np, b.np)]


def scalar_dtype(value) -> dtype:
    """The dtype a Python (or NumPy) number takes as a *wrapped number* operand."""
    if isinstance(value, (builtins.bool, np.bool_)):
        return bool
    if isinstance(value, (builtins.int, np.integer)):
        return int64
    if isinstance(value, (builtins.float, np.floating)):
        return _default_float
    if isinstance(value, (builtins.complex, np.complexfloating)):
        return complex64 if _default_float is not float64 else complex128
    raise TypeError(f"unsupported operand type {type(value).__name__}")


def _combine(higher, lower):
    if higher is None:
        return lower
    if lower is None:
        return higher
    if higher._category >= 2 and higher._category >= lower._category:
        return higher
    if higher is bool or lower._category > higher._category:
        return promote_types(higher, lower)
    return higher


def result_dtype(operands) -> dtype:
    """PyTorch's result_type over tensors (anything with ``dtype`` and ``ndim``) and numbers."""
    dim_r = zero_r = wrapped_r = None
    for op in operands:
        d = getattr(op, "dtype", None)
        if isinstance(d, dtype):
            if op.ndim:
                dim_r = d if dim_r is None else promote_types(dim_r, d)
            else:
                zero_r = d if zero_r is None else promote_types(zero_r, d)
        else:
            w = scalar_dtype(op)
            wrapped_r = w if wrapped_r is None else promote_types(wrapped_r, w)
    return _combine(dim_r, _combine(zero_r, wrapped_r))
