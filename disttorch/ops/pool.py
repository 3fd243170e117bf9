"""Pooling over the last two axes: max and average over sliding windows, adaptive average and max.

Inputs are (..., H, W) (any leading dims: (N, C, H, W) or unbatched (C, H, W)); every leading
plane is pooled independently, so each op views its input as (1, M, H, W) planes internally.
Window loops run over the kh*kw kernel offsets with strided slices (a 2x2/stride-2 pool is four
vectorised comparisons), and backward adds along the same slices instead of scattering.
"""
from __future__ import annotations

import numpy as np

from .. import _intra_op
from .._backend import array_module
from ._base import Op
from .window import Window2d, pad_grid


def _planes(x):
    return x.reshape((1, -1) + tuple(x.shape[-2:]))


def _lowest(dtype):
    return -np.inf if dtype.kind in "fc" else np.iinfo(dtype).min


def pool_length(size, kernel, stride, pad, dilation, ceil_mode):
    """Output length of a pooling window along one axis (PyTorch's ``pooling_output_shape``)."""
    span = size + 2 * pad - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = span // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1  # the last window must start inside the input or its left padding
    return out


def pool_window(in_size, kernel, stride, padding, dilation, ceil_mode, lead):
    """A ``Window2d`` for pooling; ceil-mode windows past the right/bottom pad get extra padding.

    ``lead`` is the input's leading shape; its channel count appears in the too-small error.
    """
    outs, pads = [], []
    for size, k, s, p, d in zip(in_size, kernel, stride, padding, dilation):
        if k <= 0:
            raise RuntimeError(f"kernel size should be greater than zero, but got kernel_size={tuple(kernel)}")
        if s <= 0:
            raise RuntimeError(f"stride should be greater than zero, but got stride={tuple(stride)}")
        if d <= 0:
            raise RuntimeError(f"dilation should be greater than zero, but got dilation={tuple(dilation)}")
        if p < 0 or p > (d * (k - 1) + 1) // 2:
            raise RuntimeError(
                f"pad should be at most half of effective kernel size, but got pad={p}, kernel_size={k} and dilation={d}")
        outs.append(pool_length(size, k, s, p, d, ceil_mode))
    if any(o <= 0 for o in outs):
        raise RuntimeError(
            f"Given input size: ({'x'.join(map(str, tuple(lead[-1:]) + tuple(in_size)))}). Calculated output size: "
            f"({'x'.join(map(str, tuple(lead[-1:]) + tuple(outs)))}). Output size is too small")
    for size, k, s, p, d, o in zip(in_size, kernel, stride, padding, dilation, outs):
        needed = (o - 1) * s + d * (k - 1) + 1
        pads.append((p, p + max(0, needed - size - 2 * p)))
    return Window2d(kernel, stride, dilation, pads[0] + pads[1], in_size, outs)


# ---- max pooling ----------------------------------------------------------------------------------
def _running_max(xp, views, arg_dtype):
    """(maximum, position of the first maximum) over ``views`` (equal shapes), elementwise.

    Views come in increasing position k, so the winner is max(k over views that beat the running
    max): one compare, one maximum and one integer maximum per view, all without masked writes
    (which are several times slower in NumPy)."""
    best = arg = upd = step = None
    for k, v in enumerate(views):
        if best is None:
            best = v.copy()
            arg = xp.zeros(best.shape, dtype=arg_dtype)
            upd = xp.empty(best.shape, dtype=bool)
            step = xp.empty(best.shape, dtype=arg_dtype)
            continue
        xp.greater(v, best, out=upd)
        xp.maximum(best, v, out=best)
        xp.multiply(upd, k, out=step)
        xp.maximum(arg, step, out=arg)
    return best, arg


def _max_over_planes(x, win, arg_dtype):
    """(best, arg) of NumPy max pooling, each (1, M, Ho, Wo): the planes are independent, so large
    inputs are cut into ranges of planes pooled on the intra-op threads at once (every pass is a
    NumPy ufunc, which releases the GIL). Each range gives the same values as the whole would."""
    h, w = x.shape[-2:]
    m = int(np.prod(x.shape[:-2], dtype=np.int64))
    planes = x.reshape(m, h, w)

    def pool(part):
        if win.overlapping:
            return _phase_plane_max(part, win, arg_dtype)
        grid = pad_grid(_planes(part), win, _lowest(x.dtype))
        return _running_max(np, (grid[:, :, rows, cols] for _, rows, cols in win.offsets()), arg_dtype)

    parts = min(m, _intra_op.parts_for(x.size))
    if parts <= 1:
        return pool(planes)
    ho, wo = win.out_size
    best = np.empty((1, m, ho, wo), dtype=x.dtype)
    arg = np.empty((1, m, ho, wo), dtype=arg_dtype)
    bounds = [(lo, hi) for lo, hi in _intra_op.chunk_bounds(m, parts, 1) if hi > lo]

    def piece(i):
        lo, hi = bounds[i]
        best[:, lo:hi], arg[:, lo:hi] = pool(planes[lo:hi])

    _intra_op.run(piece, len(bounds))
    return best, arg


