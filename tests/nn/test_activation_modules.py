"""The activation layers of torch.nn (and their functional forms) against PyTorch: forward values,
input gradients, in-place variants, reprs and errors."""
import re

import numpy as np
import pytest
import torch

import disttorch

# (module name, constructor args, constructor kwargs); inputs avoid the kinks (|x| in {0, lambd, 3}).
MODULES = [
    ("Hardswish", (), {}), ("Hardsigmoid", (), {}), ("Threshold", (0.1, -2.0), {}), ("CELU", (), {"alpha": 0.7}),
    ("GLU", (), {"dim": 1}), ("Hardshrink", (), {"lambd": 0.6}), ("Softshrink", (0.4,), {}), ("Tanhshrink", (), {}),
    ("Softsign", (), {}), ("LogSigmoid", (), {}), ("Softmin", (), {"dim": 1}), ("Softmax2d", (), {}),
    ("RReLU", (0.1, 0.3), {}), ("Hardtanh", (-0.5, 0.7), {}), ("ReLU6", (), {}), ("SiLU", (), {}), ("Mish", (), {}),
    ("PReLU", (4,), {}),
]


def _input():
    rng = np.random.default_rng(7)
    x = rng.uniform(-5, 5, size=(2, 4, 3, 3))
    # Stay away from the points where these activations are not differentiable.
    for kink in (0.0, 0.1, 0.4, 0.6, 0.5, 0.7, 3.0, 6.0):
        for sign in (1, -1):
            near = np.abs(x - sign * kink) < 1e-2
            x[near] += 0.05
    return x


@pytest.mark.parametrize("name, args, kwargs", MODULES, ids=[m[0] for m in MODULES])
def test_module_matches_pytorch(name, args, kwargs):
    ref_module = getattr(torch.nn, name)(*args, **kwargs).double()
    module = getattr(disttorch.nn, name)(*args, **kwargs).double()
    if name == "RReLU":  # random slopes in training; evaluation uses their mean, as PyTorch does
        ref_module.eval()
        module.eval()
    assert repr(module) == repr(ref_module)
    data = _input()
    x_ref = torch.tensor(data, requires_grad=True)
    x = disttorch.tensor(data, requires_grad=True)
    out_ref, out = ref_module(x_ref), module(x)
    np.testing.assert_allclose(out.detach().numpy(), out_ref.detach().numpy(), rtol=1e-12, atol=1e-14)
    upstream = np.random.default_rng(1).standard_normal(tuple(out_ref.shape))
    out_ref.backward(torch.tensor(upstream))
    out.backward(disttorch.tensor(upstream))
    np.testing.assert_allclose(x.grad.numpy(), x_ref.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_hardswish_hardsigmoid_float32_round_as_pytorch():
    data = np.linspace(-4, 4, 1001, dtype=np.float32)
    for fn in ("hardswish", "hardsigmoid"):
        ours = getattr(disttorch.nn.functional, fn)(disttorch.tensor(data)).numpy()
        ref = getattr(torch.nn.functional, fn)(torch.tensor(data)).numpy()
        np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("fn", ["hardswish", "hardsigmoid", "relu6", "silu", "celu"])
def test_inplace_functional_writes_input_like_pytorch(fn):
    data = _input()
    ref = torch.tensor(data)
    ours = disttorch.tensor(data)
    ref_out = getattr(torch.nn.functional, fn)(ref, inplace=True)
    our_out = getattr(disttorch.nn.functional, fn)(ours, inplace=True)
    assert our_out is ours
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-12)
    np.testing.assert_allclose(our_out.numpy(), ref_out.numpy(), rtol=1e-12)


def test_inplace_hardswish_gradient_through_non_leaf():
    data = _input()
    x_ref = torch.tensor(data, requires_grad=True)
    x = disttorch.tensor(data, requires_grad=True)
    torch.nn.Hardswish(inplace=True)(x_ref * 2).sum().backward()
    disttorch.nn.Hardswish(inplace=True)(x * 2).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), x_ref.grad.numpy(), rtol=1e-12)


def test_rrelu_training_draws_slopes_within_bounds():
    disttorch.manual_seed(0)
    x = disttorch.full((2000,), -1.0, dtype=disttorch.float64, requires_grad=True)
    out = disttorch.nn.RReLU(0.1, 0.3)(x)
    slopes = -out.detach().numpy()
    assert slopes.min() >= 0.1 and slopes.max() <= 0.3
    assert abs(slopes.mean() - 0.2) < 0.01 and slopes.std() > 0.05  # U(0.1, 0.3): std 0.0577
    out.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), slopes)
    positive = disttorch.nn.functional.rrelu(disttorch.tensor([2.0, 3.0]), training=True)
    np.testing.assert_array_equal(positive.numpy(), [2.0, 3.0])


def test_errors_match_pytorch():
    for dtype, limit, legacy in (("float32", "3.40282e+38", "Float"), ("float64", "1.79769e+308", "Double")):
        message = re.escape(f"lambda must be in range [0, {limit}] for input dtype {legacy}, but found -0.25")
        with pytest.raises(RuntimeError, match=message):
            torch.nn.functional.softshrink(torch.ones(2, dtype=getattr(torch, dtype)), -0.25)
        with pytest.raises(RuntimeError, match=message):
            disttorch.nn.functional.softshrink(disttorch.ones(2, dtype=getattr(disttorch, dtype)), -0.25)
    with pytest.raises(ValueError, match="Softmax2d: expected input to be 3D or 4D, got 2D instead"):
        torch.nn.Softmax2d()(torch.ones(2, 2))
    with pytest.raises(ValueError, match="Softmax2d: expected input to be 3D or 4D, got 2D instead"):
        disttorch.nn.Softmax2d()(disttorch.ones(2, 2))
    with pytest.raises(RuntimeError, match="Halving dimension must be even, but dimension 1 is size 3"):
        disttorch.nn.GLU(1)(disttorch.ones(2, 3))


@pytest.mark.parametrize("fn", ["hardswish", "hardsigmoid", "hardshrink", "softshrink", "tanhshrink", "celu"])
def test_finite_difference_gradients_and_second_order(fn):
    from disttorch.autograd import gradcheck, gradgradcheck
    x = disttorch.tensor(_input()[0, 0], requires_grad=True)
    f = getattr(disttorch.nn.functional, fn)
    assert gradcheck(f, (x,)) and gradgradcheck(f, (x,))
