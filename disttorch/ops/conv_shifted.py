"""The input gradient of a stride-1 convolution as kh*kw shifted GEMMs (no column buffer).

For a stride-1, undilated window, every output position (i, j) adds ``W[:, :, dh, dw].T @ y[n, :, i, j]``
(A -> C) into input position (i + dh, j + dw) of the padded grid. Give each sample's gradient ``y``
the padded grid's row pitch Wp (zero columns j >= Wo; still channel-major, as NCHW has it): then
for one offset (dh, dw) all those additions are ONE product per sample, ``W_k.T (C x A) @ Y (A x
Ho*Wp)``, added (GEMM beta = 1) into the sample's (C, Hp*Wp) grid at column ``dh * Wp + dw``. kh*kw
batched products make the whole gradient; nothing is scattered, no (positions x kh*kw*C) column
buffer is written, and the grid is already NCHW: cropping the padding is the only copy out.

The other two ways (``conv_nhwc``: columns scattered back, or a full correlation with the flipped
weight) both build kh*kw-times-larger column buffers and transpose through channels-last.
Measured per input gradient (one thread, ms; shifted / full correlation / scatter):
32 -> 64 channels at 24x24 (the CNN benchmark's second convolution) 11.4 / 18.4 / 19.0 (PyTorch's
oneDNN: 9.4); 16 -> 32 at 24x24 2.04 / 3.47 / 4.41; 64 -> 64 at 32x32 8.60 / 10.55 / 14.04;
64 -> 128 at 16x16 4.67 / 5.38 / 5.54; 3 -> 64 at 64x64 4.96 / 15.98 / 8.89; 3 -> 8 at 32x32
0.33 / 0.52 / 1.97. It loses where the grid is mostly padding (32 -> 32 at 8x8 with padding 1:
0.29 / 0.23 / 0.36; 128 channels at 6x6 from 8x8: 1.11 / 1.30 / 0.72), with one input channel
(a product one row tall: 0.39 against 0.22), and by 4% at 256 -> 256 channels (16.0 / 15.4):
``suits`` keeps those on the other ways.

Samples go in chunks whose Y and grid stay in cache across the kh*kw products, on the intra-op
threads at once (each chunk writes only its own samples).
"""
from __future__ import annotations

import numpy as np

from .. import _gemm
from . import conv_nhwc

#: the grid (Hp * Wp positions per sample) may be at most this many times the outputs (Ho * Wo):
#: beyond it the products over padding cost more than the scatter saves (24x24 from 26x26: 1.17;
#: 16x16 with padding 1: 1.27; 8x8: 1.56; 4x4: 2.25)
MAX_GRID_RATIO = 1.4
#: input channels within these bounds, output channels at least MIN_OUT_CHANNELS (see above)
MIN_CHANNELS, MAX_CHANNELS = 2, 128
MIN_OUT_CHANNELS = 8
#: bytes of Y and grid per chunk (both stay in a 2 MiB L2 across the products)
_CHUNK_BYTES = 3 << 19


def suits(x_or_y, win, channels, out_channels) -> bool:
    """Whether the input gradient of this convolution goes through ``input_grad``."""
    if type(x_or_y) is not np.ndarray or win.stride != (1, 1) or win.dilation != (1, 1):
        return False
    hp, wp = win.padded_size
    ho, wo = win.out_size
    return (MIN_CHANNELS <= channels <= MAX_CHANNELS and out_channels >= MIN_OUT_CHANNELS and ho * wo > 0
            and hp * wp <= MAX_GRID_RATIO * ho * wo)


def input_grad(y, w4, win, channels):
    """(N, channels, H, W): the gradient of ``sum(g * correlate(x, w4))`` with respect to ``x``,
    for ``y = g`` (N, A, Ho, Wo) over a stride-1 undilated ``win``."""
    n, a, ho, wo = y.shape
    kh, kw = win.kernel
    hp, wp = win.padded_size
    rows = hp * wp
    span = ho * wp                           # rows of one sample's Y: Ho outputs rows at the grid's pitch
    pitch = rows + (kw - 1)                  # a sample's grid, plus the last product's overhang
    dtype = y.dtype
    offsets = [dh * wp + dw for dh in range(kh) for dw in range(kw)]
    weights = [np.ascontiguousarray(w4[:, :, dh, dw].T) for dh in range(kh) for dw in range(kw)]  # (C, A)
    gx = np.empty((n, channels) + tuple(win.in_size), dtype=dtype)
    (pt, _, pl, _), (h, w) = win.pads, win.in_size
    chunks = conv_nhwc._chunks(n, (a * span + channels * pitch) * y.itemsize, _CHUNK_BYTES)

    def block(lo, hi):
        most = max(e - s for s, e in chunks[lo:hi])
        # this thread's buffers, reused by its chunks: Y at the grid's pitch (the columns past Wo
        # stay zero) and the grid the products add into; the products are planned on them once
        y_buffer = np.zeros((most, a, ho, wp), dtype=dtype)
        grid_buffer = np.empty((most, channels, pitch), dtype=dtype)
        ys = y_buffer.reshape(most, a, span)
        products = [_gemm.Product(wk, ys, grid_buffer[:, :, off:off + span], accumulate=True)
                    for off, wk in zip(offsets, weights)]
        planes = grid_buffer[:, :, :rows].reshape(most, channels, hp, wp)[:, :, pt:pt + h, pl:pl + w]
        for s, e in chunks[lo:hi]:
            y_buffer[:e - s, :, :, :wo] = y[s:e]
            grid = grid_buffer[:e - s]
            grid.fill(0)
            for product in products:
                product(e - s)
            gx[s:e] = planes[:e - s]

    conv_nhwc._run_blocks(block, len(chunks), np, n * channels * a * kh * kw * span)
    return gx
