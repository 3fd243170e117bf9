"""nn.functional spatial ops: interpolate, pad, scaled_dot_product_attention,
multi_head_attention_forward, functional conv/pool forms: PyTorch parity, gradchecks, errors."""
import numpy as np
import pytest

import disttorch as dt
import disttorch.nn.functional as F
from disttorch.autograd import gradcheck, gradgradcheck
from disttorch.nn import _functional_spatial

from _spatial_parity import assert_close, ref_torch

rng = np.random.default_rng(11)


def randn(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def parity(d_fn, t_fn, arrays, grad=True):
    """Same float32 inputs through ``d_fn`` (disttorch) and ``t_fn`` (torch); compares outputs and
    input gradients of sum(out * random)."""
    torch = ref_torch()
    t_in = [torch.tensor(a, requires_grad=grad) for a in arrays]
    d_in = [dt.tensor(a, requires_grad=grad) for a in arrays]
    t_out, d_out = t_fn(*t_in), d_fn(*d_in)
    assert tuple(d_out.shape) == tuple(t_out.shape)
    assert_close(d_out.detach().numpy(), t_out.detach().numpy(), "output")
    if grad:
        g = randn(*t_out.shape)
        t_out.backward(torch.tensor(g))
        d_out.backward(dt.tensor(g))
        for k, (d, t) in enumerate(zip(d_in, t_in)):
            assert_close(d.grad.numpy(), t.grad.numpy(), f"grad of input {k}")
    return d_out, t_out


def test_all_lists_exactly_the_spatial_functions():
    assert sorted(_functional_spatial.__all__) == sorted([
        "conv1d", "conv2d", "conv_transpose2d", "max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d",
        "adaptive_avg_pool2d", "adaptive_max_pool2d", "interpolate", "pad", "scaled_dot_product_attention",
        "multi_head_attention_forward"])
    for name in _functional_spatial.__all__:
        assert getattr(F, name) is getattr(_functional_spatial, name)


def test_functional_conv_forms_match_torch():
    torch = ref_torch()
    w, b = randn(6, 2, 3, 3), randn(6)
    parity(lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1, groups=2),
           lambda x, w, b: torch.nn.functional.conv2d(x, w, b, stride=2, padding=1, groups=2), [randn(2, 4, 7, 7), w, b])
    parity(lambda x, w: F.conv1d(x, w, padding="same"), lambda x, w: torch.nn.functional.conv1d(x, w, padding="same"),
           [randn(2, 3, 9), randn(4, 3, 3)])
    d, t = parity(lambda x, w: F.conv_transpose2d(x, w, stride=2, output_padding=1),
                  lambda x, w: torch.nn.functional.conv_transpose2d(x, w, stride=2, output_padding=1),
                  [randn(1, 3, 4, 4), randn(3, 2, 3, 3)])
    assert type(d.grad_fn).__name__ == type(t.grad_fn).__name__ == "ConvolutionBackward0"


INTERP = [dict(scale_factor=2), dict(size=(5, 13)), dict(scale_factor=0.5), dict(scale_factor=(1.7, 2.3)),
          dict(size=(5, 13), mode="bilinear"), dict(size=(5, 13), mode="bilinear", align_corners=True),
          dict(scale_factor=1.5, mode="bilinear"), dict(scale_factor=0.6, mode="bilinear", align_corners=True),
          dict(scale_factor=1.7, mode="bilinear", recompute_scale_factor=True), dict(size=(4, 3), mode="area"),
          dict(size=(4, 5), mode="nearest-exact")]


