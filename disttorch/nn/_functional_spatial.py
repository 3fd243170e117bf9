"""Functional spatial and sequence ops: convolution, pooling, interpolation, padding, attention.

Shape conventions (PyTorch's): 1-D ops take (N, C, L) or unbatched (C, L); 2-D ops take
(N, C, H, W) or unbatched (C, H, W). ``disttorch.nn.functional`` re-exports everything here.
The differentiable kernels live in ``disttorch/ops`` (conv, pool, resample, pad); this module
parses arguments the way PyTorch does and names bad values in its errors.
"""
from __future__ import annotations

from ..ops import conv as _conv
from ..ops import pad as _pad
from ..ops import pool as _pool
from ..ops import resample as _resample
from ._functional_attention import multi_head_attention_forward, scaled_dot_product_attention

__all__ = ["conv1d", "conv2d", "conv_transpose2d", "max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d",
           "adaptive_avg_pool2d", "adaptive_max_pool2d", "interpolate", "pad", "scaled_dot_product_attention",
           "multi_head_attention_forward"]


# ---- convolution ------------------------------------------------------------------------------------
def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D convolution: input (N, C_in, L) or (C_in, L), weight (C_out, C_in/groups, k).

    ``padding``: int, 1-tuple, ``"valid"`` or ``"same"`` (stride 1 only).
    """
    return _conv.conv(input, weight, bias, stride, padding, dilation, groups, spatial=1)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution: input (N, C_in, H, W) or (C_in, H, W), weight (C_out, C_in/groups, kh, kw).

    ``padding``: int, pair, ``"valid"`` or ``"same"`` (stride 1 only).
    """
    return _conv.conv(input, weight, bias, stride, padding, dilation, groups, spatial=2)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed 2-D convolution: input (N, C_in, H, W), weight (C_in, C_out/groups, kh, kw)."""
    return _conv.conv_transpose2d(input, weight, bias, stride, padding, output_padding, groups, dilation)


# ---- pooling ------------------------------------------------------------------------------------------
def _ints(value, n, name, fn):
    if isinstance(value, (tuple, list)):
        if len(value) == 1:
            return (int(value[0]),) * n
        if len(value) != n:
            word = "two" if n == 2 else str(n)
            raise RuntimeError(f"{fn}: {name} must either be a single int, or a tuple of {word} ints")
        return tuple(int(v) for v in value)
    return (int(value),) * n


def _stride(stride, kernel, n, fn):
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        return kernel
    stride = _ints(stride, n, "stride", fn)
    if any(s == 0 for s in stride):
        raise RuntimeError("stride should not be zero")
    return stride


def _check_pool_input(input, spatial, fn):
    if input.ndim not in (spatial + 1, spatial + 2) or input.numel() == 0:
        if spatial == 2:
            raise RuntimeError("non-empty 3D or 4D (batch mode) tensor expected for input")
        raise RuntimeError(
            f"{fn}: Expected 2D or 3D (batch mode) tensor with optional 0 dim batch size for input, but got:"
            f"{list(input.shape)}")


def _max_pool(input, spatial, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    fn = f"max_pool{spatial}d"
    _check_pool_input(input, spatial, fn)
    kernel = _ints(kernel_size, spatial, "kernel_size", fn)
    stride = _stride(stride, kernel, spatial, fn)
    padding = _ints(padding, spatial, "padding", fn)
    dilation = _ints(dilation, spatial, "dilation", fn)
    x = input.unsqueeze(-2) if spatial == 1 else input
    if spatial == 1:
        kernel, stride, padding, dilation = (1,) + kernel, (1,) + stride, (0,) + padding, (1,) + dilation
    win = _pool.pool_window(tuple(x.shape[-2:]), kernel, stride, padding, dilation, ceil_mode, x.shape[:-2])
    op_cls = _pool.MaxPool1DWithIndicesBackward0 if spatial == 1 else _pool.MaxPool2DWithIndicesBackward0
    op = op_cls()
    out = op._run((x,), {"win": win})
    if spatial == 1:
        out = out.squeeze(-2)
    if not return_indices:
        return out
    from ..tensor import Tensor
    idx = op.indices()
    return out, Tensor._wrap(idx[..., 0, :] if spatial == 1 else idx)


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max over windows of (N, C, L) / (C, L); indices (with ``return_indices``) are positions in L."""
    return _max_pool(input, 1, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max over windows of (N, C, H, W) / (C, H, W); indices are flat positions h * W + w."""
    return _max_pool(input, 2, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def _avg_pool(input, spatial, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    fn = f"avg_pool{spatial}d"
    if input.ndim not in (spatial + 1, spatial + 2):
        raise RuntimeError(
            f"Expected {spatial + 1} to {spatial + 2} dimensions, but got {input.ndim}-dimensional tensor for "
            f"argument #1 'self' (while checking arguments for {fn})")
    if input._data.dtype.kind not in "fc":
        raise RuntimeError(f"\"{fn}\" not implemented for '{input.dtype}'")
    if divisor_override is not None and divisor_override == 0:
        raise RuntimeError("divisor must be not zero")
    kernel = _ints(kernel_size, spatial, "kernel_size", fn)
    stride = _stride(stride, kernel, spatial, fn)
    padding = _ints(padding, spatial, "padding", fn)
    x = input.unsqueeze(-2) if spatial == 1 else input
    if spatial == 1:
        kernel, stride, padding = (1,) + kernel, (1,) + stride, (0,) + padding
    win = _pool.pool_window(tuple(x.shape[-2:]), kernel, stride, padding, (1, 1), ceil_mode, x.shape[:-2])
    from .._backend import array_module
    divisor = _pool.avg_divisor(win, count_include_pad, divisor_override, x._data.dtype, array_module(x._data))
    out = _pool.AvgPool2DBackward0.apply(x, win=win, divisor=divisor)
    return out.squeeze(-2) if spatial == 1 else out


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Mean over windows of (N, C, L) / (C, L)."""
    return _avg_pool(input, 1, kernel_size, stride, padding, ceil_mode, count_include_pad, None)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Mean over windows of (N, C, H, W) / (C, H, W); padding counts unless ``count_include_pad=False``."""
    return _avg_pool(input, 2, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)


def _adaptive_size(input, output_size, fn):
    sep = ": " if fn == "adaptive_max_pool2d" else ""
    if input.ndim not in (3, 4):
        raise RuntimeError(f"{fn}(): Expected 3D or 4D tensor, but got{sep} {list(input.shape)}")
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != 2:
            raise ValueError(f"{fn}(): output_size must be an int or a pair, got {tuple(output_size)}")
        size = tuple(input.shape[-2 + k] if s is None else int(s) for k, s in enumerate(output_size))
    else:
        size = (int(output_size),) * 2
    if any(s < 0 for s in size):
        raise RuntimeError(f"{fn}(): output_size must be non-negative, got {size}")
    if any(s == 0 for s in size) or any(d == 0 for d in input.shape[-2:]):
        raise RuntimeError(f"{fn}(): empty input or output is not supported (input {list(input.shape)}, output_size {size})")
    return size


def adaptive_avg_pool2d(input, output_size):
    """Averages (N, C, H, W) / (C, H, W) into ``output_size`` cells (None keeps that input size)."""
    size = _adaptive_size(input, output_size, "adaptive_avg_pool2d")
    if input._data.dtype.kind not in "fc":
        raise RuntimeError(f"\"adaptive_avg_pool2d\" not implemented for '{input.dtype}'")
    return _pool.AdaptiveAvgPool2DBackward0.apply(input, out_size=size)


def adaptive_max_pool2d(input, output_size, return_indices=False):
    """Max of each of ``output_size`` cells of (N, C, H, W) / (C, H, W); indices are h * W + w."""
    size = _adaptive_size(input, output_size, "adaptive_max_pool2d")
    op = _pool.AdaptiveMaxPool2DBackward0()
    out = op._run((input,), {"out_size": size})
    if not return_indices:
        return out
    from ..tensor import Tensor
    return out, Tensor._wrap(op.idx)


# ---- resampling and padding ---------------------------------------------------------------------------
def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    """Resizes (N, C, L) / (N, C, H, W). Modes: nearest, nearest-exact, linear, bilinear, area."""
    return _resample.interpolate(input, size, scale_factor, mode, align_corners, recompute_scale_factor, antialias)


def pad(input, pad, mode="constant", value=None):
    """Pads by ``pad`` = (last_left, last_right, 2nd_last_left, ...). Modes: constant, reflect, replicate, circular."""
    return _pad.pad(input, pad, mode, value)
