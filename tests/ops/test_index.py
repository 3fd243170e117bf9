"""Index ops (gather/scatter/index_select/sort/topk/masks/setitem): gradients, PyTorch parity, indices."""
from __future__ import annotations

import numpy as np
import pytest

import disttorch
from _optable import Case, table_tests

S = (3, 4)


def _setitem(M, x, v, index):
    y = x * 1
    y[index(M)] = v
    return y


CASES = [
    Case("gather", lambda M, x: M.gather(x, 1, M.tensor([[0, 0], [1, 3], [2, 1]])), [(S, "any")]),
    Case("gather_dim0", lambda M, x: x.gather(0, M.tensor([[2, 1, 0, 0]])), [(S, "any")]),
    Case("take_along_dim", lambda M, x: M.take_along_dim(x, M.tensor([[1], [0], [3]]), 1), [(S, "any")],
         grad_fn=False),
    Case("scatter", lambda M, x, s: M.scatter(x, 1, M.tensor([[0, 2], [1, 3], [3, 0]]), s),
         [(S, "any"), ((3, 2), "any")]),
    Case("scatter_value", lambda M, x: x.scatter(0, M.tensor([[1, 0, 2, 1]]), 0.5), [(S, "any")]),
    Case("scatter_add", lambda M, x, s: M.scatter_add(x, 1, M.tensor([[0, 0], [1, 3], [3, 3]]), s),
         [(S, "any"), ((3, 2), "any")]),
    Case("index_select", lambda M, x: M.index_select(x, 1, M.tensor([3, 0, 3])), [(S, "any")]),
    Case("index_select_dim0", lambda M, x: x.index_select(0, M.tensor([2, 2])), [(S, "any")]),
    Case("index_add", lambda M, x, s: M.index_add(x, 0, M.tensor([2, 0, 2]), s), [(S, "any"), ((3, 4), "any")]),
    Case("index_add_alpha", lambda M, x, s: x.index_add(1, M.tensor([1, 3]), s, alpha=2.0),
         [(S, "any"), ((3, 2), "any")]),
    Case("index_put", lambda M, x, v: M.index_put(x, (M.tensor([0, 2]), M.tensor([1, 1])), v),
         [(S, "any"), ((2,), "any")]),
    Case("index_put_acc", lambda M, x, v: x.index_put((M.tensor([0, 0]),), v, accumulate=True),
         [(S, "any"), ((2, 4), "any")]),
    Case("masked_scatter", lambda M, x, s: x.masked_scatter(M.tensor([True, False, True, False]), s),
         [(S, "any"), ((2, 4), "any")], grad_fn=False),
    Case("index_fill", lambda M, x: M.index_fill(x, 1, M.tensor([0, 2]), -1.0), [(S, "any")]),
    Case("masked_select", lambda M, x: M.masked_select(x, x > 0.3), [(S, "distinct")]),
    Case("masked_select_bcast", lambda M, x: x.masked_select(M.tensor([True, False, True, True])), [(S, "any")]),
    Case("sort", lambda M, x: M.sort(x, 1)[0], [(S, "distinct")]),
    Case("sort_desc", lambda M, x: x.sort(dim=0, descending=True).values, [(S, "distinct")]),
    Case("topk", lambda M, x: M.topk(x, 2)[0], [(S, "distinct")]),
    Case("topk_smallest", lambda M, x: x.topk(2, dim=0, largest=False).values, [(S, "distinct")]),
    Case("setitem_slice", lambda M, x, v: _setitem(M, x, v, lambda M: (slice(None), slice(1, 3))),
         [(S, "any"), ((3, 2), "any")]),
    Case("setitem_int", lambda M, x, v: _setitem(M, x, v, lambda M: 1), [(S, "any"), ((4,), "any")]),
    Case("setitem_bcast", lambda M, x, v: _setitem(M, x, v, lambda M: (slice(None), 0)), [(S, "any"), ((1,), "any")],
         edges=False),  # PyTorch expands the value first
    Case("setitem_mask", lambda M, x, v: _setitem(M, x, v, lambda M: M.tensor([True, False, True])),
         [(S, "any"), ((4,), "any")]),
    Case("setitem_list", lambda M, x, v: _setitem(M, x, v, lambda M: ([0, 2], [3, 1])), [(S, "any"), ((2,), "any")]),
    Case("setitem_int_and_list", lambda M, x, v: _setitem(M, x, v, lambda M: (slice(None), 1, None, [0, 3])),
         [((2, 3, 4), "any"), ((2, 1, 1), "any")], edges=False),
]


test_gradcheck, test_gradgradcheck, test_parity_with_torch = table_tests(CASES)


# ---- forward semantics, assignment and errors -----------------------------------------------------------
from _optable import check_forward_parity, check_same_error  # noqa: E402

