"""RNN / LSTM / GRU and their cells: PyTorch parity (outputs, states, input and parameter gradients,
parameter names), float64 gradchecks, initialisation, errors."""
import math

import numpy as np
import pytest

import disttorch as dt
import disttorch.nn as nn

from _spatial_parity import check_module_parity, module_gradcheck, ref_torch

# PyTorch's own notice that its oneDNN kernel lacks LSTM projections
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")

rng = np.random.default_rng(5)


def randn(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def ids(kw):
    return ",".join(f"{k}={v}" for k, v in kw.items())


CONFIGS = [dict(), dict(num_layers=2), dict(bidirectional=True), dict(num_layers=2, bidirectional=True, batch_first=True),
           dict(bias=False), dict(num_layers=3, batch_first=True)]


@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("kw", CONFIGS, ids=ids)
def test_recurrent_layers_match_torch(cls, kw):
    torch = ref_torch()
    torch.manual_seed(0)
    tmod = getattr(torch.nn, cls)(4, 5, **kw)
    dmod = getattr(nn, cls)(4, 5, **kw)
    assert [n for n, _ in dmod.named_parameters()] == [n for n, _ in tmod.named_parameters()]
    x = randn(3, 6, 4) if kw.get("batch_first") else randn(6, 3, 4)
    out = check_module_parity(dmod, tmod, [x])
    assert len(out) == (3 if cls == "LSTM" else 2)


@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
def test_recurrent_layers_with_initial_state_match_torch(cls):
    torch = ref_torch()
    torch.manual_seed(0)
    kw = dict(num_layers=2, bidirectional=True)
    tmod, dmod = getattr(torch.nn, cls)(4, 5, **kw), getattr(nn, cls)(4, 5, **kw)
    arrays = [randn(6, 3, 4), randn(4, 3, 5)] + ([randn(4, 3, 5)] if cls == "LSTM" else [])
    if cls == "LSTM":
        call = lambda m, x, h, c: m(x, (h, c))  # noqa: E731
    else:
        call = lambda m, x, h: m(x, h)  # noqa: E731
    check_module_parity(dmod, tmod, arrays, call=call)


@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
def test_recurrent_layers_unbatched_match_torch(cls):
    torch = ref_torch()
    torch.manual_seed(0)
    out = check_module_parity(getattr(nn, cls)(4, 5, bidirectional=True), getattr(torch.nn, cls)(4, 5, bidirectional=True),
                              [randn(6, 4)])
    assert tuple(out[0].shape) == (6, 10) and tuple(out[1].shape) == (2, 5)


def test_rnn_relu_and_lstm_projection_match_torch():
    torch = ref_torch()
    torch.manual_seed(0)
    check_module_parity(nn.RNN(4, 5, nonlinearity="relu", num_layers=2), torch.nn.RNN(4, 5, nonlinearity="relu",
                        num_layers=2), [randn(6, 3, 4)])
    tmod = torch.nn.LSTM(4, 5, proj_size=3, num_layers=2, bidirectional=True)
    dmod = nn.LSTM(4, 5, proj_size=3, num_layers=2, bidirectional=True)
    assert [n for n, _ in dmod.named_parameters()] == [n for n, _ in tmod.named_parameters()]
    out = check_module_parity(dmod, tmod, [randn(6, 3, 4)])
    assert tuple(out[0].shape) == (6, 3, 6) and tuple(out[1].shape) == (4, 3, 3) and tuple(out[2].shape) == (4, 3, 5)


def test_dropout_between_layers_only_in_training():
    dt.manual_seed(0)
    lstm = nn.LSTM(3, 4, num_layers=2, dropout=0.5)
    x = dt.randn(5, 2, 3)
    lstm.eval()
    a, b = lstm(x)[0], lstm(x)[0]
    assert np.array_equal(a.detach().numpy(), b.detach().numpy())
    lstm.train()
    c, d = lstm(x)[0], lstm(x)[0]
    assert not np.array_equal(c.detach().numpy(), d.detach().numpy())
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        nn.GRU(3, 4, dropout=0.2)


@pytest.mark.parametrize("cls", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cells_match_torch(cls):
    torch = ref_torch()
    torch.manual_seed(0)
    tmod, dmod = getattr(torch.nn, cls)(4, 5), getattr(nn, cls)(4, 5)
    assert [n for n, _ in dmod.named_parameters()] == ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    check_module_parity(dmod, tmod, [randn(3, 4)])
    if cls == "LSTMCell":
        check_module_parity(dmod, tmod, [randn(3, 4), randn(3, 5), randn(3, 5)], call=lambda m, x, h, c: m(x, (h, c)))
        check_module_parity(dmod, tmod, [randn(4)])
    else:
        check_module_parity(dmod, tmod, [randn(3, 4), randn(3, 5)])
        check_module_parity(dmod, tmod, [randn(4), randn(5)])


@pytest.mark.parametrize("make", [
    lambda: nn.RNN(2, 3, bidirectional=True),
    lambda: nn.LSTM(2, 2, num_layers=2),
    lambda: nn.GRU(2, 3, batch_first=True),
    lambda: nn.LSTM(2, 3, proj_size=2),
    lambda: nn.GRUCell(2, 3),
    lambda: nn.LSTMCell(2, 2),
    lambda: nn.RNNCell(2, 3, nonlinearity="relu"),
], ids=["rnn-bi", "lstm-2layer", "gru-batch-first", "lstm-proj", "grucell", "lstmcell", "rnncell-relu"])
def test_recurrent_gradcheck(make):
    dt.manual_seed(0)
    mod = make()
    shape = (2, 2) if "Cell" in type(mod).__name__ else (3, 1, 2)
    assert module_gradcheck(mod, [rng.standard_normal(shape)])


def test_recurrent_initialisation():
    dt.manual_seed(0)
    gru = nn.GRU(6, 16, bidirectional=True)
    assert tuple(gru.weight_ih_l0.shape) == (48, 6) and tuple(gru.weight_hh_l0_reverse.shape) == (48, 16)
    assert tuple(nn.LSTM(6, 16).weight_ih_l0.shape) == (64, 6)
    bound = 1 / math.sqrt(16)
    values = np.concatenate([p.detach().numpy().ravel() for p in gru.parameters()])
    assert np.abs(values).max() <= bound and np.abs(values).max() > 0.9 * bound
    assert repr(nn.LSTM(3, 4, num_layers=2, batch_first=True)) == "LSTM(3, 4, num_layers=2, batch_first=True)"


def test_recurrent_errors():
    with pytest.raises(ValueError, match="LSTM: Expected input to be 2D or 3D, got 4D tensor instead"):
        nn.LSTM(3, 4)(dt.randn(1, 2, 3, 3))
    with pytest.raises(RuntimeError, match="input.size\\(-1\\) must be equal to input_size. Expected 3, got 5"):
        nn.GRU(3, 4)(dt.randn(2, 1, 5))
    with pytest.raises(RuntimeError, match=r"Expected hidden size \(1, 2, 4\), got \[1, 3, 4\]"):
        nn.RNN(3, 4)(dt.randn(5, 2, 3), dt.randn(1, 3, 4))
    with pytest.raises(RuntimeError, match="For unbatched 2-D input, hx should also be 2-D but got 3-D tensor"):
        nn.RNN(3, 4)(dt.randn(5, 3), dt.randn(1, 1, 4))
    with pytest.raises(ValueError, match="Unknown nonlinearity 'gelu'"):
        nn.RNN(3, 4, nonlinearity="gelu")
    with pytest.raises(ValueError, match="dropout should be a number in range"):
        nn.LSTM(3, 4, dropout=1.5)
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
        nn.LSTM(3, 4, proj_size=4)
    with pytest.raises(RuntimeError, match="input has inconsistent input_size: got 5 expected 3"):
        nn.LSTMCell(3, 4)(dt.randn(2, 5))
