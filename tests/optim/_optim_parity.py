"""Helpers: run a disttorch optimizer and PyTorch's on the same parameters and gradient sequence."""
from __future__ import annotations

import numpy as np
import pytest

import disttorch
import disttorch.optim as doptim

torch = pytest.importorskip("torch", reason="PyTorch is the reference for optimizer parity")

SHAPES = [(4, 3), (5,), (2, 3, 2)]
RTOL, ATOL = 1e-5, 1e-6


def initial_params(seed=0, dtype=np.float32, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def grad_sequence(steps, seed=1, dtype=np.float32, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(steps)]


def make_pair(inits):
    """The same starting values as disttorch leaves and as torch leaves."""
    ours = [disttorch.tensor(a.copy(), requires_grad=True) for a in inits]
    theirs = [torch.tensor(a.copy(), requires_grad=True) for a in inits]
    return ours, theirs


def groups_of(params, split):
    """The parameter list, or (split) two groups: the first parameter gets its own lr."""
    if not split:
        return params
    return [{"params": params[:1], "lr": 0.05}, {"params": params[1:]}]


def assert_close(ours, theirs, what=""):
    for i, (a, b) in enumerate(zip(ours, theirs)):
        got = a.detach().numpy()
        want = b.detach().numpy()
        assert got.dtype == want.dtype, f"{what} param {i}: dtype {got.dtype} != {want.dtype}"
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=f"{what} param {i}")


def run_parity(name, kwargs, steps=12, split=False, dtype=np.float32, grad_scale=1.0):
    """Feeds the same gradients to both optimizers and compares parameters after every step."""
    inits = initial_params(dtype=dtype)
    grads = grad_sequence(steps, dtype=dtype)
    ours, theirs = make_pair(inits)
    opt = getattr(doptim, name)(groups_of(ours, split), **kwargs)
    ref = getattr(torch.optim, name)(groups_of(theirs, split), **kwargs)
    for t, gs in enumerate(grads):
        for p, q, g in zip(ours, theirs, gs):
            p.grad = disttorch.tensor(g * grad_scale)
            q.grad = torch.tensor(g * grad_scale)
        opt.step()
        ref.step()
        assert_close(ours, theirs, f"{name}{kwargs} step {t}")
    return opt, ref, ours, theirs
