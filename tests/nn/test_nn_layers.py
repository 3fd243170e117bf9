"""Layer parity against PyTorch (float32: outputs, input and parameter gradients) and float64
finite-difference gradient checks of every layer's backward."""
from __future__ import annotations

import numpy as np
import pytest

import disttorch
import disttorch.nn as dnn

from _nn_parity import check_module_parity, grad_fn_name, module_gradcheck, needs_torch, torch

tnn = torch.nn if torch is not None else None


def _randn(*shape, seed=0, requires_grad=True, low_abs=0.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g)
    if low_abs:  # keep values off the kinks (relu at 0, hardtanh bounds) where gradients jump
        x = torch.where(x.abs() < low_abs, x.sign() * low_abs + x, x)
    return x.requires_grad_(requires_grad)


# (id, constructor written against M.nn, input shapes)
LAYERS = [
    ("linear", lambda nn: nn.Linear(5, 3), [(4, 5)]),
    ("linear_nobias", lambda nn: nn.Linear(5, 3, bias=False), [(4, 5)]),
    ("linear_3d", lambda nn: nn.Linear(5, 3), [(2, 3, 5)]),
    ("linear_1d", lambda nn: nn.Linear(5, 3), [(5,)]),
    ("bilinear", lambda nn: nn.Bilinear(3, 4, 2), [(5, 3), (5, 4)]),
    ("identity", lambda nn: nn.Identity(54, unused=1), [(2, 3)]),
    ("flatten", lambda nn: nn.Flatten(), [(2, 3, 4)]),
    ("flatten_0_1", lambda nn: nn.Flatten(0, 1), [(2, 3, 4)]),
    ("unflatten", lambda nn: nn.Unflatten(1, (3, 4)), [(2, 12)]),
    ("batchnorm1d", lambda nn: nn.BatchNorm1d(4), [(6, 4)]),
    ("batchnorm1d_3d", lambda nn: nn.BatchNorm1d(4), [(3, 4, 5)]),
    ("batchnorm2d", lambda nn: nn.BatchNorm2d(3), [(2, 3, 4, 4)]),
    ("batchnorm2d_noaffine", lambda nn: nn.BatchNorm2d(3, affine=False), [(2, 3, 2, 2)]),
    ("batchnorm1d_nostats", lambda nn: nn.BatchNorm1d(4, track_running_stats=False), [(5, 4)]),
    ("batchnorm1d_nobias", lambda nn: nn.BatchNorm1d(4, bias=False), [(5, 4)]),
    ("layernorm", lambda nn: nn.LayerNorm(5), [(3, 5)]),
    ("layernorm_2d", lambda nn: nn.LayerNorm((3, 4)), [(2, 3, 4)]),
    ("layernorm_noaffine", lambda nn: nn.LayerNorm(4, elementwise_affine=False), [(3, 4)]),
    ("layernorm_nobias", lambda nn: nn.LayerNorm(4, bias=False), [(3, 4)]),
    ("groupnorm", lambda nn: nn.GroupNorm(2, 4), [(3, 4, 5)]),
    ("groupnorm_2d", lambda nn: nn.GroupNorm(1, 4), [(2, 4)]),
    ("groupnorm_4d", lambda nn: nn.GroupNorm(3, 6, affine=False), [(2, 6, 2, 3)]),
    ("relu", lambda nn: nn.ReLU(), [(4, 5)]),
    ("relu6", lambda nn: nn.ReLU6(), [(4, 5)]),
    ("leaky_relu", lambda nn: nn.LeakyReLU(0.2), [(4, 5)]),
    ("prelu", lambda nn: nn.PReLU(), [(4, 5)]),
    ("prelu_channels", lambda nn: nn.PReLU(4, init=0.1), [(3, 4, 5)]),
    ("elu", lambda nn: nn.ELU(0.7), [(4, 5)]),
    ("selu", lambda nn: nn.SELU(), [(4, 5)]),
    ("gelu", lambda nn: nn.GELU(), [(4, 5)]),
    ("gelu_tanh", lambda nn: nn.GELU("tanh"), [(4, 5)]),
    ("silu", lambda nn: nn.SiLU(), [(4, 5)]),
    ("mish", lambda nn: nn.Mish(), [(4, 5)]),
    ("softplus", lambda nn: nn.Softplus(), [(4, 5)]),
    ("softplus_beta", lambda nn: nn.Softplus(2.0, 1.0), [(4, 5)]),
    ("tanh", lambda nn: nn.Tanh(), [(4, 5)]),
    ("sigmoid", lambda nn: nn.Sigmoid(), [(4, 5)]),
    ("hardtanh", lambda nn: nn.Hardtanh(-0.5, 0.8), [(4, 5)]),
    ("softmax", lambda nn: nn.Softmax(dim=1), [(4, 5)]),
    ("log_softmax", lambda nn: nn.LogSoftmax(dim=-1), [(2, 3, 5)]),
    ("sequential_mlp", lambda nn: nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)), [(4, 6)]),
]


