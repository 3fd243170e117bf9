"""Convolution (1-D, 2-D, transposed 2-D) as im2col + one BLAS matmul per chunk of samples, in the input dtype.

Shapes: input (N, C_in, H, W) (1-D: (N, C_in, L)); weight (C_out, C_in/groups, kh, kw) for a
convolution and (C_in, C_out/groups, kh, kw) for a transposed one; bias (C_out,).

Every direction is one of three kernels over a ``Window2d`` that slides over the *large* grid
(the convolution's input, the transposed convolution's output), with ``w3`` the weight viewed as
(groups, A, B), B = channels-per-group of the large grid * kh * kw:
  correlate(x, w3)          large (N, G*B/kk, H, W) -> small (N, G*A, Ho, Wo)
  correlate_adjoint(y, w3)  small -> large             (its adjoint in x)
  weight_grad(x, y)         (G, A, B) = sum over samples of y @ im2col(x)^T
A convolution's forward is ``correlate``, its input gradient ``correlate_adjoint``; a transposed
convolution swaps the two. Batches are processed in chunks of a few MiB of columns: the columns
then stay in cache and in reused heap memory instead of a fresh (page-faulting) buffer per call.
The three kernels here serve grouped convolutions and double backward; ungrouped ones (nearly all)
run the same three directions in ``conv_nhwc``, over a channels-last copy of the input.
"""
from __future__ import annotations

from .._backend import array_module
from .. import _gemm, _intra_op
from . import conv_nhwc
from ._base import Op
from .window import Window2d, col2im, im2col, out_length, pad_grid

_CHUNK_BYTES = 2 << 20  # columns per chunk: 1-2 MiB measured fastest (cache-resident working set)


