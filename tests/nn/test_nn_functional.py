"""nn.functional helpers beyond the layers: one_hot, normalize, distances, softmax dims,
linear/bilinear errors, and the functional forms of the layers."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import disttorch
import disttorch.nn.functional as DF

from _nn_parity import check_fn_parity, check_gradcheck, needs_torch, torch

TF = torch.nn.functional if torch is not None else None


def _t(*shape, seed=0, requires_grad=True):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).requires_grad_(requires_grad)


@needs_torch
def test_one_hot():
    out = DF.one_hot(disttorch.tensor([[0, 2], [1, 1]]))
    assert out.dtype is disttorch.int64
    assert out.tolist() == TF.one_hot(torch.tensor([[0, 2], [1, 1]])).tolist()
    assert tuple(DF.one_hot(disttorch.tensor([1]), 5).shape) == (1, 5)
    for bad, msg in (((disttorch.tensor([3]), 3), "Class values must be smaller than num_classes."),
                     ((disttorch.tensor([-1]),), "Class values must be non-negative."),
                     ((disttorch.tensor([1.0]),), "one_hot is only applicable to index tensor of type LongTensor.")):
        with pytest.raises(RuntimeError, match=msg):
            DF.one_hot(*bad)


@pytest.mark.parametrize("case", [
    lambda M, x, y: M.nn.functional.normalize(x),
    lambda M, x, y: M.nn.functional.normalize(x, p=1.0, dim=0),
    lambda M, x, y: M.nn.functional.cosine_similarity(x, y),
    lambda M, x, y: M.nn.functional.cosine_similarity(x, y, dim=0, eps=1e-3),
    lambda M, x, y: M.nn.functional.pairwise_distance(x, y),
    lambda M, x, y: M.nn.functional.pairwise_distance(x, y, p=1.0, keepdim=True),
    lambda M, x, y: M.nn.functional.linear(x, y),
    lambda M, x, y: M.nn.functional.linear(x, y, y[0]),
    lambda M, x, y: M.nn.functional.softmin(x, 1),
    lambda M, x, y: M.nn.functional.logsigmoid(x),
    lambda M, x, y: M.nn.functional.gelu(x, approximate="tanh"),
    lambda M, x, y: M.nn.functional.elu(x, 0.3),
    lambda M, x, y: M.nn.functional.leaky_relu(x, 0.1),
    lambda M, x, y: M.nn.functional.relu6(x * 4),
    lambda M, x, y: M.nn.functional.hardtanh(x, -0.2, 0.3),
    lambda M, x, y: M.nn.functional.layer_norm(x, (4,), y[0], y[1]),
    lambda M, x, y: M.nn.functional.group_norm(x.reshape(2, 4, 2), 2, y[0], y[1]),
    lambda M, x, y: M.nn.functional.batch_norm(x, None, None, y[0], y[1], training=True),
    lambda M, x, y: M.nn.functional.prelu(x, y[0, :1]),
    lambda M, x, y: M.nn.functional.celu(x, 0.5),
    lambda M, x, y: M.nn.functional.threshold(x, 0.1, -2.0),
    lambda M, x, y: M.nn.functional.hardsigmoid(x * 4),
    lambda M, x, y: M.nn.functional.hardswish(x * 4),
    lambda M, x, y: M.nn.functional.softsign(x),
    lambda M, x, y: M.nn.functional.glu(x, 1),
])
@needs_torch
def test_functional_parity(case):
    check_fn_parity(case, [_t(4, 4), _t(4, 4, seed=1)])


def test_dropout1d_zeroes_channels():
    disttorch.manual_seed(0)
    y = DF.dropout1d(disttorch.ones(4, 8, 5), 0.5).numpy()
    assert np.all((y == 0).all(-1) | (y == 2.0).all(-1))
    with pytest.raises(RuntimeError, match="dropout1d: Expected 2D or 3D input, but received a 4D input"):
        DF.dropout1d(disttorch.ones(1, 2, 3, 4))


def test_softmax_implicit_dim_warns_and_picks_pytorch_dim():
    x = disttorch.randn(2, 3)
    with pytest.warns(UserWarning, match="Implicit dimension choice for softmax has been deprecated"):
        out = DF.softmax(x)
    np.testing.assert_allclose(out.numpy().sum(1), [1, 1], rtol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_allclose(DF.log_softmax(disttorch.randn(3)).exp().numpy().sum(), 1, rtol=1e-6)


def test_linear_shape_and_dtype_errors():
    with pytest.raises(RuntimeError, match=r"mat1 and mat2 shapes cannot be multiplied \(2x3 and 5x4\)"):
        DF.linear(disttorch.randn(2, 3), disttorch.randn(4, 5))
    with pytest.raises(RuntimeError, match=r"mat1 and mat2 shapes cannot be multiplied \(4x3 and 5x4\)"):
        DF.linear(disttorch.randn(2, 2, 3), disttorch.randn(4, 5))
    with pytest.raises(RuntimeError, match="mat1 and mat2 must have the same dtype, but got Double and Float"):
        DF.linear(disttorch.randn(2, 3, dtype=disttorch.float64), disttorch.randn(4, 3))
    with pytest.raises(RuntimeError, match="bilinear\\(\\): input batch dimensions do not match at dim 0: got 2 and 3"):
        DF.bilinear(disttorch.randn(2, 3), disttorch.randn(3, 4), disttorch.randn(5, 3, 4))


def test_gelu_approximate_error():
    with pytest.raises(RuntimeError, match="approximate argument must be either none or tanh."):
        DF.gelu(disttorch.randn(2), approximate="fast")


def test_activation_integer_input_error():
    with pytest.raises(RuntimeError, match="not implemented for 'Long'"):
        DF.silu(disttorch.tensor([1, 2]))


def test_float32_is_kept_and_float64_supported():
    for fn in (DF.gelu, DF.silu, DF.mish, DF.softplus, DF.elu, DF.selu, lambda x: DF.leaky_relu(x, 0.2),
               lambda x: DF.layer_norm(x, (3,)), lambda x: DF.dropout(x, 0.5)):
        for dt in (disttorch.float32, disttorch.float64):
            x = disttorch.randn(2, 3, dtype=dt, requires_grad=True)
            y = fn(x)
            y.sum().backward()
            assert y.dtype is dt and x.grad.dtype is dt


def test_distance_gradcheck_float64():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    check_gradcheck(lambda x, y: DF.cosine_similarity(x, y), a, b, second_order=True)
    check_gradcheck(lambda x, y: DF.pairwise_distance(x, y), a, b)
    check_gradcheck(lambda x: DF.normalize(x, dim=1), a)
    check_gradcheck(lambda x, y: DF.bilinear(x, y[:, :2], disttorch.ones(2, 4, 2, dtype=disttorch.float64)), a, b)
