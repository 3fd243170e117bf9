"""``disttorch.nn.functional``: the functional form of every layer and loss (PyTorch's signatures).

Shapes follow PyTorch: N batch, C channels/classes, ``*`` any extra dims. Losses are in
``_functional_loss.py`` and convolution/pooling/attention in ``_functional_spatial.py``; both are
re-exported here.
"""
from __future__ import annotations

import warnings

import numpy as np

from .. import _torch_api as _T
from .._dtype import LEGACY_NAMES as _LEGACY
from .._backend import array_module
from ..autograd.grad_mode import no_grad
from ..autograd.inplace import apply_inplace
from ..ops.nn import (
    EluBackward0, EmbeddingBackward0, GeluBackward0, HardsigmoidBackward0, HardswishBackward0, HardtanhBackward0, LeakyReluBackward0, LinearAddmm, LinearMm,
    MishBackward0, PreluKernelBackward0, SiluBackward0, SoftplusBackward0, apply_float, dropout_mask)
from ..ops import registry as _registry
from ..ops.nn_norm import NativeBatchNormBackward0, NativeGroupNormBackward0, NativeLayerNormBackward0
from ..tensor import Tensor


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _inplace(input, fn, **kwargs):
    """Runs ``fn(input)`` and writes the result into ``input`` (autograd history rebased)."""
    return apply_inplace(input, lambda t: fn(t, **kwargs), (), {})


# ---- linear ------------------------------------------------------------------------------------
def linear(input, weight, bias=None):
    """``input @ weight.T + bias``. input (*, in), weight (out, in), bias (out,) -> (*, out).

    2-D input runs one fused op (grad_fn AddmmBackward0, or MmBackward0 without bias); other
    ranks are flattened to 2-D around it.
    """
    if input._data.dtype != weight._data.dtype:
        raise RuntimeError(f"mat1 and mat2 must have the same dtype, but got {_LEGACY.get(input.dtype.name)} and "
                           f"{_LEGACY.get(weight.dtype.name)}")
    if weight.ndim == 1:
        out = _T.matmul(input, weight)
        return out + bias if bias is not None else out
    if input.ndim == 0:
        raise RuntimeError("both arguments to linear need to be at least 1D, but they are 0D and 2D")
    out_f, in_f = weight.shape
    if input.shape[-1] != in_f:
        rows = int(np.prod(input.shape[:-1])) if input.ndim > 1 else 1
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({rows}x{input.shape[-1]} and {in_f}x{out_f})")
    if input.ndim == 2:
        return LinearAddmm.apply(bias, input, weight) if bias is not None else LinearMm.apply(input, weight)
    lead = input.shape[:-1]
    x2 = input.reshape(-1, in_f)
    out = LinearAddmm.apply(bias, x2, weight) if bias is not None else LinearMm.apply(x2, weight)
    return out.reshape(*lead, out_f)


def bilinear(input1, input2, weight, bias=None):
    """``y[..., o] = input1[..., i] weight[o, i, j] input2[..., j] + bias[o]``."""
    if input1.shape[:-1] != input2.shape[:-1]:
        for d, (a, b) in enumerate(zip(input1.shape[:-1], input2.shape[:-1])):
            if a != b:
                raise RuntimeError(f"bilinear(): input batch dimensions do not match at dim {d}: got {a} and {b}")
        raise RuntimeError(f"bilinear(): input dimensions do not match: got {input1.ndim} and {input2.ndim}")
    if input1.shape[-1] != weight.shape[1]:
        raise RuntimeError(f"bilinear(): input1 size does not match weight size: got {input1.shape[-1]} but expected "
                           f"{weight.shape[1]}")
    if input2.shape[-1] != weight.shape[2]:
        raise RuntimeError(f"bilinear(): input2 size does not match weight size: got {input2.shape[-1]} but expected "
                           f"{weight.shape[2]}")
    out = _T.einsum("...i,oij,...j->...o", input1, weight, input2)
    return out + bias if bias is not None else out


# ---- activations -------------------------------------------------------------------------------
def relu(input, inplace=False):
    return input.relu_() if inplace else _T.relu(input)


def relu_(input):
    return input.relu_()


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    """``clamp(input, min_val, max_val)`` with zero gradient outside (grad_fn HardtanhBackward0)."""
    if min_val > max_val:
        raise ValueError("min_val cannot be greater than max_val")
    if inplace:
        return _inplace(input, hardtanh, min_val=min_val, max_val=max_val)
    return apply_float(HardtanhBackward0, input, "hardtanh", min_val=float(min_val), max_val=float(max_val))


