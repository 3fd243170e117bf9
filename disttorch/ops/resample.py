"""Interpolation (``F.interpolate``): nearest, nearest-exact, linear and bilinear resampling.

Each mode is separable: along every resized trailing axis, output i is ``w0[i] * x[i0[i]] +
w1[i] * x[i1[i]]`` (nearest: one tap of weight 1). Forward gathers the taps (O(output), exact
for any finite or infinite input); backward sums gradients back onto the taps, which, because
the tap indices are sorted, is a segmented sum (``add.reduceat``) rather than a scatter.
Source coordinates are computed in float32, as PyTorch does, so nearest indices match exactly.
"""
from __future__ import annotations

import math

import numpy as np

from .._backend import array_module
from ._base import Op


class AxisMap:
    """Resampling taps along one axis: ``out[i] = w0[i]*x[i0[i]] (+ w1[i]*x[i1[i]])``."""

    __slots__ = ("in_len", "i0", "w0", "i1", "w1")

    def __init__(self, in_len, i0, w0=None, i1=None, w1=None):
        self.in_len, self.i0, self.w0, self.i1, self.w1 = in_len, i0, w0, i1, w1

    def matrix(self, dtype):
        """The dense (out, in) matrix of this map (used for graph-mode and non-NumPy backward)."""
        a = np.zeros((len(self.i0), self.in_len))
        rows = np.arange(len(self.i0))
        np.add.at(a, (rows, self.i0), 1.0 if self.w0 is None else self.w0)
        if self.i1 is not None:
            np.add.at(a, (rows, self.i1), self.w1)
        return a.astype(dtype)


def _scale(in_len, out_len, scale_factor, align_corners):
    """PyTorch's ``area_pixel_compute_scale`` in float32."""
    if align_corners:
        return np.float32((in_len - 1) / (out_len - 1)) if out_len > 1 else np.float32(0)
    if scale_factor is not None and scale_factor > 0:
        return np.float32(1.0 / scale_factor)
    return np.float32(in_len) / np.float32(out_len)


def nearest_map(in_len, out_len, scale_factor, exact=False):
    scale = _scale(in_len, out_len, scale_factor, False)
    pos = np.arange(out_len, dtype=np.float32)
    if exact:
        pos = pos + np.float32(0.5)
    idx = np.minimum(np.floor(pos * scale).astype(np.int64), in_len - 1)
    return AxisMap(in_len, idx)


def linear_map(in_len, out_len, scale_factor, align_corners):
    scale = _scale(in_len, out_len, scale_factor, align_corners)
    dst = np.arange(out_len, dtype=np.float32)
    if align_corners:
        src = scale * dst
    else:
        src = np.maximum(scale * (dst + np.float32(0.5)) - np.float32(0.5), np.float32(0))
    i0 = src.astype(np.int64)
    i1 = i0 + (i0 < in_len - 1)
    w1 = np.clip(src - i0.astype(np.float32), 0, 1).astype(np.float32)
    w0 = np.float32(1) - w1
    return AxisMap(in_len, i0, w0, i1, w1)


def _along(w, axis, ndim):
    shape = [1] * ndim
    shape[axis] = w.shape[0]
    return w.reshape(shape)


def _segment_sum(g, idx, in_len, axis):
    """Sums slices of ``g`` along ``axis`` into positions ``idx`` (sorted) of a length-``in_len`` axis."""
    xp = array_module(g)
    shape = list(g.shape)
    shape[axis] = in_len
    out = xp.zeros(shape, dtype=g.dtype)
    uniq, starts = np.unique(idx, return_index=True)
    sums = np.add.reduceat(g, starts, axis=axis)
    index = [slice(None)] * g.ndim
    index[axis] = uniq
    out[tuple(index)] = sums
    return out


class _Resample(Op):
    """Separable resampling of the trailing axes; ``maps`` holds one AxisMap per resized axis."""

    fresh_grads = False  # with no axis resized, backward hands the incoming gradient straight back

    def forward(self, x, maps):
        xp = array_module(x)
        self.maps, self.shape = maps, x.shape
        nd = x.ndim
        y = x
        for k, amap in enumerate(maps):
            axis = nd - len(maps) + k
            taken = xp.take(y, xp.asarray(amap.i0), axis=axis)
            if amap.i1 is None:
                y = taken
                continue
            w0 = xp.asarray(_along(amap.w0, axis, nd).astype(x.dtype))
            w1 = xp.asarray(_along(amap.w1, axis, nd).astype(x.dtype))
            taken *= w0
            taken += xp.take(y, xp.asarray(amap.i1), axis=axis) * w1
            y = taken
        return y

    def backward(self, g, ns):
        nd = len(self.shape)
        if ns.graph or array_module(g) is not np:
            from ..tensor import Tensor
            gx = g
            for k, amap in enumerate(self.maps):
                dtype = g._data.dtype if ns.graph else g.dtype
                a = array_module(g._data if ns.graph else g).asarray(amap.matrix(dtype))
                if ns.graph:
                    a = Tensor._wrap(a)
                axis = nd - len(self.maps) + k
                # (.., out, ..) -> (.., in, ..): contract the resized axis with the matrix
                gx = ns.swapaxes(ns.matmul(ns.swapaxes(gx, axis, -1), a), axis, -1)
            return (gx,)
        gx = g
        for k, amap in enumerate(self.maps):
            axis = nd - len(self.maps) + k
            if amap.i1 is None:
                gx = _segment_sum(gx, amap.i0, amap.in_len, axis)
                continue
            w0 = _along(amap.w0, axis, nd).astype(g.dtype)
            w1 = _along(amap.w1, axis, nd).astype(g.dtype)
            part = _segment_sum(gx * w0, amap.i0, amap.in_len, axis)
            part += _segment_sum(gx * w1, amap.i1, amap.in_len, axis)
            gx = part
        return (gx,)


