"""Layer norm's row kernels (statistics and backward as matrix-vector products): PyTorch parity in
float32 at a transformer's width, finite differences in float64 with and without affine and over
two normalised dims, and the create_graph path against the array path."""
import numpy as np
import pytest

import disttorch as dt
import disttorch.nn.functional as F
from disttorch.autograd import gradcheck, gradgradcheck

rng = np.random.default_rng(41)


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
def test_layer_norm_matches_torch_at_transformer_width(affine):
    torch = pytest.importorskip("torch", reason="PyTorch is the reference for parity tests")
    x = (rng.standard_normal((4, 32, 128)) * 3 + 1).astype(np.float32)
    w, b = (rng.standard_normal(128).astype(np.float32) for _ in range(2))
    g = rng.standard_normal(x.shape).astype(np.float32)
    results = []
    for lib in (torch, dt):
        ts = [lib.tensor(a, requires_grad=True) for a in (x, w, b)]
        y = lib.nn.functional.layer_norm(ts[0], (128,), ts[1] if affine else None, ts[2] if affine else None)
        y.backward(lib.tensor(g))
        results.append([y.detach().numpy(), ts[0].grad.numpy()]
                       + ([ts[1].grad.numpy(), ts[2].grad.numpy()] if affine else []))
    for k, (d, t) in enumerate(zip(results[1], results[0])):
        np.testing.assert_allclose(d, t, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(t).max())), err_msg=f"item {k}")


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
def test_layer_norm_gradcheck_over_two_dims(affine):
    x = dt.tensor(rng.standard_normal((3, 2, 4)), requires_grad=True)
    w = dt.tensor(rng.standard_normal((2, 4)), requires_grad=True)
    b = dt.tensor(rng.standard_normal((2, 4)), requires_grad=True)
    if affine:
        assert gradcheck(lambda *t: F.layer_norm(t[0], (2, 4), t[1], t[2]), (x, w, b))
        assert gradgradcheck(lambda *t: F.layer_norm(t[0], (2, 4), t[1], t[2]), (x, w, b))
    else:
        assert gradcheck(lambda t: F.layer_norm(t, (2, 4)), (x,))


def test_layer_norm_graph_backward_matches_array_backward():
    x = dt.tensor(rng.standard_normal((5, 6)), requires_grad=True)
    w = dt.tensor(rng.standard_normal(6), requires_grad=True)
    b = dt.tensor(rng.standard_normal(6), requires_grad=True)
    weight = dt.tensor(rng.standard_normal((5, 6)))
    plain = dt.autograd.grad((F.layer_norm(x, (6,), w, b) * weight).sum(), (x, w, b))
    graph = dt.autograd.grad((F.layer_norm(x, (6,), w, b) * weight).sum(), (x, w, b), create_graph=True)
    for a, c in zip(plain, graph):
        np.testing.assert_allclose(c.detach().numpy(), a.numpy(), rtol=1e-10, atol=1e-12)


def test_layer_norm_only_weight_needs_grad():
    x = dt.tensor(rng.standard_normal((5, 6)))
    w = dt.tensor(rng.standard_normal(6), requires_grad=True)
    y = F.layer_norm(x, (6,), w, None)
    gw, = dt.autograd.grad(y.sum(), w)
    xs = x.numpy()
    xhat = (xs - xs.mean(1, keepdims=True)) / np.sqrt(xs.var(1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(gw.numpy(), xhat.sum(0), rtol=1e-10, atol=1e-12)