def hardtanh_(input, min_val=-1.0, max_val=1.0):
    return hardtanh(input, min_val, max_val, inplace=True)


def relu6(input, inplace=False):
    return hardtanh(input, 0.0, 6.0, inplace)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    if inplace:
        return _inplace(input, leaky_relu, negative_slope=negative_slope)
    return apply_float(LeakyReluBackward0, input, "leaky_relu", negative_slope=float(negative_slope))


def leaky_relu_(input, negative_slope=0.01):
    return leaky_relu(input, negative_slope, inplace=True)


def elu(input, alpha=1.0, inplace=False):
    if inplace:
        return _inplace(input, elu, alpha=alpha)
    return apply_float(EluBackward0, input, "elu", alpha=float(alpha))


def elu_(input, alpha=1.0):
    return elu(input, alpha, inplace=True)


def selu(input, inplace=False):
    """``scale * elu(x, alpha)`` with the self-normalising constants."""
    if inplace:
        return _inplace(input, selu)
    return apply_float(EluBackward0, input, "selu", alpha=_SELU_ALPHA, scale=_SELU_SCALE)


def selu_(input):
    return selu(input, inplace=True)


def gelu(input, approximate="none"):
    """``x * Phi(x)`` (``approximate='none'``) or its tanh approximation (``'tanh'``)."""
    if approximate not in ("none", "tanh"):
        raise RuntimeError("approximate argument must be either none or tanh.")
    return apply_float(GeluBackward0, input, "GeluKernelImpl", approximate=approximate)


def silu(input, inplace=False):
    """``x * sigmoid(x)``."""
    if inplace:
        return _inplace(input, silu)
    return apply_float(SiluBackward0, input, "silu")


def mish(input, inplace=False):
    """``x * tanh(softplus(x))``."""
    if inplace:
        return _inplace(input, mish)
    return apply_float(MishBackward0, input, "mish")


def softplus(input, beta=1.0, threshold=20.0):
    """``log(1 + exp(beta x)) / beta``, reverting to ``x`` where ``beta x > threshold``."""
    return apply_float(SoftplusBackward0, input, "softplus", beta=float(beta), threshold=float(threshold))


def logsigmoid(input):
    """``log(sigmoid(x)) = -softplus(-x)``, stable for large |x|."""
    return -softplus(-input)


def celu(input, alpha=1.0, inplace=False):
    """``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))``."""
    if alpha == 0:
        raise RuntimeError("ZeroDivisionError")
    if inplace:
        return _inplace(input, celu, alpha=alpha)
    return apply_float(EluBackward0, input, "celu", alpha=float(alpha), input_scale=1.0 / alpha,
                       celu_grad_scale=1.0 / float(np.float32(alpha)))


def _threshold(input, threshold, value):
    return _T.where(input > threshold, input, value)


def threshold(input, threshold, value, inplace=False):
    """``x if x > threshold else value``."""
    if inplace:
        return _inplace(input, _threshold, threshold=threshold, value=value)
    return _threshold(input, threshold, value)


def hardsigmoid(input, inplace=False):
    """``relu6(x + 3) / 6``: 0 below -3, 1 above 3, linear between (PyTorch's rounding order)."""
    if inplace:
        return _inplace(input, hardsigmoid)
    return apply_float(HardsigmoidBackward0, input, "hardsigmoid")


def hardswish(input, inplace=False):
    """``x * relu6(x + 3) / 6`` (multiplied before the division, as PyTorch's kernel rounds)."""
    if inplace:
        return _inplace(input, hardswish)
    return apply_float(HardswishBackward0, input, "hardswish")


def hardshrink(input, lambd=0.5):
    """``x if |x| > lambd else 0``."""
    return _T.where(input.abs() > lambd, input, input.new_zeros(()))


def softshrink(input, lambd=0.5):
    """``x - lambd`` above ``lambd``, ``x + lambd`` below ``-lambd``, 0 between."""
    if lambd < 0:
        from .._type_info import finfo
        limit = finfo(input.dtype).max if input.is_floating_point() else float("inf")
        raise RuntimeError(f"lambda must be in range [0, {limit:g}] for input dtype "
                           f"{_LEGACY.get(input.dtype.name, input.dtype.name)}, but found {lambd:g}")
    zero = input.new_zeros(())
    return _T.where(input > lambd, input - lambd, _T.where(input < -lambd, input + lambd, zero))


