"""Loss functions of ``disttorch.nn.functional`` (PyTorch's signatures, checks and messages).

``reduction`` is 'none' | 'mean' | 'sum' (the deprecated ``size_average`` / ``reduce`` pair is
still accepted). Class losses take input (C), (N, C) or (N, C, d1, ...) and integer targets
(), (N) or (N, d1, ...); cross-entropy also takes class-probability targets of the input's shape.
"""
from __future__ import annotations

import warnings

import numpy as np

from .. import _torch_api as _T
from .._dtype import LEGACY_NAMES as _LEGACY
from .._size import Size
from ..ops.nn_loss import (
    BinaryCrossEntropyBackward0, BinaryCrossEntropyWithLogitsBackward0, CrossEntropyNll, CrossEntropyNll2d,
    HuberLossBackward0, MseLossBackward0, NllLoss2DBackward0, NllLossBackward0, SmoothL1LossBackward0,
    check_broadcastable)
from ..tensor import Tensor

__all__ = ["mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "cross_entropy", "nll_loss", "binary_cross_entropy",
           "binary_cross_entropy_with_logits", "kl_div", "cosine_embedding_loss", "margin_ranking_loss",
           "triplet_margin_loss"]



class _Reduction:
    """PyTorch's reduction-argument helpers (including the deprecated size_average/reduce)."""

    @staticmethod
    def check(reduction):
        if reduction not in ("none", "mean", "sum"):
            raise ValueError(f"{reduction} is not a valid value for reduction")
        return reduction

    @staticmethod
    def legacy_get_string(size_average, reduce, emit_warning=True):
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        ret = "mean" if size_average and reduce else "sum" if reduce else "none"
        if emit_warning:
            warnings.warn(f"size_average and reduce args will be deprecated, please use reduction='{ret}' instead.",
                          stacklevel=3)
        return ret


def _reduction(size_average, reduce, reduction):
    if size_average is not None or reduce is not None:
        return _Reduction.legacy_get_string(size_average, reduce)
    return _Reduction.check(reduction)


def _reduce(loss, reduction):
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


def _warn_size(input, target):
    if target.shape != input.shape:
        warnings.warn(f"Using a target size ({target.size()}) that is different to the input size ({input.size()}). "
                      "This will likely lead to incorrect results due to broadcasting. Please ensure they have the "
                      "same size.", stacklevel=3)


def _check_expandable(shape, to):
    """PyTorch's error when a weight of ``shape`` cannot be expanded to ``to`` (BCE's weight)."""
    padded = (1,) * (len(shape) - len(to)) + tuple(to)
    for i in range(1, len(shape) + 1):
        if shape[-i] != padded[-i] and shape[-i] != 1:
            raise RuntimeError(f"Attempting to broadcast a dimension of length {shape[-i]} at -{i}! Mismatching "
                               f"argument at index 1 had {_size_repr(shape)}; but expected shape should be "
                               f"broadcastable to [{', '.join(str(d) for d in padded)}]")


def _size_repr(shape):
    return repr(Size(shape))


def _like(target, input):
    """``target`` in ``input``'s floating dtype (NumPy would otherwise widen or narrow silently)."""
    return target if target._data.dtype == input._data.dtype else target.to(input.dtype)


def _weighted(loss, weight, reduction):
    if weight.shape != loss.shape:
        raise ValueError("Weights and input must have the same size.")
    weighted = loss * weight
    if reduction == "none":
        return weighted
    if reduction == "sum":
        return weighted.sum()
    return weighted.sum() / weight.sum()


