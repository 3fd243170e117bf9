"""Reductions: finite-difference gradients, PyTorch parity, dim/keepdim, indices, dtypes and errors."""
from __future__ import annotations

import numpy as np
import pytest

import disttorch
from _optable import Case, table_tests

S = (2, 3, 4)

CASES = [
    Case("sum", lambda M, x: x.sum(), [(S, "any")]),
    Case("sum_dim", lambda M, x: M.sum(x, 1), [(S, "any")]),
    Case("sum_dims_keepdim", lambda M, x: x.sum((0, -1), keepdim=True), [(S, "any")]),
    Case("mean", lambda M, x: x.mean(), [(S, "any")]),
    Case("mean_dim", lambda M, x: M.mean(x, -1, keepdim=True), [(S, "any")]),
    Case("mean_dims", lambda M, x: x.mean(dim=(0, 2)), [(S, "any")]),
    Case("prod", lambda M, x: x.prod(), [((2, 3), "pos")]),
    Case("prod_dim", lambda M, x: M.prod(x, 1), [(S, "nonzero")]),
    Case("prod_dim_keepdim", lambda M, x: x.prod(0, keepdim=True), [(S, "nonzero")]),
    Case("max_all", lambda M, x: x.max(), [(S, "distinct")]),
    Case("min_all", lambda M, x: M.min(x), [(S, "distinct")]),
    Case("max_dim", lambda M, x: M.max(x, 1)[0], [(S, "distinct")]),
    Case("max_dim_keepdim", lambda M, x: x.max(dim=-1, keepdim=True).values, [(S, "distinct")]),
    Case("min_dim", lambda M, x: x.min(0)[0], [(S, "distinct")]),
    Case("amax", lambda M, x: M.amax(x, (0, 2)), [(S, "distinct")]),
    Case("amin", lambda M, x: x.amin(1, keepdim=True), [(S, "distinct")]),
    Case("var", lambda M, x: x.var(), [(S, "any")]),
    Case("var_dim", lambda M, x: M.var(x, 1, keepdim=True), [(S, "any")]),
    Case("var_correction0", lambda M, x: x.var(dim=(0, 2), correction=0), [(S, "any")]),
    Case("var_unbiased_false", lambda M, x: M.var(x, 2, unbiased=False), [(S, "any")]),
    Case("std", lambda M, x: x.std(), [(S, "any")]),
    Case("std_dim", lambda M, x: M.std(x, -1, correction=2), [(S, "any")]),
    Case("norm", lambda M, x: x.norm(), [(S, "any")]),
    Case("norm_p1_dim", lambda M, x: M.norm(x, 1, dim=1), [(S, "nonzero")]),
    Case("norm_p3", lambda M, x: x.norm(p=3, dim=(0, 1)), [(S, "nonzero")]),
    Case("norm_inf", lambda M, x: x.norm(p=float("inf"), dim=-1), [(S, "distinct")], gradgrad=False),
    Case("vector_norm", lambda M, x: M.linalg.vector_norm(x, 2, dim=-1, keepdim=True), [(S, "any")]),
    Case("logsumexp", lambda M, x: M.logsumexp(x, 1), [(S, "any")]),
    Case("logsumexp_keepdim", lambda M, x: x.logsumexp((0, 2), keepdim=True), [(S, "any")]),
    Case("softmax", lambda M, x: M.softmax(x, -1), [(S, "any")]),
    Case("softmax_dim0", lambda M, x: x.softmax(0), [(S, "any")]),
    Case("log_softmax", lambda M, x: M.log_softmax(x, 1), [(S, "any")]),
    Case("cumsum", lambda M, x: M.cumsum(x, 1), [(S, "any")]),
    Case("cumsum_neg", lambda M, x: x.cumsum(-1), [(S, "any")]),
    Case("cumprod", lambda M, x: M.cumprod(x, 2), [(S, "nonzero")]),
    Case("median_dim", lambda M, x: M.median(x, 1)[0], [(S, "distinct")]),
    Case("median_all", lambda M, x: x.median(), [((3, 3), "distinct")]),
    Case("kthvalue", lambda M, x: M.kthvalue(x, 2, 1)[0], [(S, "distinct")]),
]


test_gradcheck, test_gradgradcheck, test_parity_with_torch = table_tests(CASES)


# ---- forward semantics --------------------------------------------------------------------------------
from _optable import check_forward_parity, check_same_error  # noqa: E402

M3 = np.array([[[3.0, 1.0, 4.0, 1.0], [5.0, 9.0, 2.0, 6.0], [5.0, 3.0, 5.0, 8.0]],
               [[9.0, 7.0, 9.0, 3.0], [2.0, 3.0, 8.0, 4.0], [6.0, 2.0, 6.0, 4.0]]], np.float32)
