"""Views share memory (and the version counter) exactly where PyTorch's do.

Each op is applied to a fresh ``arange`` tensor; a write through the base must show in the result
exactly when it is a view, a write through the result must show in the base, and the expectation is
written down here (so the test runs without torch) and checked against torch when it is installed.
"""
from __future__ import annotations

import numpy as np
import pytest

import disttorch

# (name, op, is_view in PyTorch)
OPS = [
    ("view", lambda M, x: x.view(6, 4), True),
    ("view_as", lambda M, x: x.view_as(M.zeros(4, 6)), True),
    ("reshape_contiguous", lambda M, x: x.reshape(4, 6), True),
    ("reshape_noncontiguous", lambda M, x: x.transpose(0, 1).reshape(-1), False),
    ("flatten", lambda M, x: x.flatten(), True),
    ("flatten_noncontiguous", lambda M, x: x.permute(2, 0, 1).flatten(), False),
    ("unflatten", lambda M, x: x.unflatten(2, (2, 2)), True),
    ("permute", lambda M, x: x.permute(2, 0, 1), True),
    ("transpose", lambda M, x: x.transpose(0, 2), True),
    ("mT", lambda M, x: x.mT, True),
    ("t", lambda M, x: x[0].t(), True),
    ("T", lambda M, x: x[0].T, True),
    ("squeeze", lambda M, x: x[:1].squeeze(0), True),
    ("unsqueeze", lambda M, x: x.unsqueeze(1), True),
    ("expand", lambda M, x: x[:, :1].expand(2, 5, 4), True),
    ("int", lambda M, x: x[1], True),
    ("slice", lambda M, x: x[:, 1:], True),
    ("step", lambda M, x: x[..., ::2], True),
    ("none", lambda M, x: x[None, 0], True),
    ("ellipsis", lambda M, x: x[...], True),
    ("narrow", lambda M, x: x.narrow(2, 1, 2), True),
    ("select", lambda M, x: x.select(1, 2), True),
    ("diagonal", lambda M, x: x.diagonal(0, 1, 2), True),
    ("split", lambda M, x: x.split(1, 1)[1], True),
    ("chunk", lambda M, x: x.chunk(2, 2)[1], True),
    ("unbind", lambda M, x: x.unbind(0)[1], True),
    ("movedim", lambda M, x: x.movedim(0, 2), True),
    ("detach", lambda M, x: x.detach(), True),
    ("contiguous_already", lambda M, x: x.contiguous(), True),
    ("contiguous_copy", lambda M, x: x.transpose(0, 1).contiguous(), False),
    ("to_same_dtype", lambda M, x: x.to(M.float32), True),
    ("to_other_dtype", lambda M, x: x.to(M.float64), False),
    ("clone", lambda M, x: x.clone(), False),
    ("bool_mask", lambda M, x: x[x > 5], False),
    ("int_list", lambda M, x: x[[0, 1]], False),
    ("long_tensor", lambda M, x: x[:, M.tensor([0, 2])], False),
    ("flip", lambda M, x: x.flip(0), False),
    ("repeat", lambda M, x: x.repeat(1, 1, 1), False),
    ("cat", lambda M, x: M.cat([x]), False),
    ("diag", lambda M, x: M.diag(x[0]), False),
    ("index_select", lambda M, x: x.index_select(0, M.tensor([0, 1])), False),
    ("masked_select", lambda M, x: x.masked_select(x > -1), False),
    ("tril", lambda M, x: x.tril(), False),
    ("roll", lambda M, x: x.roll(1, 0), False),
]


def _base(M):
    return M.arange(24.0).reshape(2, 3, 4)


def _shares(M, op):
    x = _base(M)
    y = op(M, x)
    before = y.clone()
    x.add_(100)
    return bool((y != before).all())


@pytest.mark.parametrize("name,op,is_view", OPS, ids=[o[0] for o in OPS])
def test_view_shares_memory(name, op, is_view):
    assert _shares(disttorch, op) == is_view
    x = _base(disttorch)
    y = op(disttorch, x)
    if is_view:
        # version counter is shared: an in-place write through either side is seen by the other
        v = x._version
        x.add_(1)
        assert y._version == x._version == v + 1
        if name != "expand":  # PyTorch refuses to write into overlapping (expanded) memory
            y.mul_(0)
            assert x._version == v + 2
            assert float(x.abs().sum()) < float(_base(disttorch).add(1).abs().sum())
    else:
        assert not np.shares_memory(y.numpy(), x.numpy())


