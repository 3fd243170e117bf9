"""The Tensor object: metadata, conversions, copies, dtype/device moves and basic in-place fills."""
from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import disttorch


def test_size_and_shape():
    x = disttorch.zeros(2, 3, 4)
    assert isinstance(x.shape, disttorch.Size) and isinstance(x.size(), disttorch.Size)
    assert x.shape == (2, 3, 4) and x.size() == disttorch.Size([2, 3, 4]) and list(x.shape) == [2, 3, 4]
    assert x.size(0) == 2 and x.size(-1) == 4 and x.shape[1] == 3
    assert x.shape[1:] == disttorch.Size([3, 4]) and isinstance(x.shape[1:], disttorch.Size)
    assert repr(x.shape) == "disttorch.Size([2, 3, 4])"
    assert x.shape.numel() == 24 and x.numel() == 24 and x.nelement() == 24
    assert x.dim() == 3 and x.ndim == 3 and x.ndimension() == 3
    assert disttorch.tensor(5.0).shape == () and disttorch.tensor(5.0).dim() == 0
    assert x.stride() == (12, 4, 1) and x.stride(1) == 4 and x.is_contiguous()
    assert not x.transpose(0, 1).is_contiguous() and x.transpose(0, 1).stride() == (4, 12, 1)
    assert x.element_size() == 4 and x.double().element_size() == 8
    assert len(x) == 2
    with pytest.raises(IndexError) as e:
        x.size(3)
    assert str(e.value) == "Dimension out of range (expected to be in range of [-3, 2], but got 3)"
    with pytest.raises(TypeError):
        len(disttorch.tensor(1.0))


def test_dtype_device_leaf():
    x = disttorch.ones(2)
    assert x.dtype is disttorch.float32 and x.device == disttorch.device("cpu") and x.device.type == "cpu"
    assert x.is_leaf and not x.requires_grad and x.grad_fn is None
    w = disttorch.ones(2, requires_grad=True)
    y = w * 2
    assert w.is_leaf and not y.is_leaf and y.requires_grad
    assert y.detach().is_leaf and not y.detach().requires_grad
    assert repr(disttorch.device("cuda", 1)) == "device(type='cuda', index=1)"
    assert str(disttorch.device("cuda:1")) == "cuda:1" and disttorch.device("cuda:1").index == 1
    assert disttorch.device("cpu") == "cpu"


def test_T_and_mT():
    x = disttorch.arange(6).view(2, 3)
    assert x.T.shape == (3, 2) and x.T.tolist() == [[0, 3], [1, 4], [2, 5]]
    assert x.t().tolist() == x.T.tolist()
    assert disttorch.arange(3).T.tolist() == [0, 1, 2]
    b = disttorch.arange(24).view(2, 3, 4)
    assert b.mT.shape == (2, 4, 3) and b.mT[1, 2, 0].item() == b[1, 0, 2].item()
    with pytest.raises(RuntimeError) as e:
        b.t()
    assert str(e.value) == "t() expects a tensor with <= 2 dimensions, but self is 3D"


def test_item_tolist_scalars():
    assert disttorch.tensor([[2.5]]).item() == 2.5 and isinstance(disttorch.tensor(3).item(), int)
    assert isinstance(disttorch.tensor(True).item(), bool)
    assert disttorch.tensor([[1, 2], [3, 4]]).tolist() == [[1, 2], [3, 4]]
    assert disttorch.tensor(1.5).tolist() == 1.5
    assert float(disttorch.tensor([2.0])) == 2.0 and int(disttorch.tensor(7.9)) == 7
    assert [1, 2, 3][disttorch.tensor(1)] == 2
    assert bool(disttorch.tensor([1.0])) is True and bool(disttorch.tensor(0)) is False
    with pytest.raises(RuntimeError) as e:
        disttorch.ones(2).item()
    assert str(e.value) == "a Tensor with 2 elements cannot be converted to Scalar"
    with pytest.raises(RuntimeError) as e:
        bool(disttorch.ones(2))
    assert str(e.value) == "Boolean value of Tensor with more than one value is ambiguous"
    assert f"{disttorch.tensor(2.5):.2f}" == "2.50"
    assert [t.tolist() for t in disttorch.tensor([[1, 2], [3, 4]])] == [[1, 2], [3, 4]]
    assert 3 in disttorch.tensor([1, 2, 3]) and 5 not in disttorch.tensor([1, 2, 3])


def test_numpy_shares_memory_and_refuses_grad():
    x = disttorch.ones(3)
    n = x.numpy()
    n[0] = 5
    assert x[0].item() == 5
    x[1] = 7
    assert n[1] == 7
    w = disttorch.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError) as e:
        w.numpy()
    assert str(e.value) == "Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead."
    assert w.detach().numpy().tolist() == [1.0, 1.0]
    assert w.numpy(force=True).tolist() == [1.0, 1.0]
    assert np.asarray(x).dtype == np.float32 and np.asarray(x, dtype=np.float64).dtype == np.float64


def test_clone_detach():
    w = disttorch.tensor([1.0, 2.0], requires_grad=True)
    c = w.clone()
    assert c.requires_grad and type(c.grad_fn).__name__ == "CloneBackward0"
    assert not np.shares_memory(c.detach().numpy(), w.detach().numpy())
    d = (w * 2).detach()
    assert not d.requires_grad and d.grad_fn is None and d.tolist() == [2.0, 4.0]
    y = w * 3
    d2 = y.detach()
    d2[0] = 100  # detach shares memory
    assert y[0].item() == 100
    z = w * 1
    assert z.detach_() is z and z.grad_fn is None and not z.requires_grad and z.is_leaf
    v = (w * 1)[0]
    with pytest.raises(RuntimeError) as e:
        v.detach_()
    assert str(e.value).startswith("Can't detach views in-place. Use detach() instead.")