def tanhshrink(input):
    """``x - tanh(x)``."""
    return input - input.tanh()


def rrelu(input, lower=1.0 / 8, upper=1.0 / 3, training=False, inplace=False):
    """Randomized leaky ReLU: in training each negative element gets its own slope drawn from
    U(lower, upper); in evaluation the slope is the mean ``(lower + upper) / 2``."""
    if inplace:
        return _inplace(input, rrelu, lower=lower, upper=upper, training=training)
    if not training:
        return leaky_relu(input, (lower + upper) / 2)
    with no_grad():
        slopes = _T.empty_like(input).uniform_(lower, upper)
    return _T.where(input >= 0, input, input * slopes)


def rrelu_(input, lower=1.0 / 8, upper=1.0 / 3, training=False):
    return rrelu(input, lower, upper, training, inplace=True)


def softsign(input):
    """``x / (1 + |x|)``."""
    return input / (input.abs() + 1)


def glu(input, dim=-1):
    """Gated linear unit: the first half of ``dim`` times the sigmoid of the second half."""
    size = input.shape[dim]
    if size % 2:
        raise RuntimeError(f"Halving dimension must be even, but dimension {dim % input.ndim} is size {size}")
    a, b = input.chunk(2, dim)
    return a * b.sigmoid()


def prelu(input, weight):
    """``x if x > 0 else weight * x``; weight has 1 or C (= input.shape[1]) elements."""
    if weight.numel() != 1:
        channels = input.shape[1] if input.ndim >= 2 else 1
        if input.ndim == 0 or channels != weight.numel():
            raise RuntimeError(f"Mismatch of parameter numbers and input channel size. Found parameter numbers = "
                               f"{weight.numel()} and channel size = {channels}.")
    if input._data.dtype != weight._data.dtype:
        weight = weight.to(input.dtype)
    return PreluKernelBackward0.apply(input, weight)


def _softmax_dim(name, ndim, stacklevel):
    warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call to include dim=X as an "
                  "argument.", stacklevel=stacklevel)
    return 0 if ndim in (0, 1, 3) else 1


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    """``exp(x) / sum(exp(x))`` along ``dim`` (computed with the max subtracted)."""
    if dim is None:
        dim = _softmax_dim("softmax", input.ndim, _stacklevel)
    return _T.softmax(input, dim, dtype=dtype)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    """``x - logsumexp(x)`` along ``dim``."""
    if dim is None:
        dim = _softmax_dim("log_softmax", input.ndim, _stacklevel)
    return _T.log_softmax(input, dim, dtype=dtype)


def softmin(input, dim=None, _stacklevel=3, dtype=None):
    if dim is None:
        dim = _softmax_dim("softmin", input.ndim, _stacklevel)
    return _T.softmax(-input, dim, dtype=dtype)


# ---- normalisation -------------------------------------------------------------------------------
def _affine_inputs(input, weight, bias):
    tensors = [input]
    if weight is not None:
        tensors.append(weight)
    if bias is not None:
        tensors.append(bias)
    return tensors


