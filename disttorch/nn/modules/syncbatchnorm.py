"""``SyncBatchNorm``: batch normalisation whose batch statistics span all ranks.

In training each rank sums ``x`` and ``x*x`` per channel over its local batch; one all-reduce
gives the global mean and variance, so every rank normalises with the statistics of the whole
global batch (as one process with the full batch would). Backward all-reduces the two per-channel
gradient sums the input gradient needs. Outside a process group (or in eval) it is BatchNorm.
"""
from __future__ import annotations

import numpy as np

from ...autograd.function import Function
from ...tensor import Tensor
from .module import Module
from ..parameter import Parameter


def _group_active(group):
    try:
        import disttorch.distributed as dist
        return dist.is_initialized() and (dist.get_world_size(group) if group is not None
                                          else dist.get_world_size()) > 1
    except (ImportError, AttributeError):
        return False


def _all_reduce_sum(array, group):
    import disttorch.distributed as dist
    t = Tensor._wrap(array)
    if group is None:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    else:
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
    return np.asarray(t._data)


class _SyncBatchNormFn(Function):
    """y = (x - mean) * invstd * weight + bias with global (all-rank) mean and invstd."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps, group, sync, stats_out):
        data = x._data
        axes = (0,) + tuple(range(2, data.ndim))
        shape = [1, data.shape[1]] + [1] * (data.ndim - 2)
        count = data.size // data.shape[1]
        local = np.concatenate([data.sum(axes, dtype=np.float64), (data.astype(np.float64) ** 2).sum(axes),
                                [float(count)]])
        total = _all_reduce_sum(local, group) if sync else local
        c = data.shape[1]
        n = total[-1]
        mean = total[:c] / n
        var = np.maximum(total[c:2 * c] / n - mean * mean, 0.0)
        invstd = 1.0 / np.sqrt(var + eps)
        xhat = ((data - mean.reshape(shape)) * invstd.reshape(shape)).astype(data.dtype)
        w = weight._data.reshape(shape) if weight is not None else 1.0
        b = bias._data.reshape(shape) if bias is not None else 0.0
        ctx.xhat, ctx.invstd, ctx.n, ctx.shape, ctx.axes = xhat, invstd.astype(data.dtype), n, shape, axes
        ctx.group, ctx.sync, ctx.has_w, ctx.has_b = group, sync, weight is not None, bias is not None
        ctx.w = weight._data if weight is not None else None
        stats_out.extend([mean, var, n])
        return Tensor._wrap((xhat * w + b).astype(data.dtype, copy=False))

    @staticmethod
    def backward(ctx, grad):
        g = grad._data if isinstance(grad, Tensor) else np.asarray(grad)
        xhat, shape, axes = ctx.xhat, ctx.shape, ctx.axes
        grad_bias = g.sum(axes)
        grad_weight = (g * xhat).sum(axes)
        dxhat_sum = grad_bias * (ctx.w if ctx.w is not None else 1.0)
        dxhat_xhat_sum = grad_weight * (ctx.w if ctx.w is not None else 1.0)
        both = np.concatenate([dxhat_sum, dxhat_xhat_sum]).astype(np.float64)
        if ctx.sync:
            both = _all_reduce_sum(both, ctx.group)
        c = xhat.shape[1]
        mean_dy = (both[:c] / ctx.n).reshape(shape)
        mean_dy_xhat = (both[c:] / ctx.n).reshape(shape)
        w = ctx.w.reshape(shape) if ctx.w is not None else 1.0
        dx = (ctx.invstd.reshape(shape) * (g * w - mean_dy - xhat * mean_dy_xhat)).astype(g.dtype)
        return (Tensor._wrap(dx), Tensor._wrap(grad_weight.astype(g.dtype)) if ctx.has_w else None,
                Tensor._wrap(grad_bias.astype(g.dtype)) if ctx.has_b else None, None, None, None, None)


class SyncBatchNorm(Module):
    """Batch norm over ``N x C x ...`` inputs with statistics synchronised across ``process_group``.

    Same parameters, buffers and state_dict keys as ``BatchNorm{1,2,3}d``.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 process_group=None, device=None, dtype=None):
        super().__init__()
        from ... import _dtype
        dt = (dtype or _dtype.get_default_dtype()).np  # disttorch dtype -> NumPy dtype
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), momentum
        self.affine, self.track_running_stats, self.process_group = affine, track_running_stats, process_group
        if affine:
            self.weight = Parameter(Tensor._wrap(np.ones(num_features, dt)))
            self.bias = Parameter(Tensor._wrap(np.zeros(num_features, dt)))
        else:
            self.weight = self.bias = None
        if track_running_stats:
            self.register_buffer("running_mean", Tensor._wrap(np.zeros(num_features, dt)))
            self.register_buffer("running_var", Tensor._wrap(np.ones(num_features, dt)))
            self.register_buffer("num_batches_tracked", Tensor._wrap(np.zeros((), np.int64)))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")

    def forward(self, input):
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")
        if input.shape[1] != self.num_features:
            raise ValueError(f"SyncBatchNorm: expected {self.num_features} channels, got input of shape "
                             f"{tuple(input.shape)}")
        use_batch_stats = self.training or self.running_mean is None
        if not use_batch_stats:
            shape = [1, self.num_features] + [1] * (input.dim() - 2)
            out = (input - self.running_mean.reshape(shape)) / (self.running_var.reshape(shape) + self.eps).sqrt()
            if self.affine:
                out = out * self.weight.reshape(shape) + self.bias.reshape(shape)
            return out
        stats = []
        out = _SyncBatchNormFn.apply(input, self.weight, self.bias, self.eps, self.process_group,
                                     _group_active(self.process_group), stats)
        if self.training and self.track_running_stats:
            mean, var, n = stats
            self.num_batches_tracked._data += 1
            m = (1.0 / float(self.num_batches_tracked._data)) if self.momentum is None else self.momentum
            unbiased = var * n / max(n - 1.0, 1.0)
            rm, rv = self.running_mean._data, self.running_var._data
            rm[...] = ((1 - m) * rm + m * mean).astype(rm.dtype)
            rv[...] = ((1 - m) * rv + m * unbiased).astype(rv.dtype)
        return out

    @classmethod
    def convert_sync_batchnorm(cls, module, process_group=None):
        """Returns ``module`` with every BatchNorm*d replaced by a SyncBatchNorm sharing its
        parameters and buffers (as ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``)."""
        out = module
        if _is_batchnorm(module):
            out = cls(module.num_features, module.eps, module.momentum, module.affine,
                      module.track_running_stats, process_group)
            if module.affine:
                out.weight, out.bias = module.weight, module.bias
            if module.track_running_stats:
                out.running_mean, out.running_var = module.running_mean, module.running_var
                out.num_batches_tracked = module.num_batches_tracked
            out.training = module.training
        for name, child in module.named_children():
            out.add_module(name, cls.convert_sync_batchnorm(child, process_group))
        return out


def _is_batchnorm(module):
    return type(module).__name__ in ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d") and not isinstance(module,
                                                                                                    SyncBatchNorm)