@pytest.mark.parametrize("name,ctor,shapes", LAYERS, ids=[c[0] for c in LAYERS])
@needs_torch
def test_layer_parity(name, ctor, shapes):
    torch.manual_seed(0)
    t_mod = ctor(tnn)
    d_mod = ctor(dnn)
    inputs = [_randn(*s, seed=i, low_abs=0.05) for i, s in enumerate(shapes)]
    d_out = check_module_parity(t_mod, d_mod, inputs)
    t_out = t_mod(*inputs)
    assert grad_fn_name(d_out[0]) == grad_fn_name(t_out) or name.startswith("linear_")


def test_linear_grad_fn_and_next_functions_names():
    lin = dnn.Linear(4, 3)
    out = lin(disttorch.randn(2, 4))
    assert type(out.grad_fn).__name__ == "AddmmBackward0"
    assert type(dnn.Linear(4, 3, bias=False)(disttorch.randn(2, 4)).grad_fn).__name__ == "MmBackward0"
    assert type(lin(disttorch.randn(2, 2, 4)).grad_fn).__name__ == "ViewBackward0"


def test_linear_weight_grad_is_contiguous_and_float32():
    lin = dnn.Linear(7, 5)
    lin(disttorch.randn(3, 7, requires_grad=True)).sum().backward()
    assert lin.weight.grad.dtype is disttorch.float32
    assert lin.weight.grad.is_contiguous()
    assert lin.bias.grad.dtype is disttorch.float32


@pytest.mark.parametrize("inplace_ctor", [
    lambda nn: nn.ReLU(inplace=True), lambda nn: nn.ReLU6(inplace=True), lambda nn: nn.LeakyReLU(0.1, True),
    lambda nn: nn.ELU(inplace=True), lambda nn: nn.SELU(True), lambda nn: nn.SiLU(True), lambda nn: nn.Mish(True),
    lambda nn: nn.Hardtanh(inplace=True)])
@needs_torch
def test_inplace_activation_parity(inplace_ctor):
    x_t = _randn(3, 4, low_abs=0.05)
    x_d = disttorch.tensor(x_t.detach().numpy(), requires_grad=True)
    y_t = inplace_ctor(tnn)(x_t * 1)
    y_d = inplace_ctor(dnn)(x_d * 1)
    np.testing.assert_allclose(y_d.detach().numpy(), y_t.detach().numpy(), atol=1e-5)
    y_t.sum().backward()
    y_d.sum().backward()
    np.testing.assert_allclose(x_d.grad.numpy(), x_t.grad.numpy(), atol=1e-5)


def test_inplace_relu_writes_into_its_input():
    x = disttorch.tensor([-1.0, 2.0])
    out = dnn.ReLU(inplace=True)(x)
    assert out is x and x.tolist() == [0.0, 2.0]


def _train_steps(mod, inputs, steps):
    for i in range(steps):
        mod(inputs[i % len(inputs)])


@pytest.mark.parametrize("momentum", [0.1, None, 0.5])
@needs_torch
def test_batchnorm_running_stats_and_eval(momentum):
    torch.manual_seed(0)
    t_bn = tnn.BatchNorm2d(3, momentum=momentum)
    d_bn = dnn.BatchNorm2d(3, momentum=momentum)
    xs = [_randn(4, 3, 2, 2, seed=s, requires_grad=False) * (s + 1) + s for s in range(3)]
    _train_steps(t_bn, xs, 4)
    _train_steps(d_bn, [disttorch.tensor(x.numpy()) for x in xs], 4)
    for key in ("running_mean", "running_var", "num_batches_tracked"):
        np.testing.assert_allclose(getattr(d_bn, key).numpy(), getattr(t_bn, key).numpy(), rtol=1e-5, atol=1e-6)
    assert d_bn.num_batches_tracked.dtype is disttorch.int64
    t_bn.eval()
    d_bn.eval()
    check_module_parity(t_bn, d_bn, [_randn(2, 3, 2, 2, seed=9)])


@needs_torch
def test_batchnorm_eval_without_running_stats_uses_batch_statistics():
    torch.manual_seed(0)
    t_bn, d_bn = tnn.BatchNorm1d(3, track_running_stats=False).eval(), dnn.BatchNorm1d(3, track_running_stats=False).eval()
    check_module_parity(t_bn, d_bn, [_randn(5, 3)])


