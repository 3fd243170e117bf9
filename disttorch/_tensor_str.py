"""Tensor printing: a port of PyTorch 2.x's ``torch/_tensor_str.py`` onto NumPy arrays.

``tensor_repr(t)`` produces exactly the string ``repr(torch_tensor)`` would for the same values,
dtype, device and autograd state. It reads only ``t._data`` (a NumPy or CuPy array), ``t.dtype``
(``.name``), ``t.device`` (``.type`` and ``str()``), ``t.requires_grad`` and ``t.grad_fn``.

Formatting follows torch's ``_Formatter``: integer dtypes print as ``str(int)``; floating dtypes
pick *int mode* (every finite nonzero value is integral: ``1.``), *scientific mode* (max/min
ratio > 1000, max > 1e8 or min < 1e-4, unless ``sci_mode`` forces it) or fixed mode with
``precision`` digits; every element is right-aligned to the widest one. Tensors with more than
``threshold`` elements are summarised to ``edgeitems`` rows per side *before* anything is
formatted, so huge tensors print in time independent of their size.

Scalars are formatted through Python ``float``/``int``/``bool`` exactly as torch does (torch's
``Tensor.__format__`` goes through ``.item()``), which is what makes the output byte-identical.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any

import numpy as np

__all__ = [
    "set_printoptions", "get_printoptions", "printoptions", "tensor_repr", "parameter_repr",
    "PRINT_OPTS",
]


@dataclasses.dataclass
class _PrinterOptions:
    precision: int = 4
    threshold: float = 1000
    edgeitems: int = 3
    linewidth: int = 80
    sci_mode: Any = None


PRINT_OPTS = _PrinterOptions()


def set_printoptions(precision=None, threshold=None, edgeitems=None, linewidth=None, profile=None,
                     sci_mode=None):
    """torch.set_printoptions. Like torch, ``sci_mode`` is always assigned (omitting it resets it
    to None, i.e. automatic); ``profile`` is one of "default", "short", "full"."""
    if profile is not None:
        if profile == "default":
            PRINT_OPTS.precision, PRINT_OPTS.threshold = 4, 1000
            PRINT_OPTS.edgeitems, PRINT_OPTS.linewidth = 3, 80
        elif profile == "short":
            PRINT_OPTS.precision, PRINT_OPTS.threshold = 2, 1000
            PRINT_OPTS.edgeitems, PRINT_OPTS.linewidth = 2, 80
        elif profile == "full":
            PRINT_OPTS.precision, PRINT_OPTS.threshold = 4, math.inf
            PRINT_OPTS.edgeitems, PRINT_OPTS.linewidth = 3, 80
    if precision is not None:
        PRINT_OPTS.precision = precision
    if threshold is not None:
        PRINT_OPTS.threshold = threshold
    if edgeitems is not None:
        PRINT_OPTS.edgeitems = edgeitems
    if linewidth is not None:
        PRINT_OPTS.linewidth = linewidth
    PRINT_OPTS.sci_mode = sci_mode


def get_printoptions() -> dict:
    """The current options as a dict that can be passed back to ``set_printoptions(**d)``."""
    return dataclasses.asdict(PRINT_OPTS)


@contextlib.contextmanager
def printoptions(**kwargs):
    """Temporarily changes the print options (torch._tensor_str.printoptions)."""
    old = get_printoptions()
    set_printoptions(**kwargs)
    try:
        yield
    finally:
        set_printoptions(**old)


# --------------------------------------------------------------------------------------------
# element formatting


def _kind_of(name: str, arr: np.ndarray) -> str:
    """'f' floating, 'c' complex, 'b' bool, 'i' integer -- from the dtype name, else the array."""
    if name.startswith(("float", "bfloat", "half", "double")):
        return "f"
    if name.startswith(("complex", "cfloat", "cdouble")):
        return "c"
    if name == "bool":
        return "b"
    if name.startswith(("int", "uint", "long", "short")):
        return "i"
    k = arr.dtype.kind
    return {"f": "f", "c": "c", "b": "b"}.get(k, "i")


class _Formatter:
    """torch._tensor_str._Formatter over a NumPy array (``floating``: a float dtype)."""

    __slots__ = ("floating_dtype", "int_mode", "sci_mode", "max_width")

    def __init__(self, arr: np.ndarray, floating: bool):
        self.floating_dtype = floating
        self.int_mode = True
        self.sci_mode = False
        self.max_width = 1
        view = arr.reshape(-1)
        if not floating:
            if view.size:
                if view.dtype.kind == "b":
                    w = 5 if not view.all() else 4  # "False" / "True"
                else:
                    # the longest decimal string of an integer set is that of its min or its max
                    w = max(len(str(view.min().item())), len(str(view.max().item())))
                self.max_width = max(self.max_width, w)
            return

        nz = view[np.isfinite(view) & (view != 0)]
        if nz.size == 0:
            return  # no valid number, do nothing
        nz64 = nz.astype(np.float64)
        absv = np.abs(nz64)
        vmin, vmax = float(absv.min()), float(absv.max())
        self.int_mode = bool(np.all(nz == np.ceil(nz)))
        if PRINT_OPTS.sci_mode is None:
            self.sci_mode = vmax / vmin > 1000.0 or vmax > 1.0e8 or vmin < 1.0e-4
        else:
            self.sci_mode = PRINT_OPTS.sci_mode

        values = nz64.tolist()
        if len(values) > 64:
            values = list(set(values))  # widths depend only on distinct values
        p = PRINT_OPTS.precision
        if self.sci_mode:
            spec, extra = f".{p}e", 0
        elif self.int_mode:
            spec, extra = ".0f", 1  # room for the trailing "."
        else:
            spec, extra = f".{p}f", 0
        w = max(len(format(v, spec)) for v in values) + extra
        self.max_width = max(self.max_width, w)

    def width(self) -> int:
        return self.max_width

    def format(self, value) -> str:
        if self.floating_dtype:
            if self.sci_mode:
                ret = f"{{:{self.max_width}.{PRINT_OPTS.precision}e}}".format(value)
            elif self.int_mode:
                ret = f"{value:.0f}"
                if not (math.isinf(value) or math.isnan(value)):
                    ret += "."
            else:
                ret = f"{{:.{PRINT_OPTS.precision}f}}".format(value)
        else:
            ret = f"{value}"
        return (self.max_width - len(ret)) * " " + ret


def _complex_str(val, f1, f2) -> str:
    real_str = f1.format(val.real)
    imag_str = (f2.format(val.imag) + "j").lstrip()
    # handles negative numbers, +0.0, -0.0
    if imag_str[0] == "+" or imag_str[0] == "-":
        return real_str + imag_str
    return real_str + "+" + imag_str


def _scalar_str(arr, f1, f2=None) -> str:
    item = arr.item()
    if f2 is not None:
        return _complex_str(complex(item), f1, f2)
    return f1.format(item)


def _vector_str(arr, indent, summarize, f1, f2=None) -> str:
    opts = PRINT_OPTS
    element_length = f1.width() + 2
    if f2 is not None:
        element_length += f2.width() + 1
    elements_per_line = max(1, math.floor((opts.linewidth - indent) / element_length))

    if f2 is not None:
        def fmt(v):
            return _complex_str(v, f1, f2)
    else:
        fmt = f1.format

    edge = opts.edgeitems
    if summarize and not edge:
        data = ["..."]
    elif summarize and arr.shape[0] > 2 * edge:
        data = ([fmt(v) for v in arr[:edge].tolist()] + [" ..."]
                + [fmt(v) for v in arr[-edge:].tolist()])
    else:
        data = [fmt(v) for v in arr.tolist()]

    lines = [", ".join(data[i:i + elements_per_line]) for i in range(0, len(data), elements_per_line)]
    return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"


def _tensor_str_with_formatter(arr, indent, summarize, f1, f2=None) -> str:
    dim = arr.ndim
    if dim == 0:
        return _scalar_str(arr, f1, f2)
    if dim == 1:
        return _vector_str(arr, indent, summarize, f1, f2)
    edge = PRINT_OPTS.edgeitems
    n = arr.shape[0]
    if summarize and n > 2 * edge:
        slices = ([_tensor_str_with_formatter(arr[i], indent + 1, summarize, f1, f2) for i in range(edge)]
                  + ["..."]
                  + [_tensor_str_with_formatter(arr[i], indent + 1, summarize, f1, f2)
                     for i in range(n - edge, n)])
    else:
        slices = [_tensor_str_with_formatter(arr[i], indent + 1, summarize, f1, f2) for i in range(n)]
    return "[" + ("," + "\n" * (dim - 1) + " " * (indent + 1)).join(slices) + "]"


def _summarized_data(arr: np.ndarray) -> np.ndarray:
    """torch's get_summarized_data: keeps ``edgeitems`` entries at each end of every long axis."""
    dim = arr.ndim
    if dim == 0:
        return arr
    edge = PRINT_OPTS.edgeitems
    if dim >= 2 and not edge:
        return arr[(slice(0, 0),) * dim]
    for axis in range(dim):
        n = arr.shape[axis]
        if n > 2 * edge:
            if edge:
                idx = np.r_[0:edge, n - edge:n]
                arr = np.take(arr, idx, axis=axis)
            # edge == 0 on a 1-d tensor: torch.cat((t[:0], t[-0:])) is the whole tensor
    return arr


