"""nn.functional ops used twice on the same inputs, with a read-only (``sum``) and a writable
incoming gradient, against PyTorch: a backward that hands back the incoming gradient while
claiming a fresh array would let the engine add into memory it does not own."""
import numpy as np
import pytest

import disttorch

IMG = (2, 3, 6, 6)
VEC = (4, 6)
CASES = {
    "conv2d": (IMG, lambda M, F, x: F.conv2d(x, M.ones(2, 3, 3, 3, dtype=x.dtype) * 0.1, padding=1)),
    "max_pool2d": (IMG, lambda M, F, x: F.max_pool2d(x, 2)),
    "avg_pool2d": (IMG, lambda M, F, x: F.avg_pool2d(x, 2)),
    "adaptive_avg": (IMG, lambda M, F, x: F.adaptive_avg_pool2d(x, 1)),
    "adaptive_max": (IMG, lambda M, F, x: F.adaptive_max_pool2d(x, 3)),
    "batch_norm": (IMG, lambda M, F, x: F.batch_norm(x, None, None, training=True)),
    "layer_norm": (VEC, lambda M, F, x: F.layer_norm(x, (6,))),
    "group_norm": (IMG, lambda M, F, x: F.group_norm(x, 3)),
    "dropout_p0": (VEC, lambda M, F, x: F.dropout(x, 0.0)),
    "dropout_eval": (VEC, lambda M, F, x: F.dropout(x, 0.5, training=False)),
    "interp_nearest": (IMG, lambda M, F, x: F.interpolate(x, scale_factor=2)),
    "interp_same": (IMG, lambda M, F, x: F.interpolate(x, size=(6, 6), mode="bilinear", align_corners=False)),
    "pad_zero": (IMG, lambda M, F, x: F.pad(x, (0, 0, 0, 0))),
    "pad_reflect": (IMG, lambda M, F, x: F.pad(x, (1, 1, 1, 1), mode="reflect")),
    "pad_replicate_none": (IMG, lambda M, F, x: F.pad(x, (0, 0, 0, 0), mode="replicate")),
    "gelu": (VEC, lambda M, F, x: F.gelu(x)),
    "silu": (VEC, lambda M, F, x: F.silu(x)),
    "leaky_relu": (VEC, lambda M, F, x: F.leaky_relu(x, 0.1)),
    "elu": (VEC, lambda M, F, x: F.elu(x)),
    "softplus": (VEC, lambda M, F, x: F.softplus(x)),
    "hardtanh": (VEC, lambda M, F, x: F.hardtanh(x)),
    "log_softmax": (VEC, lambda M, F, x: F.log_softmax(x, 1)),
    "normalize": (VEC, lambda M, F, x: F.normalize(x, dim=1)),
    "cosine_sim": (VEC, lambda M, F, x: F.cosine_similarity(x, x.flip(0), dim=1)),
    "linear": (VEC, lambda M, F, x: F.linear(x, M.ones(3, 6, dtype=x.dtype) * 0.2, M.ones(3, dtype=x.dtype))),
    "flatten_unflatten": (IMG, lambda M, F, x: M.flatten(x, 1).unflatten(1, (3, 36))),
    "identity_contiguous": (VEC, lambda M, F, x: x.contiguous()),
    "mse": (VEC, lambda M, F, x: F.mse_loss(x, M.zeros_like(x), reduction="none")),
    "smooth_l1": (VEC, lambda M, F, x: F.smooth_l1_loss(x, M.zeros_like(x), reduction="none")),
    "bce_logits": (VEC, lambda M, F, x: F.binary_cross_entropy_with_logits(x, M.ones_like(x) * 0.3, reduction="none")),
    "cross_entropy": (VEC, lambda M, F, x: F.cross_entropy(x, M.tensor([0, 5, 2, 1]), reduction="none")),
    "embedding_like": (VEC, lambda M, F, x: F.embedding(M.tensor([[0, 2], [2, 3]]), x)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_functional_op_used_twice_accumulates_like_pytorch(name):
    torch = pytest.importorskip("torch", reason="PyTorch is the reference for parity tests")
    shape, fn = CASES[name]
    data = np.random.default_rng(0).uniform(-1.5, 1.5, shape)
    grads = []
    for M in (disttorch, torch):
        x = M.tensor(data, dtype=M.float64, requires_grad=True)
        F = M.nn.functional
        first, second = fn(M, F, x), fn(M, F, x)
        w = M.tensor(np.random.default_rng(1).uniform(-1, 1, tuple(second.shape)), dtype=M.float64)
        (first.sum() + (second * w).sum()).backward()
        grads.append(np.asarray(x.grad.tolist()))
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-9, atol=1e-12)