X = np.array([[3.0, 1.0, 4.0, 1.0], [5.0, 9.0, 2.0, 6.0], [5.0, 3.0, 5.0, 8.0]], np.float32)

FORWARD = [
    ("sort", lambda M, x: (x.sort(), M.sort(x, 0), x.sort(1, descending=True), M.sort(x.view(-1), stable=True),
                           x.argsort(1), M.argsort(x, 0, descending=True), M.msort(x)), X),
    ("topk", lambda M, x: (x.topk(2), M.topk(x, 1, 0), x.topk(3, largest=False), x.view(-1).topk(5)),
     X + np.arange(12, dtype=np.float32).reshape(3, 4) * 0.01),  # ties make topk's indices unspecified
    ("gather", lambda M, x: (x.gather(1, M.tensor([[0, 0], [3, 1], [2, 2]])), M.gather(x, 0, M.tensor([[2, 1, 0, 0]])),
                             M.take_along_dim(x, x.argsort(1), 1), M.take_along_dim(x, M.tensor([0, 11]))), X),
    ("scatter", lambda M, x: (M.zeros(3, 5).scatter(1, M.tensor([[0, 4], [1, 2], [3, 3]]), x[:, :2]),
                              x.scatter(0, M.tensor([[2, 0, 1, 0]]), -1.0),
                              M.zeros(3).scatter_add(0, M.tensor([0, 2, 0, 0]), x[0]),
                              x.scatter(1, M.tensor([[0], [1], [2]]), 2.0, reduce="multiply"),
                              x.scatter(1, M.tensor([[0, 0]] * 3), x[:, 2:], reduce="add")), X),
    ("index_select", lambda M, x: (x.index_select(1, M.tensor([3, 0, 3])), M.index_select(x, 0, M.tensor([2]))), X),
    ("index_add_fill_put", lambda M, x: (x.index_add(0, M.tensor([0, 0, 2]), x),
                                         M.index_fill(x, 1, M.tensor([1, 3]), 0.5),
                                         x.index_put((M.tensor([0, 0]), M.tensor([1, 1])), M.tensor([1.0, 2.0]),
                                                     accumulate=True),
                                         M.index_put(x, (M.tensor([2]),), M.tensor(7.0))), X),
    ("masked", lambda M, x: (x.masked_fill(x > 4, 0.0), M.masked_select(x, x < 4), x.masked_fill(M.tensor([True, False,
                             True, False]), M.tensor(-2.0)), x.masked_scatter(x > 4, M.arange(12.0))), X),
    ("nonzero", lambda M, x: (M.nonzero(x > 4), (x > 4).nonzero(as_tuple=True), M.argwhere(x == 5), M.where(x > 8)), X),
    ("unique", lambda M, x: (M.unique(x), x.unique(return_inverse=True, return_counts=True)), X),
    ("searchsorted_bucketize", lambda M, x: (M.searchsorted(M.tensor([1.0, 3.0, 5.0]), x),
                                             M.bucketize(x, M.tensor([2.0, 4.0]), right=True)), X),
    ("sort_int_kinds", lambda M, x: (M.tensor([True, False, True]).sort(descending=True),
                                     x.to(M.uint8).sort(descending=True),
                                     (x - 4).to(M.int8).sort(0, descending=True), x.to(M.uint8).view(-1).topk(3),
                                     M.tensor([-128, 127, 0], dtype=M.int8).sort(descending=True)), X),
    ("uint8_mask", lambda M, x: x[:, M.tensor([1, 0, 1, 1], dtype=M.uint8)], X),
    ("bincount", lambda M, x: (M.bincount(x.long().view(-1)), M.bincount(M.tensor([0, 2, 2]), minlength=5)), X),
]


@pytest.mark.parametrize("name,fn,arr", FORWARD, ids=[f[0] for f in FORWARD])
def test_forward_matches_torch(name, fn, arr):
    torch = pytest.importorskip("torch", reason="PyTorch is the reference for forward values")
    check_forward_parity(fn, torch, arr)


def _assign(M, index, value):
    x = M.arange(24.0).view(2, 3, 4)
    x[index(M)] = value(M) if callable(value) else value
    return x


