"""Higher-order gradients (create_graph), gradgradcheck, autograd.functional, gradcheck itself."""
from __future__ import annotations

import math

import numpy as np
import pytest

import disttorch
from disttorch.autograd import gradcheck, gradgradcheck
from disttorch.autograd.functional import hessian, jacobian, vjp


def _d(f, x, n):
    """n-th derivative of scalar-valued elementwise f at x (summed), via repeated autograd.grad."""
    y = f(x).sum()
    for _ in range(n):
        (y,) = disttorch.autograd.grad(y, x, create_graph=True)
        y = y.sum() if _ < n - 1 else y
    return y


X = [-1.5, -0.3, 0.4, 1.2]


@pytest.mark.parametrize("name,f,d2", [
    ("cube", lambda x: x ** 3, lambda v: 6 * v),
    ("sin", disttorch.sin, lambda v: -math.sin(v)),
    ("cos", disttorch.cos, lambda v: -math.cos(v)),
    ("tanh", disttorch.tanh, lambda v: -2 * math.tanh(v) * (1 - math.tanh(v) ** 2)),
    ("exp", disttorch.exp, math.exp),
    ("sigmoid", disttorch.sigmoid, lambda v: (s := 1 / (1 + math.exp(-v))) * (1 - s) * (1 - 2 * s)),
    ("log_abs", lambda x: disttorch.log(x.abs()), lambda v: -1 / v ** 2),
    ("sqrt_sq", lambda x: disttorch.sqrt(x * x + 1), lambda v: (v * v + 1) ** -1.5),
    ("reciprocal", lambda x: 1 / x, lambda v: 2 / v ** 3),
    ("softplus_like", lambda x: disttorch.log1p(disttorch.exp(x)), lambda v: math.exp(v) / (1 + math.exp(v)) ** 2),
])
def test_second_derivative(name, f, d2):
    x = disttorch.tensor(X, dtype=disttorch.float64, requires_grad=True)
    g2 = _d(f, x, 2)
    np.testing.assert_allclose(g2.detach().numpy(), [d2(v) for v in X], rtol=1e-10)


def test_third_and_fourth_derivatives():
    x = disttorch.tensor(X, dtype=disttorch.float64, requires_grad=True)
    np.testing.assert_allclose(_d(lambda t: t ** 4, x, 3).detach().numpy(), [24 * v for v in X])
    np.testing.assert_allclose(_d(lambda t: t ** 4, x, 4).detach().numpy(), [24.0] * 4)
    np.testing.assert_allclose(_d(disttorch.sin, x, 3).detach().numpy(), [-math.cos(v) for v in X])


def test_backward_create_graph_then_backward_again():
    x = disttorch.tensor(2.0, requires_grad=True)
    y = x ** 3
    y.backward(create_graph=True)
    g = x.grad  # 3x^2, itself differentiable
    assert g.requires_grad and g.item() == 12.0
    x.grad = None
    g.backward()
    assert x.grad.item() == 12.0  # 6x


def test_matmul_hessian_vector_product():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((3, 3))
    x = disttorch.tensor(rng.standard_normal(3), requires_grad=True, dtype=disttorch.float64)
    a = disttorch.tensor(A)
    f = x @ a @ x  # Hessian A + A^T
    (g,) = disttorch.autograd.grad(f, x, create_graph=True)
    np.testing.assert_allclose(g.detach().numpy(), (A + A.T) @ x.detach().numpy())
    v = disttorch.tensor([1.0, -2.0, 0.5], dtype=disttorch.float64)
    (hv,) = disttorch.autograd.grad(g @ v, x)
    np.testing.assert_allclose(hv.numpy(), (A + A.T) @ v.numpy())