def _phase_plane_max(x, win, arg_dtype):
    """``_running_max`` over the windows of ``x`` with every kernel offset a flat, contiguous view.

    The padded grid is split by stride phase into (sh, sw) planes of (Hq, Wq) = (Hp/sh, Wp/sw)
    (rounded up): padded row r = q * sh + a lives in row q of phase a. Kernel offset (i, j) of
    output (y, x) reads phase (i*dh % sh, j*dw % sw) at (y + i*dh // sh, x + j*dw // sw), i.e. the
    plane flattened and shifted by a constant. So each offset is one 1-D view over all planes at
    once: NumPy runs one long inner loop per op instead of one per output row (ResNet's 3x3/2 pool
    at 16x64x32x32: 16k rows of 16 outputs, 36 ops: 8.5 -> 4.2 ms). Positions whose window would run
    past its plane (the extra row and column of each plane) are computed from neighbouring data and
    cropped; every real output's offsets stay inside its own plane.
    Returns best and arg shaped (1, M, Ho, Wo) like the strided-view path's."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = win.kernel, win.stride, win.dilation, win.out_size
    (h, w), (hp, wp), (pt, _, pl, _) = win.in_size, win.padded_size, win.pads
    hq, wq = -(-hp // sh), -(-wp // sw)
    m = int(np.prod(x.shape[:-2], dtype=np.int64))
    if sh == sw == 1 and not any(win.pads):
        phases = x.reshape(1, 1, -1)
    else:
        full = np.full((m, hq * sh, wq * sw), _lowest(x.dtype), dtype=x.dtype)
        full[:, pt:pt + h, pl:pl + w] = x.reshape(m, h, w)
        phases = full.reshape(m, hq, sh, wq, sw).transpose(2, 4, 0, 1, 3)
        phases = np.ascontiguousarray(phases).reshape(sh, sw, -1)
    offsets = [((i * dh) % sh, (j * dw) % sw, (i * dh) // sh * wq + (j * dw) // sw)
               for i in range(kh) for j in range(kw)]
    length = m * hq * wq - max(shift for _, _, shift in offsets)
    best, arg = _running_max(np, (phases[a, b, shift:shift + length] for a, b, shift in offsets), arg_dtype)

    def crop(flat):  # (M, Ho, Wo) out of the (M, Hq, Wq) layout; every index read is < length
        size = flat.itemsize
        view = np.lib.stride_tricks.as_strided(flat, (1, m, ho, wo), (0, hq * wq * size, wq * size, size))
        return np.ascontiguousarray(view)

    return crop(best), crop(arg)


class MaxPool2DWithIndicesBackward0(Op):
    """Max over each window. Keeps the winning kernel offset per output (int8, int32 for huge kernels).

    Ties go to the first maximum in scan order and NaN wins, as in PyTorch.
    """

    def forward(self, x, win):
        xp = array_module(x)
        self.win, self.shape = win, x.shape
        arg_dtype = np.int8 if win.kernel_area < 128 else np.int32
        grid = None
        if xp is np:
            best, arg = _max_over_planes(x, win, arg_dtype)
        else:
            grid = pad_grid(_planes(x), win, _lowest(x.dtype))
            best, arg = _running_max(xp, (grid[:, :, rows, cols] for _, rows, cols in win.offsets()), arg_dtype)
        if x.dtype.kind in "fc" and xp.isnan(best).any():
            if grid is None:
                grid = pad_grid(_planes(x), win, _lowest(x.dtype))
            arg = self._nan_aware_argmax(grid, arg.dtype)
        if any(win.pads) and (best == _lowest(x.dtype)).any():
            # a window whose real values all equal the padding's: the first offset (padding)
            # won the ties, but PyTorch never picks padding, it keeps the window's first input
            arg = xp.where(best == _lowest(x.dtype), xp.asarray(self._first_inside()), arg).astype(arg.dtype)
        self.arg = arg
        return best.reshape(tuple(x.shape[:-2]) + tuple(self.win.out_size))

    def _nan_aware_argmax(self, grid, dtype):
        """PyTorch's rule ``val > max or isnan(val)``: the last NaN of a window wins (rare path)."""
        xp = array_module(grid)
        best = arg = None
        for k, rows, cols in self.win.offsets():
            v = grid[:, :, rows, cols]
            if best is None:
                best, arg = v.copy(), xp.zeros(v.shape, dtype=dtype)
                continue
            upd = (v > best) | xp.isnan(v)
            best = xp.where(upd, v, best)
            arg = xp.where(upd, k, arg).astype(dtype)
        return arg

    def _first_inside(self):
        """(Ho, Wo): the first kernel offset of each window that lies inside the unpadded input."""
        win = self.win
        firsts = []
        for size, k, s, d, pad, o in zip(win.in_size, win.kernel, win.stride, win.dilation, win.pads[::2],
                                         win.out_size):
            pos = np.arange(o)[:, None] * s - pad + np.arange(k)[None, :] * d  # (outputs, offsets)
            firsts.append(np.argmax((pos >= 0) & (pos < size), axis=1))
        return firsts[0][:, None] * win.kernel[1] + firsts[1][None, :]

    def _flat_positions(self, xp, arg=None):
        """Flat position of each maximum in its (H * W) plane, as int32 shaped like ``arg`` (all of
        ``self.arg`` by default, or a run of its planes): the winning offset's position in the
        window (a table lookup on the compact ``arg``) plus the window's origin, added in two
        broadcast passes (no per-element index arrays built up front)."""
        win = self.win
        (kh, kw), (sh, sw), (dh, dw), (ho, wo), w_in = win.kernel, win.stride, win.dilation, win.out_size, win.in_size[1]
        table = (np.arange(kh)[:, None] * dh * w_in + np.arange(kw)[None, :] * dw).reshape(-1).astype(np.int32)
        origin = ((np.arange(ho) * sh - win.pads[0])[:, None] * w_in
                  + (np.arange(wo) * sw - win.pads[2])[None, :]).astype(np.int32)
        flat = xp.take(xp.asarray(table), self.arg if arg is None else arg)
        flat += xp.asarray(origin)
        return flat

    def indices(self):
        """Flat (row * W + col) positions of each maximum in the unpadded input, int64, output-shaped."""
        flat = self._flat_positions(array_module(self.arg)).astype(np.int64)
        return flat.reshape(tuple(self.shape[:-2]) + tuple(self.win.out_size))

    def backward(self, g, ns):
        win, shape = self.win, self.shape
        (ho, wo), (h, w) = win.out_size, win.in_size
        if ns.graph:
            m = int(np.prod(shape[:-2], dtype=np.int64))
            idx = self.indices().reshape(m, ho * wo)
            gx = ns.scatter_add_axis((m, h * w), 1, idx, g.reshape(m, ho * wo), g)
            return (gx.reshape(tuple(shape)),)
        xp = array_module(g)
        if xp is np:
            return (self._scatter_planes(g).reshape(shape),)
        g4 = g.reshape(1, -1, ho, wo)
        grid = xp.zeros(g4.shape[:2] + win.padded_size, dtype=g.dtype)
        add = win.overlapping
        for k, rows, cols in win.offsets():
            picked = self.arg == k
            if add:
                grid[:, :, rows, cols] += g4 * picked
            else:
                xp.multiply(g4, picked, out=grid[:, :, rows, cols])
        rows, cols = win.crop()
        return (xp.ascontiguousarray(grid[:, :, rows, cols]).reshape(shape),)

    def _scatter_planes(self, g):
        """The input gradient (flat) of NumPy output gradients ``g``: one scatter-add per run of
        planes, the runs split over the intra-op threads (``add.at``, the zero fill and the index
        arithmetic all release the GIL). Within a run a plane's maxima land in its own H * W block,
        so the index is (plane in the run * H * W + position in plane), int32 while it fits;
        NumPy's ``add.at`` on a 1-D float array with an integer index is one C loop (the
        per-offset strided adds of the CuPy path walk rows of Wo elements and are ~8x slower).
        The CNN benchmark's pool (64 x 64 planes of 24 x 24, 2 threads) took 4.3 ms of a step in
        one piece and takes 3.1 ms in two (PyTorch's: 0.6-0.7 ms): the scatter, the zero fill and
        the index passes each run on memory the step has just left cold."""
        (ho, wo), (h, w) = self.win.out_size, self.win.in_size
        m = int(np.prod(self.shape[:-2], dtype=np.int64))
        plane = h * w
        g2 = np.ascontiguousarray(g).reshape(m, ho * wo)
        arg = self.arg.reshape(m, ho, wo)
        gx = np.empty(m * plane, dtype=g.dtype)
        parts = min(m, _intra_op.parts_for(m * plane))
        bounds = [(lo, hi) for lo, hi in _intra_op.chunk_bounds(m, parts, 1, _intra_op.CALLER_LEAD) if hi > lo]

        def piece(i):
            lo, hi = bounds[i]
            itype = np.int32 if (hi - lo) * plane < 2 ** 31 else np.int64
            flat = self._flat_positions(np, arg[lo:hi]).astype(itype, copy=False).reshape(hi - lo, ho * wo)
            flat += (np.arange(hi - lo, dtype=itype) * plane)[:, None]
            out = gx[lo * plane:hi * plane]
            out.fill(0)
            np.add.at(out, flat.reshape(-1), g2[lo:hi].reshape(-1))

        if len(bounds) > 1:
            _intra_op.run(piece, len(bounds))
        else:
            piece(0)
        return gx


