"""disttorch.cuda, device placement rules and the default device of a worker, with the strict CuPy stand-in."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import disttorch
from disttorch import _backend
from _on_device import assert_on, host


def test_queries_and_controls(fake_cupy):
    cuda = disttorch.cuda
    assert cuda.is_available() and cuda.device_count() == 2 and cuda.current_device() == 0
    cuda.set_device(1)
    assert cuda.current_device() == 1
    cuda.set_device("cuda:0")
    assert cuda.current_device() == 0
    cuda.set_device(disttorch.device("cuda", 1))
    with cuda.device(0):
        assert cuda.current_device() == 0
    assert cuda.current_device() == 1
    with pytest.raises(RuntimeError, match=r"invalid device ordinal 5 \(device_count\(\) = 2\)"):
        cuda.set_device(5)
    with pytest.raises(ValueError, match="Expected a cuda device"):
        cuda.set_device("cpu")
    before = fake_cupy._runtime.synchronized
    cuda.synchronize()
    cuda.synchronize(0)
    assert fake_cupy._runtime.synchronized == before + 2
    assert cuda.get_device_name(0) == "Fake GPU (NumPy)" and cuda.get_device_capability() == (9, 0)
    free, total = cuda.mem_get_info()
    assert 0 < free <= total


def test_memory_statistics_follow_live_device_arrays(fake_cupy):
    cuda = disttorch.cuda
    cuda.reset_peak_memory_stats()
    base = cuda.memory_allocated()
    x = disttorch.zeros(1024, device="cuda")  # 4 KiB
    assert cuda.memory_allocated() >= base + 4096
    peak = cuda.max_memory_allocated()
    assert peak >= base + 4096 and cuda.memory_reserved() >= cuda.memory_allocated()
    del x
    assert cuda.memory_allocated() == base and cuda.max_memory_allocated() == peak
    stats = cuda.memory_stats()
    assert stats["allocated_bytes.all.current"] == base
    cuda.empty_cache()


def test_without_cuda_queries_answer_nothing_and_controls_raise(monkeypatch):
    _backend.set_cupy_for_testing(None)
    monkeypatch.setattr(_backend, "_cupy_checked", True)
    monkeypatch.setattr(_backend, "_cupy", None)
    cuda = disttorch.cuda
    assert not cuda.is_available() and cuda.device_count() == 0
    assert cuda.memory_allocated() == 0 and cuda.max_memory_allocated() == 0 and cuda.memory_reserved() == 0
    cuda.empty_cache()
    for call in (cuda.current_device, lambda: cuda.set_device(0), cuda.synchronize):
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            call()
    with disttorch.cuda.device_of(disttorch.ones(1)):  # a CPU tensor: nothing to switch
        pass


def test_plain_cuda_means_the_current_device(fake_cupy):
    disttorch.cuda.set_device(1)
    x = disttorch.ones(3).cuda()
    assert x.device == disttorch.device("cuda:1")
    assert disttorch.zeros(2, device="cuda").device.index == 1
    assert disttorch.tensor([1.0], device="cuda").device.index == 1
    assert x.to("cuda") is x and x.to("cuda:1") is x
    y = x.to("cuda:0")
    assert y.device.index == 0 and y is not x
    # ops on tensors of the current device stay there, gradients included
    w = disttorch.randn(3, 3, device="cuda", requires_grad=True)
    loss = (w @ x).relu().sum()
    loss.backward()
    assert loss.device.index == 1 and w.grad.device.index == 1


@pytest.mark.parametrize("env,expected", [({"DISTTORCH_DEVICE_INDEX": "1", "LOCAL_RANK": "0"}, 1),
                                          ({"LOCAL_RANK": "1"}, 1), ({"LOCAL_RANK": "7"}, 0), ({}, 0)])
def test_default_device_of_a_worker(fake_cupy, monkeypatch, env, expected):
    for var in ("DISTTORCH_DEVICE_INDEX", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    _backend.set_cupy_for_testing(fake_cupy)  # as a fresh process: the choice happens on first use
    assert disttorch.ones(1, device="cuda").device.index == expected
    assert disttorch.cuda.current_device() == expected


def test_default_device_bad_index_and_explicit_choice_wins(fake_cupy, monkeypatch):
    monkeypatch.setenv("DISTTORCH_DEVICE_INDEX", "9")
    with pytest.raises(RuntimeError, match=r"DISTTORCH_DEVICE_INDEX='9' is not a GPU index of this machine"):
        disttorch.ones(1).cuda()
    _backend.set_cupy_for_testing(fake_cupy)
    monkeypatch.setenv("DISTTORCH_DEVICE_INDEX", "1")
    disttorch.cuda.set_device(0)  # before any other CUDA use: the script's choice wins over the env
    assert disttorch.ones(1).cuda().device.index == 0


def test_each_thread_chooses_its_default_device(fake_cupy, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    seen = []
    t = threading.Thread(target=lambda: seen.append(disttorch.zeros(1, device="cuda").device.index))
    t.start()
    t.join()
    assert seen == [1]


def test_creation_and_random_with_device(fake_cupy):
    for make in (lambda d: disttorch.zeros(2, 3, device=d), lambda d: disttorch.ones(2, device=d, dtype=disttorch.int64),
                 lambda d: disttorch.full((2,), 1.5, device=d), lambda d: disttorch.eye(3, device=d),
                 lambda d: disttorch.arange(5, device=d), lambda d: disttorch.linspace(0, 1, 4, device=d),
                 lambda d: disttorch.empty(3, device=d), lambda d: disttorch.tensor([[1, 2]], device=d),
                 lambda d: disttorch.Tensor([1.0, 2.0], device=d)):
        assert_on(make("cuda"), "cuda:0")
        assert make("cuda:1").device.index == 1
    for draw in (lambda d: disttorch.rand(4, device=d), lambda d: disttorch.randn(2, 2, device=d),
                 lambda d: disttorch.randint(0, 9, (5,), device=d), lambda d: disttorch.randperm(6, device=d),
                 lambda d: disttorch.normal(0.0, 2.0, (3,), device=d)):
        disttorch.manual_seed(4)
        g = draw("cuda")
        disttorch.manual_seed(4)
        assert_on(g, "cuda:0")
        np.testing.assert_array_equal(host(g), host(draw("cpu")))  # one seed, the same numbers everywhere
    x = disttorch.rand(3, 4, device="cuda")
    for like in (disttorch.zeros_like(x), disttorch.ones_like(x), disttorch.rand_like(x), disttorch.randn_like(x),
                 disttorch.full_like(x, 2.0), disttorch.empty_like(x), x.new_zeros(2), x.new_ones(2), x.new_full((2,), 3),
                 x.new_tensor([1.0]), x.new_empty(1)):
        assert_on(like, "cuda:0")
    probs = disttorch.tensor([[0.2, 0.8], [0.5, 0.5]], device="cuda")
    for out in (disttorch.bernoulli(probs), disttorch.multinomial(probs, 1), disttorch.poisson(probs),
                disttorch.normal(probs, probs), x.uniform_(), x.normal_(), x.bernoulli_(0.3), x.exponential_(),
                x.random_(0, 5), x.geometric_(0.5)):
        assert_on(out, "cuda:0")


def test_cupy_arrays_as_tensor_data(fake_cupy):
    arr = fake_cupy.arange(6, dtype=np.float32).reshape(2, 3)
    shared = disttorch.as_tensor(arr)
    assert_on(shared, "cuda:0") and shared._data is arr
    copied = disttorch.tensor(arr)
    assert_on(copied, "cuda:0")
    copied.add_(1)
    assert float(arr.sum()) == 15.0 and host(disttorch.tensor(arr, device="cpu")).sum() == 15.0


def test_mixing_devices_gives_pytorchs_error(fake_cupy):
    g, c = disttorch.ones(2, 2).cuda(), disttorch.ones(2, 2)
    msg = "Expected all tensors to be on the same device, but found at least two devices, {} and {}!"
    for fn, first, second in ((lambda: g + c, "cuda:0", "cpu"), (lambda: c * g, "cpu", "cuda:0"),
                              (lambda: g @ c, "cuda:0", "cpu"), (lambda: disttorch.cat([g, c]), "cuda:0", "cpu"),
                              (lambda: disttorch.where(g > 0, g, c), "cuda:0", "cpu"),
                              (lambda: disttorch.nn.functional.linear(g, c), "cuda:0", "cpu"),
                              (lambda: g.add_(c), "cuda:0", "cpu"),
                              (lambda: disttorch.nn.functional.mse_loss(g, c), "cuda:0", "cpu")):
        with pytest.raises(RuntimeError) as e:
            fn()
        assert str(e.value) == msg.format(first, second)
    # a 0-d CPU tensor may meet CUDA tensors, as in PyTorch
    assert_on(g * disttorch.tensor(2.0), "cuda:0")
    assert_on(disttorch.tensor(2.0) + g, "cuda:0")
    assert_on(g.add_(disttorch.tensor(1.0)), "cuda:0")


def test_numpy_of_a_cuda_tensor_raises_torchs_type_error(fake_cupy):
    g = disttorch.ones(2).cuda()
    with pytest.raises(TypeError) as e:
        g.numpy()
    assert str(e.value) == ("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor "
                            "to host memory first.")
    with pytest.raises(TypeError, match="can't convert cuda:1 device type tensor"):
        g.to("cuda:1").numpy()
    assert np.asarray(g).tolist() == [1.0, 1.0]  # __array__ copies to the host, as torch's does for CPU
    assert g.tolist() == [1.0, 1.0] and g.sum().item() == 2.0 and float(g[0]) == 1.0
    assert "device='cuda:0'" in repr(g)


def test_non_blocking_and_pinning_are_accepted(fake_cupy):
    x = disttorch.ones(3).pin_memory()
    assert not x.is_pinned() or x.is_pinned()
    g = x.to("cuda", non_blocking=True)
    assert_on(g, "cuda:0")
    assert_on(x.cuda(non_blocking=True), "cuda:0")
    assert not g.to("cpu", non_blocking=True).is_cuda