ASSIGN = [
    ("int", lambda M: 1, 0.5),
    ("neg_int", lambda M: (-1, -2), lambda M: M.tensor([9.0, 8.0, 7.0, 6.0])),
    ("slice_step", lambda M: (slice(None), slice(None, None, 2)), 0.0),
    ("ellipsis", lambda M: (Ellipsis, 1), lambda M: M.tensor([1.0, 2.0, 3.0])),
    ("none", lambda M: (None, 0, 1), -1.0),
    ("bool_mask", lambda M: M.arange(24.0).view(2, 3, 4) > 20, 0.0),
    ("bool_mask_rows", lambda M: M.tensor([True, False]), lambda M: M.zeros(3, 4)),
    ("bool_mask_values", lambda M: M.arange(24).view(2, 3, 4) % 5 == 0, lambda M: M.arange(5.0)),
    ("int_list", lambda M: [1, 0], lambda M: M.ones(3, 4)),
    ("long_tensor_pairs", lambda M: (M.tensor([0, 1, 1]), M.tensor([2, 0, 2])),
     lambda M: M.tensor([[1.0], [2.0], [3.0]])),
    ("repeated_index", lambda M: (0, 0, M.tensor([1, 1, 1])), lambda M: M.tensor([5.0, 6.0, 7.0])),
    ("mixed", lambda M: (1, slice(0, 2), M.tensor([3, 0])), lambda M: M.tensor([[1.0, 2.0], [3.0, 4.0]])),
    ("int_slice_list", lambda M: (1, slice(None), [0, 3]), lambda M: M.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])),
    ("int_mask", lambda M: (0, slice(None), M.tensor([True, False, True, False])), lambda M: M.zeros(3, 2)),
    ("broadcast_value", lambda M: (slice(None), 1), lambda M: M.tensor([[10.0], [20.0]])),
    ("leading_ones", lambda M: 0, lambda M: M.ones(1, 1, 3, 4)),
    ("int_value_cast", lambda M: 0, 7),
]


@pytest.mark.parametrize("name,index,value", ASSIGN, ids=[a[0] for a in ASSIGN])
def test_assignment_matches_torch(name, index, value):
    torch = pytest.importorskip("torch", reason="PyTorch is the reference for assignment")
    got, want = _assign(disttorch, index, value), _assign(torch, index, value)
    np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_assignment_literals():
    x = disttorch.zeros(2, 3)
    x[0] = 1
    x[:, 2] = disttorch.tensor([5.0, 6.0])
    x[x == 0] = -1
    x[[1, 1], [0, 1]] = disttorch.tensor([8.0, 9.0])
    assert x.tolist() == [[1.0, 1.0, 5.0], [8.0, 9.0, 6.0]]
    i = disttorch.zeros(3, dtype=disttorch.int64)
    i[1] = 2.9
    assert i.tolist() == [0, 2, 0]


def test_indexing_literals():
    x = disttorch.arange(12).view(3, 4)
    assert x[1].tolist() == [4, 5, 6, 7] and x[-1, -1].item() == 11
    assert x[:, 1:3].tolist() == [[1, 2], [5, 6], [9, 10]] and x[::2, ::3].tolist() == [[0, 3], [8, 11]]
    assert x[None].shape == (1, 3, 4) and x[..., None].shape == (3, 4, 1) and x[1, None].shape == (1, 4)
    assert x[[0, 2]].tolist() == [[0, 1, 2, 3], [8, 9, 10, 11]]
    assert x[disttorch.tensor([[0, 1], [2, 2]])].shape == (2, 2, 4)
    assert x[[0, 2], [1, 3]].tolist() == [1, 11]
    assert x[x % 2 == 0].tolist() == [0, 2, 4, 6, 8, 10]
    assert x[disttorch.tensor([True, False, True]), 0].tolist() == [0, 8]
    assert x[1:, [0, 3]].tolist() == [[4, 7], [8, 11]]
    v, i = disttorch.tensor([3.0, 1.0, 2.0]).sort()
    assert v.tolist() == [1.0, 2.0, 3.0] and i.tolist() == [1, 2, 0]
    v, i = disttorch.tensor([3.0, 1.0, 2.0]).topk(2)
    assert v.tolist() == [3.0, 2.0] and i.tolist() == [0, 2]


def test_index_put_accumulate_repeats_and_gather_grad_repeats():
    x = disttorch.zeros(3)
    x.index_put_((disttorch.tensor([0, 0, 2]),), disttorch.tensor([1.0, 2.0, 3.0]), accumulate=True)
    assert x.tolist() == [3.0, 0.0, 3.0]
    w = disttorch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    w[disttorch.tensor([0, 0, 1, 0])].sum().backward()  # repeated indices accumulate
    assert w.grad.tolist() == [3.0, 1.0, 0.0]
    w.grad = None
    w.gather(0, disttorch.tensor([2, 2])).sum().backward()
    assert w.grad.tolist() == [0.0, 0.0, 2.0]


ERRORS = [
    lambda M: M.ones(2, 3).gather(1, M.tensor([0])),
    lambda M: M.ones(2, 3).gather(1, M.tensor([[0, 3]])),
    lambda M: M.arange(4.0).gather(0, M.tensor([-1])),
    lambda M: M.ones(2, 3).index_select(1, M.tensor([3])),
    lambda M: M.ones(3).masked_fill(M.tensor([1, 0, 1]), 0.0),
    lambda M: M.ones(2, 3).topk(4),
    lambda M: M.ones(3).__setitem__(slice(None), M.ones(2)),
    lambda M: M.ones(2, 3).__setitem__([0, 1], M.ones(3, 3)),
    lambda M: M.ones(2, 3).__setitem__(M.tensor([True, False, True]), 1.0),
]


