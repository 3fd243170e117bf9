"""dtypes (names, aliases, default dtype) and PyTorch's type promotion (result_type and op outputs)."""
from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest

import disttorch

NAMES = ["bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64"]


@pytest.fixture(autouse=True)
def _restore_default_dtype():
    yield
    disttorch.set_default_dtype(disttorch.float32)


# ---- names, aliases, attributes --------------------------------------------------------------------
@pytest.mark.parametrize("alias,name", [
    ("float", "float32"), ("double", "float64"), ("half", "float16"), ("long", "int64"), ("int", "int32"),
    ("short", "int16"), ("cfloat", "complex64"), ("cdouble", "complex128"),
])
def test_aliases_are_the_same_object(alias, name):
    assert getattr(disttorch, alias) is getattr(disttorch, name)


@pytest.mark.parametrize("name", NAMES)
def test_dtype_attributes(name):
    d = getattr(disttorch, name)
    np_dt = np.dtype(np.bool_ if name == "bool" else name)
    assert d.itemsize == np_dt.itemsize
    assert d.is_floating_point == (name.startswith("float"))
    assert d.is_signed == (name not in ("bool", "uint8"))
    assert repr(d) == f"disttorch.{name}"
    assert pickle.loads(pickle.dumps(d)) is d
    assert disttorch.tensor([1], dtype=d).dtype is d
    assert disttorch.zeros(2, dtype=d).numpy().dtype == np_dt


@pytest.mark.parametrize("name", NAMES)
def test_dtype_names_match_torch(name):
    torch = pytest.importorskip("torch", reason="PyTorch gives the reference names")
    t = getattr(torch, name)
    assert t.itemsize == getattr(disttorch, name).itemsize
    assert t.is_floating_point == getattr(disttorch, name).is_floating_point
    assert t.is_signed == getattr(disttorch, name).is_signed
    assert repr(t).replace("torch.", "disttorch.") == repr(getattr(disttorch, name))


def test_python_types_as_dtypes():
    assert disttorch.tensor([1.5], dtype=float).dtype is disttorch.float32
    assert disttorch.tensor([1.5], dtype=int).dtype is disttorch.int64
    assert disttorch.tensor([1], dtype=bool).dtype is disttorch.bool
    assert disttorch.zeros(2, dtype=np.float64).dtype is disttorch.float64


def test_defaults_and_inference():
    assert disttorch.get_default_dtype() is disttorch.float32
    assert disttorch.tensor(1.5).dtype is disttorch.float32
    assert disttorch.tensor(3).dtype is disttorch.int64
    assert disttorch.tensor(True).dtype is disttorch.bool
    assert disttorch.tensor([1, 2.5]).dtype is disttorch.float32
    assert disttorch.tensor([True, 2]).dtype is disttorch.int64
    assert disttorch.tensor([]).dtype is disttorch.float32
    assert disttorch.tensor(np.float64(1.0)).dtype is disttorch.float64  # NumPy values keep their dtype
    assert disttorch.tensor(np.arange(3, dtype=np.int32)).dtype is disttorch.int32
    assert disttorch.zeros(2).dtype is disttorch.float32
    assert disttorch.arange(3).dtype is disttorch.int64
    assert disttorch.arange(0.0, 1.0, 0.5).dtype is disttorch.float32
    assert disttorch.full((2,), 3).dtype is disttorch.int64
    assert disttorch.full((2,), 3.0).dtype is disttorch.float32
    assert disttorch.full((2,), True).dtype is disttorch.bool


