"""Keeps freed tensor memory in the process heap instead of handing it back to the kernel.

Why: glibc serves large blocks (over 128 KiB at first, up to 32 MiB once it adapts) with fresh
``mmap`` pages, and trims the heap top as soon as 2x that is free. A training step frees its
activations and gradients at the end and allocates the same sizes again at the next step, so each
step page-faults its whole working set back in: on a 4M-element elementwise chain that is 11k
faults and about a third of the step time (``benchmarks/ops.py``). PyTorch users get the same
effect from jemalloc/tcmalloc or a CUDA caching allocator; here two ``mallopt`` settings do it.

The cost: the heap does not shrink below the step's peak, i.e. resident memory stays at the peak
the job reaches every step anyway. ``DISTTORCH_MALLOC_TUNING=0`` turns it off. Only glibc Linux is
touched; elsewhere this does nothing.
"""
from __future__ import annotations

import ctypes
import platform

from disttorch_launcher import settings

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Blocks up to 1 GiB come from the heap (and are reused); up to 1 GiB of free heap top is kept.
_LIMIT = 1 << 30

applied = False


def tune_allocator() -> bool:
    """Applies the settings once per process; returns whether they are in effect."""
    global applied
    if applied or not settings.get("DISTTORCH_MALLOC_TUNING"):
        return applied
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        ok = libc.mallopt(_M_MMAP_THRESHOLD, _LIMIT) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, _LIMIT) == 1
    except (OSError, AttributeError):  # no mallopt symbol: not glibc after all
        return False
    applied = ok
    return ok