# ---- regression ----------------------------------------------------------------------------------
def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """Squared error ``(input - target)^2``, reduced (grad_fn MseLossBackward0)."""
    _warn_size(input, target)
    reduction = _reduction(size_average, reduce, reduction)
    target = _like(target, input)
    if weight is not None:
        return _weighted(MseLossBackward0.apply(input, target, reduction="none"), weight, reduction)
    return MseLossBackward0.apply(input, target, reduction=reduction)


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """Absolute error ``|input - target|``, reduced."""
    _warn_size(input, target)
    reduction = _reduction(size_average, reduce, reduction)
    loss = (input - _like(target, input)).abs()
    if weight is not None:
        return _weighted(loss, weight, reduction)
    return _reduce(loss, reduction)


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):
    """Quadratic below ``beta`` (``0.5 d^2 / beta``), linear above (``|d| - 0.5 beta``)."""
    _warn_size(input, target)
    reduction = _reduction(size_average, reduce, reduction)
    if beta < 0:
        raise RuntimeError("smooth_l1_loss does not support negative values for beta.")
    if beta == 0.0:
        return l1_loss(input, target, reduction=reduction)
    return SmoothL1LossBackward0.apply(input, _like(target, input), reduction=reduction, beta=float(beta))


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    """Quadratic below ``delta`` (``0.5 d^2``), linear above (``delta (|d| - 0.5 delta)``)."""
    _warn_size(input, target)
    _Reduction.check(reduction)
    if delta <= 0:
        raise RuntimeError("huber_loss does not support non-positive values for delta.")
    target = _like(target, input)
    if weight is not None:
        return _weighted(HuberLossBackward0.apply(input, target, reduction="none", delta=float(delta)), weight,
                         reduction)
    return HuberLossBackward0.apply(input, target, reduction=reduction, delta=float(delta))


# ---- classification ----------------------------------------------------------------------------------
def _check_class_target(input, target):
    """PyTorch's nll_loss_nd checks for class-index targets: shapes first, then the dtype."""
    if input.ndim < 1:
        raise ValueError(f"Expected 1 or more dimensions (got {input.ndim})")
    if input.ndim == 1:
        if target.ndim > 1:
            raise RuntimeError("0D or 1D target tensor expected, multi-target not supported")
        if target.ndim == 1 and target.shape[0] != 1:
            raise ValueError(f"For 1D input, 1D target must have size 1, but got target size: {target.shape[0]}")
    elif input.ndim == 2 and target.ndim != 1:
        raise RuntimeError("0D or 1D target tensor expected, multi-target not supported")
    elif target.ndim == 0 or input.shape[0] != target.shape[0]:
        tb = target.shape[0] if target.ndim else 0
        raise ValueError(f"Expected input batch_size ({input.shape[0]}) to match target batch_size ({tb}).")
    elif input.ndim > 2:
        expected = [input.shape[0]] + list(input.shape[2:])
        if list(target.shape) != expected:
            raise RuntimeError(f"Expected target size {expected}, got {list(target.shape)}")
    if target._data.dtype not in (np.int64, np.uint8):
        raise RuntimeError("expected target dtype to be Long or Byte, but got "
                           f"{_LEGACY.get(target.dtype.name, target.dtype.name)}")


def _check_weight(weight, n_classes, name="weight tensor"):
    if weight is not None and (weight.ndim != 1 or weight.numel() != n_classes):
        raise RuntimeError(f"{name} should be defined either for all {n_classes} classes or no classes but got "
                           f"weight tensor of shape: {list(weight.shape)}")


