"""nn.utils: gradient clipping and parameter/vector conversion, against PyTorch."""
from __future__ import annotations

import numpy as np
import pytest

import disttorch
import disttorch.nn as dnn
from disttorch.nn.utils import clip_grad_norm_, clip_grad_value_, parameters_to_vector, vector_to_parameters

from _nn_parity import needs_torch, torch


def _pair(seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    shapes = [(3, 4), (4,), (2, 2, 2)]
    grads = [(rng.standard_normal(s) * scale).astype(np.float32) for s in shapes]
    tp = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
    dp = [dnn.Parameter(disttorch.zeros(s)) for s in shapes]
    for t, d, g in zip(tp, dp, grads):
        t.grad = torch.tensor(g)
        d.grad = disttorch.tensor(g)
    return tp, dp


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf"), 3.0])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
@needs_torch
def test_clip_grad_norm_matches_pytorch(norm_type, max_norm):
    tp, dp = _pair()
    t_total = torch.nn.utils.clip_grad_norm_(tp, max_norm, norm_type)
    d_total = clip_grad_norm_(dp, max_norm, norm_type, foreach=True)
    assert d_total.dtype is disttorch.float32 and d_total.ndim == 0
    np.testing.assert_allclose(d_total.item(), t_total.item(), rtol=1e-5)
    for t, d in zip(tp, dp):
        np.testing.assert_allclose(d.grad.numpy(), t.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_clip_grad_norm_single_tensor_none_grads_and_nonfinite():
    p = dnn.Parameter(disttorch.zeros(2))
    assert clip_grad_norm_(p, 1.0).item() == 0.0
    p.grad = disttorch.tensor([3.0, 4.0])
    assert clip_grad_norm_(p, 1.0).item() == pytest.approx(5.0)
    np.testing.assert_allclose(p.grad.numpy(), [0.6, 0.8], rtol=1e-5)
    p.grad = disttorch.tensor([float("inf"), 1.0])
    with pytest.raises(RuntimeError, match="The total norm of order 2.0 for gradients from `parameters` is non-finite"):
        clip_grad_norm_(p, 1.0, error_if_nonfinite=True)


@needs_torch
def test_clip_grad_value_matches_pytorch():
    tp, dp = _pair(scale=3.0)
    torch.nn.utils.clip_grad_value_(tp, 1.5)
    clip_grad_value_(dp, 1.5)
    for t, d in zip(tp, dp):
        np.testing.assert_array_equal(d.grad.numpy(), t.grad.numpy())


@needs_torch
def test_parameters_to_vector_and_back():
    model = dnn.Sequential(dnn.Linear(3, 2), dnn.Linear(2, 1))
    vec = parameters_to_vector(model.parameters())
    assert tuple(vec.shape) == (11,)
    np.testing.assert_array_equal(vec.detach().numpy()[:6], model[0].weight.detach().numpy().ravel())
    new = disttorch.arange(11, dtype=disttorch.float32)
    weight = model[0].weight
    vector_to_parameters(new, model.parameters())
    assert model[0].weight is weight
    assert model[1].bias.tolist() == [10.0] and model[0].weight.tolist() == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(TypeError, match="expected torch.Tensor, but got: list"):
        vector_to_parameters([1.0], model.parameters())
    (parameters_to_vector(model.parameters()) * 2).sum().backward()
    assert model[1].bias.grad.tolist() == [2.0]
