"""The fused LSTM cell node: first and second derivatives against finite differences (float64),
its outputs against the gate formulas, and an LSTM's double backward through it."""
import numpy as np

import disttorch as dt
import disttorch.nn as nn
from disttorch.autograd import gradcheck, gradgradcheck
from disttorch.nn.modules._lstm_cell_op import LstmCellBackward0

rng = np.random.default_rng(7)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_lstm_cell_op_forward_is_the_gate_formula():
    gates, c = rng.standard_normal((3, 8)), rng.standard_normal((3, 2))
    out = LstmCellBackward0.apply(dt.tensor(gates), dt.tensor(c)).numpy()
    i, f, g, o = _sigmoid(gates[:, 0:2]), _sigmoid(gates[:, 2:4]), np.tanh(gates[:, 4:6]), _sigmoid(gates[:, 6:8])
    c_new = f * c + i * g
    np.testing.assert_allclose(out[:, 2:], c_new, rtol=1e-12)
    np.testing.assert_allclose(out[:, :2], o * np.tanh(c_new), rtol=1e-12)


def test_lstm_cell_op_gradcheck_and_gradgradcheck():
    gates = dt.tensor(rng.standard_normal((3, 12)) * 2, requires_grad=True)
    c = dt.tensor(rng.standard_normal((3, 3)), requires_grad=True)
    fn = LstmCellBackward0.apply
    assert gradcheck(fn, (gates, c))
    assert gradgradcheck(fn, (gates, c))


def test_lstm_double_backward_through_the_fused_cell():
    dt.manual_seed(0)
    lstm = nn.LSTM(2, 3, num_layers=2).double()
    x = dt.tensor(rng.standard_normal((4, 2, 2)), requires_grad=True)
    assert lstm(x)[0].grad_fn is not None
    assert gradgradcheck(lambda inp: lstm(inp)[0], (x,))


def test_lstm_cell_op_graph_backward_matches_array_backward():
    # Under create_graph the backward is a separate formula built from ops: same numbers required.
    gates = dt.tensor(rng.standard_normal((4, 8)) * 2, requires_grad=True)
    c = dt.tensor(rng.standard_normal((4, 2)), requires_grad=True)
    weight = dt.tensor(rng.standard_normal((4, 4)))
    plain = dt.autograd.grad((LstmCellBackward0.apply(gates, c) * weight).sum(), (gates, c))
    graph = dt.autograd.grad((LstmCellBackward0.apply(gates, c) * weight).sum(), (gates, c), create_graph=True)
    for a, b in zip(plain, graph):
        assert b.requires_grad
        np.testing.assert_allclose(b.detach().numpy(), a.numpy(), rtol=1e-12, atol=1e-14)