@pytest.mark.parametrize("fn", ERRORS, ids=[str(i) for i in range(len(ERRORS))])
def test_error_texts_are_torchs(fn):
    torch = pytest.importorskip("torch", reason="PyTorch is the reference for error texts")
    check_same_error(fn, torch)


INPLACE = [
    ("scatter_", lambda M: (1, M.tensor([[0], [2], [3]]), M.tensor([[10.0], [20.0], [30.0]]))),
    ("scatter_", lambda M: (0, M.tensor([[1, 0, 2, 1]]), 5.0)),
    ("scatter_add_", lambda M: (1, M.tensor([[0, 0], [1, 3], [2, 2]]), M.ones(3, 2))),
    ("index_add_", lambda M: (0, M.tensor([2, 0]), M.ones(2, 4))),
    ("index_fill_", lambda M: (1, M.tensor([0, 3]), -1.0)),
    ("index_put_", lambda M: ((M.tensor([0, 2]), M.tensor([1, 1])), M.tensor([7.0, 8.0]))),
    ("index_put_", lambda M: ((M.tensor([0, 0]),), M.ones(2, 4), True)),
    ("masked_fill_", lambda M: (M.tensor([True, False, False, True]), 0.0)),
    ("masked_scatter_", lambda M: (M.tensor([[True, False, False, True]] * 3), M.arange(12.0).view(3, 4))),
    ("tril_", lambda M: ()),
    ("triu_", lambda M: (1,)),
    ("cumsum_", lambda M: (1,)),
    ("copy_", lambda M: (M.arange(4.0),)),
    ("addmm_", lambda M: (M.ones(3, 2), M.ones(2, 4))),
]


@pytest.mark.parametrize("name,args", INPLACE, ids=[f"{n}-{i}" for i, (n, _) in enumerate(INPLACE)])
def test_inplace_index_variants(name, args):
    x = disttorch.tensor(X)
    ptr = x.data_ptr()
    assert getattr(x, name)(*args(disttorch)) is x and x.data_ptr() == ptr and x._version == 1
    torch = pytest.importorskip("torch", reason="PyTorch gives the reference values")
    t = torch.tensor(X)
    getattr(t, name)(*args(torch))
    np.testing.assert_allclose(x.numpy(), t.numpy())
    res = []
    for M in (disttorch, torch):
        leaf = M.tensor(X, requires_grad=True)
        y = leaf * 1
        getattr(y, name)(*args(M))
        (y * M.arange(12.0).view(3, 4)).sum().backward()
        res.append(leaf.grad.numpy())
    np.testing.assert_allclose(res[0], res[1])


# The in-place variants PyTorch has for the ops in the core's scope.
INPLACE_NAMES = """add_ sub_ mul_ div_ true_divide_ floor_divide_ remainder_ fmod_ pow_ neg_ negative_ abs_ absolute_
exp_ exp2_ expm1_ log_ log2_ log10_ log1p_ sqrt_ rsqrt_ sin_ cos_ tan_ tanh_ sinh_ cosh_ asin_ acos_ atan_ atan2_
arcsin_ arccos_ arctan_ arctan2_ sigmoid_ relu_ sign_ sgn_ floor_ ceil_ round_ trunc_ fix_ frac_ reciprocal_ square_
erf_ clamp_ clamp_min_ clamp_max_ clip_ lerp_ addcmul_ addcdiv_ subtract_ multiply_ divide_ eq_ ne_ lt_ le_ gt_ ge_
greater_ greater_equal_ less_ less_equal_ not_equal_ logical_not_ logical_and_ logical_or_ logical_xor_ bitwise_and_
bitwise_or_ bitwise_xor_ bitwise_not_ masked_fill_ masked_scatter_ index_fill_ index_add_ index_put_ scatter_
scatter_add_ cumsum_ cumprod_ tril_ triu_ t_ transpose_ swapaxes_ swapdims_ squeeze_ unsqueeze_ copy_ fill_ zero_
addmm_ baddbmm_ addmv_ requires_grad_ detach_ uniform_ normal_ bernoulli_ random_ exponential_ geometric_""".split()


def test_every_inplace_variant_exists():
    missing = [n for n in INPLACE_NAMES if not hasattr(disttorch.Tensor, n)]
    assert not missing
    torch = pytest.importorskip("torch", reason="the list is PyTorch's")
    assert all(hasattr(torch.Tensor, n) for n in INPLACE_NAMES)