def test_set_default_dtype():
    disttorch.set_default_dtype(disttorch.float64)
    assert disttorch.get_default_dtype() is disttorch.float64
    assert disttorch.tensor([1.5]).dtype is disttorch.float64
    assert disttorch.ones(2).dtype is disttorch.float64
    assert disttorch.randn(2).dtype is disttorch.float64
    assert disttorch.arange(0.0, 2.0).dtype is disttorch.float64
    assert (disttorch.tensor([1, 2]) * 0.5).dtype is disttorch.float64
    assert (disttorch.tensor([1, 2]) / disttorch.tensor([2, 2])).dtype is disttorch.float64
    assert (disttorch.ones(2, dtype=disttorch.float32) * 0.5).dtype is disttorch.float32
    with pytest.raises(TypeError) as e:
        disttorch.set_default_dtype(disttorch.int64)
    assert str(e.value) == "only floating-point types are supported as the default type"


# ---- promotion -------------------------------------------------------------------------------------
def _operand(M, kind):
    """kind: ('dim', dtype) | ('zero', dtype) | ('py', value) | ('np', value)."""
    what, v = kind
    if what == "dim":
        return M.ones(2, dtype=getattr(M, v))
    if what == "zero":
        return M.tensor(1, dtype=getattr(M, v))
    return v


SCALARS = [("py", True), ("py", 2), ("py", 2.5), ("np", np.float64(2.5)), ("np", np.float32(2.5)),
           ("np", np.int32(2)), ("np", np.int64(2))]  # (torch reads np.bool_ as a float: not mimicked)
KINDS = [("dim", n) for n in NAMES] + [("zero", n) for n in NAMES] + SCALARS
PAIRS = [(a, b) for a, b in itertools.product(KINDS, KINDS) if a[0] in ("dim", "zero")]


def _name(x):
    return str(x).split(".")[-1]


def test_result_type_literals():
    f32, f64, i64 = disttorch.float32, disttorch.float64, disttorch.int64
    one = lambda d: disttorch.ones(2, dtype=d)  # noqa: E731
    zero = lambda d: disttorch.tensor(1, dtype=d)  # noqa: E731
    assert disttorch.result_type(one(disttorch.int32), one(disttorch.int64)) is i64
    assert disttorch.result_type(one(disttorch.uint8), one(disttorch.int8)) is disttorch.int16
    assert disttorch.result_type(one(disttorch.int64), 2.5) is f32
    assert disttorch.result_type(one(disttorch.int64), zero(f64)) is f64  # a higher category wins
    assert disttorch.result_type(one(f32), zero(f64)) is f32  # same category: dimensioned wins
    assert disttorch.result_type(one(f32), np.float64(2.0)) is f32
    assert disttorch.result_type(one(disttorch.float16), 2.5) is disttorch.float16
    assert disttorch.result_type(one(disttorch.uint8), 300) is disttorch.uint8
    assert disttorch.result_type(one(disttorch.bool), 2) is i64
    assert disttorch.result_type(zero(disttorch.int32), zero(disttorch.int64)) is i64
    assert disttorch.result_type(zero(disttorch.int32), 5) is disttorch.int32
    assert disttorch.result_type(one(disttorch.bool), one(disttorch.bool)) is disttorch.bool
    assert (one(i64) / one(i64)).dtype is f32  # int / int is float
    assert (one(disttorch.int32) / 2).dtype is f32
    assert (one(f32) * np.float64(3.0)).dtype is f32
    assert (np.float64(3.0) * one(f32)).dtype is f32
    assert (one(f32) + zero(f64)).dtype is f32
    assert (one(disttorch.int8) + zero(disttorch.int64)).dtype is disttorch.int8
    assert (one(disttorch.float16) + one(f32)).dtype is f32


@pytest.mark.parametrize("a,b", PAIRS, ids=lambda k: f"{k[0]}-{_name(k[1])}")
def test_result_type_matches_torch(a, b):
    torch = pytest.importorskip("torch", reason="torch.result_type is the reference")
    expected = torch.result_type(_operand(torch, a), _operand(torch, b))
    got = disttorch.result_type(_operand(disttorch, a), _operand(disttorch, b))
    assert _name(got) == _name(expected)