I2 = np.array([[3, -1, 4], [1, 5, -9]], np.int64)
B2 = np.array([[True, False, True], [True, True, True]])

FORWARD = [
    ("max_dim_indices", lambda M, x: M.max(x, 1), M3),
    ("max_keepdim", lambda M, x: x.max(-1, keepdim=True), M3),
    ("min_dim_indices", lambda M, x: x.min(dim=0), M3),
    ("max_int", lambda M, x: (x.max(), x.max(1), x.min(0)), I2),
    ("argmax", lambda M, x: (x.argmax(), M.argmax(x, 1), x.argmax(dim=2, keepdim=True)), M3),
    ("argmin", lambda M, x: (M.argmin(x), x.argmin(0), x.argmin(-1, True)), M3),
    ("amax_amin", lambda M, x: (x.amax(), M.amax(x, (0, 2)), x.amin(1, keepdim=True)), M3),
    ("aminmax", lambda M, x: tuple(M.aminmax(x, dim=1)), M3),
    ("sum_int_bool", lambda M, x: (x.sum(), x.sum(0), (x > 0).sum(), (x > 0).sum(1)), I2),
    ("sum_dtype", lambda M, x: (x.sum(dtype=M.float64), M.sum(x, 1, dtype=M.float64)), I2),
    ("mean_dims", lambda M, x: (x.mean(), x.mean((0, 1)), M.mean(x, -1, True), x.mean(dtype=M.float64)), M3),
    ("mean_int_dtype", lambda M, x: x.mean(dtype=M.float32), I2),
    ("prod", lambda M, x: (x.prod(), x.prod(1), M.prod(x, 0, keepdim=True)), I2),
    ("prod_float_with_zero", lambda M, x: (x * (x > 2)).prod(1), M3),
    ("var_std", lambda M, x: (x.var(), x.std(1), M.var(x, (0, 2), correction=0), x.std(unbiased=False),
                              M.std(x, 2, keepdim=True, correction=2)), M3),
    ("var_mean", lambda M, x: (M.var_mean(x, 1), M.std_mean(x, 0, correction=0)), M3),
    ("norm", lambda M, x: (x.norm(), x.norm(1), x.norm(float("inf")), x.norm(p=2, dim=1), x.norm(0), x.norm(3, (0, 2)),
                           M.linalg.vector_norm(x, float("-inf"), dim=-1)), M3),
    ("logsumexp", lambda M, x: (M.logsumexp(x, 1), x.logsumexp((0, 2), keepdim=True), M.logsumexp(x * 100, 2)), M3),
    ("logsumexp_neg_inf", lambda M, x: M.logsumexp(M.log(x * 0), 1), M3),
    ("softmax_large", lambda M, x: (M.softmax(x * 1000, 2), M.log_softmax(x * 1000, 1), x.softmax(dim=0)), M3),
    ("softmax_dtype", lambda M, x: M.softmax(x, 1, dtype=M.float64), I2),
    ("cumsum_cumprod", lambda M, x: (x.cumsum(0), M.cumsum(x, -1), x.cumprod(1), M.cumsum(x, 0, dtype=M.float32)), I2),
    ("cumsum_bool", lambda M, x: x.cumsum(1), B2),
    ("all_any", lambda M, x: (x.all(), x.any(), M.all(x, 1), x.any(0, keepdim=True), (x > 4).any(), M.all(x > -10)),
     I2),
    ("all_any_bool", lambda M, x: (x.all(1), x.any(1), M.all(x), M.any(~x)), B2),
    ("count_nonzero", lambda M, x: (M.count_nonzero(x), M.count_nonzero(x, 1)), I2),
    ("median_odd", lambda M, x: (x.median(), x.median(1), M.median(x, 0, keepdim=True)), I2),
    ("kthvalue", lambda M, x: (x.kthvalue(2), M.kthvalue(x, 1, 0, keepdim=True)), I2),
    ("empty_sum_mean", lambda M, x: (x[:0].sum(), x[:0].sum(0), x[:0].mean(), x[:, :0].amax(0)), M3),
]


@pytest.mark.parametrize("name,fn,arr", FORWARD, ids=[f[0] for f in FORWARD])
def test_forward_matches_torch(name, fn, arr):
    torch = pytest.importorskip("torch", reason="PyTorch is the reference for forward values")
    check_forward_parity(fn, torch, arr)


