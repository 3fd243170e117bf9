"""``torch.finfo`` and ``torch.iinfo``: the numeric limits of a dtype, as PyTorch reports them.

Floating limits are computed from each format's layout (significand bits, exponent bits), so
bfloat16 needs no ml_dtypes import; integer limits come from NumPy. Values are Python floats /
ints, as in PyTorch.
"""
import numpy as np

from . import _dtype

# name: (bits, significand bits after the point, largest exponent, decimal digits of precision)
_FLOAT_LAYOUT = {
    "float16": (16, 10, 15, 3),
    "bfloat16": (16, 7, 127, 2),
    "float32": (32, 23, 127, 6),
    "float64": (64, 52, 1023, 15),
}
# A complex dtype reports the limits of its real part, as PyTorch does.
_REAL_OF_COMPLEX = {"complex64": "float32", "complex128": "float64"}


def _format(value):
    return f"{value:.6g}"


class finfo:
    """Machine limits of a floating dtype: bits, eps, max, min, tiny (= smallest_normal), resolution.

    ``finfo()`` describes the default floating dtype; a complex dtype describes its real part.
    """

    def __init__(self, type=None):
        d = _dtype.get_default_dtype() if type is None else _dtype.as_dtype(type)
        name = _REAL_OF_COMPLEX.get(d.name, d.name)
        if name not in _FLOAT_LAYOUT:
            raise TypeError("torch.finfo() requires a floating point input type. Use torch.iinfo to handle "
                            "'torch.finfo'")
        bits, mantissa, max_exponent, digits = _FLOAT_LAYOUT[name]
        self.bits = bits
        self.eps = 2.0 ** -mantissa
        self.max = (2.0 - 2.0 ** -mantissa) * 2.0 ** max_exponent
        self.min = -self.max
        self.tiny = self.smallest_normal = 2.0 ** (1 - max_exponent)
        self.resolution = float(f"1e-{digits}")
        self.dtype = name

    def __eq__(self, other):
        return isinstance(other, finfo) and vars(self) == vars(other)

    def __hash__(self):
        return hash((finfo, self.dtype))

    def __repr__(self):
        return (f"finfo(resolution={_format(self.resolution)}, min={_format(self.min)}, max={_format(self.max)}, "
                f"eps={_format(self.eps)}, smallest_normal={_format(self.smallest_normal)}, "
                f"tiny={_format(self.tiny)}, dtype={self.dtype})")


class iinfo:
    """Machine limits of an integer dtype: bits, min, max."""

    def __init__(self, type):
        d = _dtype.as_dtype(type)
        if d.name == "bool":
            raise TypeError("torch.bool is not supported by torch.iinfo")
        if d._category != 1:
            raise TypeError("torch.iinfo() requires an integer input type. Use torch.finfo to handle 'torch.iinfo'")
        info = np.iinfo(d.np)
        self.bits = int(info.bits)
        self.min = int(info.min)
        self.max = int(info.max)
        self.dtype = d.name

    def __eq__(self, other):
        return isinstance(other, iinfo) and vars(self) == vars(other)

    def __hash__(self):
        return hash((iinfo, self.dtype))

    def __repr__(self):
        return f"iinfo(min={_format(float(self.min))}, max={_format(float(self.max))}, dtype={self.dtype})"
