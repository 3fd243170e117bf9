"""Normalisation ops: batch, layer and group norm, each one fused forward+backward.

All three normalise ``x`` over some axes to ``xhat = (x - mean) * invstd`` and then apply an
optional per-feature affine ``weight * xhat + bias``. The array backward reuses ``xhat`` and
``invstd`` from the forward; under ``create_graph`` the statistics are recomputed from the saved
input with differentiable ops so second derivatives are right.

Inputs are ``(x, [weight], [bias])``: absent affine tensors are simply not passed, and the
``has_weight`` / ``has_bias`` flags say which are present.
"""
from __future__ import annotations

from .._backend import array_module
from ._base import Op, fast_mean
from ._layer_norm_rows import layer_norm_rows, layer_norm_rows_backward


def _norm_input_grad(ns, dxhat, xhat, invstd, axes):
    """d loss / d x for ``xhat = (x - mean(x)) * invstd`` with batch statistics over ``axes``."""
    m1 = ns.mean(dxhat, axis=axes, keepdims=True)
    m2 = ns.mean(dxhat * xhat, axis=axes, keepdims=True)
    return (dxhat - m1 - xhat * m2) * invstd


def _stats_graph(ns, x, axes, eps):
    """(xhat, invstd) as Tensors built from ``x`` (the create_graph path)."""
    mean = ns.mean(x, axis=axes, keepdims=True)
    xc = x - mean
    var = ns.mean(xc * xc, axis=axes, keepdims=True)
    invstd = 1 / ns.sqrt(var + eps)
    return xc * invstd, invstd


def _sum_axes(ns, v, axes):
    # an empty axes tuple means "no reduction" (LayerNorm over every dim has no leading axes);
    # the copy keeps this op's results fresh (``fresh_grads``), never the incoming gradient itself
    if axes:
        return ns.sum(v, axis=axes)
    return v if ns.graph else v.copy()


def _affine_forward(xhat, weight, bias, shape):
    out = xhat * weight.reshape(shape) if weight is not None else xhat.copy()
    if bias is not None:
        out += bias.reshape(shape)
    return out


def _channel_sums(x3):
    """Per-channel sums of ``x3`` (N, C, P) as two BLAS matrix-vector products."""
    xp = array_module(x3)
    n, _, p = x3.shape
    return xp.ones(n, dtype=x3.dtype) @ (x3 @ xp.ones(p, dtype=x3.dtype))


#: below this many positions per channel, per-channel operands are repeated to (C, P) so that
#: NumPy's inner loop runs over C*P contiguous elements rather than P (a (C, 1) broadcast over
#: ResNet-18's 2x2 stage runs 8192 inner loops of 4 floats: 3-5x slower per element)
_LONG_ROWS = 64


def _per_channel(v, p):
    """The per-channel vector ``v`` (C,) as an operand that broadcasts against (N, C, P) arrays."""
    if p >= _LONG_ROWS:
        return v[:, None]
    return array_module(v).repeat(v, p).reshape(-1, p)


def _channel_dots(a3, b3):
    """Per-channel sums of ``a3 * b3`` (both (N, C, P)) without the product's temporary."""
    xp = array_module(a3)
    return xp.asarray(xp.einsum("ncp,ncp->c", a3, b3))  # asarray: einsum may return a base-class array


class _AffineNorm(Op):
    """Shared backward: affine gradients, then the input gradient through the normalisation."""

    def _setup(self, has_weight, has_bias, eps):
        self.has_weight, self.has_bias, self.eps = has_weight, has_bias, eps
        # backward needs x (statistics under create_graph) and the weight (input gradient)
        self.save_inputs = (0, 1) if has_weight else (0,)

    def _split(self, wb):
        w = wb[0] if self.has_weight else None
        b = wb[1 if self.has_weight else 0] if self.has_bias else None
        return w, b

    def backward(self, g, ns, x, *saved):
        w = saved[0] if self.has_weight else None
        n = self.needs_input_grad
        if ns.graph:
            xhat, invstd = self._graph_stats(ns, x)
        else:
            xhat, invstd = self.xhat, self.invstd
        grads = [None]
        if self.has_weight:
            grads.append(ns.reshape(_sum_axes(ns, g * xhat, self.param_axes), self.pshape) if n[1] else None)
        if self.has_bias:
            grads.append(ns.reshape(_sum_axes(ns, g, self.param_axes), self.pshape) if n[-1] else None)
        if n[0]:
            dxhat = g * ns.reshape(w, self.bshape) if w is not None else g
            grads[0] = self._input_grad(ns, dxhat, xhat, invstd)
        return tuple(grads)


