"""The one-node scaled_dot_product_attention: the same numbers as the composed path (causal,
boolean and float masks, fully masked rows, dropout), first and second derivatives against
finite differences, PyTorch parity in a GPT's head layout, and the cases left to the composed path."""
import numpy as np
import pytest

import disttorch as dt
import disttorch.nn.functional as F
from disttorch.autograd import gradcheck, gradgradcheck
from disttorch.nn import _functional_attention

from _spatial_parity import assert_close, ref_torch

rng = np.random.default_rng(23)
FUSED = "ScaledDotProductFlashAttentionForCpuBackward0"


def _qkv(*lead, length=5, source=6, dtype=np.float64):
    shapes = (lead + (length, 4), lead + (source, 4), lead + (source, 3))
    return [dt.tensor(rng.standard_normal(s).astype(dtype), requires_grad=True) for s in shapes]


def _both_paths(monkeypatch, seed, **kw):
    """(output, grads) of the fused node and of the composed ops for the same inputs and seed."""
    q, k, v = _qkv(2, 3)
    g = dt.tensor(rng.standard_normal((2, 3, 5, 3)))
    results = []
    for fused in (True, False):
        if not fused:
            monkeypatch.setattr(_functional_attention, "_fusable", lambda *a: False)
        dt.manual_seed(seed)
        out = F.scaled_dot_product_attention(q, k, v, **kw)
        assert (type(out.grad_fn).__name__ == FUSED) == fused
        results.append((out.detach().numpy(), [t.numpy() for t in dt.autograd.grad(out, (q, k, v), g)]))
    return results


@pytest.mark.parametrize("kw", [
    dict(), dict(is_causal=True), dict(scale=0.3),
    dict(attn_mask=dt.tensor(rng.random((5, 6)) > 0.4)),
    dict(attn_mask=dt.tensor(rng.standard_normal((3, 5, 6)))),
    dict(attn_mask=dt.tensor(np.array([[True] * 6, [False] * 6] * 2 + [[True] * 6]))),  # a fully masked row
    dict(dropout_p=0.3), dict(dropout_p=0.5, is_causal=True),
    dict(scale=40.0, is_causal=True),  # scores beyond +-60: the softmax subtracts row maxima
    dict(attn_mask=dt.tensor(np.where(rng.random((5, 6)) > 0.5, 0.0, -np.inf))),
], ids=["plain", "causal", "scale", "bool-mask", "float-mask", "dead-row", "dropout", "dropout-causal", "large-scores",
        "float-mask-with-inf"])
def test_fused_attention_matches_the_composed_ops(monkeypatch, kw):
    (out_f, grads_f), (out_c, grads_c) = _both_paths(monkeypatch, 3, **kw)
    np.testing.assert_allclose(out_f, out_c, rtol=1e-12, atol=1e-13)
    for k, (a, b) in enumerate(zip(grads_f, grads_c)):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12, err_msg=f"input {k}")


@pytest.mark.parametrize("kw", [dict(is_causal=True), dict(attn_mask=dt.tensor(rng.standard_normal((4, 5))))],
                         ids=["causal", "float-mask"])
def test_fused_attention_gradcheck_and_gradgradcheck(kw):
    q, k, v = _qkv(2, length=4, source=5)
    if kw.get("is_causal"):
        q, k, v = _qkv(2, length=4, source=4)
    fn = lambda *xs: F.scaled_dot_product_attention(*xs, **kw)  # noqa: E731
    assert type(fn(q, k, v).grad_fn).__name__ == FUSED
    assert gradcheck(fn, (q, k, v))
    assert gradgradcheck(fn, (q, k, v))


def test_gpt_head_layout_matches_torch():
    # q, k, v as a GPT makes them: strided views of one projection, heads moved before the sequence
    torch = ref_torch()
    qkv = rng.standard_normal((3, 16, 3 * 32)).astype(np.float32)
    g = rng.standard_normal((3, 4, 16, 8)).astype(np.float32)
    results = []
    for lib in (torch, dt):
        x = lib.tensor(qkv, requires_grad=True)
        q, k, v = (z.reshape(3, 16, 4, 8).transpose(1, 2) for z in x.split(32, dim=2))
        out = lib.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        out.backward(lib.tensor(g))
        results.append((out.detach().numpy(), x.grad.numpy()))
    assert_close(results[1][0], results[0][0], "output")
    assert_close(results[1][1], results[0][1], "gradient")


def test_float_mask_that_requires_grad_takes_the_composed_path_and_gets_its_gradient():
    torch = ref_torch()
    arrays = [rng.standard_normal(s).astype(np.float32) for s in ((2, 5, 4), (2, 6, 4), (2, 6, 3), (5, 6))]
    grads = []
    for lib in (torch, dt):
        ts = [lib.tensor(a, requires_grad=True) for a in arrays]
        out = lib.nn.functional.scaled_dot_product_attention(*ts[:3], attn_mask=ts[3])
        if lib is dt:
            assert type(out.grad_fn).__name__ != FUSED
        out.sum().backward()
        grads.append(ts[3].grad.numpy())
    assert_close(grads[1], grads[0], "mask gradient")


def test_broadcast_leading_dims_take_the_composed_path():
    q, k, v = _qkv(2, 3)
    k2, v2 = (dt.tensor(t.detach().numpy()[:, :1]) for t in (k, v))
    out = F.scaled_dot_product_attention(q, k2, v2)
    assert type(out.grad_fn).__name__ != FUSED
    assert tuple(out.shape) == (2, 3, 5, 3)


def test_half_precision_scores_beyond_exp_range_stay_finite():
    # every score is 25 (within +-60, where float32 skips the shift): exp(25) overflows float16,
    # so half precision always subtracts row maxima; equal scores give uniform weights
    q = np.full((1, 2, 4, 4), 2.5, dtype=np.float32)
    v = rng.standard_normal((1, 2, 4, 3)).astype(np.float32)
    out = F.scaled_dot_product_attention(dt.tensor(q).half(), dt.tensor(q).half(), dt.tensor(v).half(), scale=1.0)
    assert out.dtype is dt.float16
    expected = np.broadcast_to(v.astype(np.float16).astype(np.float32).mean(axis=2, keepdims=True), v.shape)
    np.testing.assert_allclose(out.float().numpy(), expected, rtol=1e-2, atol=1e-2)