def test_batchnorm_errors():
    with pytest.raises(ValueError, match=r"expected 4D input \(got 3D input\)"):
        dnn.BatchNorm2d(3)(disttorch.randn(2, 3, 4))
    with pytest.raises(ValueError, match=r"expected 2D or 3D input \(got 4D input\)"):
        dnn.BatchNorm1d(3)(disttorch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        dnn.BatchNorm1d(3)(disttorch.randn(1, 3))
    with pytest.raises(RuntimeError, match="running_mean should contain 4 elements not 3"):
        dnn.BatchNorm1d(3)(disttorch.randn(2, 4))
    dnn.BatchNorm1d(3).eval()(disttorch.randn(1, 3))  # one sample is fine in eval mode


def test_norm_layer_errors():
    with pytest.raises(RuntimeError, match=r"Given normalized_shape=\[4\], expected input with shape \[\*, 4\], "
                                           r"but got input of size\[2, 3\]"):
        dnn.LayerNorm(4)(disttorch.randn(2, 3))
    with pytest.raises(ValueError, match=r"num_channels \(4\) must be divisible by num_groups \(3\)"):
        dnn.GroupNorm(3, 4)
    with pytest.raises(RuntimeError, match="Expected number of channels in input to be divisible by num_groups"):
        dnn.GroupNorm(2, 4)(disttorch.randn(2, 3))


def test_prelu_channel_mismatch():
    with pytest.raises(RuntimeError, match="Found parameter numbers = 3 and channel size = 4"):
        dnn.PReLU(3)(disttorch.randn(2, 4))


@needs_torch
def test_embedding_parity_padding_and_freq():
    torch.manual_seed(0)
    idx = torch.tensor([[1, 2, 0, 2], [4, 0, 1, 1]])
    for kwargs in ({}, {"padding_idx": 0}, {"padding_idx": -1}, {"scale_grad_by_freq": True, "padding_idx": 2}):
        t_e = tnn.Embedding(5, 3, **kwargs)
        d_e = dnn.Embedding(5, 3, **kwargs)
        check_module_parity(t_e, d_e, [idx])
        assert grad_fn_name(d_e(disttorch.tensor(idx.numpy()))) == "EmbeddingBackward0"


@needs_torch
def test_embedding_max_norm_renormalises_looked_up_rows():
    torch.manual_seed(0)
    t_e = tnn.Embedding(6, 4, max_norm=1.0)
    d_e = dnn.Embedding(6, 4, max_norm=1.0)
    idx = torch.tensor([0, 3, 3, 5])
    check_module_parity(t_e, d_e, [idx])
    np.testing.assert_allclose(d_e.weight.detach().numpy(), t_e.weight.detach().numpy(), atol=1e-6)


def test_embedding_padding_row_zero_and_from_pretrained():
    e = dnn.Embedding(4, 2, padding_idx=1)
    assert e.weight[1].tolist() == [0.0, 0.0]
    w = disttorch.tensor([[1.0, 2.0], [3.0, 4.0]])
    pre = dnn.Embedding.from_pretrained(w)
    assert not pre.weight.requires_grad
    assert pre(disttorch.tensor([1])).tolist() == [[3.0, 4.0]]
    assert dnn.Embedding.from_pretrained(w, freeze=False).weight.requires_grad
    with pytest.raises(IndexError, match="index out of range in self"):
        pre(disttorch.tensor([2]))
    with pytest.raises(AssertionError, match="Padding_idx must be within num_embeddings"):
        dnn.Embedding(5, 2, padding_idx=7)


def test_dropout_train_statistics_and_eval_identity():
    disttorch.manual_seed(0)
    x = disttorch.ones(200, 100, requires_grad=True)
    d = dnn.Dropout(0.3)
    y = d(x)
    vals = y.detach().numpy()
    kept = vals != 0
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_allclose(vals[kept], 1 / 0.7, rtol=1e-6)
    assert grad_fn_name(y) == "MulBackward0"
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), vals)  # gradient is the scaled mask
    d.eval()
    assert d(x) is x
    assert dnn.Dropout(1.0)(x).detach().numpy().max() == 0


def test_dropout2d_zeroes_whole_channels():
    disttorch.manual_seed(1)
    y = dnn.Dropout2d(0.5)(disttorch.ones(8, 16, 3, 3)).numpy()
    per_channel = y.reshape(8, 16, 9)
    assert np.all((per_channel == 0).all(-1) | (per_channel == 2.0).all(-1))
    assert 0.3 < (per_channel[..., 0] == 0).mean() < 0.7


def test_dropout_probability_error():
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1, but got 1.5"):
        dnn.Dropout(1.5)


# ---- float64 finite differences ---------------------------------------------------------------------
_rng = np.random.default_rng(0)


def _away_from_zero(shape, low=0.1):
    x = _rng.standard_normal(shape)
    return np.where(np.abs(x) < low, np.sign(x) * low + x, x)