class NativeBatchNormBackward0(_AffineNorm):
    """Batch norm over (N, C, *): statistics per channel C over all other axes.

    Training: batch statistics (biased variance) normalise, and running stats, when given, are
    updated in place: ``running = (1 - momentum) * running + momentum * batch_stat`` with the
    unbiased variance. Eval: the running statistics normalise.
    """

    def forward(self, x, *wb, has_weight, has_bias, running_mean, running_var, training, momentum, eps):
        xp = array_module(x)
        self._setup(has_weight, has_bias, eps)
        self.training = training
        c = x.shape[1]
        self.stat_axes = self.param_axes = (0,) + tuple(range(2, x.ndim))
        self.bshape = (1, c) + (1,) * (x.ndim - 2)
        self.pshape = (c,)
        self.fused = x.dtype.char in "fd" and x.size > 0 and (training or running_var.dtype == x.dtype)
        if self.fused and training:
            return self._fused_forward(x, *wb, running_mean=running_mean, running_var=running_var,
                                       momentum=momentum, eps=eps)
        if self.fused:
            return self._fused_eval_forward(x, *wb, running_mean=running_mean, running_var=running_var, eps=eps)
        if training:
            mean = fast_mean(x, axis=self.stat_axes, keepdims=True)
            xc = x - mean
            var = fast_mean(xc * xc, axis=self.stat_axes, keepdims=True)
            invstd = 1.0 / xp.sqrt(var + eps)
            if running_mean is not None:
                n = x.size // c
                running_mean *= 1.0 - momentum
                running_mean += momentum * mean.reshape(c)
                running_var *= 1.0 - momentum
                running_var += (momentum * n / max(n - 1, 1)) * var.reshape(c)
        else:
            mean = self.eval_mean = running_mean.reshape(self.bshape).copy()
            invstd = (1.0 / xp.sqrt(running_var + eps)).reshape(self.bshape)
            xc = x - mean
        xhat = xc * invstd
        self.xhat, self.invstd = xhat, invstd
        w, b = self._split(wb)
        return _affine_forward(xhat, w, b, self.bshape)

    def _fused_forward(self, x, *wb, running_mean, running_var, momentum, eps):
        """Training forward in four passes over (N, C, P) with the per-channel reductions as BLAS
        products (a sum over a few positions per channel is slow as a NumPy reduction). Saves the
        centred input and 1/std for the backward, not xhat."""
        xp = array_module(x)
        n, c = x.shape[0], x.shape[1]
        x3 = x.reshape(n, c, -1)
        count = n * x3.shape[2]
        mean = _channel_sums(x3) / count
        xc = x3 - mean[:, None]
        var = _channel_dots(xc, xc) / count
        invstd = 1.0 / xp.sqrt(var + eps)
        if running_mean is not None:
            running_mean *= 1.0 - momentum
            running_mean += momentum * mean
            running_var *= 1.0 - momentum
            running_var += (momentum * count / max(count - 1, 1)) * var
        self.xc, self.invstd, self.xhat = xc, invstd, None
        w, b = self._split(wb)
        scale = invstd if w is None else invstd * w
        p = x3.shape[2]
        out = xc * _per_channel(scale, p)
        if b is not None:
            out += _per_channel(b, p)
        return out.reshape(x.shape)

    def _fused_eval_forward(self, x, *wb, running_mean, running_var, eps):
        """Eval forward as PyTorch's kernel computes it: ``x * alpha + beta`` per channel with
        ``alpha = weight / sqrt(running_var + eps)`` and ``beta = bias - running_mean * alpha``:
        two passes, nothing input-sized saved (the backward's input gradient is ``g * alpha``)."""
        xp = array_module(x)
        n, c = x.shape[0], x.shape[1]
        x3 = x.reshape(n, c, -1)
        invstd = 1.0 / xp.sqrt(running_var + eps)
        self.eval_mean = running_mean.reshape(self.bshape).copy()
        self.invstd = invstd.reshape(self.bshape)
        self.xhat = None
        w, b = self._split(wb)
        alpha = invstd if w is None else invstd * w
        beta = -running_mean * alpha
        if b is not None:
            beta += b
        self.alpha = alpha
        p = x3.shape[2]
        out = x3 * _per_channel(alpha, p)
        out += _per_channel(beta, p)
        return out.reshape(x.shape)

    def backward(self, g, ns, x, *saved):
        if ns.graph or not self.fused:
            return super().backward(g, ns, x, *saved)
        if not self.training:
            return self._eval_backward(g, x)
        # d loss/d x = scale * (g - mean(g) - xc * invstd^2 * mean(g * xc)), scale = weight * invstd:
        # two per-channel reductions, then g * scale + xc * k1 + k0 in four passes
        need = self.needs_input_grad
        w = saved[0] if self.has_weight else None
        n, c = g.shape[0], g.shape[1]
        g3 = g.reshape(n, c, -1)
        count = n * g3.shape[2]
        xc, invstd = self.xc, self.invstd
        sum_g = _channel_sums(g3)
        sum_gxc = _channel_dots(g3, xc)
        grads = [None]
        if self.has_weight:
            grads.append(sum_gxc * invstd if need[1] else None)
        if self.has_bias:
            grads.append(sum_g if need[-1] else None)
        if need[0]:
            scale = invstd if w is None else invstd * w
            p = g3.shape[2]
            gx = xc * _per_channel(-(invstd * invstd) * sum_gxc / count, p)
            gx += g3
            gx -= _per_channel(sum_g / count, p)
            gx *= _per_channel(scale, p)
            grads[0] = gx.reshape(g.shape)
        return tuple(grads)

    def _eval_backward(self, g, x):
        """Eval mode: the statistics are constants, so d x = g * alpha, d weight = sum(g * xhat)."""
        need = self.needs_input_grad
        n, c = g.shape[0], g.shape[1]
        g3 = g.reshape(n, c, -1)
        grads = [None]
        if self.has_weight:
            gw = None
            if need[1]:
                invstd = self.invstd.reshape(c)
                xc = x.reshape(n, c, -1) - _per_channel(self.eval_mean.reshape(c), g3.shape[2])
                gw = _channel_dots(g3, xc) * invstd
            grads.append(gw)
        if self.has_bias:
            grads.append(_channel_sums(g3) if need[-1] else None)
        if need[0]:
            grads[0] = (g3 * _per_channel(self.alpha, g3.shape[2])).reshape(g.shape)
        return tuple(grads)

    def _graph_stats(self, ns, x):
        if self.training:
            return _stats_graph(ns, x, self.stat_axes, self.eps)
        invstd = ns.const(self.invstd, x)
        return (x - ns.const(self.eval_mean, x)) * invstd, invstd

    def _input_grad(self, ns, dxhat, xhat, invstd):
        if self.training:
            return _norm_input_grad(ns, dxhat, xhat, invstd, self.stat_axes)
        return dxhat * invstd