def _weight_array(weight, input):
    return None if weight is None else weight._data.astype(input._data.dtype, copy=False)


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
    """Negative log-likelihood of log-probabilities ``input`` at class indices ``target``.

    'mean' divides by the summed weights of the non-ignored targets.
    """
    reduction = _reduction(size_average, reduce, reduction)
    _check_class_target(input, target)
    _check_weight(weight, input.shape[0 if input.ndim == 1 else 1])
    op = NllLoss2DBackward0 if input.ndim > 2 else NllLossBackward0
    return op.apply(input, target=target._data.astype(np.int64, copy=False), weight=_weight_array(weight, input),
                    reduction=reduction, ignore_index=int(ignore_index))


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                  label_smoothing=0.0):
    """Cross-entropy of logits ``input`` against class indices or class probabilities.

    Index targets run one fused log-softmax + NLL op (grad_fn NllLossBackward0); probability
    targets (same shape as input) and label smoothing are composed from differentiable ops.
    """
    reduction = _reduction(size_average, reduce, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise RuntimeError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    class_dim = 0 if input.ndim == 1 else 1
    n_classes = input.shape[class_dim] if input.ndim else 1
    if input.shape == target.shape:
        if not target.is_floating_point():
            raise RuntimeError(f"Expected floating point type for target with class probabilities, got "
                               f"{_LEGACY.get(target.dtype.name, target.dtype.name)}")
        _check_weight(weight, n_classes, "cross_entropy: weight tensor")
        return _cross_entropy_probs(input, _like(target, input), weight, reduction, label_smoothing, class_dim,
                                    n_classes)
    _check_class_target(input, target)
    _check_weight(weight, n_classes)
    op = CrossEntropyNll2d if input.ndim > 2 else CrossEntropyNll
    t = target._data.astype(np.int64, copy=False)
    nll = op.apply(input, target=t, weight=_weight_array(weight, input), reduction=reduction,
                   ignore_index=int(ignore_index))
    if label_smoothing <= 0.0:
        return nll
    return nll * (1 - label_smoothing) + _smooth_term(input, t, weight, reduction, ignore_index, class_dim) * (
        label_smoothing / n_classes)


def _smooth_term(input, target, weight, reduction, ignore_index, class_dim):
    """The label-smoothing part: ``-sum_c w_c log p_c`` per sample, ignored targets zeroed."""
    logp = _T.log_softmax(input, class_dim)
    if weight is not None:
        shape = [1] * input.ndim
        shape[class_dim] = weight.numel()
        logp = logp * _like(weight, input).reshape(shape)
    smooth = -logp.sum(class_dim)
    ignored = Tensor._wrap(target == ignore_index)
    smooth = smooth.masked_fill(ignored, 0.0)
    if reduction == "none":
        return smooth
    if reduction == "sum":
        return smooth.sum()
    keep = target != ignore_index
    if weight is not None:
        denom = float(weight._data[target[keep]].sum())
    else:
        denom = float(keep.sum())
    return smooth.sum() / denom


def _cross_entropy_probs(input, target, weight, reduction, label_smoothing, class_dim, n_classes):
    logp = _T.log_softmax(input, class_dim)
    if label_smoothing > 0.0:
        target = target * (1 - label_smoothing) + label_smoothing / n_classes
    prod = logp * target
    if weight is not None:
        shape = [1] * input.ndim
        shape[class_dim] = n_classes
        prod = prod * _like(weight, input).reshape(shape)
    if reduction == "none":
        return -prod.sum(class_dim)
    if reduction == "sum":
        return -prod.sum()
    if input.numel() == 0:
        return -prod.sum() * float("nan")
    return -prod.sum() / (input.numel() / n_classes)


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    """``-w (y log x + (1 - y) log(1 - x))`` for probabilities ``input`` in [0, 1]."""
    reduction = _reduction(size_average, reduce, reduction)
    if target.shape != input.shape:
        raise ValueError(f"Using a target size ({target.size()}) that is different to the input size ({input.size()}) "
                         "is deprecated. Please ensure they have the same size.")
    w = None
    if weight is not None:
        _check_expandable(weight.shape, target.shape)
        w = np.broadcast_to(_weight_array(weight, input), np.broadcast_shapes(target.shape, weight.shape))
    return BinaryCrossEntropyBackward0.apply(input, _like(target, input), reduction=reduction, weight=w)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None, reduction="mean",
                                     pos_weight=None):
    """Sigmoid + BCE in one stable op; ``pos_weight`` (broadcast over the last dim) weighs positives."""
    reduction = _reduction(size_average, reduce, reduction)
    if target.shape != input.shape:
        raise ValueError(f"Target size ({target.size()}) must be the same as input size ({input.size()})")
    if pos_weight is not None:
        check_broadcastable(pos_weight.shape, target.shape)  # PyTorch names pos_weight as tensor a
    if weight is not None:
        check_broadcastable(input.shape, weight.shape)
    return BinaryCrossEntropyWithLogitsBackward0.apply(
        input, _like(target, input), reduction=reduction, weight=_weight_array(weight, input),
        pos_weight=_weight_array(pos_weight, input))


