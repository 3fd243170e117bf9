"""Padding (``F.pad``): constant, reflect, replicate and circular, with negative pads cropping.

``pad`` lists (left, right) pairs starting from the LAST dimension, as in PyTorch:
``pad=(1, 1, 2, 0)`` pads W by 1 on each side and H by 2 at the top.
Reflect / replicate / circular are gathers along each padded axis (``take`` with an index
vector); their backward adds the interior block back in one slice and loops only over the few
border positions, instead of a scatter over the whole tensor.
"""
from __future__ import annotations

import numpy as np

from .._backend import array_module
from ._base import Op


class ConstantPadNdBackward0(Op):
    """Constant padding; ``pairs`` holds (lo, hi) for every axis of the input (negative crops)."""

    def forward(self, x, pairs, value):
        xp = array_module(x)
        self.shape = x.shape
        out_shape = tuple(s + lo + hi for s, (lo, hi) in zip(x.shape, pairs))
        self.src = tuple(slice(max(-lo, 0), s - max(-hi, 0)) for s, (lo, hi) in zip(x.shape, pairs))
        self.dst = tuple(slice(max(lo, 0), max(lo, 0) + max(0, s - max(-lo, 0) - max(-hi, 0)))
                         for s, (lo, hi) in zip(x.shape, pairs))
        out = xp.full(out_shape, value, dtype=x.dtype)
        out[self.dst] = x[self.src]
        return out

    def backward(self, g, ns):
        inner = ns.getitem(g, self.dst)
        if not ns.graph:
            inner = inner.copy()  # never hand back a view of the incoming gradient (the engine may add into it)
        if any(s.start != 0 or s.stop != n for s, n in zip(self.src, self.shape)):
            inner = ns.index_put_zeros(self.shape, self.src, inner)
        return (inner,)


def reflect_index(n, lo, hi):
    i = np.abs(np.arange(-lo, n + hi))
    return (n - 1) - np.abs((n - 1) - i)


def replicate_index(n, lo, hi):
    return np.clip(np.arange(-lo, n + hi), 0, n - 1)


def circular_index(n, lo, hi):
    # PyTorch crops negative pads first, then wraps around what is left.
    kept = np.arange(max(-lo, 0), n - max(-hi, 0))
    return kept[np.mod(np.arange(-max(lo, 0), len(kept) + max(hi, 0)), len(kept))]


def _gather_adjoint(g, idx, lo, n, axis):
    """Adds slices of ``g`` along ``axis`` into positions ``idx`` of a length-``n`` axis.

    Interior positions p map to p - lo: that block is added with one slice; only the border
    positions (a few) are added one by one.
    """
    xp = array_module(g)
    shape = list(g.shape)
    shape[axis] = n
    out = xp.zeros(shape, dtype=g.dtype)
    inner = np.nonzero(idx == np.arange(len(idx)) - lo)[0]
    a, b = (int(inner[0]), int(inner[-1]) + 1) if len(inner) else (0, 0)
    dst, src = [slice(None)] * g.ndim, [slice(None)] * g.ndim
    if b > a:
        dst[axis], src[axis] = slice(a - lo, b - lo), slice(a, b)
        out[tuple(dst)] = g[tuple(src)]
    for pos in list(range(a)) + list(range(b, len(idx))):
        dst[axis], src[axis] = int(idx[pos]), pos
        out[tuple(dst)] += g[tuple(src)]
    return out


class _IndexPad(Op):
    """Padding by gathering along each padded axis: ``maps`` lists (axis, index vector, left pad)."""

    fresh_grads = False  # with nothing to pad, backward hands the incoming gradient straight back

    def forward(self, x, maps):
        xp = array_module(x)
        self.shape, self.maps = x.shape, maps
        for axis, idx, _ in maps:
            x = xp.take(x, xp.asarray(idx), axis=axis)
        return x

    def backward(self, g, ns):
        shape = list(g.shape)
        for axis, idx, lo in reversed(self.maps):
            shape[axis] = self.shape[axis]
            if ns.graph:
                index = (slice(None),) * axis + (idx,)
                g = ns.index_add(tuple(shape), index, g, g)
            else:
                g = _gather_adjoint(g, idx, lo, self.shape[axis], axis)
        return (g,)


