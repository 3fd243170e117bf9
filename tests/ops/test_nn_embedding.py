"""Embedding's backward (rows summed per index by a sorted segment sum): PyTorch parity with
repeated indices, padding_idx and scale_grad_by_freq, an empty batch, and a float64 gradcheck."""
import numpy as np
import pytest

import disttorch as dt
import disttorch.nn.functional as F
from disttorch.autograd import gradcheck

rng = np.random.default_rng(53)


@pytest.mark.parametrize("kw", [dict(), dict(padding_idx=3), dict(scale_grad_by_freq=True),
                                dict(padding_idx=0, scale_grad_by_freq=True)],
                         ids=["plain", "padding", "scale-by-freq", "both"])
def test_embedding_gradient_matches_torch(kw):
    torch = pytest.importorskip("torch", reason="PyTorch is the reference for parity tests")
    weight = rng.standard_normal((12, 5)).astype(np.float32)
    idx = rng.integers(0, 12, (6, 9))  # many repeats
    idx[0, :4] = 3
    g = rng.standard_normal((6, 9, 5)).astype(np.float32)
    grads = []
    for lib in (torch, dt):
        w = lib.tensor(weight, requires_grad=True)
        lib.nn.functional.embedding(lib.tensor(idx), w, **kw).backward(lib.tensor(g))
        grads.append(w.grad.numpy())
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-5, atol=1e-6)


def test_embedding_of_no_indices_has_a_zero_gradient():
    w = dt.tensor(rng.standard_normal((4, 3)), requires_grad=True)
    F.embedding(dt.tensor(np.zeros((0,), dtype=np.int64)), w).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), np.zeros((4, 3)))


def test_embedding_gradcheck():
    w = dt.tensor(rng.standard_normal((5, 3)), requires_grad=True)
    idx = dt.tensor(np.array([[0, 4, 4], [2, 0, 4]]))
    assert gradcheck(lambda t: F.embedding(idx, t), (w,))
