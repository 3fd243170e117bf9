"""MultiheadAttention, TransformerEncoderLayer, TransformerEncoder: PyTorch parity (outputs,
attention weights, input and parameter gradients, parameter names), gradchecks, errors."""
import numpy as np
import pytest

import disttorch as dt
import disttorch.nn as nn

from _spatial_parity import check_module_parity, module_gradcheck, ref_torch

rng = np.random.default_rng(3)


def randn(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def ids(kw):
    return ",".join(f"{k}={v}" for k, v in kw.items())


MHA = [dict(), dict(batch_first=True), dict(bias=False), dict(kdim=5, vdim=3), dict(add_bias_kv=True),
       dict(add_zero_attn=True)]


@pytest.mark.parametrize("kw", MHA, ids=ids)
@pytest.mark.parametrize("need_weights,average", [(True, True), (True, False), (False, True)])
def test_multihead_attention_matches_torch(kw, need_weights, average):
    torch = ref_torch()
    torch.manual_seed(0)
    tmod, dmod = torch.nn.MultiheadAttention(8, 2, **kw), nn.MultiheadAttention(8, 2, **kw)
    assert [n for n, _ in dmod.named_parameters()] == [n for n, _ in tmod.named_parameters()]
    kd, vd = kw.get("kdim", 8), kw.get("vdim", 8)
    shapes = [(3, 5, 8), (3, 6, kd), (3, 6, vd)] if kw.get("batch_first") else [(5, 3, 8), (6, 3, kd), (6, 3, vd)]
    out = check_module_parity(dmod, tmod, [randn(*s) for s in shapes],
                              call=lambda m, q, k, v: m(q, k, v, need_weights=need_weights,
                                                        average_attn_weights=average))
    assert len(out) == (2 if need_weights else 1)


@pytest.mark.parametrize("need_weights", [True, False])
def test_multihead_attention_masks_match_torch(need_weights):
    torch = ref_torch()
    torch.manual_seed(0)
    tmod, dmod = torch.nn.MultiheadAttention(8, 2), nn.MultiheadAttention(8, 2)
    kpm = np.zeros((3, 6), dtype=bool)
    kpm[0, -2:] = True
    causal = np.triu(np.ones((5, 6), dtype=bool), 1)
    float_mask = randn(3 * 2, 5, 6)
    float_kpm = np.where(kpm, -np.inf, 0).astype(np.float32)
    for mask, pad_mask in [(causal, kpm), (float_mask, float_kpm)]:  # PyTorch wants both masks of one kind

        def call(m, q, k, v, mask=mask, pad_mask=pad_mask):
            lib = dt if isinstance(q, dt.Tensor) else torch
            return m(q, k, v, key_padding_mask=lib.tensor(pad_mask), attn_mask=lib.tensor(mask),
                     need_weights=need_weights)

        check_module_parity(dmod, tmod, [randn(5, 3, 8), randn(6, 3, 8), randn(6, 3, 8)], call=call)


def test_multihead_self_attention_unbatched_matches_torch():
    torch = ref_torch()
    torch.manual_seed(0)
    out = check_module_parity(nn.MultiheadAttention(8, 4), torch.nn.MultiheadAttention(8, 4), [randn(5, 8)],
                              call=lambda m, x: m(x, x, x))
    assert tuple(out[0].shape) == (5, 8) and tuple(out[1].shape) == (5, 5)


ENC = [dict(), dict(batch_first=True, activation="gelu"), dict(norm_first=True), dict(layer_norm_eps=1e-3, bias=False)]


@pytest.mark.parametrize("kw", ENC, ids=ids)
def test_encoder_layer_matches_torch(kw):
    torch = ref_torch()
    torch.manual_seed(0)
    args = dict(d_model=8, nhead=2, dim_feedforward=16, dropout=0.0, **kw)
    tmod, dmod = torch.nn.TransformerEncoderLayer(**args), nn.TransformerEncoderLayer(**args)
    assert [n for n, _ in dmod.named_parameters()] == [n for n, _ in tmod.named_parameters()]
    check_module_parity(dmod, tmod, [randn(5, 3, 8)])


def test_encoder_with_masks_matches_torch():
    torch = ref_torch()
    torch.manual_seed(0)
    args = dict(d_model=8, nhead=2, dim_feedforward=16, dropout=0.0, batch_first=True)
    tmod = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(**args), 2, norm=torch.nn.LayerNorm(8),
                                       enable_nested_tensor=False)
    dmod = nn.TransformerEncoder(nn.TransformerEncoderLayer(**args), 2, norm=nn.LayerNorm(8))
    assert [n for n, _ in dmod.named_parameters()] == [n for n, _ in tmod.named_parameters()]
    causal = np.triu(np.ones((5, 5), dtype=bool), 1)
    kpm = np.zeros((3, 5), dtype=bool)
    kpm[2, -1] = True

    def call(m, x):
        lib = dt if isinstance(x, dt.Tensor) else torch
        return m(x, mask=lib.tensor(causal), src_key_padding_mask=lib.tensor(kpm))

    check_module_parity(dmod, tmod, [randn(3, 5, 8)], call=call)
    check_module_parity(dmod, tmod, [randn(3, 5, 8)])


def test_encoder_dropout_is_active_only_in_training():
    dt.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.5)
    x = dt.randn(4, 2, 8)
    layer.eval()
    assert np.array_equal(layer(x).detach().numpy(), layer(x).detach().numpy())
    layer.train()
    assert not np.array_equal(layer(x).detach().numpy(), layer(x).detach().numpy())


@pytest.mark.parametrize("make,shapes,call", [
    (lambda: nn.MultiheadAttention(4, 2), [(3, 1, 4)], lambda m, x: m(x, x, x)),
    (lambda: nn.MultiheadAttention(4, 2, kdim=3, vdim=2, batch_first=True), [(1, 2, 4), (1, 3, 3), (1, 3, 2)],
     lambda m, q, k, v: m(q, k, v, need_weights=False)),
    (lambda: nn.TransformerEncoderLayer(4, 2, dim_feedforward=6, dropout=0.0, norm_first=True), [(3, 1, 4)], None),
], ids=["mha", "mha-kdim-vdim", "encoder-layer"])
def test_attention_gradcheck(make, shapes, call):
    dt.manual_seed(0)
    assert module_gradcheck(make(), [rng.standard_normal(s) for s in shapes], call=call)


def test_transformer_initialisation_and_errors():
    dt.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4)
    assert tuple(mha.in_proj_weight.shape) == (48, 16) and tuple(mha.in_proj_bias.shape) == (48,)
    assert not mha.in_proj_bias.detach().numpy().any() and not mha.out_proj.bias.detach().numpy().any()
    bound = np.sqrt(6 / (16 + 48))  # xavier_uniform_ on the packed (3E, E) projection
    assert np.abs(mha.in_proj_weight.detach().numpy()).max() <= bound
    with pytest.raises(AssertionError, match="embed_dim must be divisible by num_heads"):
        nn.MultiheadAttention(10, 4)
    with pytest.raises(AssertionError, match="was expecting embedding dimension of 16, but got 8"):
        mha(dt.randn(3, 2, 8), dt.randn(3, 2, 8), dt.randn(3, 2, 8))
    with pytest.raises(RuntimeError, match=r"The shape of the 2D attn_mask is \(2, 2\), but should be \(3, 3\)"):
        x = dt.randn(3, 2, 16)
        mha(x, x, x, attn_mask=dt.zeros(2, 2))
    with pytest.raises(RuntimeError, match="activation should be relu/gelu, not tanh"):
        nn.TransformerEncoderLayer(8, 2, activation="tanh")