def _check_numel(name, t, c):
    if t is not None and t.numel() != c:
        raise RuntimeError(f"{name} should contain {c} elements not {t.numel()}")


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Normalises (N, C, *) per channel. ``training``: batch statistics, and the running stats
    (when given) are updated in place with ``momentum``; otherwise the running stats are used."""
    if input.ndim < 2:
        raise ValueError(f"Expected 2D or higher input to batch_norm (got {input.ndim}D input)")
    c = input.shape[1]
    if training:
        size = list(input.shape)
        n = size[0] * int(np.prod(size[2:]))
        if n == 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {input.size()}")
    elif running_mean is None or running_var is None:
        raise RuntimeError("running_mean and running_var must be defined in evaluation mode")
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight), ("bias", bias)):
        _check_numel(name, t, c)
    update = training and running_mean is not None and running_var is not None
    out = NativeBatchNormBackward0.apply(
        *_affine_inputs(input, weight, bias), has_weight=weight is not None, has_bias=bias is not None,
        running_mean=running_mean._data if running_mean is not None else None,
        running_var=running_var._data if running_var is not None else None,
        training=bool(training), momentum=float(momentum), eps=float(eps))
    if update:  # the running buffers were written in place
        running_mean._vc[0] += 1
        running_var._vc[0] += 1
    return out


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalises over the trailing ``normalized_shape`` dims; weight/bias have that shape."""
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    normalized_shape = tuple(int(s) for s in normalized_shape)
    k = len(normalized_shape)
    if k == 0 or input.ndim < k or tuple(input.shape[input.ndim - k:]) != normalized_shape:
        raise RuntimeError(f"Given normalized_shape={list(normalized_shape)}, expected input with shape "
                           f"[*, {', '.join(map(str, normalized_shape))}], but got input of size{list(input.shape)}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != normalized_shape:
            raise RuntimeError(f"Expected {name} to be of same shape as normalized_shape, but got {name} of shape "
                               f"{list(t.shape)} and normalized_shape = {list(normalized_shape)}")
    return NativeLayerNormBackward0.apply(*_affine_inputs(input, weight, bias), has_weight=weight is not None,
                                          has_bias=bias is not None, normalized_ndim=k, eps=float(eps))


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """Normalises (N, C, *) over groups of C / num_groups channels; weight/bias are per channel."""
    if input.ndim < 2:
        raise RuntimeError(f"Expected at least 2 dimensions for input tensor but received {input.ndim}")
    c = input.shape[1]
    if c % num_groups != 0:
        raise RuntimeError(f"Expected number of channels in input to be divisible by num_groups, but got input of "
                           f"shape {list(input.shape)} and num_groups={num_groups}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and (t.ndim != 1 or t.numel() != c):
            raise RuntimeError(f"Expected {name} to be a vector of size equal to the number of channels in input, but "
                               f"got {name} of shape {list(t.shape)} and input of shape {list(input.shape)}")
    return NativeGroupNormBackward0.apply(*_affine_inputs(input, weight, bias), has_weight=weight is not None,
                                          has_bias=bias is not None, num_groups=int(num_groups), eps=float(eps))


# ---- dropout -----------------------------------------------------------------------------------
def _check_p(p):
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def _apply_mask(input, mask_shape, p, inplace, generator=None):
    mask = Tensor._wrap(dropout_mask(mask_shape, p, input._data.dtype, generator, like=input._data))
    return input.mul_(mask) if inplace else input * mask


def dropout(input, p=0.5, training=True, inplace=False):
    """Zeroes each element with probability ``p`` and scales the rest by ``1 / (1 - p)``
    (training only; an identity otherwise)."""
    _check_p(p)
    if not training or p == 0:
        return input
    return _apply_mask(input, tuple(input.shape), p, inplace)


def dropout1d(input, p=0.5, training=True, inplace=False):
    """Zeroes whole channels of (N, C, L) or unbatched (C, L) input with probability ``p``."""
    _check_p(p)
    if input.ndim not in (2, 3):
        raise RuntimeError(f"dropout1d: Expected 2D or 3D input, but received a {input.ndim}D input. Note that "
                           "dropout1d exists to provide channel-wise dropout on inputs with 1 spatial dimension, a "
                           "channel dimension, and an optional batch dimension (i.e. 2D or 3D inputs).")
    if not training or p == 0:
        return input
    shape = tuple(input.shape[:-1]) + (1,)
    return _apply_mask(input, shape, p, inplace)


def dropout2d(input, p=0.5, training=True, inplace=False):
    """Zeroes whole channels of (N, C, H, W) input (or (N, C, L), with PyTorch's warning)."""
    _check_p(p)
    ndim = input.ndim
    if ndim not in (3, 4):
        warnings.warn(f"dropout2d: Received a {ndim}-D input to dropout2d, which is deprecated and will result in an "
                      "error in a future release. To retain the behavior and silence this warning, please use dropout "
                      "instead. Note that dropout2d exists to provide channel-wise dropout on inputs with 2 spatial "
                      "dimensions, a channel dimension, and an optional batch dimension (i.e. 3D or 4D inputs).",
                      stacklevel=2)
    if ndim == 3:
        warnings.warn("dropout2d: Received a 3D input to dropout2d and assuming that channel-wise 1D dropout behavior is "
                      "desired - input is interpreted as shape (N, C, L), where C is the channel dim. This behavior "
                      "will change in a future release to interpret the input as one without a batch dimension, i.e. "
                      "shape (C, H, W). To maintain the 1D channel-wise dropout behavior, please switch to using "
                      "dropout1d instead.", stacklevel=2)
    if not training or p == 0:
        return input
    shape = tuple(input.shape[:2]) + (1,) * (ndim - 2) if ndim >= 2 else tuple(input.shape)
    return _apply_mask(input, shape, p, inplace)


# ---- embedding -----------------------------------------------------------------------------------
def _embedding_renorm_(weight, indices, max_norm, norm_type):
    """Rescales, in place, the looked-up rows whose ``norm_type``-norm exceeds ``max_norm``."""
    rows = np.unique(indices)
    w = weight._data
    norms = np.linalg.norm(w[rows].astype(np.float64), ord=norm_type, axis=1)
    big = norms > max_norm
    if big.any():
        scale = (max_norm / (norms[big] + 1e-7)).astype(w.dtype)
        w[rows[big]] *= scale[:, None]
        weight._vc[0] += 1


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False, sparse=False):
    """Looks up rows of ``weight`` (num_embeddings, dim) at integer ``input`` (*) -> (*, dim)."""
    if input._data.dtype.kind not in "iu":
        raise RuntimeError("Expected tensor for argument #1 'indices' to have one of the following scalar types: Long, "
                           f"Int; but got {input.type()} instead (while checking arguments for embedding)")
    num = weight.shape[0]
    if padding_idx is not None:
        if padding_idx > 0 and padding_idx >= num:
            raise AssertionError("Padding_idx must be within num_embeddings")
        if padding_idx < 0:
            if padding_idx < -num:
                raise AssertionError("Padding_idx must be within num_embeddings")
            padding_idx = num + padding_idx
    idx = input._data
    if idx.size and (idx.min() < 0 or idx.max() >= num):
        raise IndexError("index out of range in self")
    if max_norm is not None:
        with no_grad():
            _embedding_renorm_(weight, idx, max_norm, norm_type)
    return EmbeddingBackward0.apply(weight, indices=idx, padding_idx=padding_idx,
                                    scale_grad_by_freq=bool(scale_grad_by_freq))


def one_hot(tensor, num_classes=-1):
    """int64 one-hot encoding: (*) class indices -> (*, num_classes)."""
    if tensor._data.dtype != np.int64:
        raise RuntimeError("one_hot is only applicable to index tensor of type LongTensor.")
    idx = tensor._data
    if num_classes == -1:
        if idx.size == 0:
            raise RuntimeError("Can not infer total number of classes from empty tensor.")
        num_classes = int(idx.max()) + 1
    if idx.size:
        if idx.min() < 0:
            raise RuntimeError("Class values must be non-negative.")
        if idx.max() >= num_classes:
            raise RuntimeError("Class values must be smaller than num_classes.")
    xp = array_module(idx)
    out = xp.zeros(idx.shape + (int(num_classes),), dtype=np.int64)
    xp.put_along_axis(out, idx[..., None], 1, axis=-1)
    return Tensor._wrap(out)


# ---- distances -------------------------------------------------------------------------------------
def normalize(input, p=2.0, dim=1, eps=1e-12, out=None):
    """``input / max(||input||_p, eps)`` along ``dim``."""
    denom = input.norm(p, dim, keepdim=True).clamp_min(eps).expand_as(input)
    res = input / denom
    if out is not None:
        out.copy_(res)
        return out
    return res


def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    """``sum(x1/|x1| * x2/|x2|)`` along ``dim`` with each norm clamped below by ``eps``."""
    n1 = x1.norm(2, dim, keepdim=True).clamp_min(eps)
    n2 = x2.norm(2, dim, keepdim=True).clamp_min(eps)
    return ((x1 / n1) * (x2 / n2)).sum(dim)


def pairwise_distance(x1, x2, p=2.0, eps=1e-6, keepdim=False):
    """``||x1 - x2 + eps||_p`` over the last dim."""
    dim = max(x1.ndim, x2.ndim) - 1
    return (x1 - x2 + eps).norm(p, dim, keepdim=keepdim)


# The ops of disttorch.* that are also F.<name> (rows marked functional=True in ops/registry.py).
globals().update({decl.name: _registry.resolve(decl) for decl in _registry.OPS if decl.functional})

from ._functional_loss import *  # noqa: E402,F401,F403
from ._functional_loss import _Reduction  # noqa: E402,F401
from ._functional_spatial import *  # noqa: E402,F401,F403
from .modules.pixelshuffle import pixel_shuffle, pixel_unshuffle  # noqa: E402,F401