class NativeLayerNormBackward0(_AffineNorm):
    """Layer norm over the last ``len(normalized_shape)`` axes; weight/bias have that shape."""

    def forward(self, x, *wb, has_weight, has_bias, normalized_ndim, eps):
        xp = array_module(x)
        self._setup(has_weight, has_bias, eps)
        k = normalized_ndim
        self.stat_axes = tuple(range(x.ndim - k, x.ndim))
        self.param_axes = tuple(range(x.ndim - k))
        self.pshape = x.shape[x.ndim - k:]
        self.bshape = self.pshape
        self.rows = None
        if x.dtype.kind == "f" and x.dtype.itemsize >= 4 and x.size:
            # the fast path: rows of C = prod(normalized_shape), statistics as matrix-vector products
            c = 1
            for d in self.pshape:
                c *= d
            w, b = self._split(wb)
            out, xhat, invstd = layer_norm_rows(x.reshape(-1, c), None if w is None else w.reshape(c),
                                                None if b is None else b.reshape(c), eps)
            self.rows = (xhat, invstd)
            self.xhat = xhat.reshape(x.shape)
            self.invstd = invstd.reshape(x.shape[:x.ndim - k] + (1,) * k)
            return out.reshape(x.shape)
        mean = fast_mean(x, axis=self.stat_axes, keepdims=True)
        xc = x - mean
        var = fast_mean(xc * xc, axis=self.stat_axes, keepdims=True)
        invstd = 1.0 / xp.sqrt(var + eps)
        self.xhat = xc * invstd
        self.invstd = invstd
        w, b = self._split(wb)
        return _affine_forward(self.xhat, w, b, self.bshape)

    def backward(self, g, ns, x, *saved):
        if ns.graph or self.rows is None:
            return super().backward(g, ns, x, *saved)
        xhat, invstd = self.rows
        c = xhat.shape[1]
        w = saved[0].reshape(c) if self.has_weight else None
        n = self.needs_input_grad
        dx, dw, db = layer_norm_rows_backward(g.reshape(-1, c), xhat, invstd, w, n[0],
                                              self.has_weight and n[1], self.has_bias and n[-1])
        grads = [None if dx is None else dx.reshape(x.shape)]
        if self.has_weight:
            grads.append(None if dw is None else dw.reshape(self.pshape))
        if self.has_bias:
            grads.append(None if db is None else db.reshape(self.pshape))
        return tuple(grads)

    def _graph_stats(self, ns, x):
        return _stats_graph(ns, x, self.stat_axes, self.eps)

    def _input_grad(self, ns, dxhat, xhat, invstd):
        return _norm_input_grad(ns, dxhat, xhat, invstd, self.stat_axes)


