"""One table row per differentiable op drives three checks (used by tests/ops/test_*.py):

- ``check_gradcheck``: float64 central differences through ``disttorch.autograd.gradcheck``
  (and ``gradgradcheck`` for second derivatives, which runs the create_graph path);
- ``check_parity``: forward values, dtype, shape, grad_fn name and first and second gradients
  against PyTorch in float32 (rtol 1e-5, atol 1e-6 unless the row says otherwise).

A row's ``fn(M, *xs)`` is written once against the torch API and called with ``M`` = disttorch or
torch, so both libraries run literally the same expression.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

import disttorch


@dataclass
class Case:
    name: str
    fn: object  # fn(M, *tensors) -> tensor
    inputs: list  # [(shape, domain)]
    rtol: float = 1e-5
    atol: float = 1e-6
    gradgrad: bool = True  # second derivatives are smooth at the sampled points
    grad_fn: bool = True  # compare type(out.grad_fn).__name__ with torch
    edges: bool = True  # and the names of its next_functions
    diff: tuple = None  # which inputs require grad (default: all)
    extra: dict = field(default_factory=dict)

    def __str__(self):
        return self.name


def _distinct(rng, shape):
    n = int(np.prod(shape)) if shape else 1
    vals = (rng.permutation(n) - n / 2) * 0.4 + rng.uniform(-0.05, 0.05, n)
    return vals.reshape(shape)


def make_array(rng, shape, domain):
    if domain == "any":
        return rng.uniform(-2.0, 2.0, shape)
    if domain == "pos":
        return rng.uniform(0.5, 2.0, shape)
    if domain == "unit":
        return rng.uniform(-0.8, 0.8, shape)
    if domain == "nonzero":
        return rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)
    if domain == "distinct":
        return _distinct(rng, shape)
    if domain == "frac":  # away from integers, for floor/ceil/round/remainder
        return rng.integers(-3, 3, shape) + rng.uniform(0.2, 0.4, shape)
    if domain == "invertible":
        n = shape[-1]
        return rng.uniform(-1.0, 1.0, shape) + 3 * np.eye(n)
    raise ValueError(domain)


def arrays(case, seed=0):
    rng = np.random.default_rng(seed)
    return [np.asarray(make_array(rng, shape, dom)) for shape, dom in case.inputs]


def _diff(case, i):
    return case.diff is None or i in case.diff


def check_gradcheck(case):
    xs = [disttorch.tensor(a, dtype=disttorch.float64, requires_grad=_diff(case, i))
          for i, a in enumerate(arrays(case))]
    assert disttorch.autograd.gradcheck(lambda *t: case.fn(disttorch, *t), xs, eps=1e-6, atol=1e-5, rtol=1e-4)


def check_gradgradcheck(case):
    xs = [disttorch.tensor(a, dtype=disttorch.float64, requires_grad=_diff(case, i))
          for i, a in enumerate(arrays(case))]
    assert disttorch.autograd.gradgradcheck(lambda *t: case.fn(disttorch, *t), xs, eps=1e-6, atol=1e-5, rtol=1e-4)


def _run(M, case, arrs, w):
    xs = [M.tensor(a.astype(np.float32), requires_grad=_diff(case, i)) for i, a in enumerate(arrs)]
    out = case.fn(M, *xs)
    diff = [x for i, x in enumerate(xs) if _diff(case, i)]
    loss = (out * M.tensor(w)).sum()
    grads = M.autograd.grad(loss, diff, create_graph=case.gradgrad, allow_unused=True)
    second = None
    if case.gradgrad and any(g is not None and g.requires_grad for g in grads):
        rng = np.random.default_rng(7)
        total = sum((g * M.tensor(rng.uniform(-1, 1, tuple(g.shape)).astype(np.float32))).sum()
                    for g in grads if g is not None and g.requires_grad)
        second = M.autograd.grad(total, diff, allow_unused=True)
    return out, grads, second


def _np(t):
    if t is None:
        return None
    if getattr(t, "_is_zerotensor", lambda: False)():  # torch's symbolic zero gradients
        return np.zeros(tuple(t.shape), np.float32)
    return t.detach().numpy()


def check_parity(case, torch):
    arrs = arrays(case)
    ref_out = case.fn(torch, *[torch.tensor(a.astype(np.float32)) for a in arrs])
    w = np.random.default_rng(3).uniform(-1, 1, tuple(ref_out.shape)).astype(np.float32)
    out, grads, second = _run(disttorch, case, arrs, w)
    t_out, t_grads, t_second = _run(torch, case, arrs, w)
    assert tuple(out.shape) == tuple(t_out.shape), case.name
    assert str(out.dtype).split(".")[-1] == str(t_out.dtype).split(".")[-1], case.name
    np.testing.assert_allclose(_np(out), _np(t_out), rtol=case.rtol, atol=case.atol, err_msg=f"{case.name} forward")
    if case.grad_fn:
        assert type(out.grad_fn).__name__ == type(t_out.grad_fn).__name__, case.name
    if case.grad_fn and case.edges:
        # PyTorch also lists (None, 0) edges for Python-number operands; compare the real edges
        names = [type(n).__name__ for n, _ in out.grad_fn.next_functions if n is not None]
        t_names = [type(n).__name__ for n, _ in t_out.grad_fn.next_functions if n is not None]
        assert names == t_names, (names, t_names)
    for i, (g, tg) in enumerate(zip(grads, t_grads)):
        assert (g is None) == (tg is None) or _np(g if g is not None else tg).max(initial=0) == 0
        if g is not None and tg is not None:
            assert tuple(g.shape) == tuple(tg.shape)
            np.testing.assert_allclose(_np(g), _np(tg), rtol=case.rtol, atol=case.atol * 10,
                                       err_msg=f"{case.name} grad {i}")
    if t_second is not None or second is not None:
        for i in range(len(grads)):
            gv = _np(second[i]) if second is not None and second[i] is not None else np.zeros(1, np.float32)
            tv = _np(t_second[i]) if t_second is not None and t_second[i] is not None else np.zeros(1, np.float32)
            shape = np.broadcast_shapes(gv.shape, tv.shape)
            np.testing.assert_allclose(np.broadcast_to(gv, shape), np.broadcast_to(tv, shape),
                                       rtol=max(case.rtol, 1e-4), atol=max(case.atol, 1e-5) * 10,
                                       err_msg=f"{case.name} second-order grad {i}")


def table_tests(cases):
    """The three tests of an op table, for a test module to bind to ``test_*`` names: gradcheck,
    gradgradcheck (the rows with ``gradgrad``) and parity with PyTorch."""

    @pytest.mark.parametrize("case", cases, ids=str)
    def test_gradcheck(case):
        check_gradcheck(case)

    @pytest.mark.parametrize("case", [c for c in cases if c.gradgrad], ids=str)
    def test_gradgradcheck(case):
        check_gradgradcheck(case)

    @pytest.mark.parametrize("case", cases, ids=str)
    def test_parity_with_torch(case):
        torch = pytest.importorskip("torch", reason="PyTorch is the reference for parity tests")
        check_parity(case, torch)

    return test_gradcheck, test_gradgradcheck, test_parity_with_torch


def _leaves(r):
    if isinstance(r, (tuple, list)):
        out = []
        for x in r:
            out.extend(_leaves(x))
        return out
    return [r]


def check_forward_parity(fn, torch, *arrays):
    """Runs ``fn(M, *tensors)`` in both libraries; every output (tuples flattened) must agree in type,
    dtype, shape and values (NaN equal to NaN)."""
    got = _leaves(fn(disttorch, *[disttorch.tensor(a) for a in arrays]))
    want = _leaves(fn(torch, *[torch.tensor(a) for a in arrays]))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if not hasattr(w, "dtype"):
            assert g == w or (isinstance(w, float) and np.isclose(g, w)), (g, w)
            continue
        assert str(g.dtype).split(".")[-1] == str(w.dtype).split(".")[-1], (g.dtype, w.dtype)
        assert tuple(g.shape) == tuple(w.shape), (g.shape, w.shape)
        np.testing.assert_allclose(g.detach().numpy().astype(np.float64), w.detach().numpy().astype(np.float64),
                                   rtol=1e-5, atol=1e-6, equal_nan=True)


def check_same_error(fn, torch, exc=Exception):
    """Both libraries raise the same exception type with the same text."""
    msgs = []
    for M in (disttorch, torch):
        try:
            fn(M)
        except exc as e:
            msgs.append((type(e).__name__, str(e).replace("disttorch.", "torch.")))
        else:
            msgs.append(None)
    assert msgs[0] == msgs[1], msgs


def check_gradient_aliasing(case, torch):
    """The op applied twice to the same leaves, each result reduced two ways: ``sum()`` hands the op a
    read-only broadcast gradient, a weighted sum a writable one. A backward that returns the incoming
    gradient (or views of it) while claiming fresh arrays lets the engine add into memory it does not
    own: an error on the read-only one, wrong totals on the other. Gradients must match PyTorch's."""
    arrs = arrays(case)
    got = []
    for M in (disttorch, torch):
        xs = [M.tensor(a.astype(np.float32), requires_grad=_diff(case, i)) for i, a in enumerate(arrs)]
        first, second = case.fn(M, *xs), case.fn(M, *xs)
        if isinstance(first, (tuple, list)):
            first, second = first[0], second[0]
        w = M.tensor(np.random.default_rng(5).uniform(-1, 1, tuple(first.shape)).astype(np.float32))
        (first.sum() + (second * w).sum()).backward()
        got.append([None if x.grad is None else _np(x.grad) for x in xs])
    for i, (g, t) in enumerate(zip(*got)):
        if g is not None and t is not None:
            np.testing.assert_allclose(g, t, rtol=max(case.rtol, 1e-5), atol=case.atol * 10,
                                       err_msg=f"{case.name} grad {i}")