class MaxPool1DWithIndicesBackward0(MaxPool2DWithIndicesBackward0):
    """1-D max pooling: the 2-D op over (..., 1, L) inputs."""


# ---- average pooling ------------------------------------------------------------------------------
def avg_divisor(win, count_include_pad, divisor_override, dtype, xp=np):
    """(Ho, Wo) divisors, PyTorch's rule: windows clipped to input+pad, pads counted on request."""
    if divisor_override:
        return xp.full(tuple(win.out_size), divisor_override, dtype=dtype)
    per_axis = []
    for size, k, s, p, o in zip(win.in_size, win.kernel, win.stride, win.pads[::2], win.out_size):
        start = np.arange(o) * s - p
        end = np.minimum(start + k, size + p)
        if count_include_pad:
            per_axis.append(end - start)
        else:
            per_axis.append(np.minimum(end, size) - np.maximum(start, 0))
    return xp.asarray(np.outer(per_axis[0], per_axis[1]).astype(dtype))


class AvgPool2DBackward0(Op):
    """Mean over each window, divided by ``divisor`` ((Ho, Wo) array in the input dtype)."""

    def forward(self, x, win, divisor):
        self.win, self.shape, self.divisor = win, x.shape, divisor
        grid = pad_grid(_planes(x), win, 0)
        acc = None
        for _, rows, cols in win.offsets():
            v = grid[:, :, rows, cols]
            if acc is None:
                acc = v.copy()
            else:
                acc += v
        acc /= divisor
        return acc.reshape(tuple(x.shape[:-2]) + tuple(win.out_size))

    def backward(self, g, ns):
        from .conv import Col2ImBackward0
        win, shape = self.win, self.shape
        (ho, wo) = win.out_size
        if ns.graph:
            from ..tensor import Tensor
            share = g.reshape(1, -1, 1, ho * wo) / Tensor._wrap(self.divisor.reshape(-1))
            m = share.shape[1]
            cols = share.expand(1, m, win.kernel_area, ho * wo).reshape(1, m * win.kernel_area, ho * wo)
            return (Col2ImBackward0.apply(cols, win=win, channels=m).reshape(tuple(shape)),)
        xp = array_module(g)
        share = g.reshape(1, -1, ho, wo) / self.divisor
        grid = xp.zeros(share.shape[:2] + win.padded_size, dtype=g.dtype)
        add = win.overlapping
        for _, rows, cols in win.offsets():
            if add:
                grid[:, :, rows, cols] += share
            else:
                grid[:, :, rows, cols] = share
        rows, cols = win.crop()
        return (xp.ascontiguousarray(grid[:, :, rows, cols]).reshape(shape),)


