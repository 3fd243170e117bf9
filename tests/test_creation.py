"""Tensor creation: from data, constants, ranges, *_like, random draws, seeds and generators."""
from __future__ import annotations

import numpy as np
import pytest

import disttorch


def test_tensor_from_scalars_and_lists():
    t = disttorch.tensor(3.5)
    assert t.shape == () and t.ndim == 0 and t.item() == 3.5 and t.dtype is disttorch.float32
    t = disttorch.tensor([[1, 2, 3], [4, 5, 6]])
    assert t.shape == (2, 3) and t.dtype is disttorch.int64 and t.tolist() == [[1, 2, 3], [4, 5, 6]]
    t = disttorch.tensor(((1.0, 2.0), (3.0, 4.0)), dtype=disttorch.float64)
    assert t.dtype is disttorch.float64 and t[1, 0].item() == 3.0
    t = disttorch.tensor([[True, False]])
    assert t.dtype is disttorch.bool and t.tolist() == [[True, False]]
    t = disttorch.tensor([1.7, -1.7], dtype=disttorch.int32)
    assert t.tolist() == [1, -1]  # truncation towards zero, as PyTorch
    assert disttorch.tensor([]).shape == (0,)
    assert disttorch.tensor([[], []]).shape == (2, 0)
    assert disttorch.tensor([disttorch.tensor(1.5), disttorch.tensor(2.5)]).tolist() == [1.5, 2.5]


def test_tensor_from_numpy_and_tensors_copies():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = disttorch.tensor(a)
    a[0, 0] = 100
    assert t[0, 0].item() == 0.0 and t.dtype is disttorch.float32
    src = disttorch.ones(2, requires_grad=True)
    c = disttorch.tensor(src.detach())
    c.add_(1)
    assert src.tolist() == [1.0, 1.0] and not c.requires_grad
    assert disttorch.tensor(np.int16(7)).dtype is disttorch.int16


def test_tensor_requires_grad_and_device():
    t = disttorch.tensor([1.0, 2.0], requires_grad=True)
    assert t.requires_grad and t.is_leaf and t.grad is None
    t = disttorch.tensor([1.0], device="cpu")
    assert t.device == disttorch.device("cpu") and str(t.device) == "cpu" and t.device.type == "cpu"
    t = disttorch.zeros(2, device=disttorch.device("cpu"))
    assert not t.is_cuda
    with pytest.raises(RuntimeError) as e:
        disttorch.tensor([1, 2], requires_grad=True)
    assert str(e.value) == "Only Tensors of floating point and complex dtype can require gradients"
    with pytest.raises(RuntimeError) as e:
        disttorch.zeros(2, dtype=disttorch.int64, requires_grad=True)
    assert str(e.value) == "Only Tensors of floating point and complex dtype can require gradients"
    with pytest.raises(RuntimeError) as e:
        disttorch.tensor([1, 2]).requires_grad_()
    assert str(e.value) == "only Tensors of floating point dtype can require gradients"


def test_tensor_errors_are_torchs():
    with pytest.raises(ValueError) as e:
        disttorch.tensor([[1, 2], [3]])
    assert str(e.value) == "expected sequence of length 2 at dim 1 (got 1)"
    with pytest.raises(ValueError) as e:
        disttorch.tensor([[[1, 2], [3, 4]], [[1, 2], [3]]])
    assert str(e.value) == "expected sequence of length 2 at dim 2 (got 1)"
    with pytest.raises(TypeError) as e:
        disttorch.from_numpy(np.array(["a"]))
    assert str(e.value).startswith("can't convert np.ndarray of type numpy.str_. The only supported types are:")
    torch = pytest.importorskip("torch", reason="PyTorch gives the reference messages")
    for bad in ([[1, 2], [3]], [[[1, 2], [3, 4]], [[1, 2], [3]]]):
        msgs = []
        for M in (disttorch, torch):
            with pytest.raises(ValueError) as e:
                M.tensor(bad)
            msgs.append(str(e.value))
        assert msgs[0] == msgs[1]
    for M in (disttorch, torch):
        with pytest.raises(RuntimeError) as e:
            M.tensor([1, 2], requires_grad=True)
        assert str(e.value) == "Only Tensors of floating point and complex dtype can require gradients"
        with pytest.raises(RuntimeError) as e:
            M.tensor([1, 2]).requires_grad_()
        assert str(e.value) == "only Tensors of floating point dtype can require gradients"


def test_as_tensor_and_from_numpy():
    a = np.arange(4.0)
    t = disttorch.from_numpy(a)
    assert t.dtype is disttorch.float64
    a[1] = 50
    assert t[1].item() == 50
    s = disttorch.as_tensor(a)
    s[0] = -1
    assert a[0] == -1
    assert disttorch.as_tensor(t) is t
    f = disttorch.as_tensor(a, dtype=disttorch.float32)
    f[2] = 99
    assert a[2] == 2.0 and f.dtype is disttorch.float32
    assert disttorch.as_tensor([1, 2]).dtype is disttorch.int64
    assert disttorch.asarray([1.0]).tolist() == [1.0]
    with pytest.raises(TypeError):
        disttorch.from_numpy([1, 2])


