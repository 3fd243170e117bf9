"""The input gradient of a stride-1 convolution as kh*kw shifted GEMMs (no column buffer).

For a stride-1, undilated window, every output position (i, j) adds ``y[n, :, i, j] @ W[:, :, dh, dw]``
(A -> C) into input position (i + dh, j + dw) of the padded grid. Lay ``y`` out channels-last on the
padded grid's row pitch (row ``i * Wp + j`` of sample n, zero rows where i >= Ho or j >= Wo): then
for one offset (dh, dw) all those additions are ONE matrix product, ``Y (rows x A) @ W_k (A x C)``,
added (GEMM beta = 1) into the grid's rows shifted by ``dh * Wp + dw``. kh*kw such products make the
whole gradient; nothing is scattered and no (positions x kh*kw*C) column buffer is written.

Compared with the other two ways (``conv_nhwc``: columns scattered back, or a full correlation with
the flipped weight, whose GEMMs have only C output columns over a K = kh*kw*A reduction), each
product here is a plain (rows x A) @ (A x C) GEMM, and the only copies are ``y`` into its row
layout and the grid back to NCHW. Measured on the CNN benchmark's second convolution (64 samples,
32 -> 64 channels, 26x26 -> 24x24, one thread) 14.0-15.4 ms against 17.7-19.9 ms for the full
correlation and 19.4-20.0 ms for the scatter; PyTorch's oneDNN takes 9.4 ms. The products also
cover the zero rows (Wp * Hp rows per sample for Ho * Wo outputs), so the way only pays where the
padding is a small part of the grid (``suits``).

Samples go in chunks whose rows stay in cache across the kh*kw products, on the intra-op threads
at once. A chunk's products end ``dh * Wp + dw`` rows before its end: those rows of ``Y`` are zero
(past the last output of the chunk's last sample), so no chunk ever writes another's rows.
"""
from __future__ import annotations

import numpy as np

from .. import _gemm
from . import conv_nhwc

#: the grid (Hp * Wp rows per sample) may be at most this many times the outputs (Ho * Wo):
#: beyond it the products over zero rows cost more than the scatter saves (CNN 24x24 from 26x26:
#: 1.17; 16x16 with padding 1: 1.27; 8x8: 1.56, 4x4: 2.25)
MAX_GRID_RATIO = 1.4
#: input channels (the products' output width) within these bounds. Below, the products are too
#: thin; above, the full correlation's one product with a kh*kw*A reduction runs faster (one
#: thread, CPU ms, shifted / correlation: 32 -> 64 channels at 24x24 14.0 / 17.7, 16 -> 32 at
#: 24x24 2.35 / 3.33, 16 -> 64 at 20x20 2.80 / 3.71, 32 -> 64 at 32x32 6.09 / 7.36; but 64 -> 64 at
#: 16x16 3.04 / 2.72, 64 -> 128 at 16x16 5.57 / 5.34: see the commit that added this module)
MIN_CHANNELS = 16
MAX_CHANNELS = 32
#: rows of ``Y`` and of the grid per chunk, in bytes (both stay in a 2 MiB L2 across the products)
_CHUNK_BYTES = 3 << 19


def suits(x_or_y, win, channels, out_channels) -> bool:
    """Whether the input gradient of this convolution goes through ``input_grad``."""
    if type(x_or_y) is not np.ndarray or win.stride != (1, 1) or win.dilation != (1, 1):
        return False
    hp, wp = win.padded_size
    ho, wo = win.out_size
    return (MIN_CHANNELS <= channels <= MAX_CHANNELS and out_channels >= MIN_CHANNELS and ho * wo > 0
            and hp * wp <= MAX_GRID_RATIO * ho * wo)


def input_grad(y, w4, win, channels):
    """(N, channels, H, W): the gradient of ``sum(g * correlate(x, w4))`` with respect to ``x``,
    for ``y = g`` (N, A, Ho, Wo) over a stride-1 undilated ``win``."""
    n, a, ho, wo = y.shape
    kh, kw = win.kernel
    hp, wp = win.padded_size
    rows = hp * wp
    dtype = y.dtype
    offsets = [dh * wp + dw for dh in range(kh) for dw in range(kw)]
    weights = [np.ascontiguousarray(w4[:, :, dh, dw]) for dh in range(kh) for dw in range(kw)]  # (A, C)
    grid = np.empty((n, hp, wp, channels), dtype=dtype)
    per_sample = rows * (a + channels) * y.itemsize
    most = max(1, _CHUNK_BYTES // per_sample)
    count = -(-n // most)
    step = -(-n // count)
    chunks = [(s, min(n, s + step)) for s in range(0, n, step)]

    def chunk(i):
        s, e = chunks[i]
        m = (e - s) * rows
        ys = np.zeros((e - s, hp, wp, a), dtype=dtype)
        ys[:, :ho, :wo, :] = y[s:e].transpose(0, 2, 3, 1)
        ys = ys.reshape(m, a)
        out = grid[s:e].reshape(m, channels)
        out.fill(0)
        for off, wk in zip(offsets, weights):
            _gemm.matmul(ys[:m - off], wk, out=out[off:], accumulate=True)

    conv_nhwc._run_chunks(chunk, len(chunks), np)
    return conv_nhwc._to_channels_first(grid, win)
