"""nn.init: PyTorch's fan/gain rules, distribution bounds and moments, generator use, and the
default initialisation of each layer."""
from __future__ import annotations

import math

import numpy as np
import pytest

import disttorch
import disttorch.nn as dnn
from disttorch.nn import init

from _nn_parity import needs_torch, torch


@pytest.mark.parametrize("shape", [(3, 5), (4, 2, 3), (6, 3, 2, 2), (2, 1)])
@needs_torch
def test_fans_match_pytorch(shape):
    assert init._calculate_fan_in_and_fan_out(disttorch.empty(shape)) == \
        torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))


def test_fan_errors():
    with pytest.raises(ValueError, match="Fan in and fan out can not be computed for tensor with fewer than 2 dimensions"):
        init.kaiming_uniform_(disttorch.empty(3))
    with pytest.raises(ValueError, match=r"Mode fan_avg not supported, please use one of \['fan_in', 'fan_out'\]"):
        init.kaiming_normal_(disttorch.empty(3, 3), mode="fan_avg")


@pytest.mark.parametrize("args", [("linear",), ("conv2d",), ("sigmoid",), ("tanh",), ("relu",), ("leaky_relu",),
                                  ("leaky_relu", 0.2), ("leaky_relu", 1), ("selu",)])
@needs_torch
def test_calculate_gain_matches_pytorch(args):
    assert init.calculate_gain(*args) == pytest.approx(torch.nn.init.calculate_gain(*args))


def test_calculate_gain_errors():
    with pytest.raises(ValueError, match="Unsupported nonlinearity foo"):
        init.calculate_gain("foo")
    with pytest.raises(ValueError, match="negative_slope True not a valid number"):
        init.calculate_gain("leaky_relu", True)


def _arr(t):
    return t.detach().numpy().astype(np.float64)


def test_uniform_normal_constant_eye_and_generator():
    t = disttorch.empty(200, 300)
    init.uniform_(t, -2.0, 3.0)
    a = _arr(t)
    assert a.min() >= -2.0 and a.max() <= 3.0 and abs(a.mean() - 0.5) < 0.05
    init.normal_(t, 1.0, 2.0)
    assert abs(_arr(t).mean() - 1.0) < 0.03 and abs(_arr(t).std() - 2.0) < 0.03
    assert t.dtype is disttorch.float32
    g1, g2 = disttorch.Generator().manual_seed(7), disttorch.Generator().manual_seed(7)
    x, y = disttorch.empty(5, 5), disttorch.empty(5, 5)
    init.xavier_normal_(x, generator=g1)
    init.xavier_normal_(y, generator=g2)
    assert x.tolist() == y.tolist()
    disttorch.manual_seed(3)
    init.normal_(x)
    disttorch.manual_seed(3)
    init.normal_(y)
    assert x.tolist() == y.tolist()
    assert init.constant_(x, 0.5) is x and set(x.numpy().ravel()) == {0.5}
    assert init.ones_(x).numpy().min() == 1 and init.zeros_(x).numpy().max() == 0
    e = init.eye_(disttorch.empty(2, 3))
    assert e.tolist() == [[1, 0, 0], [0, 1, 0]]
    with pytest.raises(ValueError, match="Only tensors with 2 dimensions are supported"):
        init.eye_(disttorch.empty(2, 2, 2))


def test_init_does_not_record_history_on_parameters():
    p = dnn.Parameter(disttorch.empty(4, 4))
    init.kaiming_uniform_(p)
    assert p.is_leaf and p.requires_grad and p.grad_fn is None


@pytest.mark.parametrize("fn,kwargs,bound_or_std", [
    (init.xavier_uniform_, {"gain": 2.0}, ("bound", lambda fi, fo: 2.0 * math.sqrt(6.0 / (fi + fo)))),
    (init.kaiming_uniform_, {"a": math.sqrt(5)}, ("bound", lambda fi, fo: 1.0 / math.sqrt(fi))),
    (init.kaiming_uniform_, {"mode": "fan_out", "nonlinearity": "relu"},
     ("bound", lambda fi, fo: math.sqrt(6.0 / fo))),
    (init.xavier_normal_, {}, ("std", lambda fi, fo: math.sqrt(2.0 / (fi + fo)))),
    (init.kaiming_normal_, {"nonlinearity": "relu"}, ("std", lambda fi, fo: math.sqrt(2.0 / fi))),
])
def test_scaled_initialisers(fn, kwargs, bound_or_std):
    t = disttorch.empty(300, 40, 3)
    fn(t, **kwargs)
    fan_in, fan_out = 40 * 3, 300 * 3
    kind, f = bound_or_std
    a = _arr(t)
    expected = f(fan_in, fan_out)
    if kind == "bound":
        assert a.min() >= -expected and a.max() <= expected and a.max() > 0.95 * expected
    else:
        assert abs(a.std() - expected) / expected < 0.03


@needs_torch
def test_trunc_normal_and_orthogonal_and_dirac():
    t = disttorch.empty(100, 100)
    init.trunc_normal_(t, mean=0.5, std=1.0, a=-0.5, b=1.0)
    a = _arr(t)
    assert a.min() >= -0.5 and a.max() <= 1.0 and a.std() > 0.3
    for shape in ((6, 4), (4, 6), (3, 2, 2)):
        w = init.orthogonal_(disttorch.empty(*shape), gain=2.0)
        m = _arr(w).reshape(shape[0], -1)
        gram = m @ m.T if shape[0] <= m.shape[1] else m.T @ m
        np.testing.assert_allclose(gram, 4.0 * np.eye(gram.shape[0]), atol=1e-5)
    with pytest.raises(ValueError, match="Only tensors with 2 or more dimensions are supported"):
        init.orthogonal_(disttorch.empty(3))
    d = init.dirac_(disttorch.empty(2, 2, 3, 3))
    expected = torch.nn.init.dirac_(torch.empty(2, 2, 3, 3))
    assert d.tolist() == expected.tolist()


def test_layers_initialise_like_pytorch():
    disttorch.manual_seed(0)
    lin = dnn.Linear(50, 400)
    bound = 1 / math.sqrt(50)
    w, b = _arr(lin.weight), _arr(lin.bias)
    assert w.min() >= -bound and w.max() <= bound and w.max() > 0.95 * bound
    assert b.min() >= -bound and b.max() <= bound and abs(b.std() - bound / math.sqrt(3)) < 0.02
    bil = dnn.Bilinear(9, 4, 300)
    assert np.abs(_arr(bil.weight)).max() <= 1 / 3 and np.abs(_arr(bil.bias)).max() <= 1 / 3
    emb = dnn.Embedding(1000, 20)
    assert abs(_arr(emb.weight).std() - 1.0) < 0.03
    bn = dnn.BatchNorm1d(3)
    assert bn.weight.tolist() == [1, 1, 1] and bn.bias.tolist() == [0, 0, 0]
    assert bn.running_var.tolist() == [1, 1, 1] and bn.num_batches_tracked.item() == 0
    assert dnn.PReLU(2, init=0.3).weight.tolist() == pytest.approx([0.3, 0.3])
    assert dnn.LayerNorm(2).weight.tolist() == [1, 1] and dnn.GroupNorm(1, 2).bias.tolist() == [0, 0]


def test_zero_element_kaiming_warns():
    with pytest.warns(UserWarning, match="Initializing zero-element tensors is a no-op"):
        init.kaiming_uniform_(disttorch.empty(0, 3))