@pytest.mark.parametrize("name,op,is_view", OPS, ids=[o[0] for o in OPS])
def test_view_table_is_torchs(name, op, is_view):
    torch = pytest.importorskip("torch", reason="PyTorch decides which ops are views")
    assert _shares(torch, op) == is_view


def test_write_through_view_reaches_base():
    x = disttorch.zeros(3, 4)
    x[1].fill_(1)
    x[:, 2] = 5
    x.t()[0, 2] = 7
    x.view(-1)[-1] = 9
    x[..., ::3].add_(10)
    c, d = x.chunk(2, 1)
    d.sub_(1)
    expected = np.zeros((3, 4), np.float32)
    expected[1] = 1
    expected[:, 2] = 5
    expected[2, 0] = 7
    expected[-1, -1] = 9
    expected[:, ::3] += 10
    expected[:, 2:] -= 1
    np.testing.assert_array_equal(x.numpy(), expected)


def test_numpy_and_from_numpy_share_memory():
    a = np.zeros(3, np.float32)
    t = disttorch.from_numpy(a)
    a[0] = 5
    assert t[0].item() == 5
    t[1] = 7
    assert a[1] == 7
    n = t.numpy()
    n[2] = 9
    assert t.tolist() == [5, 7, 9]
    assert disttorch.as_tensor(a).numpy() is a or np.shares_memory(disttorch.as_tensor(a).numpy(), a)
    assert not np.shares_memory(disttorch.tensor(a).numpy(), a)  # tensor() always copies
    assert not np.shares_memory(disttorch.as_tensor(a, dtype=disttorch.float64).numpy(), a)
    d = disttorch.ones(2)
    assert np.shares_memory(d.data.numpy(), d.numpy()) and np.shares_memory(d.detach().numpy(), d.numpy())


def test_views_of_views_and_base():
    x = disttorch.arange(12.0)
    v = x.view(3, 4)[1:, ::2].t()
    assert v._base is x
    x.mul_(2)
    assert v.tolist() == [[8.0, 16.0], [12.0, 20.0]]
    assert x.view(3, 4)._version == x._version


def test_version_counter():
    x = disttorch.ones(3)
    assert x._version == 0
    x.add_(1)
    x[0] = 3
    x.zero_()
    assert x._version == 3
    y = x + 1  # out-of-place results start at version 0
    assert y._version == 0
    torch = pytest.importorskip("torch", reason="PyTorch counts versions the same way")
    t = torch.ones(3)
    t.add_(1)
    t[0] = 3
    t.zero_()
    assert t._version == x._version


# ---- autograd through in-place writes on views -------------------------------------------------------
def _chained_setitem(M):
    x = M.arange(6.0).view(2, 3).requires_grad_()
    y = x * 1
    y[0][1] = 10.0  # y[0] is a view; the write must reach y's history
    (y * M.arange(6.0).view(2, 3)).sum().backward()
    return [x.grad]


def _inplace_on_row(M):
    x = M.arange(6.0).view(2, 3).requires_grad_()
    w = M.tensor(5.0, requires_grad=True)
    y = x * 1
    y[1].mul_(w)
    (y * M.arange(6.0).view(2, 3)).sum().backward()
    return [x.grad, w.grad]


def _inplace_on_column(M):
    x = M.arange(6.0).view(2, 3).requires_grad_()
    y = x.clone()
    y[:, 1].exp_()
    (y * y).sum().backward()
    return [x.grad]


def _inplace_on_transpose(M):
    x = M.arange(6.0).view(2, 3).requires_grad_()
    y = x * 2
    w = M.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    y.t()[1:].mul_(w)
    y.pow(2).sum().backward()
    return [x.grad, w.grad]


def _augmented_assignment(M):
    x = M.arange(6.0).view(2, 3).requires_grad_()
    w = M.ones(3, requires_grad=True)
    y = x * 1
    y[0] += w * 3
    y[:, 2] *= 2
    (y ** 2).sum().backward()
    return [x.grad, w.grad]


def _view_of_zeros_buffer(M):
    w = M.tensor([1.0, 2.0], requires_grad=True)
    buf = M.zeros(2, 2)
    buf[1].copy_(w * 3)  # a plain buffer becomes part of the graph through its view
    (buf * M.tensor([[1.0, 1.0], [5.0, 7.0]])).sum().backward()
    return [w.grad]


@pytest.mark.parametrize("fn", [_chained_setitem, _inplace_on_row, _inplace_on_column, _inplace_on_transpose,
                                _augmented_assignment, _view_of_zeros_buffer], ids=lambda f: f.__name__.strip("_"))
