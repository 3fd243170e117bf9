"""Ungrouped convolution kernels over a channels-last (N, H, W, C) copy of the large grid.

In NCHW a window's columns are kw-long runs (a 2x2 deep layer copies 2 floats at a time); in
channels-last every window row is one contiguous run of kw*C floats, so im2col becomes a copy at
memory speed and its adjoint (col2im) kh*kw vectorised adds of C-long runs. Each kernel makes one
channels-last copy of its large-grid input (input-sized, not column-sized), and the GEMMs read the
columns as (samples*Ho*Wo, kh*kw*C) rows with the weight as (A, kh*kw*C), a small permuted copy.

The directions match ``conv.py``'s (large grid x: (N, C, H, W); small grid y: (N, A, Ho, Wo);
weight (A, C, kh, kw)): ``correlate`` x -> y, ``correlate_adjoint`` y -> x, ``weight_grad`` and the
fused ``backward`` (one column buffer per chunk serves both the weight and the input gradient).
Batches go in chunks of a few MiB of columns so a chunk's columns stay in cache between the copy
that writes them and the GEMMs that read them; each intra-op thread takes one contiguous range of
chunks (``_run_blocks``).
"""
from __future__ import annotations

import numpy as np

from .. import _gemm, _intra_op, _threads
from .._backend import array_module
from .window import Window2d

_CHUNK_BYTES = 1 << 20  # columns per chunk (in-process A/B under load: CNN step 9% faster than 2 MiB, ResNet-18 alike; 512 KiB 10% slower on ResNet-18)


# Below this many output positions per sample a per-sample GEMM is too thin (it rereads the whole
# weight for a handful of columns); the forward then multiplies the whole chunk and transposes.
_DIRECT_MIN_POSITIONS = 64