@pytest.mark.parametrize("size", [(2, 3), ((2, 3),), ([2, 3],), (disttorch.Size([2, 3]),)])
def test_size_argument_forms(size):
    for fn in (disttorch.zeros, disttorch.ones, disttorch.empty, disttorch.rand, disttorch.randn):
        assert fn(*size).shape == (2, 3)


def test_constants():
    assert disttorch.zeros(2, 3).tolist() == [[0.0] * 3] * 2
    assert disttorch.ones(3, dtype=disttorch.int32).tolist() == [1, 1, 1]
    assert disttorch.ones(3, dtype=disttorch.int32).dtype is disttorch.int32
    assert disttorch.empty(0).shape == (0,) and disttorch.empty(2, 0, 3).numel() == 0
    assert disttorch.full((2, 2), 7.5).tolist() == [[7.5, 7.5], [7.5, 7.5]]
    assert disttorch.full([3], 2, dtype=disttorch.float64).dtype is disttorch.float64
    assert disttorch.eye(3).tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    assert disttorch.eye(2, 3).tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    assert disttorch.zeros(()).shape == () and disttorch.ones([]).item() == 1.0
    with pytest.raises(RuntimeError) as e:
        disttorch.ones(-1)
    assert str(e.value) == "Trying to create tensor with negative dimension -1: [-1]"


@pytest.mark.parametrize("args,kwargs", [
    ((5,), {}), ((2, 7), {}), ((0, 1, 0.1), {}), ((1, 0, -0.25), {}), ((0.5, 3.5), {}), ((-3, 4, 2), {}),
    ((0, 10, 3), {"dtype": "float64"}), ((1.0, 2.0, 0.3), {}), ((0, 5), {"dtype": "int32"}), ((10, 0, -3), {}),
])
def test_arange_matches_torch(args, kwargs):
    expected = {
        (5,): [0, 1, 2, 3, 4], (2, 7): [2, 3, 4, 5, 6], (0.5, 3.5): [0.5, 1.5, 2.5], (-3, 4, 2): [-3, -1, 1, 3],
        (10, 0, -3): [10, 7, 4, 1],
    }
    kw = {k: getattr(disttorch, v) for k, v in kwargs.items()}
    got = disttorch.arange(*args, **kw)
    if args in expected and not kwargs:
        assert got.tolist() == expected[args]
    torch = pytest.importorskip("torch", reason="PyTorch decides the length and dtype of arange")
    want = torch.arange(*args, **{k: getattr(torch, v) for k, v in kwargs.items()})
    assert str(got.dtype).split(".")[-1] == str(want.dtype).split(".")[-1]
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6)


def test_arange_errors():
    with pytest.raises(RuntimeError) as e:
        disttorch.arange(0, 5, -1)
    assert str(e.value) == "upper bound and lower bound inconsistent with step sign"
    with pytest.raises(RuntimeError):
        disttorch.arange(0, 5, 0)


def test_linspace_logspace():
    np.testing.assert_allclose(disttorch.linspace(0, 1, 5).numpy(), [0, 0.25, 0.5, 0.75, 1.0])
    assert disttorch.linspace(0, 1, 5).dtype is disttorch.float32
    assert disttorch.linspace(-1, 1, 1).tolist() == [-1.0]
    np.testing.assert_allclose(disttorch.logspace(0, 2, 3).numpy(), [1, 10, 100])


def test_like_family():
    x = disttorch.ones(2, 3, dtype=disttorch.float64)
    for fn in (disttorch.zeros_like, disttorch.ones_like, disttorch.empty_like, disttorch.rand_like,
               disttorch.randn_like):
        y = fn(x)
        assert y.shape == (2, 3) and y.dtype is disttorch.float64 and not y.requires_grad
    assert disttorch.zeros_like(x).sum().item() == 0 and disttorch.ones_like(x).sum().item() == 6
    assert disttorch.full_like(x, 4).tolist() == [[4.0] * 3] * 2
    assert disttorch.zeros_like(x, dtype=disttorch.int64).dtype is disttorch.int64
    assert disttorch.ones_like(x, requires_grad=True).requires_grad
    r = disttorch.randint_like(x, 3, 5)
    assert r.dtype is disttorch.float64 and ((r >= 3) & (r < 5)).all()
    n = x.new_zeros(4)
    assert n.shape == (4,) and n.dtype is disttorch.float64
    assert x.new_ones((1, 2)).tolist() == [[1.0, 1.0]]
    assert x.new_full((2,), 3).tolist() == [3.0, 3.0]
    assert x.new_tensor([1, 2]).dtype is disttorch.float64
    assert x.new_empty(3).shape == (3,)