def _tensor_str(arr: np.ndarray, indent: int, kind: str) -> str:
    if arr.size == 0:
        return "[]"
    summarize = arr.size > PRINT_OPTS.threshold
    sample = _summarized_data(arr) if summarize else arr
    if kind == "c":
        f1 = _Formatter(np.ascontiguousarray(sample.real), True)
        f2 = _Formatter(np.ascontiguousarray(sample.imag), True)
        return _tensor_str_with_formatter(arr, indent, summarize, f1, f2)
    formatter = _Formatter(sample, kind == "f")
    return _tensor_str_with_formatter(arr, indent, summarize, formatter)


def _add_suffixes(tensor_str, suffixes, indent, force_newline=False) -> str:
    parts = [tensor_str]
    last_line_len = len(tensor_str) - tensor_str.rfind("\n") + 1
    for suffix in suffixes:
        n = len(suffix)
        if force_newline or last_line_len + n + 2 > PRINT_OPTS.linewidth:
            parts.append(",\n" + " " * indent + suffix)
            last_line_len = indent + n
            force_newline = False
        else:
            parts.append(", " + suffix)
            last_line_len += n + 2
    parts.append(")")
    return "".join(parts)


# --------------------------------------------------------------------------------------------
# public entry points


def _host(arr):
    try:
        from . import _backend
        arr = _backend.to_host(arr)
    except Exception:  # pragma: no cover - a foreign array type; asarray below handles NumPy-likes
        pass
    return np.asarray(arr)