def _chunks(n, bytes_per_sample, budget=None):
    """Sample ranges of about ``budget`` bytes each (``_CHUNK_BYTES`` of columns by default), of
    near-equal sizes (16 samples in chunks of 14 leave a thin GEMM of 2: 8 + 8 keeps both GEMMs wide).

    With several intra-op threads the count is a multiple of theirs, so ``_blocks`` hands every
    thread the same number of samples: 64 samples in 11 chunks of 6 gave one thread 6 chunks and
    the other 5, and the CNN's input-gradient pass waited 1.2 ms of its 8 for the busier one."""
    most = max(1, (_CHUNK_BYTES if budget is None else budget) // max(1, bytes_per_sample))
    count = -(-n // most)
    threads = _threads.intra_op_threads()
    if threads > 1 and n > 1:
        count = min(n, -(-count // threads) * threads)
        return [(n * i // count, n * (i + 1) // count) for i in range(count)]
    step = -(-n // count) if count else 1
    return [(s, min(n, s + step)) for s in range(0, n, step)]


def channel_major(n, positions, out_channels):
    """Whether the columns should run (C, kh, kw) instead of (kh, kw, C): where the weight is several
    times the batch's columns (deep layers: 512 channels, 2x2 positions), permuting the weight and
    its gradient to channels-last costs more than the per-offset window copy that this order needs."""
    return out_channels >= 4 * n * positions


def input_grid(x, win):
    """``x`` (N, C, H, W) as a contiguous channels-last (N, Hp, Wp, C) array on the padded grid."""
    xp = array_module(x)
    if not any(win.pads):
        return xp.ascontiguousarray(x.transpose(0, 2, 3, 1))
    hp, wp = win.padded_size
    out = xp.zeros((x.shape[0], hp, wp, x.shape[1]), dtype=x.dtype)
    rows, cols = win.crop()
    out[:, rows, cols, :] = x.transpose(0, 2, 3, 1)
    return out


def weight_matrix(w4, major=False):
    """(A, C, kh, kw) -> (A, K), K in the order of the columns (``_Columns``): a free reshape (``major``) or a
    permuted copy (A, kh*kw*C)."""
    xp = array_module(w4)
    if major:
        return w4.reshape(w4.shape[0], -1)
    return xp.ascontiguousarray(w4.transpose(0, 2, 3, 1)).reshape(w4.shape[0], -1)


def _weight_from_matrix(wm, channels, win, major=False):
    xp = array_module(wm)
    kh, kw = win.kernel
    if major:
        return wm.reshape(wm.shape[0], channels, kh, kw)
    return xp.ascontiguousarray(wm.reshape(wm.shape[0], kh, kw, channels).transpose(0, 3, 1, 2))


def output_rows(y):
    """(N, A, Ho, Wo) -> (N*Ho*Wo, A) contiguous: one row per output position."""
    xp = array_module(y)
    return xp.ascontiguousarray(y.transpose(0, 2, 3, 1)).reshape(-1, y.shape[1])


def _offsets(win):
    """(i, j, rows, cols) per kernel offset: the slices of the padded grid that offset reads."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = win.kernel, win.stride, win.dilation, win.out_size
    for i in range(kh):
        rows = slice(i * dh, i * dh + sh * (ho - 1) + 1, sh)
        for j in range(kw):
            yield i, j, rows, slice(j * dw, j * dw + sw * (wo - 1) + 1, sw)


def major_windows(grid, win, out):
    """The windows of the channels-last ``grid`` (m, Hp, Wp, C) as rows (m*Ho*Wo, K) with K ordered
    (C, kh, kw), written into ``out`` (a buffer of at least that many elements): one copy per kernel
    offset, each with C-long inner runs (one strided copy would run kw floats at a time). The
    (kh, kw, C) order needs no function: it is one copy of ``_window_view`` (see ``_Columns``)."""
    (kh, kw), (ho, wo) = win.kernel, win.out_size
    m, c = grid.shape[0], grid.shape[3]
    out = out.reshape(-1)[:m * ho * wo * kh * kw * c].reshape(m, ho, wo, c, kh, kw)
    for i, j, rows, cols in _offsets(win):
        out[..., i, j] = grid[:, rows, cols, :]
    return out.reshape(m * ho * wo, -1)


def scatter_windows(cols, grid, win, major=False):
    """Adjoint of the windows (``_Columns``): adds ``cols`` (m*Ho*Wo, K) onto ``grid`` (m, Hp, Wp, C) in place."""
    (kh, kw), (ho, wo) = win.kernel, win.out_size
    m, c = grid.shape[0], grid.shape[3]
    blocks = cols.reshape((m, ho, wo, c, kh, kw) if major else (m, ho, wo, kh, kw, c))
    add = win.overlapping  # disjoint windows: every grid element gets at most one value
    for i, j, rows, cols_ in _offsets(win):
        target = grid[:, rows, cols_, :]
        block = blocks[..., i, j] if major else blocks[:, :, :, i, j, :]
        if add:
            target += block
        else:
            target[...] = block


def _window_view(grid, win):
    """``grid`` (m, Hp, Wp, C) seen as its windows (m, Ho, Wo, kh, kw, C): a strided view, no copy."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = win.kernel, win.stride, win.dilation, win.out_size
    s_n, s_h, s_w, s_c = grid.strides
    return array_module(grid).lib.stride_tricks.as_strided(
        grid, (grid.shape[0], ho, wo, kh, kw, grid.shape[3]), (s_n, s_h * sh, s_w * sw, s_h * dh, s_w * dw, s_c))


class _Columns:
    """One thread's columns for its chunks of samples: ``fill(s, e)`` copies the windows of samples
    s..e into one buffer reused chunk after chunk (``stack``, (most, Ho*Wo, K)) and returns where in
    ``stack`` sample s starts. Where a window is the grid itself (1x1, unstrided, unpadded) nothing
    is copied and ``stack`` is the whole grid.

    The windows' strided view is made once, so a chunk's copy holds the GIL for about a microsecond
    (see ``_run_blocks``)."""

    def __init__(self, grid, win, major, most):
        xp = array_module(grid)
        ho, wo = win.out_size
        k = grid.shape[3] * win.kernel_area
        self.grid, self.win, self.major = grid, win, major
        self.view = None if major else _window_view(grid, win)
        self.copies = major or not self.view.flags.c_contiguous
        if self.copies:
            self.stack = xp.empty((most, ho * wo, k), dtype=grid.dtype)
            self.windows = self.stack.reshape((most,) + self.view.shape[1:]) if self.view is not None else None
        else:
            self.stack = grid.reshape(grid.shape[0], ho * wo, k)

    def fill(self, s, e) -> int:
        if not self.copies:
            return s
        if self.view is not None:
            self.windows[:e - s] = self.view[s:e]
        else:
            major_windows(self.grid[s:e], self.win, self.stack)
        return 0


def _to_channels_first(grid, win):
    """The unpadded part of a channels-last grid (N, Hp, Wp, C) as a contiguous (N, C, H, W) array."""
    xp = array_module(grid)
    rows, cols = win.crop()
    return xp.ascontiguousarray(grid[:, rows, cols, :].transpose(0, 3, 1, 2))


def prepare(x, w4, win):
    """(input grid, weight matrix) of ``correlate(x, w4)``, for the forward and again its backward
    (a few input channels: ``conv_planar``'s padded NCHW input and weight matrix)."""
    if conv_planar.suits(x, x.shape[1], win):
        return conv_planar.prepare(x, w4, win)
    major = channel_major(x.shape[0], win.out_size[0] * win.out_size[1], w4.shape[0])
    return input_grid(x, win), weight_matrix(w4, major)


def correlate(x, w4, win, prepared=None):
    """x (N, C, H, W) -> (N, A, Ho, Wo): every window of ``x`` times the weight matrix.

    ``prepared``: ``prepare(x, w4, win)`` when the caller has it.
    """
    if conv_planar.suits(x, x.shape[1], win):
        return conv_planar.correlate(x, w4, win, prepared)
    xp = array_module(x)
    n, a = x.shape[0], w4.shape[0]
    ho, wo = win.out_size
    p = ho * wo
    major = channel_major(n, p, a)
    grid, wm = prepare(x, w4, win) if prepared is None else prepared
    out = xp.empty((n, a, p), dtype=x.dtype)
    chunks = _chunks(n, wm.shape[1] * p * x.itemsize)

    def block(lo, hi):
        columns = _Columns(grid, win, major, max(e - s for s, e in chunks[lo:hi]))
        if p >= _DIRECT_MIN_POSITIONS:  # one GEMM per sample writes (A, P) straight into the NCHW output
            product = _gemm.Product(wm, columns.stack.transpose(0, 2, 1), out)
        for s, e in chunks[lo:hi]:
            at = columns.fill(s, e)
            if p >= _DIRECT_MIN_POSITIONS:
                product(e - s, b_at=at, out_at=s)
            else:  # few positions per sample: one GEMM for the chunk reads the weight once, then a transpose
                cols = columns.stack[at:at + e - s].reshape((e - s) * p, -1)
                out[s:e] = _gemm.matmul(cols, wm.T).reshape(e - s, p, a).transpose(0, 2, 1)

    _run_blocks(block, len(chunks), xp, n * a * p * wm.shape[1])
    return out.reshape(n, a, ho, wo)


#: a convolution pass of fewer multiply-adds runs on one thread: waking a pool thread and waiting
#: for it costs 0.1-0.2 ms on a VM, as much as such a pass takes (the CNN benchmark's first layer,
#: 64 x 1 -> 32 channels at 28x28, 12.5M: forward 0.28 ms on 1 thread, 0.51 ms as 2 ranges)
PARALLEL_MACS = 1 << 25


def _run_blocks(block, count, xp, macs):
    """Runs ``block(lo, hi)`` over contiguous ranges of ``count`` chunk indices: one range per
    intra-op thread, all at once (each chunk writes its own samples' rows; NumPy's copies and the
    GEMMs release the GIL), else one range here: for CuPy, one thread, or a pass of fewer than
    ``PARALLEL_MACS`` multiply-adds (``macs``). A chunk's GEMMs run whole on its thread (splits do
    not nest).

    Why ranges and not chunk by chunk: every chunk is a few GIL hand-offs between the threads, and
    on a VM a thread that sleeps waiting for the GIL takes 60-90 us to wake. Claimed one by one, the
    64 one-sample chunks of a 32 -> 64-channel convolution at 24x24 ran 13.2 ms on 1 thread and
    11.5 ms on 2 (perf: 90 context switches per call). As two ranges, with one column buffer per
    thread, the windows' view made once and planned GEMMs (``_gemm.Product``), 2 threads take
    6.4-7.0 ms (PyTorch: 5.1-5.7)."""
    ranges = _blocks(count) if xp is np and macs >= PARALLEL_MACS else [(0, count)]
    if len(ranges) > 1:
        _intra_op.run(lambda b: block(*ranges[b]), len(ranges))
    else:
        for lo, hi in ranges:
            block(lo, hi)


def _blocks(count):
    """Contiguous ranges of chunk indices, one per intra-op thread (one range with one thread): the
    weight gradient sums each range into its own buffer, then the buffers in order, so its rounding
    depends on the thread count only, never on which thread ran which range."""
    threads = _threads.intra_op_threads()
    parts = max(1, min(threads, count))
    return [(lo, hi) for lo, hi in _intra_op.chunk_bounds(count, parts, 1) if hi > lo]


def correlate_adjoint(y, w4, win, channels):
    """y (N, A, Ho, Wo) -> (N, channels, H, W): the adjoint of ``correlate`` in its input."""
    return backward(None, y, w4, win, channels, need_input=True, need_weight=False)[0]


def weight_grad(x, y, win):
    """(A, C, kh, kw): the gradient of sum(y * correlate(x, w)) with respect to w."""
    return backward(x, y, None, win, x.shape[1], need_input=False, need_weight=True)[1]


def _input_grad_as_correlation(win, channels, out_channels, positions):
    """Whether the input gradient is better computed as a correlation of the padded gradient with
    the flipped weight (``correlate_full``) than as columns scattered back (``scatter_windows``).

    For a stride-1, undilated window the two are the same sum. The correlation replaces col2im's
    kh*kw read-modify-write passes (inner runs only C long), the zeroed grid and the final
    channels-last-to-NCHW copy with one padded copy of the gradient and plain window copies, and its
    GEMMs write the NCHW result directly. Measured per input gradient, one thread (CPU ms): 16x64
    channels at 16x16 3.76 -> 2.56, 16x128 at 8x8 2.88 -> 2.45; at 4x4 and 2x2, where the padded
    grid is mostly padding, 2.53 -> 2.87 and 2.46 -> 4.68, and with few input channels (3 of 64)
    11.7 -> 16.9: those keep the scatter. The CNN's 32 -> 64 channels at 24x24: 19.1 / 18.7."""
    (kh, kw), (pt, pb, pl, pr) = win.kernel, win.pads
    return (win.stride == (1, 1) and win.dilation == (1, 1) and positions >= _DIRECT_MIN_POSITIONS
            and 2 * channels >= out_channels and max(pt, pb) < kh and max(pl, pr) < kw)


def correlate_full(y, w4, win):
    """The input gradient (N, C, H, W) of ``correlate(x, w4)`` over a stride-1 undilated ``win``:
    ``y`` padded by kernel - 1 - pad on each side, correlated with the weight flipped in both
    spatial axes and with its channel axes swapped (C, A, kh, kw)."""
    xp = array_module(y)
    (kh, kw), (pt, pb, pl, pr) = win.kernel, win.pads
    flipped = xp.ascontiguousarray(w4[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    full = Window2d((kh, kw), (1, 1), (1, 1), (kh - 1 - pt, kh - 1 - pb, kw - 1 - pl, kw - 1 - pr),
                    win.out_size, win.in_size)
    return correlate(y, flipped, full)


def backward(x, y, w4, win, channels, need_input, need_weight, prepared=None):
    """(grad of x or None, grad of w or None) for the incoming gradient ``y`` of ``correlate(x, w4)``.

    Per chunk the columns of ``x`` are built once for the weight gradient, and the input gradient's
    columns ``y @ W`` are scattered back onto a zeroed grid, or (stride 1, see
    ``_input_grad_as_correlation``) the input gradient is one ``correlate_full``. ``prepared`` as in
    ``correlate`` (the forward's, reused).
    """
    xp = array_module(y)
    n, a = y.shape[0], y.shape[1]
    ho, wo = win.out_size
    p = ho * wo
    if need_input:
        if conv_shifted.suits(y, win, channels, a):
            gx = conv_shifted.input_grad(y, w4, win, channels)
        elif _input_grad_as_correlation(win, channels, a, p):
            gx = correlate_full(y, w4, win)
        else:
            gx = None  # scattered from the columns below
        if gx is not None:
            gw = backward(x, y, None, win, channels, False, True, prepared)[1] if need_weight else None
            return gx, gw
    if conv_planar.suits(y, channels, win):
        return conv_planar.backward(x, y, w4, win, channels, need_input, need_weight, prepared)
    k = channels * win.kernel_area
    major = channel_major(n, p, a)
    per_sample = p >= _DIRECT_MIN_POSITIONS
    # per-sample GEMMs read y in its NCHW layout; whole-chunk GEMMs need it as (N*Ho*Wo, A) rows
    ys = y.reshape(n, a, p) if per_sample else output_rows(y)
    xg, wm = prepared if prepared is not None else (None, None)
    if need_weight and xg is None:
        xg = input_grid(x, win)
    if need_input and wm is None:
        wm = weight_matrix(w4, major)
    grid = xp.zeros((n,) + win.padded_size + (channels,), dtype=y.dtype) if need_input else None
    chunks = _chunks(n, k * p * y.itemsize)
    partial = {}  # first chunk index of a range -> that range's weight gradient sum

    def block(lo, hi):
        gw = partial[lo] = xp.zeros((a, k), dtype=y.dtype) if need_weight else None
        if need_weight:
            columns = _Columns(xg, win, major, max(e - s for s, e in chunks[lo:hi]))
            if per_sample:  # per sample (A, P) @ (P, K), added into this range's sum (GEMM beta = 1)
                product = _gemm.Product(ys, columns.stack, gw, accumulate=True)
        for s, e in chunks[lo:hi]:
            if need_weight:
                at = columns.fill(s, e)
            if per_sample:
                if need_weight:
                    for i in range(e - s):
                        product(1, a_at=s + i, b_at=at + i)
                if need_input:
                    scatter_windows(_gemm.matmul(ys[s:e].transpose(0, 2, 1), wm).reshape((e - s) * p, k),
                                    grid[s:e], win, major)
                continue
            rows = ys[s * p:e * p]
            if need_weight:
                _gemm.matmul(rows.T, columns.stack[at:at + e - s].reshape((e - s) * p, k), out=gw, accumulate=True)
            if need_input:
                scatter_windows(_gemm.matmul(rows, wm), grid[s:e], win, major)

    _run_blocks(block, len(chunks), xp, n * a * p * k * (need_input + need_weight))
    gx = _to_channels_first(grid, win) if need_input else None
    if not need_weight:
        return gx, None
    return gx, _weight_from_matrix(sum_ranges(partial), channels, win, major)


def sum_ranges(partial):
    """The sum of the ranges' weight gradients ``{first chunk index: array}``, added in chunk order
    (so the rounding depends on the thread count only, never on which thread finished first)."""
    sums = [partial[lo] for lo in sorted(partial)]
    total = sums[0]
    for more in sums[1:]:
        total += more
    return total


from . import conv_planar, conv_shifted  # noqa: E402  (they build on this module's chunk runner and layouts)