def test_random_shapes_dtypes_and_ranges():
    disttorch.manual_seed(0)
    r = disttorch.rand(1000)
    assert r.dtype is disttorch.float32 and float(r.min()) >= 0 and float(r.max()) < 1
    assert 0.45 < float(r.mean()) < 0.55
    n = disttorch.randn(4000, dtype=disttorch.float64)
    assert n.dtype is disttorch.float64 and abs(float(n.mean())) < 0.06 and 0.94 < float(n.std()) < 1.06
    i = disttorch.randint(3, 7, (500,))
    assert i.dtype is disttorch.int64 and set(i.tolist()) == {3, 4, 5, 6}
    assert disttorch.randint(4, (2, 2)).shape == (2, 2)
    assert disttorch.randint(0, 2, (3,), dtype=disttorch.int32).dtype is disttorch.int32
    p = disttorch.randperm(10)
    assert sorted(p.tolist()) == list(range(10)) and p.dtype is disttorch.int64
    m = disttorch.normal(2.0, 3.0, size=(3000,))
    assert abs(float(m.mean()) - 2.0) < 0.25 and abs(float(m.std()) - 3.0) < 0.25
    t = disttorch.normal(disttorch.tensor([0.0, 100.0]), disttorch.tensor([1e-3, 1e-3]))
    np.testing.assert_allclose(t.numpy(), [0.0, 100.0], atol=0.01)
    b = disttorch.bernoulli(disttorch.full((1000,), 0.25))
    assert set(b.tolist()) <= {0.0, 1.0} and 0.18 < float(b.mean()) < 0.32
    u = disttorch.empty(1000).uniform_(-2, -1)
    assert float(u.min()) >= -2 and float(u.max()) < -1
    nn_ = disttorch.empty(2000).normal_(5, 0.1)
    assert abs(float(nn_.mean()) - 5) < 0.02
    assert disttorch.randn(2, 3, requires_grad=True).requires_grad


def test_manual_seed_reproducible():
    disttorch.manual_seed(1234)
    a = (disttorch.rand(5), disttorch.randn(3), disttorch.randint(0, 100, (4,)), disttorch.randperm(6))
    disttorch.manual_seed(1234)
    b = (disttorch.rand(5), disttorch.randn(3), disttorch.randint(0, 100, (4,)), disttorch.randperm(6))
    for x, y in zip(a, b):
        assert x.tolist() == y.tolist()
    disttorch.manual_seed(1235)
    assert disttorch.rand(5).tolist() != a[0].tolist()
    assert disttorch.initial_seed() == 1235


def test_generator_streams_are_independent_and_seeded():
    g1 = disttorch.Generator().manual_seed(7)
    g2 = disttorch.Generator()
    g2.manual_seed(7)
    disttorch.manual_seed(0)
    x = disttorch.rand(4, generator=g1)
    disttorch.rand(100)  # the default stream does not disturb g2
    y = disttorch.rand(4, generator=g2)
    assert x.tolist() == y.tolist()
    assert g1.initial_seed() == 7
    assert disttorch.randn(3, generator=g1).tolist() == disttorch.randn(3, generator=g2).tolist()
    assert disttorch.randint(0, 9, (5,), generator=g1).tolist() == disttorch.randint(0, 9, (5,), generator=g2).tolist()
    assert disttorch.randperm(8, generator=g1).tolist() == disttorch.randperm(8, generator=g2).tolist()
    n1, n2 = disttorch.normal(0.0, 1.0, (3,), generator=g1), disttorch.normal(0.0, 1.0, (3,), generator=g2)
    assert n1.tolist() == n2.tolist()
    e1, e2 = disttorch.empty(3), disttorch.empty(3)
    e1.uniform_(generator=g1)
    e2.uniform_(generator=g2)
    assert e1.tolist() == e2.tolist()
    # the default generator's own stream is unaffected by seeded generators
    disttorch.manual_seed(5)
    d1 = disttorch.rand(3)
    disttorch.manual_seed(5)
    disttorch.rand(3, generator=disttorch.Generator().manual_seed(99))
    assert disttorch.rand(3).tolist() == d1.tolist()


def test_rng_state_roundtrip():
    disttorch.manual_seed(3)
    state = disttorch.get_rng_state()
    assert state.dtype is disttorch.uint8
    a = disttorch.randn(4)
    disttorch.set_rng_state(state)
    assert disttorch.randn(4).tolist() == a.tolist()
    g = disttorch.Generator().manual_seed(11)
    st = g.get_state()
    v = disttorch.rand(2, generator=g)
    g.set_state(st)
    assert disttorch.rand(2, generator=g).tolist() == v.tolist()
    disttorch.manual_seed(3)
    with disttorch.random.fork_rng():
        disttorch.rand(10)
    assert disttorch.randn(4).tolist() == a.tolist()  # the stream resumes where it was