OPS = {
    "add": lambda x, y: x + y, "radd": lambda x, y: y + x, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y,
    "rmul": lambda x, y: y * x, "div": lambda x, y: x / y, "rdiv": lambda x, y: y / x,
    "floor_div": lambda x, y: x // y, "rem": lambda x, y: x % y, "pow": lambda x, y: x ** y,
    "eq": lambda x, y: x == y, "lt": lambda x, y: x < y,
}


def _op_dtype(M, op, a, b):
    x, y = _operand(M, a), _operand(M, b)
    try:
        return _name(OPS[op](x, y).dtype)
    except (RuntimeError, TypeError, ZeroDivisionError) as e:  # torch refuses some pairs (bool - bool)
        return type(e).__name__


SAMPLE_KINDS = [("dim", "bool"), ("dim", "uint8"), ("dim", "int32"), ("dim", "int64"), ("dim", "float16"),
                ("dim", "float32"), ("dim", "float64"), ("zero", "int64"), ("zero", "float64"), ("zero", "bool")]
OP_PAIRS = [(a, b) for a in SAMPLE_KINDS for b in SAMPLE_KINDS + SCALARS]


@pytest.mark.parametrize("op", sorted(OPS))
def test_op_output_dtypes_match_torch(op):
    torch = pytest.importorskip("torch", reason="PyTorch's op output dtypes are the reference")
    bad = []
    for a, b in OP_PAIRS:
        want, got = _op_dtype(torch, op, a, b), _op_dtype(disttorch, op, a, b)
        if want != got:
            bad.append((a, b, want, got))
    assert not bad, bad


def test_numpy_float64_scalar_never_widens_float32():
    x = disttorch.ones(3)
    s = np.float64(0.1)
    for y in (x + s, s + x, x * s, s * x, x - s, s - x, x / s, s / x, x ** s, disttorch.add(x, s),
              disttorch.mul(x, s), disttorch.where(x > 0, x, s), disttorch.clamp(x, s, 2.0), disttorch.maximum(x, x)):
        assert y.dtype is disttorch.float32
    x.add_(s)
    x.mul_(s)
    assert x.dtype is disttorch.float32
    np.testing.assert_allclose(x.numpy(), np.float32(1.1) * np.float32(0.1), rtol=1e-6)
    sm = disttorch.ones(2).sum()
    assert (sm * np.float64(2.0)).dtype is disttorch.float32


def test_promote_types_matches_numpy_within_category():
    assert disttorch.promote_types(disttorch.int8, disttorch.uint8) is disttorch.int16
    assert disttorch.promote_types(disttorch.float16, disttorch.int64) is disttorch.float16
    assert disttorch.promote_types(disttorch.bool, disttorch.uint8) is disttorch.uint8
    assert disttorch.promote_types(disttorch.float32, disttorch.float64) is disttorch.float64


def test_cat_and_stack_promote():
    a = disttorch.tensor([1, 2])
    b = disttorch.tensor([0.5])
    assert disttorch.cat([a, b]).dtype is disttorch.float32
    np.testing.assert_array_equal(disttorch.cat([a, b]).numpy(), [1.0, 2.0, 0.5])
    assert disttorch.stack([disttorch.ones(2, dtype=disttorch.int32), disttorch.ones(2)]).dtype is disttorch.float32


def test_integer_ops_stay_integer():
    a = disttorch.tensor([7, -7])
    assert (a + 1).dtype is disttorch.int64
    assert (a // 2).dtype is disttorch.int64
    np.testing.assert_array_equal((a // 2).numpy(), [3, -4])
    np.testing.assert_array_equal((a % 3).numpy(), [1, 2])
    assert (a * True).dtype is disttorch.int64
    assert a.sum().dtype is disttorch.int64
    assert disttorch.tensor([1, 2], dtype=disttorch.int32).sum().dtype is disttorch.int64
    assert disttorch.tensor([True, True]).sum().item() == 2
    assert (a ** 2).dtype is disttorch.int64
    assert (a.float() ** 2).dtype is disttorch.float32
