"""In-place ops, views and writes through views on a CUDA device (strict CuPy stand-in): the same memory
semantics, version counters and gradients as on the host."""
from __future__ import annotations

import sys
import os

import numpy as np
import pytest

import disttorch
from _on_device import OnDevice, assert_on, assert_same, host

import test_index
import test_pointwise

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import test_views  # noqa: E402

CUDA = OnDevice("cuda")


def _inplace(M, name, args, kwargs):
    """A recorded in-place op on a non-leaf; returns (result, leaf gradient)."""
    leaf = M.tensor([0.25, 0.5, 0.75]).requires_grad_()
    y = leaf * 1
    r = getattr(y, name)(*test_pointwise._inplace_args(M, args), **kwargs)
    assert r is y
    if name not in ("floor_divide_", "eq_", "lt_", "ge_", "not_equal_"):
        y.sum().backward()
    return y.detach(), leaf.grad


@pytest.mark.parametrize("name,args,kwargs", test_pointwise.INPLACE,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(test_pointwise.INPLACE)])
def test_pointwise_inplace_on_device(gpu, name, args, kwargs):
    x = CUDA.tensor([0.25, 0.5, 0.75])
    ptr, version = x.data_ptr(), x._version
    assert getattr(x, name)(*test_pointwise._inplace_args(CUDA, args), **kwargs) is x
    assert x.data_ptr() == ptr and x._version == version + 1
    assert_on(x, "cuda:0")
    got, want = _inplace(CUDA, name, args, kwargs), _inplace(disttorch, name, args, kwargs)
    assert_same(got, want, "cuda:0", what=name)


@pytest.mark.parametrize("name,args", test_index.INPLACE, ids=[f"{n}-{i}" for i, (n, _) in enumerate(test_index.INPLACE)])
def test_index_inplace_on_device(gpu, name, args):
    res = []
    for M in (CUDA, disttorch):
        leaf = M.tensor(test_index.X, requires_grad=True)
        y = leaf * 1
        getattr(y, name)(*args(M))
        (y * M.arange(12.0).view(3, 4)).sum().backward()
        res.append((y.detach(), leaf.grad))
    assert_same(res[0], res[1], "cuda:0", what=name)


@pytest.mark.parametrize("name,op,is_view", test_views.OPS, ids=[o[0] for o in test_views.OPS])
def test_views_share_device_memory(gpu, name, op, is_view):
    assert test_views._shares(CUDA, op) == is_view
    x = test_views._base(CUDA)
    y = op(CUDA, x)
    assert_on(y, "cuda:0")
    if is_view:
        v = x._version
        x.add_(1)
        assert y._version == x._version == v + 1


def _write_through_views(M):
    x = M.zeros(3, 4)
    x[1].fill_(1)
    x[:, 2] = 5
    x.t()[0, 2] = 7
    x.view(-1)[-1] = 9
    x[..., ::3].add_(10)
    x[[0, 2], 1] = M.tensor([3.0, 4.0])
    x[x > 9] = -1.0
    x[0, [True, False, True, False]] = 2.0
    return x


def test_write_through_view_reaches_base_on_device(gpu):
    assert_same(_write_through_views(CUDA), _write_through_views(disttorch), "cuda:0")


def _rebased_view_gradient(M):
    """An in-place write into a view of a non-leaf: the base's history is rebased (CopySlices)."""
    leaf = M.arange(12.0).reshape(3, 4).requires_grad_()
    base = leaf * 2
    view = base[1:, ::2]
    view.mul_(M.tensor([[1.0, 2.0], [3.0, 4.0]]))
    view[0, 0] = leaf[0, 0] * 10
    (base * M.arange(12.0).reshape(3, 4)).sum().backward()
    return base.detach(), view.detach(), leaf.grad, type(base.grad_fn).__name__


def test_inplace_write_into_view_rebases_history_on_device(gpu):
    got, want = _rebased_view_gradient(CUDA), _rebased_view_gradient(disttorch)
    assert got[3] == want[3] == "CopySlices"
    assert_same(got[:3], want[:3], "cuda:0")


def test_setitem_moves_host_values_and_refuses_device_indices_on_host(gpu):
    x = CUDA.zeros(2, 3)
    x[0] = disttorch.tensor([1.0, 2.0, 3.0])  # copy_ across devices, as PyTorch's x[0] = t
    x[1, 1] = disttorch.tensor(5.0)
    assert_on(x, "cuda:0")
    np.testing.assert_array_equal(host(x), [[1, 2, 3], [0, 5, 0]])
    with pytest.raises(RuntimeError, match=r"indices should be either on cpu or on the same device as the indexed "
                                           r"tensor \(cpu\)"):
        disttorch.zeros(3)[CUDA.tensor([0, 1])]
    with pytest.raises(RuntimeError, match="indices should be either on cpu"):
        disttorch.zeros(3)[CUDA.tensor([0, 1])] = 1.0
    g = CUDA.arange(4.0)
    assert_same(g[disttorch.tensor([3, 1])], disttorch.arange(4.0)[disttorch.tensor([3, 1])], "cuda:0")