class UpsampleNearest1DBackward0(_Resample):
    """Resample under PyTorch's grad_fn name for this mode."""


class UpsampleNearest2DBackward0(_Resample):
    """Resample under PyTorch's grad_fn name for this mode."""


class UpsampleNearestExact1DBackward0(_Resample):
    """Resample under PyTorch's grad_fn name for this mode."""


class UpsampleNearestExact2DBackward0(_Resample):
    """Resample under PyTorch's grad_fn name for this mode."""


class UpsampleLinear1DBackward0(_Resample):
    """Resample under PyTorch's grad_fn name for this mode."""


class UpsampleBilinear2DBackward0(_Resample):
    """Resample under PyTorch's grad_fn name for this mode."""


_OPS = {("nearest", 1): UpsampleNearest1DBackward0, ("nearest", 2): UpsampleNearest2DBackward0,
        ("nearest-exact", 1): UpsampleNearestExact1DBackward0, ("nearest-exact", 2): UpsampleNearestExact2DBackward0,
        ("linear", 1): UpsampleLinear1DBackward0, ("bilinear", 2): UpsampleBilinear2DBackward0}
_MODES = ("nearest", "nearest-exact", "linear", "bilinear", "area")


def _output_sizes(in_sizes, size, scale_factor, recompute_scale_factor):
    """(output sizes, per-axis scale factors to map coordinates with, or None per axis)."""
    dims = len(in_sizes)
    if size is not None and scale_factor is not None:
        raise ValueError("only one of size or scale_factor should be defined")
    if size is not None:
        sizes = tuple(int(s) for s in size) if isinstance(size, (tuple, list)) else (int(size),) * dims
        if len(sizes) != dims:
            raise ValueError(
                f"Input and output must have the same number of spatial dimensions, but got input with spatial "
                f"dimensions of {list(in_sizes)} and output size of {list(sizes)}. Please provide input tensor in "
                "(N, C, d1, d2, ...,dK) format and output size in (o1, o2, ...,oK) format.")
        return sizes, (None,) * dims
    if scale_factor is None:
        raise ValueError("either size or scale_factor should be defined")
    factors = tuple(float(f) for f in scale_factor) if isinstance(scale_factor, (tuple, list)) else (float(scale_factor),) * dims
    if len(factors) != dims:
        raise ValueError(
            f"Input and scale_factor must have the same number of spatial dimensions, but got input with spatial "
            f"dimensions of {list(in_sizes)} and scale_factor of shape {list(factors)}. Please provide input tensor in "
            "(N, C, d1, d2, ...,dK) format and scale_factor in (s1, s2, ...,sK) format.")
    sizes = tuple(int(math.floor(s * f)) for s, f in zip(in_sizes, factors))
    return sizes, ((None,) * dims if recompute_scale_factor else factors)


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    """Resizes (N, C, L) or (N, C, H, W) inputs; ``mode``: nearest, nearest-exact, linear (3-D),
    bilinear (4-D), area (adaptive average pooling). ``align_corners`` only for linear/bilinear."""
    if mode not in _MODES:
        raise NotImplementedError(
            f"Input Error: Only 3D and 4D input Tensors supported (got {input.ndim}D) for the modes: "
            f"{' | '.join(_MODES)} (got {mode})")
    if align_corners is not None and mode not in ("linear", "bilinear"):
        raise ValueError(
            "align_corners option can only be set with the interpolating modes: linear | bilinear | bicubic | trilinear")
    if antialias:
        raise ValueError("interpolate(): antialias=True is not supported by disttorch")
    if input.ndim not in (3, 4):
        raise NotImplementedError(
            f"Input Error: Only 3D and 4D input Tensors supported (got {input.ndim}D) for the modes: {' | '.join(_MODES)}"
            f" (got {mode})")
    spatial = input.ndim - 2
    if mode == "linear" and spatial != 1:
        raise NotImplementedError(f"Got {input.ndim}D input, but linear mode needs 3D input")
    if mode == "bilinear" and spatial != 2:
        raise NotImplementedError(f"Got {input.ndim}D input, but bilinear mode needs 4D input")
    in_sizes = tuple(input.shape[2:])
    sizes, factors = _output_sizes(in_sizes, size, scale_factor, recompute_scale_factor)
    if any(s <= 0 for s in sizes):
        raise RuntimeError(
            f"Input and output sizes should be greater than 0, but got input ({', '.join(map(str, in_sizes))}) "
            f"and output ({', '.join(map(str, sizes))})")
    if input._data.dtype.kind not in "fc" and mode != "nearest":
        raise RuntimeError(f"interpolate(): mode '{mode}' needs a floating point input, got {input.dtype}")
    if mode == "area":
        from .pool import AdaptiveAvgPool2DBackward0
        if spatial == 1:
            return AdaptiveAvgPool2DBackward0.apply(input.unsqueeze(-2), out_size=(1,) + sizes).squeeze(-2)
        return AdaptiveAvgPool2DBackward0.apply(input, out_size=sizes)
    if mode in ("nearest", "nearest-exact"):
        maps = [nearest_map(i, o, f, exact=mode == "nearest-exact") for i, o, f in zip(in_sizes, sizes, factors)]
    else:
        maps = [linear_map(i, o, f, bool(align_corners)) for i, o, f in zip(in_sizes, sizes, factors)]
    return _OPS[(mode, spatial)].apply(input, maps=maps)