class ReflectionPad1DBackward0(_IndexPad):
    """IndexPad under PyTorch's grad_fn name for this mode."""


class ReflectionPad2DBackward0(_IndexPad):
    """IndexPad under PyTorch's grad_fn name for this mode."""


class ReflectionPad3DBackward0(_IndexPad):
    """IndexPad under PyTorch's grad_fn name for this mode."""


class ReplicationPad1DBackward0(_IndexPad):
    """IndexPad under PyTorch's grad_fn name for this mode."""


class ReplicationPad2DBackward0(_IndexPad):
    """IndexPad under PyTorch's grad_fn name for this mode."""


class ReplicationPad3DBackward0(_IndexPad):
    """IndexPad under PyTorch's grad_fn name for this mode."""


class CopySlices(_IndexPad):
    """Circular padding (PyTorch builds it from slice copies, hence its grad_fn name)."""


_INDEX_PADS = {"reflect": ([ReflectionPad1DBackward0, ReflectionPad2DBackward0, ReflectionPad3DBackward0], reflect_index),
               "replicate": ([ReplicationPad1DBackward0, ReplicationPad2DBackward0, ReplicationPad3DBackward0], replicate_index),
               "circular": ([CopySlices] * 3, circular_index)}


def pad(input, pad, mode="constant", value=None):
    """Pads ``input`` by ``pad`` = (last_lo, last_hi, second_last_lo, ...); see module docstring."""
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2:
        raise RuntimeError("Padding length must be divisible by 2")
    if len(pad) // 2 > input.ndim:
        raise RuntimeError(
            f"Padding length should be less than or equal to two times the input dimension but got padding length "
            f"{len(pad)} and input of dimension {input.ndim}")
    npairs = len(pad) // 2
    if mode == "constant":
        pairs = [(0, 0)] * (input.ndim - npairs) + [(pad[2 * k], pad[2 * k + 1]) for k in reversed(range(npairs))]
        for d, (s, (lo, hi)) in enumerate(zip(input.shape, pairs)):
            if s + lo + hi < 0:
                raise RuntimeError(
                    f"The input size {s}, plus negative padding {lo} and {hi} resulted in a negative output size, "
                    f"which is invalid. Check dimension {d} of your input.")
        fill = 0 if value is None else value
        fill = float(fill) if input._data.dtype.kind in "fc" else int(fill)
        return ConstantPadNdBackward0.apply(input, pairs=pairs, value=fill)
    if mode not in _INDEX_PADS:
        raise NotImplementedError(f"Unrecognised padding mode {mode}")
    if value is not None and value != 0:
        raise RuntimeError(f"Padding mode \"{mode}\" doesn't take in value argument")
    if npairs not in (1, 2, 3) or input.ndim not in (npairs + 1, npairs + 2):
        raise NotImplementedError(
            f"Padding size {len(pad)} is not supported for {input.ndim}D input tensor.\n"
            "Supported combinations for non-constant padding:\n"
            "  - 2D or 3D input: padding size = 2 (pads last dimension)\n"
            "  - 3D or 4D input: padding size = 4 (pads last 2 dimensions)\n"
            "  - 4D or 5D input: padding size = 6 (pads last 3 dimensions)")
    classes, index_fn = _INDEX_PADS[mode]
    maps = []
    for k in range(npairs):
        axis = input.ndim - 1 - k
        lo, hi = pad[2 * k], pad[2 * k + 1]
        n = input.shape[axis]
        if mode == "reflect" and (lo >= n or hi >= n):
            raise RuntimeError(
                f"Argument #4: Padding size should be less than the corresponding input dimension, but got: padding "
                f"({lo}, {hi}) at dimension {axis} of input {list(input.shape)}")
        if mode == "circular" and (lo > n or hi > n):
            raise RuntimeError(
                f"Padding value causes wrapping around more than once: padding ({lo}, {hi}) at dimension {axis} of "
                f"input {list(input.shape)}")
        if n + lo + hi <= 0 or (mode == "replicate" and n == 0):
            raise RuntimeError(
                f"input tensor with shape {list(input.shape)} and padding ({lo}, {hi}) gives an empty output at "
                f"dimension {axis}")
        maps.append((axis, index_fn(n, lo, hi), lo))
    return classes[npairs - 1].apply(input, maps=maps)
