"""TransformerDecoderLayer, TransformerDecoder, Transformer against PyTorch (same weights: outputs and
input / parameter gradients, parameter names), generate_square_subsequent_mask, subclassing, errors."""
import numpy as np
import pytest
from _spatial_parity import check_module_parity, ref_torch

import disttorch as dt
from disttorch import nn

rng = np.random.default_rng(11)


def randn(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def as_lib(m, arr):
    """``arr`` as a tensor of the library module ``m`` belongs to (masks are not differentiated)."""
    if isinstance(m, nn.Module):
        return dt.tensor(arr)
    return ref_torch().tensor(arr)


@pytest.mark.parametrize("kw", [dict(), dict(norm_first=True), dict(batch_first=True), dict(activation="gelu")],
                         ids=["post-norm", "pre-norm", "batch_first", "gelu"])
def test_decoder_layer_matches_torch(kw):
    torch = ref_torch()
    torch.manual_seed(0)
    tmod = torch.nn.TransformerDecoderLayer(8, 2, dim_feedforward=16, dropout=0.0, **kw)
    dmod = nn.TransformerDecoderLayer(8, 2, dim_feedforward=16, dropout=0.0, **kw)
    assert [n for n, _ in dmod.named_parameters()] == [n for n, _ in tmod.named_parameters()]
    tgt, mem = ((3, 4, 8), (3, 5, 8)) if kw.get("batch_first") else ((4, 3, 8), (5, 3, 8))
    mask = np.triu(np.full((4, 4), -np.inf, dtype=np.float32), 1)
    check_module_parity(dmod, tmod, [randn(*tgt), randn(*mem)],
                        call=lambda m, t, s: m(t, s, tgt_mask=as_lib(m, mask)), tol=-2e-5)


def test_transformer_matches_torch_with_masks():
    torch = ref_torch()
    torch.manual_seed(1)
    kw = dict(d_model=8, nhead=2, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=16, dropout=0.0)
    tmod, dmod = torch.nn.Transformer(**kw), nn.Transformer(**kw)
    assert [n for n, _ in dmod.named_parameters()] == [n for n, _ in tmod.named_parameters()]
    mask = nn.Transformer.generate_square_subsequent_mask(4)
    np.testing.assert_array_equal(mask.numpy(), torch.nn.Transformer.generate_square_subsequent_mask(4).numpy())
    pad = np.zeros((3, 5), dtype=bool)
    pad[0, -2:] = True
    check_module_parity(dmod, tmod, [randn(5, 3, 8), randn(4, 3, 8)],
                        call=lambda m, s, t: m(s, t, tgt_mask=as_lib(m, mask.numpy()),
                                               src_key_padding_mask=as_lib(m, pad),
                                               memory_key_padding_mask=as_lib(m, pad)), tol=-5e-5)


def test_transformer_decoder_stack_and_reset_parameters():
    layer = nn.TransformerDecoderLayer(8, 2, dim_feedforward=16)
    dec = nn.TransformerDecoder(layer, num_layers=3, norm=nn.LayerNorm(8))
    assert len(dec.layers) == 3 and dec.layers[0] is not layer
    assert dec(dt.randn(4, 2, 8), dt.randn(6, 2, 8)).shape == (4, 2, 8)
    t = nn.Transformer(d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=16)
    w = t.encoder.layers[0].linear1.weight.detach().numpy()
    bound = np.sqrt(6 / (8 + 16))  # xavier_uniform_ on every matrix
    assert np.abs(w).max() <= bound and np.abs(w).max() > bound / 2


def test_transformer_shape_errors_match_torch():
    torch = ref_torch()
    for lib in (torch, dt):
        m = lib.nn.Transformer(d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=8)
        with pytest.raises(RuntimeError, match="the batch number of src and tgt must be equal"):
            m(lib.randn(5, 3, 8), lib.randn(4, 2, 8))
        with pytest.raises(RuntimeError, match="the feature number of src and tgt must be equal to d_model"):
            m(lib.randn(5, 3, 6), lib.randn(4, 3, 6))


class MyEncoderLayer(nn.TransformerEncoderLayer):  # subclassed at import time, as word_language_model does
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.extra = nn.Identity()


def test_subclassing_at_import_time():
    layer = MyEncoderLayer(8, 2, dim_feedforward=16)
    enc = nn.TransformerEncoder(layer, 2)
    assert isinstance(enc.layers[1], MyEncoderLayer)
    assert enc(dt.randn(3, 2, 8)).shape == (3, 2, 8)
