"""Sliding-window geometry shared by convolution and pooling, and the two raw kernels built on it.

``Window2d`` describes a 2-D sliding window over the last two axes of an ``(n, C, H, W)`` array:
kernel, stride, dilation, and padding per side (top, bottom, left, right; the bottom/right pads may
include pooling's ceil-mode overhang). ``in_size`` is the unpadded (H, W) the window slides over,
``out_size`` the number of window positions (Ho, Wo).

``im2col`` gathers every window into columns, ``(n, C*kh*kw, Ho*Wo)``; ``col2im`` is its adjoint
(adds the columns back onto an ``(n, C, H, W)`` grid). Both loop over the kh*kw kernel offsets with
strided slices rather than using scatter-add, which keeps them at memory speed.
"""
from __future__ import annotations

from .._backend import array_module


class Window2d:
    """Geometry of a 2-D sliding window (see module docstring)."""

    __slots__ = ("kernel", "stride", "dilation", "pads", "in_size", "out_size")

    def __init__(self, kernel, stride, dilation, pads, in_size, out_size):
        self.kernel, self.stride, self.dilation = tuple(kernel), tuple(stride), tuple(dilation)
        self.pads, self.in_size, self.out_size = tuple(pads), tuple(in_size), tuple(out_size)

    def __repr__(self):
        return (f"Window2d(kernel={self.kernel}, stride={self.stride}, dilation={self.dilation}, "
                f"pads={self.pads}, in_size={self.in_size}, out_size={self.out_size})")

    @property
    def padded_size(self):
        (h, w), (pt, pb, pl, pr) = self.in_size, self.pads
        return h + pt + pb, w + pl + pr

    @property
    def kernel_area(self):
        return self.kernel[0] * self.kernel[1]

    @property
    def overlapping(self):
        """True when two window positions can share an input element (so adjoints must add)."""
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, self.stride, self.dilation
        return sh < dh * (kh - 1) + 1 or sw < dw * (kw - 1) + 1

    def offsets(self):
        """(k, slice_h, slice_w) per kernel offset: the padded-grid elements offset k touches."""
        (kh, kw), (sh, sw), (dh, dw), (ho, wo) = self.kernel, self.stride, self.dilation, self.out_size
        k = 0
        for i in range(kh):
            rows = slice(i * dh, i * dh + sh * (ho - 1) + 1, sh)
            for j in range(kw):
                yield k, rows, slice(j * dw, j * dw + sw * (wo - 1) + 1, sw)
                k += 1

    def crop(self):
        """Slices selecting the unpadded grid inside the padded one."""
        (h, w), (pt, _, pl, _) = self.in_size, self.pads
        return slice(pt, pt + h), slice(pl, pl + w)


def out_length(size, kernel, stride, dilation, pad_total):
    """Window positions along one axis (floor division, as convolution does)."""
    return (size + pad_total - dilation * (kernel - 1) - 1) // stride + 1


def pad_grid(x, win, value=0):
    """``x`` (n, C, H, W) on the padded grid of ``win``, filled with ``value``; ``x`` itself when unpadded."""
    pt, pb, pl, pr = win.pads
    if pt == pb == pl == pr == 0:
        return x
    xp = array_module(x)
    hp, wp = win.padded_size
    out = xp.full(x.shape[:2] + (hp, wp), value, dtype=x.dtype)
    rows, cols = win.crop()
    out[:, :, rows, cols] = x
    return out


def im2col(x, win):
    """Columns of every window of ``x`` (n, C, H, W): ``(n, C*kh*kw, Ho*Wo)``, contiguous.

    One strided view (n, C, kh, kw, Ho, Wo) over the padded input and one copy: the copy is what
    lets the convolution be a single BLAS matmul per sample.
    """
    xp = array_module(x)
    xpad = pad_grid(x, win)
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = win.kernel, win.stride, win.dilation, win.out_size
    n, c = x.shape[0], x.shape[1]
    s_n, s_c, s_h, s_w = xpad.strides
    view = xp.lib.stride_tricks.as_strided(
        xpad, (n, c, kh, kw, ho, wo), (s_n, s_c, s_h * dh, s_w * dw, s_h * sh, s_w * sw))
    return xp.ascontiguousarray(view).reshape(n, c * kh * kw, ho * wo)


def col2im(cols, win, channels, out=None):
    """Adjoint of ``im2col``: adds ``cols`` (n, C*kh*kw, Ho*Wo) onto an (n, C, H, W) grid.

    With ``out`` (a zeroed (n, C, H, W) array) and no padding the sums land in ``out`` directly.
    """
    xp = array_module(cols)
    n = cols.shape[0]
    (kh, kw), (ho, wo) = win.kernel, win.out_size
    blocks = cols.reshape(n, channels, kh * kw, ho, wo)
    padded = any(win.pads)
    if padded or out is None:
        grid = xp.zeros((n, channels) + win.padded_size, dtype=cols.dtype)
    else:
        grid = out
    # Disjoint windows: each grid element gets at most one value, so plain assignment suffices.
    add = win.overlapping
    for k, rows, cols_ in win.offsets():
        if add:
            grid[:, :, rows, cols_] += blocks[:, :, k]
        else:
            grid[:, :, rows, cols_] = blocks[:, :, k]
    if not padded:
        return grid
    rows, cols_ = win.crop()
    if out is None:
        return xp.ascontiguousarray(grid[:, :, rows, cols_])
    out[...] = grid[:, :, rows, cols_]
    return out