class NativeGroupNormBackward0(_AffineNorm):
    """Group norm on (N, C, *): channels split into ``num_groups`` groups, each normalised over
    its channels and all spatial positions; weight/bias are per channel."""

    def forward(self, x, *wb, has_weight, has_bias, num_groups, eps):
        xp = array_module(x)
        self._setup(has_weight, has_bias, eps)
        n, c = x.shape[0], x.shape[1]
        self.xshape = x.shape
        self.gshape = (n, num_groups, -1)
        self.param_axes = (0,) + tuple(range(2, x.ndim))
        self.bshape = (1, c) + (1,) * (x.ndim - 2)
        self.pshape = (c,)
        xg = x.reshape(self.gshape)
        mean = fast_mean(xg, axis=2, keepdims=True)
        xc = xg - mean
        var = fast_mean(xc * xc, axis=2, keepdims=True)
        invstd = 1.0 / xp.sqrt(var + eps)
        self.xhat = (xc * invstd).reshape(x.shape)
        self.invstd = invstd
        w, b = self._split(wb)
        return _affine_forward(self.xhat, w, b, self.bshape)

    def _graph_stats(self, ns, x):
        xhat_g, invstd = _stats_graph(ns, ns.reshape(x, self.gshape), (2,), self.eps)
        return ns.reshape(xhat_g, self.xshape), invstd

    def _input_grad(self, ns, dxhat, xhat, invstd):
        dg = _norm_input_grad(ns, ns.reshape(dxhat, self.gshape), ns.reshape(xhat, self.gshape), invstd, (2,))
        return ns.reshape(dg, self.xshape)
