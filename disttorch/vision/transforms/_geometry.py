"""Geometry on image planes (arrays whose last two axes are H and W): crop, pad, resize, rotate.

Resizing is separable: each axis is resampled by a small (out x in) weight matrix, so an image
is ``W_h @ planes @ W_w.T``. The weights follow PyTorch's ``interpolate`` (half-pixel centres,
``align_corners=False``) and, with ``antialias``, widen the filter by the downscaling factor
the way Pillow and torchvision's antialiased resize do.
"""
from __future__ import annotations

import functools
import math

import numpy as np

NEAREST, NEAREST_EXACT, BILINEAR, BICUBIC = "nearest", "nearest-exact", "bilinear", "bicubic"


def crop(planes: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
    """``planes[..., top:top+height, left:left+width]``; parts outside the image are zeros."""
    h, w = planes.shape[-2:]
    if top >= 0 and left >= 0 and top + height <= h and left + width <= w:
        return planes[..., top: top + height, left: left + width]  # a view, as torch's crop
    out = np.zeros(planes.shape[:-2] + (height, width), dtype=planes.dtype)
    src_t, src_l = max(top, 0), max(left, 0)
    src_b, src_r = min(top + height, h), min(left + width, w)
    if src_b > src_t and src_r > src_l:
        out[..., src_t - top: src_b - top, src_l - left: src_r - left] = planes[..., src_t:src_b, src_l:src_r]
    return out


def pad(planes: np.ndarray, left: int, top: int, right: int, bottom: int, fill=0,
        mode: str = "constant") -> np.ndarray:
    """Pads (or, for negative amounts, crops) the last two axes."""
    if min(left, top, right, bottom) < 0:
        h, w = planes.shape[-2:]
        planes = planes[..., max(-top, 0): h - max(-bottom, 0), max(-left, 0): w - max(-right, 0)]
        left, top, right, bottom = (max(v, 0) for v in (left, top, right, bottom))
    h, w = planes.shape[-2:]
    if mode == "constant":
        # Allocate and copy instead of np.pad: an order of magnitude cheaper on small images.
        out = np.empty(planes.shape[:-2] + (h + top + bottom, w + left + right), dtype=planes.dtype)
        fill_array = np.asarray(fill, dtype=planes.dtype)
        if fill_array.ndim == 1 and planes.ndim >= 3:
            fill_array = fill_array.reshape(-1, 1, 1)  # one value per channel
        out[...] = fill_array
        out[..., top: top + h, left: left + w] = planes
        return out
    widths = [(0, 0)] * (planes.ndim - 2) + [(top, bottom), (left, right)]
    return np.pad(planes, widths, mode=mode)


def _cubic(x: np.ndarray, a: float) -> np.ndarray:
    x = np.abs(x)
    return np.where(x <= 1, ((a + 2) * x - (a + 3)) * x * x + 1,
                    np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0))


@functools.lru_cache(maxsize=256)
def _weights(in_size: int, out_size: int, interpolation: str, antialias: bool) -> np.ndarray:
    """The (out_size, in_size) resampling matrix of one axis (rows sum to 1)."""
    scale = in_size / out_size
    weights = np.zeros((out_size, in_size), dtype=np.float64)
    if interpolation in (NEAREST, NEAREST_EXACT):
        dst = np.arange(out_size)
        # torch's "nearest" floors dst*scale; "nearest-exact" rounds the half-pixel centre.
        src = np.floor(dst * scale) if interpolation == NEAREST else np.floor((dst + 0.5) * scale)
        weights[dst, np.minimum(src.astype(np.int64), in_size - 1)] = 1.0
        weights.flags.writeable = False
        return weights
    if interpolation == BILINEAR:
        support, kernel = 1.0, lambda x: np.maximum(0.0, 1.0 - np.abs(x))
    elif interpolation == BICUBIC:
        # Pillow (antialiased) uses a = -0.5, torch's plain bicubic a = -0.75.
        a = -0.5 if antialias else -0.75
        support, kernel = 2.0, lambda x: _cubic(x, a)
    else:
        raise ValueError(f"unsupported interpolation {interpolation!r}")
    stretch = max(scale, 1.0) if antialias else 1.0  # widen the filter when shrinking
    centres = (np.arange(out_size) + 0.5) * scale
    if not antialias and interpolation == BILINEAR:
        # torch clamps the source coordinate at the left edge instead of renormalising.
        centres = np.maximum(centres, 0.5)
    reach = support * stretch
    for i, centre in enumerate(centres):
        lo = max(int(math.floor(centre - reach + 0.5)), 0)
        hi = min(int(math.floor(centre + reach + 0.5)), in_size)
        taps = np.arange(lo, hi)
        w = kernel((taps + 0.5 - centre) / stretch)
        if not antialias and interpolation == BICUBIC:
            # torch's bicubic reads 4 taps with border replication rather than renormalising.
            src = centre - 0.5
            base = math.floor(src)
            taps4 = np.arange(base - 1, base + 3)
            w4 = _cubic(taps4 - src, a)
            np.add.at(weights[i], np.clip(taps4, 0, in_size - 1), w4)
            continue
        total = w.sum()
        weights[i, lo:hi] = w / total if total else 0.0
    weights.flags.writeable = False
    return weights


