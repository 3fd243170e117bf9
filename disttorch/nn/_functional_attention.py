"""Attention: ``scaled_dot_product_attention`` and ``multi_head_attention_forward`` (PyTorch's math).

SDPA runs as one fused autograd node (``_sdpa_op.py``) when the inputs allow it (equal leading
dimensions, one dtype, a constant mask); otherwise, and for MHA with ``need_weights``, both are
compositions of differentiable disttorch ops (matmul, softmax, masked_fill).
Shapes: SDPA query (..., L, E), key (..., S, E), value (..., S, Ev) -> (..., L, Ev). MHA takes
sequence-first (L, N, E) or unbatched (L, E) inputs, like ``torch.nn.functional``.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _torch_api as _T
from .._backend import array_module
from ..tensor import Tensor
from ._sdpa_op import SdpaBackward0


def _linear(x, weight, bias=None):
    """x @ weight^T + bias over the last axis of ``x`` (any leading dims)."""
    if x.ndim == 2 and bias is not None:
        return _T.addmm(bias, x, weight.t())
    out = _T.matmul(x, weight.t())
    return out if bias is None else out + bias


def _dropout(x, p):
    """Inverted dropout (always applied: callers pass p=0 outside training)."""
    if p <= 0:
        return x
    if p >= 1:
        return x * 0.0
    keep = _T.rand(tuple(x.shape), dtype=x.dtype, device=x.device) >= p
    return x * keep * (1.0 / (1.0 - p))


def _softmax_rows(scores):
    """softmax over the last axis; rows whose every score is -inf give zeros instead of NaN (as
    PyTorch's math SDPA does), with a zero gradient for those rows."""
    data = scores._data
    xp = array_module(data)
    if data.size == 0:
        return _T.softmax(scores, -1)
    dead = xp.isneginf(data).all(axis=-1, keepdims=True)
    if not bool(dead.any()):
        return _T.softmax(scores, -1)
    dead_t = Tensor._wrap(xp.broadcast_to(dead, data.shape))
    return _T.softmax(scores.masked_fill(dead_t, 0.0), -1).masked_fill(dead_t, 0.0)


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False):
    """softmax(query @ key^T * scale + mask) @ value.

    ``attn_mask``: bool (True = may attend) or float (added to the scores), broadcastable to
    (..., L, S). ``is_causal`` masks keys after each query (no explicit mask allowed with it).
    ``scale`` defaults to 1/sqrt(E). ``dropout_p`` is applied to the attention weights.
    ``enable_gqa`` lets key/value have fewer heads (dim -3) than query, repeated to match.
    """
    if query.ndim < 2 or key.ndim < 2 or value.ndim < 2:
        raise RuntimeError(
            f"scaled_dot_product_attention: expected query, key and value to be at least 2-D, got {query.ndim}-D, "
            f"{key.ndim}-D and {value.ndim}-D")
    if query.shape[-1] != key.shape[-1]:
        raise RuntimeError(
            f"scaled_dot_product_attention: query and key must have the same embedding size, got {query.shape[-1]} "
            f"and {key.shape[-1]}")
    if key.shape[-2] != value.shape[-2]:
        raise RuntimeError(
            f"scaled_dot_product_attention: key and value must have the same sequence length, got {key.shape[-2]} "
            f"and {value.shape[-2]}")
    if is_causal and attn_mask is not None:
        raise RuntimeError("_scaled_dot_product_attention: Explicit attn_mask should not be set when is_causal=True")
    length, source = query.shape[-2], key.shape[-2]
    if enable_gqa and key.ndim >= 3 and key.shape[-3] != query.shape[-3]:
        if query.shape[-3] % key.shape[-3]:
            raise RuntimeError(
                f"scaled_dot_product_attention: number of query heads ({query.shape[-3]}) must be a multiple of "
                f"key/value heads ({key.shape[-3]}) with enable_gqa=True")
        reps = query.shape[-3] // key.shape[-3]
        key = _repeat_heads(key, reps)
        value = _repeat_heads(value, reps)
    factor = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    if _fusable(query, key, value, attn_mask):
        keep = None
        if dropout_p > 0:
            keep = _dropout_keep(query.shape[:-1] + key.shape[-2:-1], dropout_p, query)
        mask = None if attn_mask is None else attn_mask._data
        return SdpaBackward0.apply(query, key, value, scale=factor, causal=bool(is_causal), mask=mask, keep=keep)
    scores = _T.matmul(query, key.transpose(-2, -1)) * factor
    if is_causal:
        xp = array_module(scores._data)
        allowed = xp.tril(xp.ones((length, source), dtype=bool))
        scores = scores.masked_fill(Tensor._wrap(~allowed), float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype.name == "bool":
            scores = scores.masked_fill(attn_mask.logical_not(), float("-inf"))
        else:
            scores = scores + attn_mask
    weights = _dropout(_softmax_rows(scores), dropout_p)
    return _T.matmul(weights, value)


def _fusable(query, key, value, attn_mask):
    """Whether the one-node attention (``_sdpa_op``) computes this call: equal leading dims, one
    floating dtype, and a mask that is boolean or a constant of that dtype broadcastable to the
    scores (anything else, error cases included, takes the composed path)."""
    lead = tuple(query.shape[:-2])
    if tuple(key.shape[:-2]) != lead or tuple(value.shape[:-2]) != lead:
        return False
    if not query.is_floating_point() or key.dtype is not query.dtype or value.dtype is not query.dtype:
        return False
    if type(query._data) is not type(key._data) or type(key._data) is not type(value._data):
        return False
    if attn_mask is None:
        return True
    if type(attn_mask._data) is not type(query._data):
        return False
    if attn_mask.dtype.name != "bool" and (attn_mask.dtype is not query.dtype or attn_mask.requires_grad):
        return False
    scores_shape = lead + (query.shape[-2], key.shape[-2])
    try:
        return np.broadcast_shapes(tuple(attn_mask.shape), scores_shape) == scores_shape
    except ValueError:
        return False


def _dropout_keep(shape, p, like):
    """The attention dropout's keep mask scaled by 1 / (1 - p), as an array of ``like``'s dtype
    (drawn as ``_dropout`` draws it, so the random stream is the same on both paths)."""
    if p >= 1:
        return array_module(like._data).zeros(shape, dtype=like._data.dtype)
    keep = (_T.rand(tuple(shape), dtype=like.dtype, device=like.device) >= p)._data.astype(like._data.dtype)
    keep *= keep.dtype.type(1.0 / (1.0 - p))
    return keep


def _repeat_heads(x, reps):
    """(..., Hkv, S, E) -> (..., Hkv*reps, S, E), each head repeated ``reps`` times in place."""
    shape = tuple(x.shape)
    expanded = x.unsqueeze(-3).expand(*shape[:-2], reps, *shape[-2:])
    return expanded.reshape(*shape[:-3], shape[-3] * reps, *shape[-2:])


def _float_mask(mask, dtype, name):
    """Bool masks (True = masked out) become -inf/0 float masks, as PyTorch's ``_canonical_mask``."""
    if mask is None:
        return None
    if mask.dtype.name == "bool":
        zeros = _T.zeros(tuple(mask.shape), dtype=dtype, device=mask.device)
        return zeros.masked_fill(mask, float("-inf"))
    if not mask.is_floating_point():
        raise AssertionError(f"only bool and floating types of {name} are supported")
    return mask


def _in_projection(query, key, value, w, b, use_separate, q_w, k_w, v_w):
    e = query.shape[-1]
    if use_separate:
        if q_w is None or k_w is None or v_w is None:
            raise AssertionError("use_separate_proj_weight is True but q_proj_weight, k_proj_weight or v_proj_weight is None")
        ws = (q_w, k_w, v_w)
    else:
        if w is None:
            raise AssertionError("use_separate_proj_weight is False but in_proj_weight is None")
        ws = (w[:e], w[e:2 * e], w[2 * e:])
    bs = (None, None, None) if b is None else (b[:e], b[e:2 * e], b[2 * e:])
    if not use_separate and query is key and key is value:  # self-attention: one projection
        qkv = _linear(query, w, b)
        return qkv[..., :e], qkv[..., e:2 * e], qkv[..., 2 * e:]
    return _linear(query, ws[0], bs[0]), _linear(key, ws[1], bs[1]), _linear(value, ws[2], bs[2])


def multi_head_attention_forward(query, key, value, embed_dim_to_check, num_heads, in_proj_weight, in_proj_bias,
                                 bias_k, bias_v, add_zero_attn, dropout_p, out_proj_weight, out_proj_bias,
                                 training=True, key_padding_mask=None, need_weights=True, attn_mask=None,
                                 use_separate_proj_weight=False, q_proj_weight=None, k_proj_weight=None,
                                 v_proj_weight=None, static_k=None, static_v=None, average_attn_weights=True,
                                 is_causal=False):
    """Multi-head attention over (L, N, E) query and (S, N, E) key/value (or unbatched (L, E)).

    Returns (output (L, N, E), weights): weights are (N, L, S) averaged over heads, (N, H, L, S)
    with ``average_attn_weights=False``, or None when ``need_weights`` is False.
    ``key_padding_mask`` (N, S) and ``attn_mask`` (L, S) or (N*H, L, S): bool True = masked out,
    float = added to the scores.
    """
    batched = query.ndim == 3
    if query.ndim not in (2, 3):
        raise AssertionError(f"query should be unbatched 2D or batched 3D tensor but received {query.ndim}-D query tensor")
    if not batched:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.unsqueeze(0)
    tgt_len, bsz, embed_dim = query.shape
    if embed_dim != embed_dim_to_check:
        raise AssertionError(f"was expecting embedding dimension of {embed_dim_to_check}, but got {embed_dim}")
    head_dim = embed_dim // num_heads
    if head_dim * num_heads != embed_dim:
        raise AssertionError(f"embed_dim {embed_dim} not divisible by num_heads {num_heads}")
    if key.shape[:2] != value.shape[:2]:
        raise AssertionError(f"key shape {tuple(key.shape)} does not match value shape {tuple(value.shape)}")
    if is_causal and attn_mask is None:
        raise RuntimeError(
            "Need attn_mask if specifying the is_causal hint. You may use the Transformer module method "
            "`generate_square_subsequent_mask` to create this mask.")
    dtype = query.dtype
    key_padding_mask = _float_mask(key_padding_mask, dtype, "key_padding_mask")
    attn_mask = _float_mask(attn_mask, dtype, "attn_mask")

    q, k, v = _in_projection(query, key, value, in_proj_weight, in_proj_bias, use_separate_proj_weight,
                             q_proj_weight, k_proj_weight, v_proj_weight)
    if attn_mask is not None:
        if attn_mask.ndim == 2:
            if tuple(attn_mask.shape) != (tgt_len, key.shape[0]):
                raise RuntimeError(
                    f"The shape of the 2D attn_mask is {tuple(attn_mask.shape)}, but should be {(tgt_len, key.shape[0])}.")
            attn_mask = attn_mask.unsqueeze(0)
        elif attn_mask.ndim == 3:
            if tuple(attn_mask.shape) != (bsz * num_heads, tgt_len, key.shape[0]):
                raise RuntimeError(
                    f"The shape of the 3D attn_mask is {tuple(attn_mask.shape)}, but should be "
                    f"{(bsz * num_heads, tgt_len, key.shape[0])}.")
        else:
            raise RuntimeError(f"attn_mask's dimension {attn_mask.ndim} is not supported")
    if bias_k is not None and bias_v is not None:
        k = _T.cat([k, bias_k.expand(1, bsz, embed_dim)])
        v = _T.cat([v, bias_v.expand(1, bsz, embed_dim)])
        attn_mask = _pad_last(attn_mask)
        key_padding_mask = _pad_last(key_padding_mask)

    q = q.reshape(tgt_len, bsz * num_heads, head_dim).transpose(0, 1)
    k = (k.reshape(k.shape[0], bsz * num_heads, head_dim).transpose(0, 1) if static_k is None else static_k)
    v = (v.reshape(v.shape[0], bsz * num_heads, head_dim).transpose(0, 1) if static_v is None else static_v)
    if add_zero_attn:
        k = _T.cat([k, _T.zeros((bsz * num_heads, 1, head_dim), dtype=k.dtype, device=k.device)], dim=1)
        v = _T.cat([v, _T.zeros((bsz * num_heads, 1, head_dim), dtype=v.dtype, device=v.device)], dim=1)
        attn_mask = _pad_last(attn_mask)
        key_padding_mask = _pad_last(key_padding_mask)
    src_len = k.shape[1]
    if key_padding_mask is not None:
        if tuple(key_padding_mask.shape) != (bsz, src_len):
            raise AssertionError(
                f"expecting key_padding_mask shape of {(bsz, src_len)}, but got {tuple(key_padding_mask.shape)}")
        kpm = key_padding_mask.reshape(bsz, 1, 1, src_len).expand(bsz, num_heads, 1, src_len)
        kpm = kpm.reshape(bsz * num_heads, 1, src_len)
        attn_mask = kpm if attn_mask is None else attn_mask + kpm
    if not training:
        dropout_p = 0.0

    if need_weights:
        scores = _T.matmul(q * math.sqrt(1.0 / head_dim), k.transpose(-2, -1))
        if attn_mask is not None:
            scores = scores + attn_mask
        weights = _T.softmax(scores, -1)
        weights = _dropout(weights, dropout_p)
        out = _T.matmul(weights, v)
        out = out.transpose(0, 1).reshape(tgt_len * bsz, embed_dim)
        out = _linear(out, out_proj_weight, out_proj_bias).reshape(tgt_len, bsz, embed_dim)
        weights = weights.reshape(bsz, num_heads, tgt_len, src_len)
        if average_attn_weights:
            weights = weights.mean(1)
        if not batched:
            return out.squeeze(1), weights.squeeze(0)
        return out, weights

    if attn_mask is not None:
        attn_mask = attn_mask.reshape(-1, 1, tgt_len, src_len) if attn_mask.shape[0] == 1 else \
            attn_mask.reshape(bsz, num_heads, -1, src_len)
    q = q.reshape(bsz, num_heads, tgt_len, head_dim)
    k = k.reshape(bsz, num_heads, src_len, head_dim)
    v = v.reshape(bsz, num_heads, src_len, head_dim)
    out = scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, False)
    out = out.permute(2, 0, 1, 3).reshape(bsz * tgt_len, embed_dim)
    out = _linear(out, out_proj_weight, out_proj_bias).reshape(tgt_len, bsz, embed_dim)
    if not batched:
        out = out.squeeze(1)
    return out, None


def _pad_last(mask):
    """Appends one unmasked (0) column to a float mask (for bias_k/bias_v and add_zero_attn)."""
    if mask is None:
        return None
    from ..ops.pad import pad
    return pad(mask, (0, 1))
