"""Convolutions with a few input channels (an image's 1 or 3) over columns built from NCHW planes.

``conv_nhwc`` builds its columns from a channels-last copy, where a window row is one run of kw*C
floats: with C = 1 that is 3 floats at a time, and the copy crawls. Here the columns of a sample are
(C, kh, kw, Ho, Wo), one strided copy per kernel offset whose inner runs are Wo floats long, read
straight from the (zero-padded) NCHW input; no channels-last copy is made at all. Each sample's
columns are then a (K, P) matrix (K = C*kh*kw, P = Ho*Wo), and

- the output is ``W (A, K) @ cols (K, P)``, written straight into the NCHW result;
- the weight gradient is the sum over samples of ``y (A, P) @ cols.T (P, K)`` (small: one batched
  call per chunk, then a sum);
- the input gradient is ``W.T (K, A) @ y (A, P)`` added back plane by plane onto the padded grid.

Measured (one thread, ms, forward; planar / channels-last / PyTorch): 64 x 1 -> 32 at 28x28 (the CNN
benchmark's first layer) 0.51 / 1.21 / 0.87; 64 x 3 -> 16 at 32x32 0.95 / 1.85 / 0.78; 16 x 3 -> 64
at 64x64 2.22 / 3.29 / 2.46. From 8 channels the channels-last runs are long enough (2.96 / 2.90 at
8 channels, 5.13 / 4.23 at 16): ``suits`` takes up to ``MAX_CHANNELS``, with unit stride and
dilation along W.

Samples go in chunks whose columns stay in cache, one contiguous range of chunks per intra-op
thread, with the GEMMs planned once per thread (``conv_nhwc._run_blocks``, ``_gemm.Product``).
"""
from __future__ import annotations

import numpy as np

from .. import _gemm
from . import conv_nhwc

#: input channels up to this many take the planar columns (see the measurements above)
MAX_CHANNELS = 4


def suits(x_or_y, channels: int, win) -> bool:
    """Whether a convolution with ``channels`` input channels over this NumPy array runs here: a
    few channels, and windows whose rows are contiguous runs of the input (stride and dilation 1
    along W). A strided window row copies every other float: ResNet's 7x7/2 stem on 3 channels
    took 4.89 ms forward here against 3.80 ms through channels-last columns."""
    return (type(x_or_y) is np.ndarray and channels <= MAX_CHANNELS and win.stride[1] == 1
            and win.dilation[1] == 1)


def padded_input(x, win):
    """``x`` (N, C, H, W) on its zero-padded grid (N, C, Hp, Wp): ``x`` itself without padding."""
    if not any(win.pads):
        return x
    grid = np.zeros(x.shape[:2] + tuple(win.padded_size), dtype=x.dtype)
    rows, cols = win.crop()
    grid[:, :, rows, cols] = x
    return grid


def prepare(x, w4, win):
    """(padded input, weight matrix (A, C*kh*kw)): the forward's, kept for its backward."""
    return padded_input(x, win), w4.reshape(w4.shape[0], -1)


class _Columns:
    """One thread's columns: ``fill(s, e)`` writes samples s..e of ``grid`` as (m, K, P) into the
    thread's buffer ``stack`` (most, K, P), one copy per kernel offset."""

    def __init__(self, grid, win, most):
        (kh, kw), (ho, wo) = win.kernel, win.out_size
        self.grid, self.offsets = grid, list(conv_nhwc._offsets(win))
        self.planes = np.empty((most, grid.shape[1], kh, kw, ho, wo), dtype=grid.dtype)
        self.stack = self.planes.reshape(most, -1, ho * wo)

    def fill(self, s, e):
        m = e - s
        for i, j, rows, cols in self.offsets:
            self.planes[:m, :, i, j] = self.grid[s:e, :, rows, cols]


def _chunks(n, win, channels, itemsize):
    ho, wo = win.out_size
    return conv_nhwc._chunks(n, channels * win.kernel_area * ho * wo * itemsize)


def correlate(x, w4, win, prepared=None):
    """x (N, C, H, W) -> (N, A, Ho, Wo), as ``conv_nhwc.correlate``."""
    n, a = x.shape[0], w4.shape[0]
    ho, wo = win.out_size
    grid, wm = prepare(x, w4, win) if prepared is None else prepared
    out = np.empty((n, a, ho * wo), dtype=x.dtype)
    chunks = _chunks(n, win, x.shape[1], x.itemsize)

    def block(lo, hi):
        columns = _Columns(grid, win, max(e - s for s, e in chunks[lo:hi]))
        product = _gemm.Product(wm, columns.stack, out)
        for s, e in chunks[lo:hi]:
            columns.fill(s, e)
            product(e - s, out_at=s)

    conv_nhwc._run_blocks(block, len(chunks), np, n * a * wm.shape[1] * ho * wo)
    return out.reshape(n, a, ho, wo)


def backward(x, y, w4, win, channels, need_input, need_weight, prepared=None):
    """(grad of x or None, grad of w or None) for the incoming gradient ``y`` (N, A, Ho, Wo) of
    ``correlate(x, w4)``, as ``conv_nhwc.backward``."""
    n, a = y.shape[0], y.shape[1]
    ho, wo = win.out_size
    k = channels * win.kernel_area
    ys = y.reshape(n, a, ho * wo)
    grid, wm = prepared if prepared is not None else (None, None)
    if need_weight and grid is None:
        grid = padded_input(x, win)
    if need_input and wm is None:
        wm = w4.reshape(a, k)
    grad_grid = np.zeros((n, channels) + tuple(win.padded_size), dtype=y.dtype) if need_input else None
    chunks = _chunks(n, win, channels, y.itemsize)
    offsets = list(conv_nhwc._offsets(win))
    partial = {}  # first chunk index of a range -> that range's weight gradient sum

    def block(lo, hi):
        most = max(e - s for s, e in chunks[lo:hi])
        if need_weight:
            gw = partial[lo] = np.zeros((a, k), dtype=y.dtype)
            columns = _Columns(grid, win, most)
            # the (A, K) products of a few channels are small next to their P-long sums: one batched
            # call per chunk into a stack, then a sum over the chunk's samples (conv1 of the CNN
            # benchmark: 0.96 ms as one GEMM per sample, most of it the calls)
            per_sample = np.empty((most, a, k), dtype=y.dtype)
            weight_product = _gemm.Product(ys, columns.stack.transpose(0, 2, 1), per_sample)
        if need_input:
            back = _Columns(grad_grid, win, most)  # its buffer takes W.T @ y; nothing is read from the grid
            input_product = _gemm.Product(wm.T, ys, back.stack)
        for s, e in chunks[lo:hi]:
            if need_weight:
                columns.fill(s, e)
                weight_product(e - s, a_at=s)
                gw += per_sample[:e - s].sum(axis=0)
            if need_input:
                input_product(e - s, b_at=s)
                for i, j, rows, cols in offsets:
                    grad_grid[s:e, :, rows, cols] += back.planes[:e - s, :, i, j]

    conv_nhwc._run_blocks(block, len(chunks), np, n * a * k * ho * wo * (need_input + need_weight))
    gx = None
    if need_input:
        rows, cols = win.crop()
        gx = np.ascontiguousarray(grad_grid[:, :, rows, cols]) if any(win.pads) else grad_grid
    if not need_weight:
        return gx, None
    return gx, conv_nhwc.sum_ranges(partial).reshape(w4.shape if w4 is not None else (a, channels) + tuple(win.kernel))