def test_inplace_on_view_gradients(fn):
    got = [g.numpy() for g in fn(disttorch)]
    literal = {"_chained_setitem": [[[0.0, 0.0, 2.0], [3.0, 4.0, 5.0]]], "_view_of_zeros_buffer": [[15.0, 21.0]]}
    if fn.__name__ in literal:
        for g, want in zip(got, literal[fn.__name__]):
            np.testing.assert_allclose(g, want)
    torch = pytest.importorskip("torch", reason="PyTorch's gradients are the reference")
    for g, want in zip(got, fn(torch)):
        np.testing.assert_allclose(g, want.numpy(), rtol=1e-5)


def test_view_taken_before_inplace_write_to_base():
    # PyTorch regenerates the view's history (AsStridedBackward0) once its base was written in place
    x = disttorch.arange(6.0).view(2, 3).requires_grad_()
    y = x * 1
    z = y[0]
    col = y[:, 1]
    y.mul_(2)
    assert type(z.grad_fn).__name__ == "AsStridedBackward0" and type(col.grad_fn).__name__ == "AsStridedBackward0"
    z.sum().backward()
    assert x.grad.tolist() == [[2.0, 2.0, 2.0], [0.0, 0.0, 0.0]]


def test_overlapping_sibling_view_sees_a_write_through_another_view():
    x = disttorch.arange(6.0).view(2, 3).requires_grad_()
    y = x * 1
    a = y[0]
    b = y[0, :2]
    b.mul_(3)
    assert a.tolist() == [0.0, 3.0, 2.0]
    a.sum().backward()
    assert x.grad.tolist() == [[3.0, 3.0, 1.0], [0.0, 0.0, 0.0]]


def test_view_history_after_setitem_on_base_matches_torch():
    torch = pytest.importorskip("torch", reason="PyTorch not installed: parity check skipped")
    results = []
    for mod in (disttorch, torch):
        x = mod.arange(12.0).view(3, 4).requires_grad_()
        y = x * 2
        v = y[1:, ::2]
        y[1] = y[1] * 3
        (v * v).sum().backward()
        results.append((x.grad.tolist(), type(v.grad_fn).__name__))
    assert results[0] == results[1]


def test_many_live_views_register_in_linear_time():
    x = disttorch.zeros(20000, 2, requires_grad=True) * 1
    rows = [x[i] for i in range(20000)]  # each registers on x; pruning must stay amortised O(1)
    assert len(x._views) == 20000 and rows[-1]._base is x


def test_view_registry_prunes_dead_views_while_many_stay_alive():
    x = disttorch.zeros(2000, 2, requires_grad=True) * 1
    kept = [x[i] for i in range(1000)]
    for i in range(5000):  # short-lived views: the list must not grow with them
        x[i % 2000]
    assert len(x._views) <= 2 * len(kept) + 1 and all(k._base is x for k in kept)


OVERLAP_WRITES = {
    "add_": lambda M, x: x.add_(0.5), "relu_": lambda M, x: x.relu_(), "exp_": lambda M, x: x.exp_(),
    "clamp_": lambda M, x: x.clamp_(0, 1), "mul_tensor": lambda M, x: x.mul_(M.ones(4, 4)),
    "copy_": lambda M, x: x.copy_(M.ones(4, 4)),
}


@pytest.mark.parametrize("requires_grad", [False, True])
@pytest.mark.parametrize("op", sorted(OVERLAP_WRITES))
def test_inplace_arithmetic_on_expanded_tensor_is_refused_as_in_pytorch(op, requires_grad):
    base = disttorch.arange(4.0).view(1, 4).requires_grad_(requires_grad) * 1
    x = base.expand(4, 4)
    with pytest.raises(RuntimeError, match="more than one element of the written-to tensor refers to a single "
                                           "memory location"):
        OVERLAP_WRITES[op](disttorch, x)
    assert base.tolist() == [[0.0, 1.0, 2.0, 3.0]]  # nothing written


def test_overwriting_an_expanded_tensor_with_autograd_is_allowed_as_in_pytorch():
    base = disttorch.arange(4.0).view(1, 4).requires_grad_() * 1
    x = base.expand(4, 4)
    x.fill_(2.0)
    assert base.tolist() == [[2.0, 2.0, 2.0, 2.0]]


def test_assigning_into_aliased_elements_of_an_expanded_tensor_is_refused():
    x = (disttorch.arange(4.0).view(1, 4).requires_grad_() * 1).expand(4, 4)
    with pytest.raises(RuntimeError, match="refers to a single memory location"):
        x[:, 0] = 1.0  # the column's four elements are one memory location
    x[0] = 1.0  # a row of distinct locations is fine, as in PyTorch
    assert x.tolist()[3] == [1.0, 1.0, 1.0, 1.0]
