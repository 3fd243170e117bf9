"""Every op of the CPU suites' tables runs on a CUDA device (the strict CuPy stand-in) and matches the host:
forward values, first gradients and, where the table asks, second gradients (the ``create_graph`` path),
with every result and gradient staying on the device."""
from __future__ import annotations

import numpy as np
import pytest

import disttorch
from _on_device import OnDevice, assert_same

import test_index
import test_linalg
import test_pointwise
import test_reduce
import test_shape
from _optable import _diff, arrays

CASES = [c for mod in (test_pointwise, test_reduce, test_shape, test_index, test_linalg) for c in mod.CASES]
FORWARD = [(f[0], f[1], f[2:]) for mod in (test_pointwise, test_reduce, test_shape, test_index, test_linalg)
           for f in mod.FORWARD]


def _run(M, case, arrs, w):
    """One case in namespace ``M``: output, first gradients (with graph when needed), second gradients."""
    xs = [M.tensor(a.astype(np.float32), requires_grad=_diff(case, i)) for i, a in enumerate(arrs)]
    out = case.fn(M, *xs)
    diff = [x for i, x in enumerate(xs) if _diff(case, i)]
    loss = (out * M.tensor(w)).sum()
    grads = disttorch.autograd.grad(loss, diff, create_graph=case.gradgrad, allow_unused=True)
    second = None
    if case.gradgrad and any(g is not None and g.requires_grad for g in grads):
        rng = np.random.default_rng(7)
        total = sum((g * M.tensor(rng.uniform(-1, 1, tuple(g.shape)).astype(np.float32))).sum()
                    for g in grads if g is not None and g.requires_grad)
        second = disttorch.autograd.grad(total, diff, allow_unused=True)
    return out, grads, second


@pytest.mark.parametrize("case", CASES, ids=str)
def test_op_forward_backward_on_device(gpu, case):
    arrs = arrays(case)
    ref = case.fn(disttorch, *[disttorch.tensor(a.astype(np.float32)) for a in arrs])
    w = np.random.default_rng(3).uniform(-1, 1, tuple(ref.shape)).astype(np.float32)
    want = _run(disttorch, case, arrs, w)
    got = _run(OnDevice("cuda"), case, arrs, w)
    for part, g, h in zip(("forward", "grad", "second-order grad"), got, want):
        assert_same(g, h, "cuda:0", rtol=max(case.rtol, 1e-5), atol=max(case.atol, 1e-6) * 10, what=f"{case} {part}")
    if got[0].grad_fn is not None:
        assert type(got[0].grad_fn).__name__ == type(want[0].grad_fn).__name__


@pytest.mark.parametrize("name,fn,arrs", FORWARD, ids=[f[0] for f in FORWARD])
def test_op_forward_semantics_on_device(gpu, name, fn, arrs):
    want = fn(disttorch, *[disttorch.tensor(a) for a in arrs])
    got = fn(OnDevice("cuda"), *[disttorch.tensor(a, device="cuda") for a in arrs])
    assert_same(got, want, "cuda:0", what=name)
