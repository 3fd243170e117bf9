"""SGD and Adam/AdamW through MKL's fused passes (disttorch/optim/_fused.py) against PyTorch, against
disttorch's own NumPy passes, and split over two intra-op threads against one.

Parameters are large enough for MKL (``_vector.MIN_ELEMENTS``) plus one small one that keeps the
NumPy path, every option the fused path handles is covered, and each run checks that the fused
path really ran. Measured on this machine (Xeon, AVX-512, MKL 2026.2, PyTorch 2.13 on one thread),
10 steps, the two large parameters: SGD through MKL equals PyTorch bit for bit in every case below
(its ``add(alpha=)`` and MKL's axpy/axpby are the same fused multiply-adds), where the NumPy path
differs in 32-50% of the elements by up to 5 ulp of max(|p|, 1). Adam/AdamW through MKL differ
from PyTorch in 11-13% of float32 elements (8-10% in float64) by at most 2 ulp of max(|p|, 1)
(3 in one float64 case): an axpby for ``lerp``, ``vSqr`` + axpby for ``addcmul``, a multiplication
by ``1/sqrt(bc2)`` where PyTorch divides. The NumPy path: 6% of the elements, at most 2 ulp.
"""
from __future__ import annotations

import numpy as np
import pytest

import disttorch
import disttorch.optim as doptim
from disttorch import _gemm, _threads, _vector
from disttorch.optim import _fused

torch = pytest.importorskip("torch", reason="PyTorch is the reference for optimizer parity")

needs_mkl = pytest.mark.skipif(not _gemm.mkl_available(),
                               reason="the mkl wheel is not installed (pip install disttorch[mkl])")

SHAPES = [(150, 120), (_vector.MIN_ELEMENTS + 77,), (7,)]  # two through MKL, one small one through NumPy
# float32: the parameters are O(1), so an ulp of theirs is ~1e-7; float64: ~2e-16
TOLERANCES = {np.float32: dict(rtol=1e-6, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-12)}

SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.1, weight_decay=0.05, maximize=True),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01),
    dict(lr=0.1, momentum=0.9, nesterov=True),
    dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1),
    dict(lr=0.1, momentum=0.5, maximize=True),
    dict(lr=0.1, momentum=0.5, dampening=0.5, nesterov=False, maximize=True, weight_decay=0.1),
    dict(lr=0.1, momentum=0.5, nesterov=True, maximize=True, weight_decay=0.1),
]
ADAM_CASES = [
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, maximize=True)),
    ("Adam", dict(lr=0.01, betas=(0.3, 0.9))),  # lerp weight above 0.5: PyTorch's other formula
    ("Adam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, maximize=True)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01, amsgrad=True, weight_decay=0.1, maximize=True)),
]
CASES = [("SGD", kw) for kw in SGD_CASES] + ADAM_CASES


def _problem(dtype, steps, shapes=SHAPES):
    rng = np.random.default_rng(0)
    inits = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(steps)]
    return inits, grads


def _run_ours(name, kwargs, inits, grads):
    params = [disttorch.tensor(a.copy(), requires_grad=True) for a in inits]
    opt = getattr(doptim, name)(params, **kwargs)
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = disttorch.tensor(g)
        opt.step()
    return [p.detach().numpy() for p in params]