def test_contiguous():
    x = disttorch.arange(6.0).view(2, 3)
    assert x.contiguous() is x
    t = x.t()
    c = t.contiguous()
    assert c.is_contiguous() and c.tolist() == t.tolist() and c.stride() == (2, 1)


def test_to_and_type_conversions():
    x = disttorch.tensor([1.7, -2.2])
    assert x.to(disttorch.float32) is x and x.to("cpu") is x and x.to(x) is x
    assert x.to(disttorch.float64).dtype is disttorch.float64
    assert x.to("cpu", disttorch.float64).dtype is disttorch.float64
    assert x.to(dtype=disttorch.int32).tolist() == [1, -2]
    assert x.to(disttorch.zeros(1, dtype=disttorch.float64)).dtype is disttorch.float64
    c = x.to(disttorch.float32, copy=True)
    assert c is not x and c.tolist() == x.tolist()
    assert x.float().dtype is disttorch.float32 and x.double().dtype is disttorch.float64
    assert x.half().dtype is disttorch.float16 and x.long().tolist() == [1, -2] and x.int().dtype is disttorch.int32
    assert x.bool().tolist() == [True, True] and disttorch.tensor([0.0, 3.0]).bool().tolist() == [False, True]
    assert x.short().dtype is disttorch.int16 and x.char().dtype is disttorch.int8
    assert disttorch.tensor([3.9]).byte().tolist() == [3]
    assert x.type() == "torch.FloatTensor" and x.long().type() == "torch.LongTensor"
    assert x.type(disttorch.float64).dtype is disttorch.float64
    assert x.type("torch.IntTensor").dtype is disttorch.int32
    assert x.type_as(disttorch.tensor([1])).dtype is disttorch.int64
    w = disttorch.tensor([1.0, 2.0], requires_grad=True)
    d = w.double()
    assert d.requires_grad and type(d.grad_fn).__name__ == "ToCopyBackward0"
    d.sum().backward()
    assert w.grad.dtype is disttorch.float32 and w.grad.tolist() == [1.0, 1.0]
    assert not w.long().requires_grad


def test_copy_fill_zero():
    x = disttorch.zeros(2, 3)
    assert x.copy_(disttorch.tensor([1.0, 2.0, 3.0])) is x  # broadcast
    assert x.tolist() == [[1, 2, 3], [1, 2, 3]]
    x.copy_(disttorch.tensor([[1, 1, 1], [2, 2, 2]]))  # dtype converted
    assert x.dtype is disttorch.float32 and x.tolist() == [[1, 1, 1], [2, 2, 2]]
    assert x.fill_(4.5) is x and x.tolist() == [[4.5] * 3] * 2
    x.fill_(disttorch.tensor(2.0))
    assert x.sum().item() == 12
    assert x.zero_() is x and x.abs().sum().item() == 0
    i = disttorch.zeros(2, dtype=disttorch.int64)
    i.fill_(2.7)
    assert i.tolist() == [2, 2]
    w = disttorch.tensor([1.0, 2.0], requires_grad=True)
    y = disttorch.zeros(2)
    y.copy_(w * 2)  # copy_ records the source's history
    assert y.requires_grad and y.tolist() == [2.0, 4.0]
    (y * y).sum().backward()
    assert w.grad.tolist() == [8.0, 16.0]
    with pytest.raises(RuntimeError):
        disttorch.zeros(3).copy_(disttorch.ones(2))


def test_requires_grad_flags():
    x = disttorch.ones(2)
    assert x.requires_grad_() is x and x.requires_grad
    x.requires_grad = False
    assert not x.requires_grad
    x.requires_grad = True
    y = x * 2
    with pytest.raises(RuntimeError) as e:
        y.requires_grad_(False)
    assert str(e.value).startswith("you can only change requires_grad flags of leaf variables.")
    assert y.requires_grad_(True) is y


def test_data_attribute():
    w = disttorch.ones(2, requires_grad=True)
    d = w.data
    assert not d.requires_grad and np.shares_memory(d.numpy(), w.detach().numpy())
    d.mul_(3)  # the usual optimizer idiom: no autograd error, the parameter sees the write
    assert w.tolist() == [3.0, 3.0]
    w.data = disttorch.tensor([5.0, 6.0])
    assert w.tolist() == [5.0, 6.0] and w.requires_grad


def test_pickle_and_deepcopy():
    w = disttorch.tensor([[1.0, 2.0]], requires_grad=True)
    w.grad = disttorch.tensor([[0.5, 0.5]])
    c = copy.deepcopy(w)
    assert c.tolist() == w.tolist() and c.requires_grad and c.grad.tolist() == [[0.5, 0.5]]
    c.data.add_(1)
    assert w.tolist() == [[1.0, 2.0]]
    p = pickle.loads(pickle.dumps(w))
    assert p.tolist() == [[1.0, 2.0]] and p.requires_grad and p.dtype is disttorch.float32
    with pytest.raises(RuntimeError):
        copy.deepcopy(w * 2)


def test_matches_torch_metadata():
    torch = pytest.importorskip("torch", reason="PyTorch gives the reference metadata")
    for M in (disttorch, torch):
        x = M.zeros(2, 3, 4)
        info = (tuple(x.shape), x.size(1), x.dim(), x.numel(), x.stride(), x.permute(2, 0, 1).stride(),
                x.permute(2, 0, 1).is_contiguous(), x[:, 1].stride(), x.type(), x.T.shape if x.ndim == 2 else None,
                str(x.double().dtype).split(".")[-1], x.element_size(), len(x))
        if M is disttorch:
            ours = info
        else:
            assert ours == info