def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    """KL divergence of ``target`` from log-probabilities ``input``:
    ``target * (log(target) - input)`` pointwise; 'batchmean' divides the sum by the batch size."""
    if size_average is not None or reduce is not None:
        reduction = _Reduction.legacy_get_string(size_average, reduce)
    else:
        if reduction == "mean":
            warnings.warn("reduction: 'mean' divides the total loss by both the batch size and the support size."
                          "'batchmean' divides only by the batch size, and aligns with the KL div math definition."
                          "'mean' will be changed to behave the same as 'batchmean' in the next major release.",
                          stacklevel=2)
        if reduction != "batchmean":
            _Reduction.check(reduction)
    target = _like(target, input)
    if log_target:
        pointwise = target.exp() * (target - input)
    else:
        positive = target > 0
        safe = _T.where(positive, target, 1.0)
        pointwise = target * safe.log() - target * input  # xlogy(t, t): 0 where t == 0
    if reduction == "batchmean":
        total = pointwise.sum()
        return total / input.shape[0] if input.ndim != 0 else total
    return _reduce(pointwise, reduction)


def cosine_embedding_loss(input1, input2, target, margin=0, size_average=None, reduce=None, reduction="mean"):
    """``1 - cos(x1, x2)`` where target is 1, ``max(0, cos - margin)`` where it is -1."""
    reduction = _reduction(size_average, reduce, reduction)
    td = target.ndim
    if td not in (0, 1):
        raise RuntimeError("0D or 1D target tensor expected, multi-target not supported")
    if td == 1 and (input1.ndim != 2 or input2.ndim != 2):
        raise RuntimeError(f"1D target tensor expects 2D input tensors, but found inputs with sizes "
                           f"{list(input1.shape)} and {list(input2.shape)}.")
    if td == 0 and (input1.ndim != 1 or input2.ndim != 1):
        raise RuntimeError(f"0D target tensor expects 1D input tensors, but found inputs with sizes "
                           f"{list(input1.shape)} and {list(input2.shape)}.")
    eps = 1e-12
    prod_sum = (input1 * input2).sum(td)
    mag1 = (input1 * input1).sum(td) + eps
    mag2 = (input2 * input2).sum(td) + eps
    cos = prod_sum / (mag1 * mag2).sqrt()
    zeros = cos * 0
    pos = _T.where(target == 1, 1 - cos, zeros)
    neg = _T.where(target == -1, (cos - margin).clamp_min(0), zeros)
    return _reduce(pos + neg, reduction)


def margin_ranking_loss(input1, input2, target, margin=0, size_average=None, reduce=None, reduction="mean"):
    """``max(0, -target * (input1 - input2) + margin)``."""
    reduction = _reduction(size_average, reduce, reduction)
    if input1.ndim != input2.ndim or input1.ndim != target.ndim:
        raise RuntimeError(f"margin_ranking_loss : All input tensors should have same dimension but got sizes: input1: "
                           f"{input1.size()}, input2: {input2.size()}, target: {target.size()} ")
    target = _like(target, input1)
    return _reduce((-target * (input1 - input2) + margin).clamp_min(0), reduction)


def triplet_margin_loss(anchor, positive, negative, margin=1.0, p=2, eps=1e-6, swap=False, size_average=None,
                        reduce=None, reduction="mean"):
    """``max(0, margin + d(a, p) - d(a, n))`` with d the p-norm pairwise distance."""
    from .functional import pairwise_distance
    reduction = _reduction(size_average, reduce, reduction)
    if margin <= 0:
        raise ValueError(f"margin must be greater than 0, got {margin}")
    if not anchor.ndim == positive.ndim == negative.ndim:
        raise RuntimeError(f"The anchor, positive, and negative tensors are expected to have the same number of "
                           f"dimensions, but got: anchor {anchor.ndim}D, positive {positive.ndim}D, and negative "
                           f"{negative.ndim}D inputs")
    d_pos = pairwise_distance(anchor, positive, p, eps)
    d_neg = pairwise_distance(anchor, negative, p, eps)
    if swap:
        d_neg = _T.minimum(d_neg, pairwise_distance(positive, negative, p, eps))
    return _reduce((margin + d_pos - d_neg).clamp_min(0), reduction)