def test_reduction_literals():
    x = disttorch.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 7.0]])
    v, i = x.max(1)
    assert v.tolist() == [5.0, 7.0] and i.tolist() == [1, 0] and i.dtype is disttorch.int64
    r = disttorch.min(x, 0, keepdim=True)
    assert r.values.tolist() == [[1.0, 0.0, 2.0]] and r.indices.tolist() == [[0, 1, 0]]
    assert type(r).__name__ == "min" and r._fields == ("values", "indices")
    assert x.argmax().item() == 3 and x.sum((0, 1)).item() == 22.0
    assert x.var(1, correction=0).tolist() == pytest.approx([2.8888888, 10.888888])
    assert x.std().item() == pytest.approx(float(np.std(x.numpy(), ddof=1)))
    assert disttorch.tensor([1, 2, 3]).sum().dtype is disttorch.int64
    assert disttorch.tensor([True, True, False]).sum().item() == 2
    assert disttorch.tensor([[True, False]]).all(1).tolist() == [False]
    assert disttorch.logsumexp(disttorch.tensor([0.0, 0.0]), 0).item() == pytest.approx(np.log(2))
    s = disttorch.softmax(disttorch.tensor([1000.0, 0.0]), 0)
    assert s.tolist() == [1.0, 0.0]
    assert disttorch.tensor([3.0, 1.0, 2.0]).median().item() == 2.0
    assert disttorch.tensor([4.0, 1.0, 3.0, 2.0]).median().item() == 2.0  # the lower of the two middle values


@pytest.mark.parametrize("fn,exc,msg", [
    (lambda: disttorch.ones(2, 3).sum(2), IndexError,
     "Dimension out of range (expected to be in range of [-2, 1], but got 2)"),
    (lambda: disttorch.ones(2, 3).max(-3), IndexError,
     "Dimension out of range (expected to be in range of [-2, 1], but got -3)"),
    (lambda: disttorch.tensor([1, 2]).mean(), RuntimeError,
     "mean(): could not infer output dtype. Input dtype must be either a floating point or complex dtype. Got: Long"),
    (lambda: disttorch.tensor([1, 2]).softmax(0), RuntimeError,
     "\"softmax_lastdim_kernel_impl\" not implemented for 'Long'"),
    (lambda: disttorch.ones(0).max(), RuntimeError,
     "max(): Expected reduction dim to be specified for input.numel() == 0. Specify the reduction dim with the 'dim' "
     "argument."),
    (lambda: disttorch.ones(2, 3).kthvalue(4), RuntimeError,
     "kthvalue(): selected number k out of range for dimension 1"),
])
def test_errors(fn, exc, msg):
    with pytest.raises(exc) as e:
        fn()
    assert str(e.value) == msg


def test_error_texts_are_torchs():
    torch = pytest.importorskip("torch", reason="PyTorch is the reference for error texts")
    for fn in (lambda M: M.ones(2, 3).sum(2), lambda M: M.ones(2, 3).max(-3), lambda M: M.tensor([1, 2]).mean(),
               lambda M: M.tensor([1, 2]).softmax(0), lambda M: M.ones(0).max(),
               lambda M: M.ones(2, 3).kthvalue(4), lambda M: M.ones(2, 3).std(5), lambda M: M.tensor([1, 2]).var(),
               lambda M: M.tensor([1, 2]).std(0), lambda M: M.tensor([1, 2]).norm()):
        check_same_error(fn, torch)


def test_cumprod_gradient_with_zeros_in_the_input():
    # d cumprod / dx divided by x gave nan where x == 0; the scan needs no division
    vals = [[1.0, 0.0, 2.0, 3.0], [0.0, 0.0, 1.0, 2.0], [2.0, 3.0, 0.5, 0.0]]
    for dim in (0, 1):
        x = disttorch.tensor(vals, dtype=disttorch.float64, requires_grad=True)
        assert disttorch.autograd.gradcheck(lambda t: t.cumprod(dim), (x,), eps=1e-6, atol=1e-6)
    torch = pytest.importorskip("torch", reason="PyTorch not installed: parity half skipped")
    for dim in (0, 1):
        grads = []
        for M in (disttorch, torch):
            x = M.tensor(vals, dtype=M.float64, requires_grad=True)
            y = x.cumprod(dim)
            (y * M.arange(12.0, dtype=M.float64).view(3, 4)).sum().backward()
            grads.append(np.asarray(x.grad.tolist()))
        np.testing.assert_allclose(grads[0], grads[1], rtol=1e-12)


def test_std_gradient_is_zero_where_the_std_is_zero_as_in_pytorch():
    x = disttorch.zeros(3, 4, dtype=disttorch.float64, requires_grad=True)
    x.std(1).sum().backward()  # 0 / 0 would give nan
    assert x.grad.tolist() == [[0.0] * 4] * 3
    y = disttorch.tensor([[1.0, 1.0], [1.0, 3.0]], dtype=disttorch.float64, requires_grad=True)
    y.std(1).sum().backward()
    np.testing.assert_allclose(y.grad.tolist(), [[0.0, 0.0], [-0.5 ** 0.5, 0.5 ** 0.5]], rtol=1e-12)