GRADCHECK = [
    ("linear", lambda: dnn.Linear(3, 2), [(2, 3)], True),
    ("linear_3d_nobias", lambda: dnn.Linear(3, 2, bias=False), [(2, 2, 3)], True),
    ("bilinear", lambda: dnn.Bilinear(2, 3, 2), [(2, 2), (2, 3)], False),
    ("batchnorm1d", lambda: dnn.BatchNorm1d(3), [(4, 3)], True),
    ("batchnorm2d", lambda: dnn.BatchNorm2d(2), [(2, 2, 2, 2)], True),
    ("batchnorm_eval", lambda: dnn.BatchNorm1d(3).eval(), [(4, 3)], True),
    ("layernorm", lambda: dnn.LayerNorm(4), [(2, 4)], True),
    ("layernorm_all_dims", lambda: dnn.LayerNorm((2, 3)), [(2, 3)], False),
    ("groupnorm", lambda: dnn.GroupNorm(2, 4), [(2, 4, 2)], True),
    ("relu", lambda: dnn.ReLU(), [(2, 3)], False),
    ("relu6", lambda: dnn.ReLU6(), [(2, 3)], False),
    ("leaky_relu", lambda: dnn.LeakyReLU(0.3), [(2, 3)], True),
    ("prelu", lambda: dnn.PReLU(3), [(2, 3, 2)], True),
    ("elu", lambda: dnn.ELU(0.5), [(2, 3)], True),
    ("selu", lambda: dnn.SELU(), [(2, 3)], True),
    ("gelu", lambda: dnn.GELU(), [(2, 3)], True),
    ("gelu_tanh", lambda: dnn.GELU("tanh"), [(2, 3)], True),
    ("silu", lambda: dnn.SiLU(), [(2, 3)], True),
    ("mish", lambda: dnn.Mish(), [(2, 3)], True),
    ("softplus", lambda: dnn.Softplus(1.5, 2.0), [(2, 3)], True),
    ("tanh", lambda: dnn.Tanh(), [(2, 3)], True),
    ("sigmoid", lambda: dnn.Sigmoid(), [(2, 3)], True),
    ("hardtanh", lambda: dnn.Hardtanh(-0.5, 0.5), [(2, 3)], True),
    ("softmax", lambda: dnn.Softmax(1), [(2, 3)], True),
    ("log_softmax", lambda: dnn.LogSoftmax(1), [(2, 3)], True),
    ("flatten", lambda: dnn.Flatten(), [(2, 2, 2)], False),
    ("unflatten", lambda: dnn.Unflatten(1, (2, 2)), [(2, 4)], False),
]


@pytest.mark.parametrize("name,ctor,shapes,second", GRADCHECK, ids=[g[0] for g in GRADCHECK])
def test_layer_gradcheck_float64(name, ctor, shapes, second):
    disttorch.manual_seed(0)
    module = ctor()
    arrays = [_away_from_zero(s) for s in shapes]
    if name == "hardtanh":
        arrays = [np.where(np.abs(np.abs(a) - 0.5) < 0.1, a * 0.5, a) for a in arrays]
    module_gradcheck(module, *arrays, second_order=second)


def test_embedding_gradcheck_float64():
    # (the padding row is excluded on purpose: PyTorch gives it no gradient although it is read)
    e = dnn.Embedding(4, 3).double()
    idx = disttorch.tensor([[0, 1, 3], [3, 3, 2]])
    assert disttorch.autograd.gradcheck(lambda w: dnn.functional.embedding(idx, w), (e.weight,))
    assert disttorch.autograd.gradgradcheck(lambda w: dnn.functional.embedding(idx, w) ** 2, (e.weight,))


@needs_torch
def test_batchnorm_training_large_mean_and_few_positions_match_torch():
    # The training forward/backward reduce per channel with BLAS products after centring (two
    # passes): a mean of 1000 with unit spread keeps its variance, and a 2x2 map (ResNet's last
    # stage) and a (N, C) input take the same path.
    torch.manual_seed(0)
    for shape, offset in (((8, 5, 6, 6), 1000.0), ((16, 7, 2, 2), 0.5), ((9, 4), -3.0)):
        x = (_randn(*shape, seed=3, requires_grad=False) + offset).requires_grad_(True)
        make = tnn.BatchNorm2d if len(shape) == 4 else tnn.BatchNorm1d
        dmake = dnn.BatchNorm2d if len(shape) == 4 else dnn.BatchNorm1d
        t_bn, d_bn = make(shape[1]), dmake(shape[1])
        with torch.no_grad():
            t_bn.weight.uniform_(0.5, 1.5)
            t_bn.bias.uniform_(-1, 1)
        check_module_parity(t_bn, d_bn, [x])
        np.testing.assert_allclose(d_bn.running_var.numpy(), t_bn.running_var.numpy(), rtol=1e-4)
        np.testing.assert_allclose(d_bn.running_mean.numpy(), t_bn.running_mean.numpy(), rtol=1e-5)
