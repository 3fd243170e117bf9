"""Elementwise ops: finite-difference gradients, PyTorch parity, rounding modes, out=, in-place variants."""
from __future__ import annotations

import numpy as np
import pytest

import disttorch
from _optable import Case, table_tests

S = (2, 3)

CASES = [
    # binary arithmetic, with broadcasting
    Case("add", lambda M, a, b: M.add(a, b), [(S, "any"), ((3,), "any")]),
    Case("add_alpha", lambda M, a, b: M.add(a, b, alpha=2.5), [(S, "any"), ((1, 3), "any")]),
    Case("add_scalar", lambda M, a: a + 1.5, [(S, "any")]),
    Case("radd_scalar", lambda M, a: 2 + a, [(S, "any")]),
    Case("sub", lambda M, a, b: a - b, [((2, 1), "any"), (S, "any")]),
    Case("sub_alpha", lambda M, a, b: M.sub(a, b, alpha=3), [(S, "any"), (S, "any")]),
    Case("rsub_scalar", lambda M, a: 2.0 - a, [(S, "any")]),
    Case("rsub_fn", lambda M, a, b: M.rsub(a, b), [(S, "any"), (S, "any")]),
    Case("mul", lambda M, a, b: a * b, [(S, "any"), ((3,), "any")]),
    Case("mul_scalar", lambda M, a: a * 3.0, [(S, "any")]),
    Case("rmul_scalar", lambda M, a: 3 * a, [(S, "any")]),
    Case("div", lambda M, a, b: a / b, [(S, "any"), ((3,), "nonzero")]),
    Case("div_scalar", lambda M, a: a / 4.0, [(S, "any")]),
    Case("rdiv_scalar", lambda M, a: 2.0 / a, [(S, "nonzero")]),
    Case("pow_2", lambda M, a: a ** 2, [(S, "any")]),
    Case("pow_3", lambda M, a: M.pow(a, 3), [(S, "any")]),
    Case("pow_half", lambda M, a: a ** 0.5, [(S, "pos")]),
    Case("pow_neg", lambda M, a: a ** -1.5, [(S, "pos")]),
    Case("pow_tensor", lambda M, a, b: a ** b, [(S, "pos"), ((3,), "any")]),
    Case("rpow_scalar", lambda M, a: 2.0 ** a, [(S, "any")]),
    Case("maximum", lambda M, a, b: M.maximum(a, b), [(S, "distinct"), (S, "distinct")]),
    Case("minimum", lambda M, a, b: M.minimum(a, b), [(S, "distinct"), ((3,), "distinct")]),
    Case("remainder_scalar", lambda M, a: M.remainder(a, 1.5), [(S, "frac")]),
    Case("remainder", lambda M, a, b: M.remainder(a, b), [(S, "frac"), (S, "frac")], grad_fn=True),
    Case("fmod_scalar", lambda M, a: M.fmod(a, 1.5), [(S, "frac")]),
    Case("fmod", lambda M, a, b: M.fmod(a, b), [(S, "frac"), (S, "frac")]),
    Case("div_floor", lambda M, a, b: M.div(a, b, rounding_mode="floor"), [(S, "frac"), (S, "frac")]),
    Case("div_trunc_scalar", lambda M, a: M.div(a, 0.7, rounding_mode="trunc"), [(S, "frac")]),
    Case("atan2", lambda M, a, b: M.atan2(a, b), [(S, "nonzero"), (S, "nonzero")]),
    Case("hypot", lambda M, a, b: M.hypot(a, b), [(S, "nonzero"), ((3,), "nonzero")]),
    Case("hypot_method", lambda M, a, b: a.hypot(b), [(S, "nonzero"), (S, "nonzero")]),
    Case("lerp", lambda M, a, b: M.lerp(a, b, 0.3), [(S, "any"), (S, "any")]),
    Case("where", lambda M, a, b: M.where(a > 0, a, b), [(S, "nonzero"), ((3,), "any")]),
    Case("where_scalar", lambda M, a: M.where(a > 0, a, 0.0), [(S, "nonzero")]),
    Case("clamp", lambda M, a: M.clamp(a, -0.5, 0.7), [(S, "frac")]),
    Case("clamp_min", lambda M, a: M.clamp_min(a, 0.1), [(S, "frac")]),
    Case("clamp_max", lambda M, a: a.clamp(max=0.1), [(S, "frac")]),
    Case("clamp_max_fn", lambda M, a: M.clamp_max(a, 0.1), [(S, "frac")]),
    Case("clamp_tensor", lambda M, a, lo: M.clamp(a, min=lo), [(S, "distinct"), ((3,), "distinct")], diff=(0,)),
    Case("masked_fill", lambda M, a: a.masked_fill(a > 0.5, -1.0), [(S, "distinct")]),
    Case("masked_fill_tensor", lambda M, a, v: a.masked_fill(a > 0.5, v), [(S, "distinct"), ((), "any")]),
    Case("to_double", lambda M, a: a.double() * 2, [(S, "any")], edges=False),
    Case("addcmul", lambda M, a, b, c: M.addcmul(a, b, c, value=0.5), [(S, "any"), (S, "any"), (S, "any")],
         grad_fn=False),
    Case("addcdiv", lambda M, a, b, c: M.addcdiv(a, b, c, value=2), [(S, "any"), (S, "any"), (S, "nonzero")],
         grad_fn=False),
    # unary math
    Case("neg", lambda M, a: -a, [(S, "any")]),
    Case("abs", lambda M, a: M.abs(a), [(S, "nonzero")]),
    Case("exp", lambda M, a: M.exp(a), [(S, "any")]),
    Case("exp2", lambda M, a: M.exp2(a), [(S, "any")]),
    Case("expm1", lambda M, a: M.expm1(a), [(S, "any")]),
    Case("log", lambda M, a: M.log(a), [(S, "pos")]),
    Case("log2", lambda M, a: M.log2(a), [(S, "pos")]),
    Case("log10", lambda M, a: M.log10(a), [(S, "pos")]),
    Case("log1p", lambda M, a: M.log1p(a), [(S, "pos")]),
    Case("sqrt", lambda M, a: M.sqrt(a), [(S, "pos")]),
    Case("rsqrt", lambda M, a: M.rsqrt(a), [(S, "pos")]),
    Case("sin", lambda M, a: M.sin(a), [(S, "any")]),
    Case("cos", lambda M, a: M.cos(a), [(S, "any")]),
    Case("tan", lambda M, a: M.tan(a), [(S, "unit")]),
    Case("tanh", lambda M, a: M.tanh(a), [(S, "any")]),
    Case("sinh", lambda M, a: M.sinh(a), [(S, "any")]),
    Case("cosh", lambda M, a: M.cosh(a), [(S, "any")]),
    Case("asin", lambda M, a: M.asin(a), [(S, "unit")]),
    Case("acos", lambda M, a: M.acos(a), [(S, "unit")]),
    Case("atan", lambda M, a: M.atan(a), [(S, "any")]),
    Case("sigmoid", lambda M, a: M.sigmoid(a), [(S, "any")]),
    Case("relu", lambda M, a: M.relu(a), [(S, "nonzero")]),
    Case("erf", lambda M, a: M.erf(a), [(S, "any")]),
    Case("reciprocal", lambda M, a: M.reciprocal(a), [(S, "nonzero")]),
    Case("square", lambda M, a: M.square(a), [(S, "any")], grad_fn=False),
    Case("sign", lambda M, a: M.sign(a), [(S, "nonzero")]),
    Case("floor", lambda M, a: M.floor(a), [(S, "frac")]),
    Case("ceil", lambda M, a: M.ceil(a), [(S, "frac")]),
    Case("round", lambda M, a: M.round(a), [(S, "frac")]),
    Case("trunc", lambda M, a: M.trunc(a), [(S, "frac")]),
    Case("frac", lambda M, a: M.frac(a), [(S, "frac")]),
]