def _default_dtype_name() -> str:
    from ._dtype import get_default_dtype
    return get_default_dtype().name


def tensor_repr(tensor, *, default_dtype: str | None = None) -> str:
    """``repr(tensor)`` exactly as PyTorch prints it (``default_dtype`` overrides the name of the
    default floating dtype, which is otherwise read from ``disttorch.get_default_dtype()``)."""
    prefix = "tensor("
    indent = len(prefix)
    suffixes = []

    dtype_name = tensor.dtype.name
    default_name = default_dtype if default_dtype is not None else _default_dtype_name()
    dtype_str = "torch." + dtype_name

    dev = getattr(tensor, "device", None)
    dev_type = getattr(dev, "type", "cpu") if dev is not None else "cpu"
    # torch prints the device whenever it isn't the default (CPU) device
    if dev_type != "cpu":
        suffixes.append("device='" + str(dev) + "'")

    default_complex = "complex128" if default_name == "float64" else "complex64"
    has_default_dtype = dtype_name in (default_name, default_complex, "int64", "bool")

    if dev_type == "meta":
        shape = tuple(getattr(tensor, "shape", None) or np.shape(tensor._data))
        suffixes.append("size=" + str(tuple(int(s) for s in shape)))
        if dtype_name != default_name:
            suffixes.append("dtype=" + dtype_str)
        tensor_str = "..."
    else:
        arr = _host(tensor._data)
        if arr.size == 0:
            # print the shape unless it is (0,), to match NumPy; the dtype can't be inferred from
            # elements, so anything but the default float dtype is shown
            if arr.ndim != 1:
                suffixes.append("size=" + str(tuple(int(s) for s in arr.shape)))
            if dtype_name != default_name:
                suffixes.append("dtype=" + dtype_str)
            tensor_str = "[]"
        else:
            if not PRINT_OPTS.edgeitems:
                suffixes.append("size=" + str(tuple(int(s) for s in arr.shape)))
            if not has_default_dtype:
                suffixes.append("dtype=" + dtype_str)
            tensor_str = _tensor_str(arr, indent, _kind_of(dtype_name, arr))

    grad_fn = getattr(tensor, "grad_fn", None)
    if grad_fn is not None:
        suffixes.append(f"grad_fn=<{type(grad_fn).__name__}>")
    elif getattr(tensor, "requires_grad", False):
        suffixes.append("requires_grad=True")

    return _add_suffixes(prefix + tensor_str, suffixes, indent)


def parameter_repr(tensor, **kwargs) -> str:
    """nn.Parameter's repr: ``"Parameter containing:\\n" + repr(tensor)``."""
    return "Parameter containing:\n" + tensor_repr(tensor, **kwargs)