@pytest.mark.parametrize("kw", INTERP, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_interpolate_2d_matches_torch(kw):
    torch = ref_torch()
    d, t = parity(lambda x: F.interpolate(x, **kw), lambda x: torch.nn.functional.interpolate(x, **kw),
                  [randn(2, 3, 9, 8)])
    assert type(d.grad_fn).__name__ == type(t.grad_fn).__name__


@pytest.mark.parametrize("kw", [dict(scale_factor=2), dict(size=7, mode="linear"),
                                dict(size=17, mode="linear", align_corners=True), dict(scale_factor=0.6, mode="linear")],
                         ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_interpolate_1d_matches_torch(kw):
    torch = ref_torch()
    parity(lambda x: F.interpolate(x, **kw), lambda x: torch.nn.functional.interpolate(x, **kw), [randn(2, 3, 11)])


PADS = [("constant", (1, 2, 3, 1)), ("constant", (2, 0)), ("constant", (-1, 2, 0, -2)), ("reflect", (1, 2, 3, 1)),
        ("replicate", (1, 2, 3, 1)), ("replicate", (-1, 2, 0, -2)), ("circular", (1, 2, 3, 1)),
        ("circular", (-1, 2, 0, -2))]


@pytest.mark.parametrize("mode,pad", PADS, ids=str)
def test_pad_matches_torch(mode, pad):
    torch = ref_torch()
    d, t = parity(lambda x: F.pad(x, pad, mode=mode), lambda x: torch.nn.functional.pad(x, pad, mode=mode),
                  [randn(2, 3, 9, 8)])
    assert type(d.grad_fn).__name__ == type(t.grad_fn).__name__


def test_pad_value_and_1d_reflect_match_torch():
    torch = ref_torch()
    parity(lambda x: F.pad(x, (1, 1, 2, 2, 1, 0), value=3.5),
           lambda x: torch.nn.functional.pad(x, (1, 1, 2, 2, 1, 0), value=3.5), [randn(2, 3, 4)])
    parity(lambda x: F.pad(x, (3, 2), mode="reflect"), lambda x: torch.nn.functional.pad(x, (3, 2), mode="reflect"),
           [randn(2, 3, 5)])


def test_sdpa_matches_torch():
    torch = ref_torch()
    tf = torch.nn.functional.scaled_dot_product_attention
    q, k, v = randn(2, 3, 5, 4), randn(2, 3, 6, 4), randn(2, 3, 6, 7)
    parity(F.scaled_dot_product_attention, tf, [q, k, v])
    parity(lambda *a: F.scaled_dot_product_attention(*a, is_causal=True), lambda *a: tf(*a, is_causal=True), [q, k, v])
    mf = randn(3, 5, 6)
    parity(lambda *a: F.scaled_dot_product_attention(*a, attn_mask=dt.tensor(mf), scale=0.3),
           lambda *a: tf(*a, attn_mask=torch.tensor(mf), scale=0.3), [q, k, v])
    mb = rng.random((5, 6)) > 0.3
    mb[1] = False  # a fully masked query row gives zeros, as PyTorch's math path
    d, _ = parity(lambda *a: F.scaled_dot_product_attention(*a, attn_mask=dt.tensor(mb)),
                  lambda *a: tf(*a, attn_mask=torch.tensor(mb)), [q, k, v])
    assert not np.isnan(d.detach().numpy()).any()
    parity(lambda *a: F.scaled_dot_product_attention(*a, enable_gqa=True), lambda *a: tf(*a, enable_gqa=True),
           [randn(2, 4, 5, 4), randn(2, 2, 6, 4), randn(2, 2, 6, 4)])


def test_sdpa_dropout_zeroes_weights_and_rescales():
    dt.manual_seed(0)
    q = k = dt.zeros(1, 1, 4, 2)  # uniform attention weights of 1/4
    v = dt.ones(1, 1, 4, 3)
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5).numpy()
    # each output is (kept weights / 0.5) summed: a multiple of 0.5, averaging 1 over many draws
    assert np.allclose(out * 2, np.round(out * 2))
    with pytest.raises(RuntimeError, match="Explicit attn_mask should not be set when is_causal=True"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=dt.ones(4, 4, dtype=dt.bool), is_causal=True)


@pytest.mark.parametrize("need_weights", [True, False])
def test_multi_head_attention_forward_matches_torch(need_weights):
    torch = ref_torch()
    e, h = 8, 2
    w_in, b_in, w_out, b_out = randn(3 * e, e), randn(3 * e), randn(e, e), randn(e)
    mask = rng.random((5, 6)) > 0.8
    kpm = np.zeros((3, 6), dtype=bool)
    kpm[1, -2:] = True

    def run(lib, f, q, k, v, w_in, b_in, w_out, b_out):
        out, weights = f(q, k, v, e, h, w_in, b_in, None, None, False, 0.0, w_out, b_out,
                         key_padding_mask=lib.tensor(kpm), attn_mask=lib.tensor(mask), need_weights=need_weights)
        # weights (when returned) join the output, so both values and both gradients are compared
        return out.reshape(-1) if weights is None else lib.cat([out.reshape(-1), weights.reshape(-1)])

    parity(lambda *a: run(dt, F.multi_head_attention_forward, *a),
           lambda *a: run(torch, torch.nn.functional.multi_head_attention_forward, *a),
           [randn(5, 3, e), randn(6, 3, e), randn(6, 3, e), w_in, b_in, w_out, b_out])


@pytest.mark.parametrize("name,fn,shapes", [
    ("interp nearest", lambda x: F.interpolate(x, scale_factor=1.5), [(1, 1, 3, 4)]),
    ("interp bilinear", lambda x: F.interpolate(x, size=(4, 5), mode="bilinear"), [(1, 1, 3, 4)]),
    ("interp bilinear ac", lambda x: F.interpolate(x, size=(2, 5), mode="bilinear", align_corners=True), [(1, 1, 3, 4)]),
    ("interp linear", lambda x: F.interpolate(x, size=7, mode="linear"), [(1, 2, 4)]),
    ("interp area", lambda x: F.interpolate(x, size=(2, 3), mode="area"), [(1, 1, 5, 4)]),
    ("pad reflect", lambda x: F.pad(x, (2, 1, 1, 2), mode="reflect"), [(1, 1, 3, 4)]),
    ("pad replicate", lambda x: F.pad(x, (2, 1), mode="replicate"), [(1, 2, 3)]),
    ("pad circular", lambda x: F.pad(x, (2, -1, 1, 1), mode="circular"), [(1, 3, 4)]),
    ("pad constant", lambda x: F.pad(x, (2, -1, 1, 1), value=2.0), [(1, 3, 4)]),
    ("sdpa causal", lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True), [(1, 3, 2)] * 3),
    ("mha", lambda q, w: F.multi_head_attention_forward(q, q, q, 4, 2, w, None, None, None, False, 0.0, w[:4], None)[0],
     [(3, 1, 4), (12, 4)]),
], ids=lambda v: v if isinstance(v, str) else "")
def test_functional_gradcheck(name, fn, shapes):
    inputs = tuple(dt.tensor(rng.standard_normal(s), requires_grad=True) for s in shapes)
    assert gradcheck(fn, inputs)
    if not name.startswith("mha"):
        assert gradgradcheck(fn, inputs)