def resize(planes: np.ndarray, height: int, width: int, interpolation: str = BILINEAR,
           antialias: bool = True) -> np.ndarray:
    """Resamples the last two axes to (height, width); integer images are rounded and clipped."""
    in_h, in_w = planes.shape[-2:]
    if (in_h, in_w) == (height, width):
        return planes.copy()
    if interpolation in (NEAREST, NEAREST_EXACT):
        rows = _weights(in_h, height, interpolation, False).argmax(axis=1)
        cols = _weights(in_w, width, interpolation, False).argmax(axis=1)
        return planes[..., rows[:, None], cols[None, :]]
    compute = planes.dtype if planes.dtype.kind == "f" else np.float32
    w_h = _weights(in_h, height, interpolation, antialias).astype(compute)
    w_w = _weights(in_w, width, interpolation, antialias).astype(compute)
    out = np.matmul(np.matmul(w_h, planes.astype(compute, copy=False)), w_w.T)
    if planes.dtype.kind in "iub":
        info = np.iinfo(planes.dtype) if planes.dtype.kind != "b" else None
        lo, hi = (0, 1) if info is None else (info.min, info.max)
        out = np.clip(np.rint(out), lo, hi).astype(planes.dtype)
    return out


def rotated_size(height: int, width: int, angle: float) -> tuple:
    """(height, width) of the box holding an image rotated by ``angle`` degrees."""
    theta = math.radians(angle)
    c, s = abs(math.cos(theta)), abs(math.sin(theta))
    tol = 1e-4  # like torchvision: don't let rounding noise (cos 90 = 6e-17) add a row
    new_w = math.ceil(round((width * c + height * s) / tol) * tol)
    new_h = math.ceil(round((width * s + height * c) / tol) * tol)
    return new_h, new_w


def rotate(planes: np.ndarray, angle: float, interpolation: str = NEAREST, expand: bool = False,
           center=None, fill=0) -> np.ndarray:
    """Rotates the last two axes by ``angle`` degrees counter-clockwise about ``center``.

    ``center`` is (x, y) in pixels from the top-left corner (default: the image centre); pixels
    that come from outside the input take ``fill``.
    """
    in_h, in_w = planes.shape[-2:]
    out_h, out_w = rotated_size(in_h, in_w, angle) if expand else (in_h, in_w)
    if center is None:
        cx, cy = (in_w - 1) * 0.5, (in_h - 1) * 0.5
    else:
        cx, cy = center[0] - 0.5, center[1] - 0.5  # pixel corners -> pixel centres
    if expand:
        # The enlarged canvas is centred on the rotation centre of the input.
        out_cx, out_cy = cx + (out_w - in_w) * 0.5, cy + (out_h - in_h) * 0.5
    else:
        out_cx, out_cy = cx, cy
    theta = math.radians(angle)
    cos, sin = math.cos(theta), math.sin(theta)
    ys, xs = np.mgrid[0:out_h, 0:out_w].astype(np.float64)
    dx, dy = xs - out_cx, ys - out_cy
    # Inverse map of a visually counter-clockwise rotation in y-down image coordinates.
    src_x = cos * dx - sin * dy + cx
    src_y = sin * dx + cos * dy + cy
    fill_array = np.asarray(0 if fill is None else fill, dtype=np.float64)
    if fill_array.ndim == 1 and planes.ndim >= 3:
        fill_array = fill_array.reshape(-1, 1, 1)
    if interpolation in (NEAREST, NEAREST_EXACT):
        ix, iy = np.rint(src_x).astype(np.int64), np.rint(src_y).astype(np.int64)
        inside = (ix >= 0) & (ix < in_w) & (iy >= 0) & (iy < in_h)
        gathered = planes[..., np.clip(iy, 0, in_h - 1), np.clip(ix, 0, in_w - 1)]
        out = np.where(inside, gathered, fill_array.astype(planes.dtype))
        return out.astype(planes.dtype, copy=False)
    if interpolation != BILINEAR:
        raise ValueError(f"rotate supports nearest and bilinear interpolation, got {interpolation!r}")
    x0, y0 = np.floor(src_x).astype(np.int64), np.floor(src_y).astype(np.int64)
    fx, fy = src_x - x0, src_y - y0
    work = planes.astype(np.float64, copy=False)
    out = np.zeros(planes.shape[:-2] + (out_h, out_w), dtype=np.float64)
    for oy, ox, weight in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)),
                           (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
        tx, ty = x0 + ox, y0 + oy
        inside = (tx >= 0) & (tx < in_w) & (ty >= 0) & (ty < in_h)
        tap = work[..., np.clip(ty, 0, in_h - 1), np.clip(tx, 0, in_w - 1)]
        out += weight * np.where(inside, tap, fill_array)  # outside taps blend towards fill
    if planes.dtype.kind in "iub":
        info = np.iinfo(planes.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(planes.dtype)
    return out.astype(planes.dtype)