test_gradcheck, test_gradgradcheck, test_parity_with_torch = table_tests(CASES)


# ---- forward semantics: rounding, integer ops, comparisons --------------------------------------
A = [-7.5, -7.0, -2.5, 0.0, 2.5, 7.0, 7.5]
B = [2.0, -2.0, 2.0, 3.0, -2.0, 2.0, -2.0]
IA = [-7, -7, 7, 7, 6, 0]
IB = [2, -2, -2, 2, 3, 5]

FORWARD = [
    ("div_trunc", lambda M, a, b: M.div(a, b, rounding_mode="trunc"), A, B),
    ("div_floor", lambda M, a, b: M.div(a, b, rounding_mode="floor"), A, B),
    ("div_trunc_int", lambda M, a, b: M.div(a, b, rounding_mode="trunc"), IA, IB),
    ("div_floor_int", lambda M, a, b: a.div(b, rounding_mode="floor"), IA, IB),
    ("div_int_true", lambda M, a, b: a / b, IA, IB),
    ("floor_divide", lambda M, a, b: M.floor_divide(a, b), A, B),
    ("floor_divide_op_int", lambda M, a, b: a // b, IA, IB),
    ("rfloordiv", lambda M, a, b: 7 // b, IA, IB),
    ("remainder", lambda M, a, b: M.remainder(a, b), A, B),
    ("remainder_int", lambda M, a, b: a % b, IA, IB),
    ("rmod_scalar", lambda M, a, b: 7 % b, IA, IB),
    ("fmod", lambda M, a, b: M.fmod(a, b), A, B),
    ("fmod_int", lambda M, a, b: M.fmod(a, b), IA, IB),
    ("pow_int", lambda M, a, b: a ** 2, IA, IB),
    ("pow_int_tensor", lambda M, a, b: M.pow(M.abs(a), M.abs(b)), IA, IB),
    ("abs_int", lambda M, a, b: M.abs(a), IA, IB),
    ("neg_int", lambda M, a, b: -a, IA, IB),
    ("sign_int", lambda M, a, b: a.sign(), IA, IB),
    ("exp_int", lambda M, a, b: M.exp(b), IA, IB),
    ("sqrt_int", lambda M, a, b: M.sqrt(M.abs(b)), IA, IB),
    ("sigmoid_int", lambda M, a, b: M.sigmoid(a), IA, IB),
    ("round_half_even", lambda M, a, b: M.round(a), [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5], B[:6]),
    ("round_decimals", lambda M, a, b: M.round(a * 1.2345, decimals=2), A, B),
    ("floor", lambda M, a, b: a.floor(), A, B),
    ("ceil", lambda M, a, b: a.ceil(), A, B),
    ("trunc", lambda M, a, b: a.trunc(), A, B),
    ("frac", lambda M, a, b: a.frac(), A, B),
    ("clamp_int_float_bound", lambda M, a, b: M.clamp(a, min=-2.5), IA, IB),
    ("clamp_int", lambda M, a, b: a.clamp(-3, 3), IA, IB),
    ("clamp_tensor_bounds", lambda M, a, b: M.clamp(a, min=b, max=b + 4.0), A, B),
    ("clamp_int_tensor_float_bound", lambda M, a, b: M.clamp(a, max=b * 0.5), IA, IB),
    ("clamp_int_tensor_bounds", lambda M, a, b: M.clamp(a, min=b), IA, IB),
    ("maximum_int_float", lambda M, a, b: M.maximum(a, b.float()), IA, IB),
    ("where_scalars", lambda M, a, b: M.where(a > b, 1.0, 0.0), A, B),
    ("where_int_float", lambda M, a, b: M.where(a > b, a, 0.5), IA, IB),
    ("eq", lambda M, a, b: a == b, A, B),
    ("ne_scalar", lambda M, a, b: a != 7.0, A, B),
    ("lt_bcast", lambda M, a, b: a[:, None] < b[:3], A, B),
    ("ge_int_float", lambda M, a, b: M.ge(a, 0.5), IA, IB),
    ("gt_reflected", lambda M, a, b: 0 > a, A, B),
    ("logical_and", lambda M, a, b: M.logical_and(a > 0, b > 0), A, B),
    ("logical_or", lambda M, a, b: (a > 0).logical_or(b > 0), A, B),
    ("logical_xor", lambda M, a, b: M.logical_xor(a, b), A, B),
    ("logical_not", lambda M, a, b: M.logical_not(a), A, B),
    ("invert_bool", lambda M, a, b: ~(a > 0), A, B),
    ("and_bool", lambda M, a, b: (a > 0) & (b > 0), A, B),
    ("or_bool", lambda M, a, b: (a > 0) | (b > 0), A, B),
    ("xor_int", lambda M, a, b: a ^ b, IA, IB),
    ("bitwise_and_int", lambda M, a, b: M.bitwise_and(a, b), IA, IB),
    ("invert_int", lambda M, a, b: ~a, IA, IB),
    ("isnan", lambda M, a, b: M.isnan(M.log(a)), A, B),
    ("isinf", lambda M, a, b: M.isinf(M.log(M.abs(a))), A, B),
    ("isfinite", lambda M, a, b: M.isfinite(a / 0.0), A, B),
    ("log_zero", lambda M, a, b: M.log(M.abs(a)), A, B),
    ("sigmoid_extreme", lambda M, a, b: M.sigmoid(a * 100), A, B),
    ("add_bool", lambda M, a, b: (a > 0) + (b > 0), A, B),
    ("mul_bool_int", lambda M, a, b: (a > 0) * b, IA, IB),
    ("sub_alpha_int", lambda M, a, b: M.sub(a, b, alpha=2), IA, IB),
    ("add_alpha_reflected", lambda M, a, b: M.add(3.0, b, alpha=2), A, B),
    ("lerp_tensor", lambda M, a, b: M.lerp(a, b, 0.25), A, B),
    ("atan2", lambda M, a, b: M.atan2(a, b), A, B),
    ("hypot", lambda M, a, b: M.hypot(a, b), A, B),
    ("square_int", lambda M, a, b: M.square(a), IA, IB),
    ("reciprocal_int", lambda M, a, b: M.reciprocal(b), IA, IB),
    ("rsub_scalar_int", lambda M, a, b: 1 - a, IA, IB),
    ("rtruediv_int", lambda M, a, b: 1 / b, IA, IB),
]


def _forward_result(M, fn, a, b):
    return fn(M, M.tensor(a), M.tensor(b))


@pytest.mark.parametrize("name,fn,a,b", FORWARD, ids=[f[0] for f in FORWARD])
def test_forward_matches_torch(name, fn, a, b):
    torch = pytest.importorskip("torch", reason="PyTorch is the reference for forward values")
    got = _forward_result(disttorch, fn, a, b)
    want = _forward_result(torch, fn, a, b)
    assert str(got.dtype).split(".")[-1] == str(want.dtype).split(".")[-1], name
    assert tuple(got.shape) == tuple(want.shape)
    np.testing.assert_allclose(got.numpy().astype(np.float64), want.numpy().astype(np.float64), rtol=1e-6,
                               atol=1e-7, equal_nan=True)


def test_hypot_refuses_integers_as_pytorch():
    with pytest.raises(NotImplementedError, match="\"hypot_cpu\" not implemented for 'Long'"):
        disttorch.hypot(disttorch.tensor([3, 4]), disttorch.tensor([4, 3]))
    np.testing.assert_allclose(disttorch.hypot(disttorch.tensor([3.0, 4.0]), disttorch.tensor([4, 3])).numpy(), [5.0, 5.0])


def test_rounding_literals():
    a = disttorch.tensor([-7, 7, -7, 7])
    b = disttorch.tensor([2, -2, -2, 2])
    assert disttorch.div(a, b, rounding_mode="trunc").tolist() == [-3, -3, 3, 3]
    assert disttorch.div(a, b, rounding_mode="floor").tolist() == [-4, -4, 3, 3]
    assert (a // b).tolist() == [-4, -4, 3, 3]
    assert (a % b).tolist() == [1, -1, -1, 1]  # the sign of the divisor, as Python's %
    assert disttorch.fmod(a, b).tolist() == [-1, 1, -1, 1]  # the sign of the dividend, as C's fmod
    assert (a / b).tolist() == [-3.5, -3.5, 3.5, 3.5]
    assert disttorch.tensor([-2.5, -1.5, 0.5, 1.5, 2.5]).round().tolist() == [-2.0, -2.0, 0.0, 2.0, 2.0]
    assert disttorch.tensor([1.2345]).round(decimals=2).item() == pytest.approx(1.23)


@pytest.mark.parametrize("fn,msg", [
    (lambda: disttorch.div(disttorch.tensor([1]), disttorch.tensor([0]), rounding_mode="floor"), "ZeroDivisionError"),
    (lambda: disttorch.tensor([5]) % disttorch.tensor([0]), "ZeroDivisionError"),
    (lambda: disttorch.tensor([5]) // 0, "ZeroDivisionError"),
    (lambda: disttorch.div(disttorch.ones(2), 2, rounding_mode="round"),
     "div expected rounding_mode to be one of None, 'trunc', or 'floor' but found 'round'"),
    (lambda: disttorch.tensor([True]) - disttorch.tensor([True]),
     "Subtraction, the `-` operator, with two bool tensors is not supported. Use the `^` or `logical_xor()` operator "
     "instead."),
    (lambda: disttorch.tensor([True]) - 1,
     "Subtraction, the `-` operator, with a bool tensor is not supported. If you are trying to invert a mask, use the "
     "`~` or `logical_not()` operator instead."),
    (lambda: disttorch.ones(2) & disttorch.ones(2), "\"bitwise_and_cpu\" not implemented for 'Float'"),
    (lambda: -disttorch.tensor([True]), "Negation, the `-` operator, on a bool tensor is not supported. If you are "
     "trying to invert a mask, use the `~` or `logical_not()` operator instead."),
    (lambda: disttorch.tensor([2]) ** -1, "Integers to negative integer powers are not allowed."),
    (lambda: disttorch.tensor([2]) ** disttorch.tensor([-1]), "Integers to negative integer powers are not allowed."),
    (lambda: disttorch.tensor([True]).sub_(True),
     "Subtraction, the `-` operator, with two bool tensors is not supported. Use the `^` or `logical_xor()` operator "
     "instead."),
    (lambda: disttorch.ones(2).sub_(disttorch.tensor([True, False])),
     "Subtraction, the `-` operator, with a bool tensor is not supported. If you are trying to invert a mask, use the "
     "`~` or `logical_not()` operator instead."),
    (lambda: disttorch.tensor([True]) // disttorch.tensor([True]), "\"div_floor_cpu\" not implemented for 'Bool'"),
    (lambda: disttorch.clamp(disttorch.ones(2)), "torch.clamp: At least one of 'min' or 'max' must not be None"),
    (lambda: disttorch.ones(2, 3) + disttorch.ones(4),
     "The size of tensor a (3) must match the size of tensor b (4) at non-singleton dimension 1"),
    (lambda: disttorch.ones(2, 3) * disttorch.ones(2, 1, 4),
     "The size of tensor a (3) must match the size of tensor b (4) at non-singleton dimension 2"),
    (lambda: disttorch.ones(5, 2) - disttorch.ones(3, 1),
     "The size of tensor a (5) must match the size of tensor b (3) at non-singleton dimension 0"),
    (lambda: disttorch.ones(2, 3) == disttorch.ones(3, 2),
     "The size of tensor a (3) must match the size of tensor b (2) at non-singleton dimension 1"),
    (lambda: disttorch.ones(3).add_(disttorch.ones(2, 3)),
     "output with shape [3] doesn't match the broadcast shape [2, 3]"),
    (lambda: disttorch.ones(3).add_(disttorch.ones(2)),
     "The size of tensor a (3) must match the size of tensor b (2) at non-singleton dimension 0"),
    (lambda: disttorch.ones(2, dtype=disttorch.int64).add_(1.5),
     "result type Float can't be cast to the desired output type Long"),
    (lambda: disttorch.ones(2, dtype=disttorch.int64).div_(2),
     "result type Float can't be cast to the desired output type Long"),
    (lambda: disttorch.ones(2, dtype=disttorch.int32).mul_(disttorch.ones(2)),
     "result type Float can't be cast to the desired output type Int"),
    (lambda: disttorch.ones(2, dtype=disttorch.bool).add_(2),
     "result type Long can't be cast to the desired output type Bool"),
])
def test_errors(fn, msg):
    with pytest.raises(RuntimeError) as e:  # NotImplementedError is a RuntimeError, as in PyTorch
        fn()
    assert str(e.value) == msg


def test_error_texts_are_torchs():
    torch = pytest.importorskip("torch", reason="PyTorch is the reference for error texts")
    cases = [
        (lambda M: M.ones(2, 3) + M.ones(4)),
        (lambda M: M.ones(2, 3) * M.ones(2, 1, 4)),
        (lambda M: M.ones(3).add_(M.ones(2, 3))),
        (lambda M: M.ones(2, dtype=M.int64).add_(1.5)),
        (lambda M: M.tensor([True]) - M.tensor([True])),
        (lambda M: M.tensor([True]) - 1),
        (lambda M: M.ones(2) & M.ones(2)),
        (lambda M: M.div(M.ones(2), 2, rounding_mode="round")),
        (lambda M: M.tensor([1]) // M.tensor([0])),
        (lambda M: -M.tensor([True])),
        (lambda M: M.tensor([2]) ** -1),
    ]
    for fn in cases:
        msgs = []
        for M in (disttorch, torch):
            with pytest.raises(RuntimeError) as e:
                fn(M)
            msgs.append(str(e.value))
        assert msgs[0] == msgs[1]


def test_equal_allclose_isclose():
    a = disttorch.tensor([1.0, 2.0, 3.0])
    assert disttorch.equal(a, a.clone()) and not disttorch.equal(a, a[:2])
    assert disttorch.allclose(a, a + 1e-9) and not disttorch.allclose(a, a + 1e-3)
    assert disttorch.isclose(a, disttorch.tensor([1.0, 2.1, 3.0])).tolist() == [True, False, True]
    assert a.equal(a) and a.allclose(a)


def test_where_single_argument_is_nonzero():
    r = disttorch.where(disttorch.tensor([[0, 1], [2, 0]]))
    assert [t.tolist() for t in r] == [[0, 1], [1, 0]]
    assert all(t.dtype is disttorch.int64 for t in r)


# ---- out= and in-place variants ---------------------------------------------------------------------
def test_out_argument():
    a, b = disttorch.tensor([1.0, 2.0]), disttorch.tensor([3.0, 5.0])
    out = disttorch.empty(2)
    r = disttorch.add(a, b, alpha=2, out=out)
    assert r is out and out.tolist() == [7.0, 12.0]
    assert disttorch.mul(a, b, out=out) is out and out.tolist() == [3.0, 10.0]
    assert disttorch.sub(a, b, out=out).tolist() == [-2.0, -3.0]
    disttorch.div(a, b, out=out)
    np.testing.assert_allclose(out.numpy(), [1 / 3, 0.4], rtol=1e-6)
    disttorch.exp(a, out=out)
    np.testing.assert_allclose(out.numpy(), np.exp([1.0, 2.0]), rtol=1e-6)
    empty = disttorch.tensor([])
    disttorch.add(a, b, out=empty)  # an empty out is resized, as in PyTorch
    assert empty.tolist() == [4.0, 7.0]
    with pytest.raises(RuntimeError):
        disttorch.add(a, b, out=disttorch.empty(3))


INPLACE = [
    ("add_", (disttorch.tensor([1.0, 2.0, 3.0]),), {}), ("add_", (2.0,), {"alpha": 3}), ("sub_", (1.5,), {}),
    ("sub_", ([3.0, 1.0, 0.5],), {"alpha": 2}), ("mul_", (-2,), {}), ("div_", (4.0,), {}),
    ("div_", ([2.0, 4.0, 8.0],), {}), ("pow_", (2,), {}), ("remainder_", (1.5,), {}), ("fmod_", (1.5,), {}),
    ("floor_divide_", (0.7,), {}), ("neg_", (), {}), ("abs_", (), {}), ("exp_", (), {}), ("sqrt_", (), {}),
    ("log_", (), {}), ("log1p_", (), {}), ("rsqrt_", (), {}), ("sin_", (), {}), ("cos_", (), {}), ("tanh_", (), {}),
    ("sigmoid_", (), {}), ("relu_", (), {}), ("sign_", (), {}), ("floor_", (), {}), ("ceil_", (), {}),
    ("round_", (), {}), ("trunc_", (), {}), ("frac_", (), {}), ("reciprocal_", (), {}), ("square_", (), {}),
    ("clamp_", (0.5, 1.5), {}), ("clamp_", (), {"min": 1.0}), ("clamp_min_", (1.0,), {}), ("clamp_max_", (1.0,), {}),
    ("clip_", (0.5, 1.0), {}), ("arcsin_", (), {}), ("arctan2_", ([1.0, -1.0, 2.0],), {}), ("sgn_", (), {}),
    ("fix_", (), {}), ("cumsum_", (0,), {}), ("cumprod_", (0,), {}), ("eq_", ([0.5, 0.0, 0.0],), {}),
    ("lt_", (0.6,), {}), ("ge_", ([0.0, 1.0, 0.0],), {}), ("not_equal_", (0.5,), {}),
    ("lerp_", ([0.0, 1.0, 2.0], 0.5), {}), ("masked_fill_", ("mask", -1.0), {}), ("fill_", (3.0,), {}),
    ("zero_", (), {}), ("copy_", ([7.0, 8.0, 9.0],), {}), ("atan2_", ([1.0, -1.0, 2.0],), {}),
    ("hypot_", ([3.0, -4.0, 0.5],), {}),
    ("addcmul_", ([1.0, 2.0, 3.0], [2.0, 2.0, 2.0]), {"value": 0.5}),
    ("addcdiv_", ([1.0, 2.0, 3.0], [2.0, 2.0, 2.0]), {"value": 2}),
    ("exp2_", (), {}), ("expm1_", (), {}), ("log2_", (), {}), ("log10_", (), {}), ("tan_", (), {}), ("erf_", (), {}),
    ("sinh_", (), {}), ("cosh_", (), {}), ("asin_", (), {}), ("acos_", (), {}), ("atan_", (), {}),
]


def _inplace_args(M, args):
    out = []
    for a in args:
        if isinstance(a, list):
            a = M.tensor(a)
        elif isinstance(a, str):
            a = M.tensor([True, False, True])
        elif hasattr(a, "_data"):
            a = M.tensor(a.tolist())
        out.append(a)
    return out


@pytest.mark.parametrize("name,args,kwargs", INPLACE, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(INPLACE)])
def test_inplace_variant(name, args, kwargs):
    """Writes into the same memory, bumps the version, equals the out-of-place op, with and without autograd."""
    base = disttorch.tensor([0.25, 0.5, 0.75])
    x = base.clone()
    ptr, version = x.data_ptr(), x._version
    r = getattr(x, name)(*_inplace_args(disttorch, args), **kwargs)
    assert r is x and x.data_ptr() == ptr and x._version == version + 1
    # recorded version: a non-leaf with history, gradient flows through the in-place op
    leaf = base.clone().requires_grad_()
    y = leaf * 1
    getattr(y, name)(*_inplace_args(disttorch, args), **kwargs)
    np.testing.assert_allclose(y.detach().numpy(), x.numpy(), rtol=1e-6)
    assert y.grad_fn is not None
    y.sum().backward()
    assert leaf.grad is not None and leaf.grad.shape == leaf.shape
    torch = pytest.importorskip("torch", reason="PyTorch gives the reference values")
    tleaf = torch.tensor([0.25, 0.5, 0.75], requires_grad=True)
    ty = tleaf * 1
    getattr(ty, name)(*_inplace_args(torch, args), **kwargs)
    np.testing.assert_allclose(x.numpy(), ty.detach().numpy(), rtol=1e-6)
    if name in ("floor_divide_", "eq_", "lt_", "ge_", "not_equal_"):  # not differentiable in PyTorch
        return
    ty.sum().backward()
    tgrad = tleaf.grad if not tleaf.grad._is_zerotensor() else torch.zeros(3)
    np.testing.assert_allclose(leaf.grad.numpy(), tgrad.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,args,shape", [("t_", (), (3, 2)), ("transpose_", (0, 1), (3, 2)),
                                              ("swapaxes_", (1, 0), (3, 2)), ("unsqueeze_", (1,), (2, 1, 3)),
                                              ("squeeze_", (), (2, 3)), ("tril_", (), (2, 3)), ("triu_", (1,), (2, 3))])
def test_inplace_shape_variants(name, args, shape):
    x = disttorch.arange(6.0).view(2, 3)
    if name == "squeeze_":
        x = x.unsqueeze(0)
    ptr, version = x.data_ptr(), x._version
    assert getattr(x, name)(*args) is x
    assert tuple(x.shape) == shape and x.data_ptr() == ptr and x._version == version + 1
    leaf = disttorch.arange(6.0).view(2, 3).requires_grad_()
    y = leaf * 1
    getattr(y, name)(*args)
    w = disttorch.arange(6.0).view(shape)
    (y * w).sum().backward()
    torch = pytest.importorskip("torch", reason="PyTorch gives the reference values")
    tleaf = torch.arange(6.0).view(2, 3).requires_grad_()
    ty = tleaf * 1
    getattr(ty, name)(*args)
    (ty * torch.arange(6.0).view(shape)).sum().backward()
    np.testing.assert_array_equal(y.detach().numpy(), ty.detach().numpy())
    np.testing.assert_array_equal(leaf.grad.numpy(), tleaf.grad.numpy())


def test_inplace_operators_and_views():
    x = disttorch.tensor([1.0, 2.0, 3.0, 4.0])
    v = x[1:3]
    x_id = id(x)
    x += 1
    x *= 2
    x -= disttorch.tensor([1.0, 1.0, 1.0, 1.0])
    x /= 2
    assert id(x) == x_id
    assert x.tolist() == [1.5, 2.5, 3.5, 4.5]
    assert v.tolist() == [2.5, 3.5]  # the view sees every write
    v.mul_(10)
    assert x.tolist() == [1.5, 25.0, 35.0, 4.5]
    i = disttorch.tensor([5, 6])
    i //= 4
    i %= 2
    i **= 2
    assert i.tolist() == [1, 1] and i.dtype is disttorch.int64
    b = disttorch.tensor([True, False])
    b &= disttorch.tensor([True, True])
    b |= disttorch.tensor([False, False])
    b ^= disttorch.tensor([True, False])
    assert b.tolist() == [False, False]


BROADCAST_ERRORS = [
    lambda M: M.where(M.ones(2, 3) > 0, M.ones(2, 3), M.ones(4)),
    lambda M: M.maximum(M.ones(2, 3), M.ones(4)),
    lambda M: M.minimum(M.ones(2, 3), M.ones(2, 2)),
    lambda M: M.ones(2, 3).masked_fill(M.ones(4, dtype=M.bool), 0.0),
    lambda M: M.ones(2, 3).masked_select(M.ones(4, dtype=M.bool)),
    lambda M: M.atan2(M.ones(2, 3), M.ones(4)),
    lambda M: M.pow(M.ones(2, 3), M.ones(4)),
    lambda M: M.lerp(M.ones(2, 3), M.ones(4), 0.5),
    lambda M: M.ones(2, 3) % M.ones(4),
    lambda M: M.ones(2, 3) / M.ones(4),
    lambda M: M.clamp(M.ones(2, 3), M.ones(4)),
    lambda M: M.ones(2, 3) == M.ones(4),
    lambda M: M.ones(2, 3).mul_(M.ones(4)),
    lambda M: M.ones(2, 3, requires_grad=True) + M.ones(4),
    lambda M: M.logical_and(M.ones(2, 3), M.ones(4)),
    lambda M: M.ones(2, 3, dtype=M.int64) & M.ones(4, dtype=M.int64),
    lambda M: M.ones(5, 1, 3) - M.ones(2, 1, 1, 4),
]


@pytest.mark.parametrize("fn", BROADCAST_ERRORS, ids=[str(i) for i in range(len(BROADCAST_ERRORS))])
def test_broadcast_errors_are_torchs(fn):
    with pytest.raises(RuntimeError) as e:
        fn(disttorch)
    assert str(e.value).startswith("The size of tensor a (")
    torch = pytest.importorskip("torch", reason="PyTorch is the reference for error texts")
    from _optable import check_same_error
    check_same_error(fn, torch)


def test_broadcasting_results():
    a = disttorch.arange(3.0).view(3, 1)
    b = disttorch.arange(4.0)
    assert (a + b).shape == (3, 4) and (a * b)[2, 3].item() == 6.0
    assert disttorch.where(a > 0, b, disttorch.tensor(-1.0)).tolist()[0] == [-1.0] * 4
    assert disttorch.maximum(a, b).shape == (3, 4)
    assert (disttorch.ones(2, 1, 3) - disttorch.ones(4, 1)).shape == (2, 4, 3)
    assert disttorch.broadcast_shapes((2, 1), (3,)) == (2, 3)
    x = disttorch.zeros(2, 3)
    x += disttorch.tensor([1.0, 2.0, 3.0])
    assert x.tolist() == [[1.0, 2.0, 3.0]] * 2


@pytest.mark.parametrize("n", [5, 1 << 20], ids=["small", "split-size"])
@pytest.mark.parametrize("way", ["relu", "relu_", "ReLU(inplace)"])
def test_relu_backward_passes_the_gradient_of_a_nan_output_as_torch(n, way):
    # PyTorch's threshold_backward zeroes the gradient where the output is <= 0: a NaN output
    # (NaN input) lets it through, and 0 itself stops it
    torch = pytest.importorskip("torch", reason="PyTorch is the reference for parity tests")
    a = np.random.default_rng(3).standard_normal(n).astype(np.float32)
    a[:3] = [np.nan, 0.0, -0.0]
    grads = []
    for lib in (torch, disttorch):
        x = lib.tensor(a.copy(), requires_grad=True)
        h = x * 1  # in-place ReLU needs a non-leaf
        out = {"relu": lambda: lib.relu(h), "relu_": lambda: h.relu_(),
               "ReLU(inplace)": lambda: lib.nn.ReLU(inplace=True)(h)}[way]()
        (out * lib.tensor(np.linspace(1, 2, n, dtype=np.float32))).sum().backward()
        grads.append(x.grad.numpy())
    np.testing.assert_array_equal(grads[1], grads[0])
    assert grads[1][0] != 0 and grads[1][1] == 0 and grads[1][2] == 0