def _run_torch(name, kwargs, inits, grads):
    """PyTorch's trajectory, on one thread: with two, its result for the same inputs changes from
    process to process (Adam here: 2 outcomes in 30 runs, 3.2e-6 apart; one thread: 30 equal)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _torch_trajectory(name, kwargs, inits, grads)
    finally:
        torch.set_num_threads(previous)


def _torch_trajectory(name, kwargs, inits, grads):
    params = [torch.tensor(a.copy(), requires_grad=True) for a in inits]
    opt = getattr(torch.optim, name)(params, **kwargs)
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = torch.tensor(g)
        opt.step()
    return [p.detach().numpy() for p in params]


@pytest.fixture
def fused_calls(monkeypatch):
    """Counts the fused updates that run (a parity test must not pass on the NumPy path alone)."""
    calls = []
    for fn in ("sgd_chunk", "adam_chunk"):
        original = getattr(_fused, fn)

        def counted(*args, _original=original, **kwargs):
            calls.append(args[1].size)
            return _original(*args, **kwargs)

        monkeypatch.setattr(_fused, fn, counted)
    return calls


@needs_mkl
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_fused_update_matches_pytorch_over_10_steps(name, kwargs, dtype, fused_calls):
    inits, grads = _problem(dtype, steps=10)
    ours = _run_ours(name, kwargs, inits, grads)
    theirs = _run_torch(name, kwargs, inits, grads)
    assert sorted(set(fused_calls)) == sorted(a.size for a in inits[:2])  # the small one kept NumPy
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a.dtype == b.dtype == dtype
        np.testing.assert_allclose(a, b, **TOLERANCES[dtype], err_msg=f"param {i}")


@needs_mkl
@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_fused_update_matches_the_numpy_path(name, kwargs, monkeypatch):
    inits, grads = _problem(np.float32, steps=10)
    fused = _run_ours(name, kwargs, inits, grads)
    monkeypatch.setenv("DISTTORCH_BLAS", "numpy")
    _gemm._reset_for_tests()
    try:
        plain = _run_ours(name, kwargs, inits, grads)
    finally:
        monkeypatch.undo()
        _gemm._reset_for_tests()
    for i, (a, b) in enumerate(zip(fused, plain)):
        np.testing.assert_allclose(a, b, **TOLERANCES[np.float32], err_msg=f"param {i}")


@needs_mkl
@pytest.mark.parametrize("name,kwargs", [("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)),
                                         ("Adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
                                         ("AdamW", dict(lr=0.01, maximize=True))])
def test_two_intra_op_threads_give_one_threads_bits(name, kwargs, fused_calls):
    """The update is split into chunks on ALIGN boundaries, each chunk's MKL calls on its own thread."""
    shapes = [(1024 * 640 + 13,)]  # above _intra_op.MIN_ELEMENTS: two chunks, the second with a ragged tail
    inits, grads = _problem(np.float32, steps=3, shapes=shapes)
    previous = _threads.get_num_threads()
    try:
        _threads.set_num_threads(1)
        one = _run_ours(name, kwargs, inits, grads)
        _threads.set_num_threads(2)
        two = _run_ours(name, kwargs, inits, grads)
    finally:
        _threads.set_num_threads(previous)
    np.testing.assert_array_equal(two[0], one[0])
    assert shapes[0][0] in fused_calls and any(n < shapes[0][0] for n in fused_calls)  # whole, then in chunks


@needs_mkl
def test_the_gradient_is_never_written():
    inits, grads = _problem(np.float32, steps=2, shapes=SHAPES[:1])
    for name, kwargs in [("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1, maximize=True)),
                         ("Adam", dict(lr=0.01, weight_decay=0.1, maximize=True))]:
        p = disttorch.tensor(inits[0].copy(), requires_grad=True)
        opt = getattr(doptim, name)([p], **kwargs)
        for g in grads[0], grads[1]:
            p.grad = disttorch.tensor(g.copy())
            opt.step()
            np.testing.assert_array_equal(p.grad.numpy(), g)


@needs_mkl
@pytest.mark.parametrize("name,kwargs", [("SGD", dict(lr=0.1, momentum=0.9, dampening=1.0)),
                                         ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)),
                                         ("Adam", dict(lr=0.01, amsgrad=True)),
                                         ("AdamW", dict(lr=0.01, maximize=True))])
def test_inf_and_nan_gradients_spread_as_in_pytorch(name, kwargs, fused_calls):
    """MKL's routines read every operand even where a coefficient is 0 (dampening 1): an inf
    gradient still makes NaN, as PyTorch's fused multiply-add does."""
    shapes = SHAPES[1:2]
    inits, grads = _problem(np.float32, steps=3, shapes=shapes)
    grads[1][0][:4] = [np.inf, -np.inf, np.nan, 0.0]
    ours = _run_ours(name, kwargs, inits, grads)
    theirs = _run_torch(name, kwargs, inits, grads)
    assert fused_calls
    assert np.isnan(theirs[0][:3]).any()
    np.testing.assert_array_equal(np.isnan(ours[0]), np.isnan(theirs[0]))
    np.testing.assert_allclose(ours[0], theirs[0], **TOLERANCES[np.float32])
