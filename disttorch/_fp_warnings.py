"""PyTorch returns inf / nan for ``log(0)``, ``x / 0`` or ``0 / 0`` without a word; NumPy warns.

A ``warnings`` filter (instead of ``np.errstate`` around each op, which costs about 1 us per call
on the small-tensor hot path) silences exactly NumPy's floating-point RuntimeWarnings raised from
disttorch's own modules. NumPy code outside disttorch keeps its warnings. Filters a user installs
later (``warnings.simplefilter("error")``, pytest's ``-W error``) go in front of this one and win.
"""
from __future__ import annotations

import warnings

_MESSAGE = r"(divide by zero|invalid value|overflow|underflow) encountered"
_MODULES = r"disttorch(\..*)?$"


def silence_numpy_fp_warnings() -> None:
    warnings.filterwarnings("ignore", message=_MESSAGE, category=RuntimeWarning, module=_MODULES)
