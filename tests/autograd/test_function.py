"""Custom ops through autograd.Function: ctx.save_for_backward, needs_input_grad, several inputs and
outputs, non-tensor arguments, mark_non_differentiable, version checks, double backward."""
from __future__ import annotations

import numpy as np
import pytest

import disttorch
from disttorch.autograd import Function, gradcheck, gradgradcheck


class Cube(Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.save_for_backward(x)
        ctx.scale = scale
        return x ** 3 * scale

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 3 * x ** 2 * ctx.scale, None


class MulAdd(Function):
    """(a * b, a + b): two inputs, two outputs."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b, a + b

    @staticmethod
    def backward(ctx, g_prod, g_sum):
        a, b = ctx.saved_tensors
        ga = g_prod * b + g_sum if ctx.needs_input_grad[0] else None
        gb = g_prod * a + g_sum if ctx.needs_input_grad[1] else None
        return ga, gb


class ArgmaxAndMax(Function):
    @staticmethod
    def forward(ctx, x):
        idx = x.argmax()
        ctx.mark_non_differentiable(idx)
        ctx.save_for_backward(x, idx)
        return x.max(), idx

    @staticmethod
    def backward(ctx, g, _g_idx):
        x, idx = ctx.saved_tensors
        out = disttorch.zeros_like(x)
        out[idx] = g
        return out


def test_function_forward_backward():
    x = disttorch.tensor([1.0, 2.0], requires_grad=True)
    y = Cube.apply(x, 2.0)
    assert y.tolist() == [2.0, 16.0] and y.requires_grad
    assert type(y.grad_fn).__name__ == "CubeBackward"
    assert y.grad_fn.next_functions[0][0] is x._grad_accumulator()
    y.sum().backward()
    assert x.grad.tolist() == [6.0, 24.0]


def test_function_forward_runs_without_grad_and_no_graph_when_not_needed():
    seen = []

    class Probe(Function):
        @staticmethod
        def forward(ctx, x):
            seen.append(disttorch.is_grad_enabled())
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g * 2

    x = disttorch.ones(2, requires_grad=True)
    assert Probe.apply(x).requires_grad and seen == [False]
    assert not Probe.apply(disttorch.ones(2)).requires_grad
    with disttorch.no_grad():
        assert Probe.apply(x).grad_fn is None


def test_function_two_inputs_two_outputs():
    a = disttorch.tensor([1.0, 2.0], requires_grad=True)
    b = disttorch.tensor([3.0, 4.0], requires_grad=True)
    p, s = MulAdd.apply(a, b)
    assert p.tolist() == [3.0, 8.0] and s.tolist() == [4.0, 6.0]
    (p.sum() * 2 + s.sum()).backward()
    assert a.grad.tolist() == [7.0, 9.0] and b.grad.tolist() == [3.0, 5.0]
    c = disttorch.tensor([1.0, 1.0])
    p2, _ = MulAdd.apply(a, c)  # needs_input_grad is (True, False)
    p2.sum().backward()
    assert a.grad.tolist() == [8.0, 10.0]


def test_function_only_one_output_used():
    a = disttorch.tensor([1.0, 2.0], requires_grad=True)
    b = disttorch.tensor([3.0, 4.0], requires_grad=True)
    p, _ = MulAdd.apply(a, b)
    p.sum().backward()  # the unused output's gradient arrives as zeros (or None) and must not break backward
    assert a.grad.tolist() == [3.0, 4.0] and b.grad.tolist() == [1.0, 2.0]


def test_mark_non_differentiable():
    x = disttorch.tensor([1.0, 5.0, 2.0], requires_grad=True)
    m, i = ArgmaxAndMax.apply(x)
    assert m.item() == 5.0 and i.item() == 1 and not i.requires_grad and m.requires_grad
    (m * 3).backward()
    assert x.grad.tolist() == [0.0, 3.0, 0.0]


def test_saved_tensor_modified_in_place_is_detected():
    x = disttorch.tensor([1.0, 2.0], requires_grad=True)
    h = x * 1
    y = Cube.apply(h, 1.0)
    h.add_(1)
    with pytest.raises(RuntimeError) as e:
        y.sum().backward()
    assert "modified by an inplace operation" in str(e.value)


def test_function_gradcheck_and_double_backward():
    x = disttorch.tensor([0.3, -1.1, 2.0], dtype=disttorch.float64, requires_grad=True)
    assert gradcheck(lambda t: Cube.apply(t, 1.5), (x,))
    # backward is written with differentiable ops, so create_graph differentiates it again
    assert gradgradcheck(lambda t: Cube.apply(t, 1.5), (x,))
    y = Cube.apply(x, 1.0).sum()
    (g,) = disttorch.autograd.grad(y, x, create_graph=True)
    (g2,) = disttorch.autograd.grad(g.sum(), x)
    np.testing.assert_allclose(g2.numpy(), 6 * x.detach().numpy())


def test_function_matches_torch():
    torch = pytest.importorskip("torch", reason="torch.autograd.Function is the reference")

    def make(M):
        class Scaled(M.autograd.Function):
            @staticmethod
            def forward(ctx, x, w, k):
                ctx.save_for_backward(x, w)
                ctx.k = k
                return (x * w).sum(1) * k

            @staticmethod
            def backward(ctx, g):
                x, w = ctx.saved_tensors
                return g[:, None] * w * ctx.k, (g[:, None] * x).sum(0) * ctx.k, None

        return Scaled

    rng = np.random.default_rng(0)
    X, W = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    res = []
    for M in (disttorch, torch):
        x, w = M.tensor(X, requires_grad=True), M.tensor(W, requires_grad=True)
        out = make(M).apply(x, w, 0.5)
        (out ** 2).sum().backward()
        res.append([out.detach().numpy(), x.grad.numpy(), w.grad.numpy()])
    for a, b in zip(*res):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
