"""Colour adjustments on channel-first planes ``[..., C, H, W]`` (C is 1 or 3), torchvision's maths.

Each adjustment blends the image with a reference (black, the mean grey level, the greyscale
image) by a factor and clamps to the valid range; integer images are computed in float32 and cast
back by truncation, as torchvision does.
"""
from __future__ import annotations

import numpy as np

from ._image import max_value


def _check_channels(planes: np.ndarray, allowed=(1, 3)) -> int:
    channels = planes.shape[-3]
    if channels not in allowed:
        raise TypeError(f"Input image tensor permitted channel values are {list(allowed)}, but found {channels}")
    return channels


def _work_dtype(dtype: np.dtype):
    return dtype if dtype.kind == "f" else np.float32


def blend(img1: np.ndarray, img2, ratio: float) -> np.ndarray:
    bound = max_value(img1.dtype)
    work = _work_dtype(img1.dtype)
    out = ratio * img1.astype(work, copy=False) + (1.0 - ratio) * np.asarray(img2, dtype=work)
    np.clip(out, 0, bound, out=out)
    return out.astype(img1.dtype, copy=False)


def rgb_to_grayscale(planes: np.ndarray, num_output_channels: int = 1) -> np.ndarray:
    """ITU-R 601-2 luma: 0.2989 R + 0.587 G + 0.114 B."""
    if _check_channels(planes) == 1:
        gray = planes
    else:
        r, g, b = (planes[..., i, :, :].astype(_work_dtype(planes.dtype), copy=False) for i in range(3))
        gray = (0.2989 * r + 0.587 * g + 0.114 * b)
        if planes.dtype.kind != "f":
            gray = np.clip(gray, 0, max_value(planes.dtype))
        gray = gray.astype(planes.dtype)[..., None, :, :]
    if num_output_channels == 3:
        return np.broadcast_to(gray, gray.shape[:-3] + (3,) + gray.shape[-2:]).copy()
    return gray


def adjust_brightness(planes: np.ndarray, factor: float) -> np.ndarray:
    if factor < 0:
        raise ValueError(f"brightness_factor ({factor}) is not non-negative.")
    _check_channels(planes)
    return blend(planes, 0.0, factor)


def adjust_contrast(planes: np.ndarray, factor: float) -> np.ndarray:
    if factor < 0:
        raise ValueError(f"contrast_factor ({factor}) is not non-negative.")
    channels = _check_channels(planes)
    work = _work_dtype(planes.dtype)
    gray = rgb_to_grayscale(planes) if channels == 3 else planes
    mean = gray.astype(work, copy=False).mean(axis=(-3, -2, -1), keepdims=True)
    return blend(planes, mean, factor)


def adjust_saturation(planes: np.ndarray, factor: float) -> np.ndarray:
    if factor < 0:
        raise ValueError(f"saturation_factor ({factor}) is not non-negative.")
    if _check_channels(planes) == 1:
        return planes  # a grey image has no saturation to change
    return blend(planes, rgb_to_grayscale(planes), factor)


def _rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    r, g, b = rgb[..., 0, :, :], rgb[..., 1, :, :], rgb[..., 2, :, :]
    maxc, minc = rgb.max(axis=-3), rgb.min(axis=-3)
    eqc = maxc == minc
    cr = maxc - minc
    ones = np.ones_like(maxc)
    s = cr / np.where(eqc, ones, maxc)
    cr_divisor = np.where(eqc, ones, cr)
    rc, gc, bc = (maxc - r) / cr_divisor, (maxc - g) / cr_divisor, (maxc - b) / cr_divisor
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = np.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return np.stack((h, s, maxc), axis=-3)


def _hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    h, s, v = hsv[..., 0, :, :], hsv[..., 1, :, :], hsv[..., 2, :, :]
    i = np.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.astype(np.int64) % 6
    p = np.clip(v * (1.0 - s), 0.0, 1.0)
    q = np.clip(v * (1.0 - s * f), 0.0, 1.0)
    t = np.clip(v * (1.0 - s * (1.0 - f)), 0.0, 1.0)
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    return np.stack((r, g, b), axis=-3)


def adjust_hue(planes: np.ndarray, factor: float) -> np.ndarray:
    if not -0.5 <= factor <= 0.5:
        raise ValueError(f"hue_factor ({factor}) is not in [-0.5, 0.5].")
    if _check_channels(planes) == 1:
        return planes
    dtype = planes.dtype
    work = planes.astype(_work_dtype(dtype), copy=False)
    if dtype.kind != "f":
        work = work / max_value(dtype)
    hsv = _rgb_to_hsv(work)
    hsv[..., 0, :, :] = np.fmod(hsv[..., 0, :, :] + factor, 1.0)
    hsv[..., 0, :, :] %= 1.0  # fmod keeps the sign; hue lives in [0, 1)
    rgb = _hsv_to_rgb(hsv)
    if dtype.kind != "f":
        return (rgb * max_value(dtype)).astype(dtype)
    return rgb.astype(dtype, copy=False)