def test_interpolate_and_pad_errors():
    x = dt.randn(1, 1, 4, 4)
    with pytest.raises(ValueError, match="only one of size or scale_factor should be defined"):
        F.interpolate(x, size=3, scale_factor=2)
    with pytest.raises(ValueError, match="either size or scale_factor should be defined"):
        F.interpolate(x)
    with pytest.raises(ValueError, match="align_corners option can only be set with the interpolating modes"):
        F.interpolate(x, size=3, align_corners=True)
    with pytest.raises(NotImplementedError, match="Got 4D input, but linear mode needs 3D input"):
        F.interpolate(x, size=3, mode="linear")
    with pytest.raises(NotImplementedError, match=r"\(got bicubicx\)"):
        F.interpolate(x, size=3, mode="bicubicx")
    with pytest.raises(RuntimeError, match="Padding length must be divisible by 2"):
        F.pad(x, (1, 2, 3))
    with pytest.raises(RuntimeError, match="Padding length should be less than or equal to two times the input "
                                           "dimension but got padding length 10 and input of dimension 4"):
        F.pad(x, (1,) * 10)
    with pytest.raises(NotImplementedError, match="Padding size 2 is not supported for 4D input tensor"):
        F.pad(x, (1, 1), mode="reflect")
    with pytest.raises(RuntimeError, match=r"Padding size should be less than the corresponding input dimension, "
                                           r"but got: padding \(4, 1\) at dimension 3"):
        F.pad(x, (4, 1, 0, 0), mode="reflect")
    with pytest.raises(NotImplementedError, match="Unrecognised padding mode mirror"):
        F.pad(x, (1, 1), mode="mirror")
