"""The fused LSTM layer node (whole sequence, own backward through time): forward against the
per-step composition, first and second derivatives against finite differences (float64) in
both directions and without biases, the graph backward against the array backward, and a 2-layer
LSTM's gradients (initial state, h_n and c_n in the loss) against PyTorch."""
import numpy as np
import pytest

import disttorch as dt
import disttorch.nn as nn
from disttorch.autograd import gradcheck, gradgradcheck
from disttorch.nn.modules._lstm_layer_op import LstmLayerBackward0, LstmLayerNoBiasBackward0
from disttorch.nn.modules.rnn import _run_direction_steps

rng = np.random.default_rng(11)


def _inputs(length=4, batch=2, n_in=3, hidden=2, bias=True):
    arrays = [rng.standard_normal((length, batch, n_in)), rng.standard_normal((batch, hidden)),
              rng.standard_normal((batch, hidden)), rng.standard_normal((4 * hidden, n_in)),
              rng.standard_normal((4 * hidden, hidden))]
    if bias:
        arrays += [rng.standard_normal(4 * hidden) * 0.5, rng.standard_normal(4 * hidden) * 0.5]
    return [dt.tensor(a, requires_grad=True) for a in arrays]


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_lstm_layer_matches_the_per_step_composition(reverse, bias):
    inputs = _inputs(bias=bias)
    op = LstmLayerBackward0 if bias else LstmLayerNoBiasBackward0
    packed = op.apply(*inputs, reverse=reverse)
    weights = tuple(inputs[3:5]) + (tuple(inputs[5:7]) if bias else (None, None)) + (None,)
    out, h, c = _run_direction_steps("LSTM", inputs[0], inputs[1], inputs[2], weights, reverse)
    np.testing.assert_allclose(packed[:4].detach().numpy(), out.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(packed[4].detach().numpy(), h.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(packed[5].detach().numpy(), c.detach().numpy(), rtol=1e-12, atol=1e-14)
    weight = dt.tensor(rng.standard_normal((6, 2, 2)))
    fused = dt.autograd.grad((packed * weight).sum(), inputs)
    steps = dt.autograd.grad((dt.cat([out, h.unsqueeze(0), c.unsqueeze(0)]) * weight).sum(), inputs)
    for k, (a, b) in enumerate(zip(fused, steps)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12, err_msg=f"input {k}")


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_lstm_layer_gradcheck_and_gradgradcheck(reverse):
    inputs = _inputs(length=3)
    fn = lambda *xs: LstmLayerBackward0.apply(*xs, reverse=reverse)  # noqa: E731
    assert gradcheck(fn, inputs)
    assert gradgradcheck(fn, inputs)


def test_lstm_layer_without_bias_gradcheck():
    assert gradcheck(lambda *xs: LstmLayerNoBiasBackward0.apply(*xs), _inputs(length=3, bias=False))


def test_lstm_layer_graph_backward_matches_array_backward():
    inputs = _inputs()
    weight = dt.tensor(rng.standard_normal((6, 2, 2)))
    plain = dt.autograd.grad((LstmLayerBackward0.apply(*inputs) * weight).sum(), inputs)
    graph = dt.autograd.grad((LstmLayerBackward0.apply(*inputs) * weight).sum(), inputs, create_graph=True)
    for a, b in zip(plain, graph):
        assert b.requires_grad
        np.testing.assert_allclose(b.detach().numpy(), a.numpy(), rtol=1e-10, atol=1e-12)


def test_two_layer_lstm_with_initial_state_gradients_match_torch():
    # a 2-layer LSTM of the benchmark's batch (20), shorter and narrower, with an initial state
    torch = pytest.importorskip("torch", reason="PyTorch is the reference for parity tests")
    torch.manual_seed(0)
    tmod, dmod = torch.nn.LSTM(48, 64, 2), nn.LSTM(48, 64, 2)
    dmod.load_state_dict({k: dt.tensor(v.detach().numpy()) for k, v in tmod.state_dict().items()})
    x = rng.standard_normal((10, 20, 48)).astype(np.float32)
    h0, c0 = (rng.standard_normal((2, 20, 64)).astype(np.float32) for _ in range(2))
    g = rng.standard_normal((10, 20, 64)).astype(np.float32)
    results = []
    for lib, mod in ((torch, tmod), (dt, dmod)):
        xs = [lib.tensor(a, requires_grad=True) for a in (x, h0, c0)]
        out, (h, c) = mod(xs[0], (xs[1], xs[2]))
        ((out * lib.tensor(g)).sum() + h.sum() + 2 * c.sum()).backward()
        results.append([out.detach().numpy()] + [t.grad.numpy() for t in xs]
                       + [p.grad.numpy() for _, p in sorted(mod.named_parameters())])
    for k, (d, t) in enumerate(zip(results[1], results[0])):
        np.testing.assert_allclose(d, t, rtol=1e-4, atol=2e-5 * max(1.0, float(np.abs(t).max())), err_msg=f"item {k}")