def _chunks(n, bytes_per_sample):
    step = max(1, _CHUNK_BYTES // max(1, bytes_per_sample))
    return [(s, min(n, s + step)) for s in range(0, n, step)]


def _w3(w4, groups):
    """The weight as (groups, A, B) matrices (a free reshape of a contiguous weight)."""
    return w4.reshape(groups, w4.shape[0] // groups, -1)


def _columns(x, win, groups):
    """Every window of ``x`` (m, G*C, H, W) as (G, C*kh*kw, m*Ho*Wo), contiguous: the samples sit
    side by side along the last axis, so one GEMM per group covers the whole chunk. (A GEMM per
    sample has only Ho*Wo columns: deep layers with a few output positions would read the whole
    weight once per sample, and their weight gradient would be a sum of rank-Ho*Wo products.)"""
    xp = array_module(x)
    xpad = pad_grid(x, win)
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = win.kernel, win.stride, win.dilation, win.out_size
    m, cpg = x.shape[0], x.shape[1] // groups
    s_n, s_c, s_h, s_w = xpad.strides
    view = xp.lib.stride_tricks.as_strided(
        xpad, (groups, cpg, kh, kw, m, ho, wo),
        (cpg * s_c, s_c, s_h * dh, s_w * dw, s_n, s_h * sh, s_w * sw))
    return xp.ascontiguousarray(view).reshape(groups, cpg * kh * kw, m * ho * wo)


def _sample_major(z, groups):
    """(m, G*A, Ho, Wo) -> (G, A, m*Ho*Wo), the layout of ``_columns`` (one copy)."""
    xp = array_module(z)
    m, a = z.shape[0], z.shape[1] // groups
    zt = z.reshape(m, groups, a, -1).transpose(1, 2, 0, 3)
    return xp.ascontiguousarray(zt).reshape(groups, a, -1)


def correlate(x, w3, win):
    """x (N, G*C, H, W) -> (N, G*A, Ho, Wo): every window of ``x`` times its group's weight matrix."""
    xp = array_module(x)
    n = x.shape[0]
    g, a, b = w3.shape
    ho, wo = win.out_size
    out = xp.empty((n, g, a, ho * wo), dtype=x.dtype)
    for s, e in _chunks(n, g * b * ho * wo * x.itemsize):
        prod = _gemm.matmul(w3, _columns(x[s:e], win, g))  # (G, A, m*Ho*Wo)
        out[s:e] = prod.reshape(g, a, e - s, ho * wo).transpose(2, 0, 1, 3)
    return out.reshape(n, g * a, ho, wo)


def correlate_adjoint(y, w3, win, channels):
    """y (N, G*A, Ho, Wo) -> (N, channels, H, W): the adjoint of ``correlate`` in its input."""
    xp = array_module(y)
    n = y.shape[0]
    g, a, b = w3.shape
    ho, wo = win.out_size
    wt = w3.transpose(0, 2, 1)  # (G, B, A), a transposed view BLAS reads directly
    out = xp.zeros((n, channels) + win.in_size, dtype=y.dtype)
    for s, e in _chunks(n, g * b * ho * wo * y.itemsize):
        m = e - s
        cols = _gemm.matmul(wt, _sample_major(y[s:e], g))  # (G, B, m*Ho*Wo)
        # (m, G*B, Ho*Wo) as a strided view of cols (merging G and B keeps it a view)
        per_sample = cols.reshape(g, b, m, ho * wo).transpose(2, 0, 1, 3).reshape(m, g * b, ho * wo)
        col2im(per_sample, win, channels, out=out[s:e])
    return out


def weight_grad(x, y, win, groups):
    """(G, A, B): the gradient of sum(y * correlate(x, w3)) with respect to w3."""
    xp = array_module(x)
    n = x.shape[0]
    ho, wo = win.out_size
    a = y.shape[1] // groups
    b = x.shape[1] // groups * win.kernel_area
    acc = None
    for s, e in _chunks(n, groups * b * ho * wo * x.itemsize):
        part = _gemm.matmul(_sample_major(y[s:e], groups), _columns(x[s:e], win, groups).swapaxes(-1, -2))
        if acc is None:
            acc = part
        else:
            acc += part
    return acc if acc is not None else xp.zeros((groups, a, b), dtype=x.dtype)


class Im2ColBackward0(Op):
    """``unfold``: (N, C, H, W) -> (N, C*kh*kw, Ho*Wo). Linear; its adjoint is ``Col2ImBackward0``."""

    def forward(self, x, win):
        self.win, self.channels = win, x.shape[1]
        return im2col(x, win)

    def backward(self, g, ns):
        if ns.graph:
            return (Col2ImBackward0.apply(g, win=self.win, channels=self.channels),)
        return (col2im(g, self.win, self.channels),)


class Col2ImBackward0(Op):
    """``fold``: (N, C*kh*kw, Ho*Wo) -> (N, C, H, W), summing overlaps. Adjoint of ``Im2ColBackward0``."""

    def forward(self, cols, win, channels):
        self.win = win
        return col2im(cols, win, channels)

    def backward(self, g, ns):
        if ns.graph:
            return (Im2ColBackward0.apply(g, win=self.win),)
        return (im2col(g, self.win),)


class ConvolutionBackward0(Op):
    """Convolution / transposed convolution, 1-D or 2-D, with optional bias (third input).

    Params: ``win`` (Window2d over the large grid), ``groups``, ``transposed``, ``one_d`` (inputs
    are (N, C, L) and weights (.., .., k): the op inserts and removes a unit H axis itself).
    Double backward is supported: under ``create_graph`` the input gradient is this op again (the
    other direction) and the weight gradient is built from ``Im2ColBackward0`` and matmul.
    """

    save_inputs = (0, 1)

    def forward(self, x, w, b=None, *, win, groups, transposed, one_d=False):
        self.win, self.groups, self.transposed, self.one_d = win, groups, transposed, one_d
        if one_d:
            x, w = x[:, :, None, :], w[:, :, None, :]
        self.prepared = None
        if groups == 1 and transposed:  # channels-last kernels: contiguous window rows (see conv_nhwc)
            out = conv_nhwc.correlate_adjoint(x, w, win, w.shape[1])
        elif groups == 1:
            # the channels-last input and the permuted weight serve the backward too
            self.prepared = conv_nhwc.prepare(x, w, win)
            out = conv_nhwc.correlate(x, w, win, self.prepared)
        elif transposed:
            out = correlate_adjoint(x, _w3(w, groups), win, groups * w.shape[1])
        else:
            out = correlate(x, _w3(w, groups), win)
        if b is not None:
            _intra_op.add_(out, b.reshape(1, -1, 1, 1))  # split over the intra-op threads when large
        return out[:, :, 0, :] if one_d else out

    def backward(self, g, ns, x, w):
        if ns.graph:
            return self._graph_backward(g, x, w)
        need = self.needs_input_grad
        win, groups = self.win, self.groups
        g4, x4, w4 = (g[:, :, None, :], x[:, :, None, :], w[:, :, None, :]) if self.one_d else (g, x, w)
        gx = gw = gb = None
        if groups == 1:
            gx, gw = self._channels_last_backward(g4, x4, w4, need[0], need[1])
            gx = None if gx is None else gx.reshape(x.shape)
            gw = None if gw is None else gw.reshape(w.shape)
        elif need[0]:
            w3 = _w3(w4, groups)
            gx = correlate(g4, w3, win) if self.transposed else correlate_adjoint(g4, w3, win, x4.shape[1])
            gx = gx.reshape(x.shape)
        if need[1] and groups != 1:
            big, small = (g4, x4) if self.transposed else (x4, g4)
            gw = weight_grad(big, small, win, groups).reshape(w.shape)
        if len(need) > 2 and need[2]:
            gb = g.sum(axis=(0, 2) if self.one_d else (0, 2, 3))
        return gx, gw, gb

    def _channels_last_backward(self, g4, x4, w4, need_input, need_weight):
        """(input grad, weight grad) of an ungrouped convolution, each None when not needed."""
        win = self.win
        if not self.transposed:  # one column buffer per chunk serves both gradients
            # self.prepared is kept: a retained graph may run this backward again
            return conv_nhwc.backward(x4, g4, w4, win, x4.shape[1], need_input, need_weight, self.prepared)
        # transposed: the large grid is the output's, so its gradient g4 is the one windows slide over
        gx = conv_nhwc.correlate(g4, w4, win) if need_input else None
        gw = conv_nhwc.weight_grad(g4, x4, win) if need_weight else None
        return gx, gw

    def _graph_backward(self, g, x, w):
        need = self.needs_input_grad
        win, groups = self.win, self.groups
        if self.one_d:
            g4, x4, w4 = g.unsqueeze(2), x.unsqueeze(2), w.unsqueeze(2)
        else:
            g4, x4, w4 = g, x, w
        gx = gw = gb = None
        if need[0]:
            gx = ConvolutionBackward0.apply(g4, w4, win=win, groups=groups, transposed=not self.transposed)
            gx = gx.reshape(tuple(x.shape))
        if need[1]:
            big, small = (g4, x4) if self.transposed else (x4, g4)
            n, ho, wo = big.shape[0], win.out_size[0], win.out_size[1]
            cols = Im2ColBackward0.apply(big, win=win).reshape(n, groups, -1, ho * wo)
            small = small.reshape(n, groups, small.shape[1] // groups, ho * wo)
            gw = _gemm.matmul(small, cols.transpose(-1, -2)).sum(0).reshape(tuple(w.shape))
        if len(need) > 2 and need[2]:
            gb = g.sum((0, 2) if self.one_d else (0, 2, 3))
        return gx, gw, gb


# ---- the Tensor-level entry points, with PyTorch's argument handling and errors ----------------
def _tuple(value, n, name):
    if isinstance(value, (tuple, list)):
        if len(value) == 1:
            return tuple(int(v) for v in value) * n
        if len(value) != n:
            raise RuntimeError(
                f"expected {name} to be a single integer value or a list of {n} values to match the "
                f"convolution dimensions, but got {name}={list(value)}")
        return tuple(int(v) for v in value)
    return (int(value),) * n


def _size_str(shape):
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _check_common(name, input, weight, bias, spatial, transposed, stride, padding, dilation, groups):
    """PyTorch's argument checks, with its messages (which show unbatched inputs as batched)."""
    nd = spatial + 2
    if input.ndim not in (nd - 1, nd):
        raise RuntimeError(
            f"Expected {nd - 1}D (unbatched) or {nd}D (batched) input to {name}, but got input of size: "
            f"{_size_str(input.shape)}")
    shape = tuple(input.shape) if input.ndim == nd else (1,) + tuple(input.shape)
    if weight.ndim != nd:
        raise RuntimeError(
            f"Expected {nd}-dimensional weight for {nd}-dimensional input {_size_str(shape)}, but got "
            f"{weight.ndim}-dimensional weight of size {_size_str(weight.shape)} instead")
    if input._data.dtype != weight._data.dtype:
        raise RuntimeError(f"Input type ({input.dtype}) and weight type ({weight.dtype}) should be the same")
    if input._data.dtype.kind not in "fc":
        raise RuntimeError(f"{name}: expected a floating point input, but got {input.dtype}")
    if groups <= 0:
        raise RuntimeError("non-positive groups is not supported")
    if any(s <= 0 for s in stride):
        raise RuntimeError("non-positive stride is not supported")
    if any(d <= 0 for d in dilation):
        raise RuntimeError("non-positive dilation is not supported")
    if any(p < 0 for p in padding):
        raise RuntimeError("negative padding is not supported")
    if weight.shape[0] % groups:
        raise RuntimeError(
            f"Given groups={groups}, expected weight to be divisible by {groups} at dimension 0, but got weight "
            f"of size {_size_str(weight.shape)} instead")
    if transposed:
        if shape[1] != weight.shape[0]:
            raise RuntimeError(
                f"Given transposed=1, weight of size {_size_str(weight.shape)}, expected input"
                f"{_size_str(shape)} to have {weight.shape[0]} channels, but got {shape[1]} channels instead")
        out_channels = weight.shape[1] * groups
    else:
        if shape[1] != weight.shape[1] * groups:
            raise RuntimeError(
                f"Given groups={groups}, weight of size {_size_str(weight.shape)}, expected input"
                f"{_size_str(shape)} to have {weight.shape[1] * groups} channels, but got {shape[1]} "
                "channels instead")
        out_channels = weight.shape[0]
    if bias is not None:
        if bias.ndim != 1 or bias.shape[0] != out_channels:
            raise RuntimeError(
                f"Given weight of size {_size_str(weight.shape)}, expected bias to be 1-dimensional with "
                f"{out_channels} elements, but got bias of size {_size_str(bias.shape)} instead")
        if bias._data.dtype != input._data.dtype:
            raise RuntimeError(f"Input type ({input.dtype}) and bias type ({bias.dtype}) should be the same")


def _batched(input, spatial):
    """(input as batched, whether to squeeze the batch axis off the result) — unbatched inputs."""
    if input.ndim == spatial + 1:
        return input.unsqueeze(0), True
    return input, False


def conv(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, spatial=2):
    """``conv1d`` (spatial=1) / ``conv2d`` (spatial=2) with PyTorch's arguments and errors.

    ``padding`` is an int, a tuple, ``"valid"`` (0) or ``"same"`` (output size = input size; stride 1
    only; an odd total pad puts the extra element at the end, as PyTorch does).
    """
    name = f"conv{spatial}d"
    stride = _tuple(stride, spatial, "stride")
    dilation = _tuple(dilation, spatial, "dilation")
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise RuntimeError(f"Invalid padding string: '{padding}'")
        pad_str, padding = padding, (0,) * spatial
    else:
        pad_str, padding = None, _tuple(padding, spatial, "padding")
    _check_common(name, input, weight, bias, spatial, False, stride, padding, dilation, groups)
    x, squeeze = _batched(input, spatial)
    ksize = tuple(weight.shape[2:])
    sizes = tuple(x.shape[2:])
    if pad_str == "same":
        if any(s != 1 for s in stride):
            raise RuntimeError("padding='same' is not supported for strided convolutions")
        pads = []
        for k, d in zip(ksize, dilation):
            total = d * (k - 1)
            pads.append((total // 2, total - total // 2))
    else:
        pads = [(p, p) for p in padding]
    padded = tuple(s + lo + hi for s, (lo, hi) in zip(sizes, pads))
    effective = tuple(d * (k - 1) + 1 for k, d in zip(ksize, dilation))
    if any(p < e for p, e in zip(padded, effective)):
        raise RuntimeError(
            f"Calculated padded input size per channel: ({' x '.join(map(str, padded))}). Kernel size: "
            f"({' x '.join(map(str, effective))}). Kernel size can't be greater than actual input size")
    outs = tuple(out_length(s, k, st, d, lo + hi) for s, k, st, d, (lo, hi) in zip(sizes, ksize, stride, dilation, pads))
    if spatial == 1:
        win = Window2d((1, ksize[0]), (1, stride[0]), (1, dilation[0]), (0, 0) + pads[0], (1, sizes[0]), (1, outs[0]))
    else:
        win = Window2d(ksize, stride, dilation, pads[0] + pads[1], sizes, outs)
    tensors = (x, weight) if bias is None else (x, weight, bias)
    out = ConvolutionBackward0.apply(*tensors, win=win, groups=groups, transposed=False, one_d=spatial == 1)
    return out.squeeze(0) if squeeze else out


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed 2-D convolution (the input gradient of ``conv2d``), PyTorch's argument order.

    Output size per axis: (in - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1.
    """
    stride = _tuple(stride, 2, "stride")
    padding = _tuple(padding, 2, "padding")
    dilation = _tuple(dilation, 2, "dilation")
    output_padding = _tuple(output_padding, 2, "output_padding")
    _check_common("conv_transpose2d", input, weight, bias, 2, True, stride, padding, dilation, groups)
    if any(op >= s and op >= d for op, s, d in zip(output_padding, stride, dilation)) or any(op < 0 for op in output_padding):
        raise RuntimeError(
            "output padding must be smaller than either stride or dilation, but got output_padding_height: "
            f"{output_padding[0]} output_padding_width: {output_padding[1]} stride_height: {stride[0]} stride_width: "
            f"{stride[1]} dilation_height: {dilation[0]} dilation_width: {dilation[1]}")
    x, squeeze = _batched(input, 2)
    sizes = tuple(x.shape[2:])
    ksize = tuple(weight.shape[2:])
    big = tuple((s - 1) * st - 2 * p + d * (k - 1) + op + 1
                for s, st, p, d, k, op in zip(sizes, stride, padding, dilation, ksize, output_padding))
    if any(b <= 0 for b in big):
        raise RuntimeError(
            f"Given input size per channel: ({sizes[0]} x {sizes[1]}). Calculated output size per channel: "
            f"({big[0]} x {big[1]}). Output size is too small")
    win = Window2d(ksize, stride, dilation, (padding[0], padding[0], padding[1], padding[1]), big, sizes)
    tensors = (x, weight) if bias is None else (x, weight, bias)
    out = ConvolutionBackward0.apply(*tensors, win=win, groups=groups, transposed=True)
    return out.squeeze(0) if squeeze else out