# ---- adaptive pooling -----------------------------------------------------------------------------
def adaptive_bounds(size, out):
    """Window [start, end) per output cell: floor(i*size/out) .. ceil((i+1)*size/out)."""
    i = np.arange(out)
    return (i * size) // out, ((i + 1) * size + out - 1) // out


def _averaging_matrix(size, out, dtype):
    start, end = adaptive_bounds(size, out)
    a = np.zeros((out, size))
    for r, (s, e) in enumerate(zip(start, end)):
        a[r, s:e] = 1.0 / (e - s)
    return a.astype(dtype)


class AdaptiveAvgPool2DBackward0(Op):
    """Adaptive average pooling to ``out_size``: a separable linear map, A_h @ x @ A_w^T."""

    def forward(self, x, out_size):
        xp = array_module(x)
        (h, w), (ho, wo) = x.shape[-2:], out_size
        self.shape, self.out_size = x.shape, tuple(out_size)
        self.even = h % ho == 0 and w % wo == 0
        lead = tuple(x.shape[:-2])
        if (ho, wo) == (1, 1) and x.dtype.char in "fd":
            # global average (ResNet's head): each plane's sum as one matrix-vector product; NumPy's
            # mean over the last axes runs a reduction loop per plane (14x slower at 16x512x2x2)
            sums = x.reshape(-1, h * w) @ xp.ones(h * w, dtype=x.dtype)
            return (sums / (h * w)).reshape(lead + (1, 1))
        if self.even:  # equal disjoint windows: a reshape and a mean
            return x.reshape(lead + (ho, h // ho, wo, w // wo)).mean(axis=(-3, -1))
        a_h = xp.asarray(_averaging_matrix(h, ho, x.dtype))
        a_w = xp.asarray(_averaging_matrix(w, wo, x.dtype))
        return xp.matmul(a_h, xp.matmul(x, a_w.T))

    def backward(self, g, ns):
        (h, w), (ho, wo) = self.shape[-2:], self.out_size
        lead = tuple(self.shape[:-2])
        if self.even and not ns.graph:
            xp = array_module(g)
            share = (g / ((h // ho) * (w // wo))).reshape(lead + (ho, 1, wo, 1))
            return (xp.ascontiguousarray(xp.broadcast_to(share, lead + (ho, h // ho, wo, w // wo))).reshape(self.shape),)
        xp = array_module(g._data if ns.graph else g)
        a_h = xp.asarray(_averaging_matrix(h, ho, g.dtype if not ns.graph else g._data.dtype))
        a_w = xp.asarray(_averaging_matrix(w, wo, a_h.dtype))
        if ns.graph:
            from ..tensor import Tensor
            a_h, a_w = Tensor._wrap(a_h), Tensor._wrap(a_w)
        return (ns.matmul(ns.matmul(ns.swapaxes(a_h, -1, -2), g), a_w),)


class AdaptiveMaxPool2DBackward0(Op):
    """Adaptive max pooling to ``out_size``; keeps flat (row * W + col) indices of the maxima."""

    def forward(self, x, out_size):
        xp = array_module(x)
        (h, w), (ho, wo) = x.shape[-2:], out_size
        self.shape, self.out_size = x.shape, tuple(out_size)
        planes = x.reshape((-1, h, w))
        m = planes.shape[0]
        if h % ho == 0 and w % wo == 0:
            kh, kw = h // ho, w // wo
            blocks = planes.reshape(m, ho, kh, wo, kw).transpose(0, 1, 3, 2, 4).reshape(m, ho, wo, kh * kw)
            local = xp.argmax(blocks, axis=-1)
            values = xp.take_along_axis(blocks, local[..., None], -1)[..., 0]
            ki, kj = xp.divmod(local, kw)
            rows = xp.arange(ho)[:, None] * kh + ki
            cols = xp.arange(wo)[None, :] * kw + kj
            self.disjoint = True
        else:
            hs, he = adaptive_bounds(h, ho)
            ws, we = adaptive_bounds(w, wo)
            values = xp.empty((m, ho, wo), dtype=x.dtype)
            rows = xp.empty((m, ho, wo), dtype=np.int64)
            cols = xp.empty((m, ho, wo), dtype=np.int64)
            for i in range(ho):
                for j in range(wo):
                    cell = planes[:, hs[i]:he[i], ws[j]:we[j]].reshape(m, -1)
                    local = xp.argmax(cell, axis=1)
                    values[:, i, j] = cell[xp.arange(m), local]
                    rows[:, i, j] = hs[i] + local // (we[j] - ws[j])
                    cols[:, i, j] = ws[j] + local % (we[j] - ws[j])
            self.disjoint = bool((hs[1:] >= he[:-1]).all() and (ws[1:] >= we[:-1]).all())
        self.idx = (rows * w + cols).astype(np.int64).reshape(tuple(x.shape[:-2]) + (ho, wo))
        return values.reshape(tuple(x.shape[:-2]) + (ho, wo))

    def backward(self, g, ns):
        (h, w), (ho, wo) = self.shape[-2:], self.out_size
        m = int(np.prod(self.shape[:-2], dtype=np.int64))
        idx = self.idx.reshape(m, ho * wo)
        if ns.graph or not self.disjoint:
            gx = ns.scatter_add_axis((m, h * w), 1, idx, g.reshape(m, ho * wo), g)
            return (gx.reshape(tuple(self.shape)),)
        xp = array_module(g)
        gx = xp.zeros((m, h * w), dtype=g.dtype)
        xp.put_along_axis(gx, idx, g.reshape(m, ho * wo), axis=1)  # disjoint windows: no repeats
        return (gx.reshape(self.shape),)