def test_double_backward_matches_torch():
    torch = pytest.importorskip("torch", reason="PyTorch's second derivatives are the reference")
    rng = np.random.default_rng(1)
    W = rng.standard_normal((4, 3)).astype(np.float32)
    X0 = rng.standard_normal((2, 4)).astype(np.float32)
    out = []
    for M in (disttorch, torch):
        w = M.tensor(W, requires_grad=True)
        x = M.tensor(X0, requires_grad=True)
        h = M.tanh(x @ w)
        loss = (M.softmax(h, 1) * M.log_softmax(h * 2, 1)).sum() + (h ** 2).mean()
        gw, gx = M.autograd.grad(loss, (w, x), create_graph=True)
        penalty = (gw ** 2).sum() + (gx ** 2).sum()  # a gradient penalty, as in WGAN-GP
        penalty.backward()
        out.append((w.grad.detach().numpy().copy(), x.grad.detach().numpy().copy()))
    for a, b in zip(out[0], out[1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,f,shapes", [
    ("mlp", lambda x, w: disttorch.tanh(x @ w).sum(1), [(2, 3), (3, 2)]),
    ("softmax_ce", lambda x, w: -(disttorch.log_softmax(x @ w, 1)[:, 0]), [(2, 3), (3, 2)]),
    ("norm", lambda x, w: disttorch.norm(x * w.sum()), [(2, 3), (3, 2)]),
    ("logsumexp_var", lambda x, w: x.logsumexp(1) + x.var(1) * w.mean(), [(2, 3), (3, 2)]),
    ("prod_cumsum", lambda x, w: (x.cumsum(1) * w.t()[:1]).prod(1), [(2, 3), (3, 2)]),
])
def test_gradgradcheck_composites(name, f, shapes):
    rng = np.random.default_rng(2)
    ins = [disttorch.tensor(rng.uniform(0.3, 1.2, s), dtype=disttorch.float64, requires_grad=True) for s in shapes]
    assert gradcheck(f, ins)
    assert gradgradcheck(f, ins)


# ---- gradcheck itself ----------------------------------------------------------------------------
class _WrongSquare(disttorch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x  # should be 2 * g * x


def test_gradcheck_detects_wrong_gradient():
    x = disttorch.tensor([0.5, 1.5], dtype=disttorch.float64, requires_grad=True)
    assert gradcheck(lambda t: t * t, (x,))
    assert not gradcheck(_WrongSquare.apply, (x,), raise_exception=False)
    with pytest.raises(disttorch.autograd.GradcheckError):
        gradcheck(_WrongSquare.apply, (x,))
    assert gradcheck(lambda t: t * t, x)  # a single tensor is accepted as inputs
    assert gradcheck(lambda t: t * t, [x])  # and so is a list


# ---- autograd.functional ---------------------------------------------------------------------------
def test_jacobian():
    x = disttorch.tensor([1.0, 2.0, 3.0], dtype=disttorch.float64)
    J = jacobian(lambda t: t ** 2, x)
    np.testing.assert_allclose(J.numpy(), np.diag([2.0, 4.0, 6.0]))
    A = disttorch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=disttorch.float64)
    np.testing.assert_allclose(jacobian(lambda t: A @ t, x).numpy(), A.numpy())
    ja, jb = jacobian(lambda a, b: (a * b).sum(), (x, x * 2))
    np.testing.assert_allclose(ja.numpy(), [2.0, 4.0, 6.0])
    np.testing.assert_allclose(jb.numpy(), [1.0, 2.0, 3.0])
    M2 = disttorch.ones(2, 2, dtype=disttorch.float64)
    assert jacobian(lambda m: m.sum(0), M2).shape == (2, 2, 2)
    assert not x.requires_grad  # the caller's tensor is left alone


def test_hessian_and_vjp():
    x = disttorch.tensor([1.0, 2.0], dtype=disttorch.float64)
    H = hessian(lambda t: (t ** 3).sum() + t[0] * t[1], x)
    np.testing.assert_allclose(H.numpy(), [[6.0, 1.0], [1.0, 12.0]])
    out, g = vjp(lambda t: t * 3, x, disttorch.tensor([1.0, 2.0], dtype=disttorch.float64))
    assert out.tolist() == [3.0, 6.0] and g.tolist() == [3.0, 6.0]


def test_jacobian_matches_torch():
    torch = pytest.importorskip("torch", reason="torch.autograd.functional is the reference")
    rng = np.random.default_rng(4)
    a = rng.standard_normal((3, 2))

    def f(M):
        return lambda t: M.tanh(t @ M.tensor(a)).exp()

    x = rng.standard_normal((2, 3))
    ours = jacobian(f(disttorch), disttorch.tensor(x))
    theirs = torch.autograd.functional.jacobian(f(torch), torch.tensor(x))
    assert tuple(ours.shape) == tuple(theirs.shape)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-10)
