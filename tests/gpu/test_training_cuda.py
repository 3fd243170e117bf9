"""Whole training steps on a CUDA device (strict CuPy stand-in) against the host: an MLP and a small CNN
with SGD (momentum) and Adam, fed by a DataLoader whose batches move with ``.to("cuda")``; checkpoints
of CUDA models save host bytes and load back onto the device."""
from __future__ import annotations

import io
import pickle

import numpy as np
import pytest

import disttorch
import disttorch.nn as dnn
from disttorch.utils.data import DataLoader, TensorDataset
from _on_device import assert_on, assert_same, host


def _mlp():
    return dnn.Sequential(dnn.Linear(12, 16), dnn.ReLU(), dnn.Dropout(0.1), dnn.Linear(16, 16), dnn.GELU(),
                          dnn.Linear(16, 3))


def _cnn():
    # No bias before the batch norm (as in ResNets): its true gradient is zero, so its computed
    # gradient is rounding noise, which Adam turns into full +-lr steps; the host's and the
    # device's convolutions round differently (the host takes planar columns for one channel).
    return dnn.Sequential(dnn.Conv2d(1, 4, 3, padding=1, bias=False), dnn.BatchNorm2d(4), dnn.ReLU(), dnn.MaxPool2d(2),
                          dnn.Conv2d(4, 6, 3), dnn.ReLU(), dnn.AdaptiveAvgPool2d(1), dnn.Flatten(), dnn.Linear(6, 3))


def _data(kind):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((24, 12) if kind == "mlp" else (24, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 3, 24)
    return TensorDataset(disttorch.tensor(x), disttorch.tensor(y))


def _train(kind, opt_name, device, steps=3):
    disttorch.manual_seed(0)
    model = (_mlp() if kind == "mlp" else _cnn()).to(device)
    opt = disttorch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9) if opt_name == "sgd" else \
        disttorch.optim.Adam(model.parameters(), lr=0.01)
    loader = DataLoader(_data(kind), batch_size=8, shuffle=True, pin_memory=True,
                        generator=disttorch.Generator().manual_seed(1))
    losses = []
    for _, (x, y) in zip(range(steps), loader):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        opt.zero_grad()
        loss = dnn.functional.cross_entropy(model(x), y)
        loss.backward()
        dnn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        losses.append(loss.detach())
    return losses, list(model.parameters()), list(model.buffers())


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_training_steps_on_device_match_the_host(gpu, kind, opt_name):
    got = _train(kind, opt_name, "cuda")
    want = _train(kind, opt_name, "cpu")
    assert_same(got, want, "cuda:0", rtol=2e-5, atol=2e-6, what=f"{kind}/{opt_name}")


def test_dataloader_batches_move_to_the_device(gpu):
    loader = DataLoader(_data("mlp"), batch_size=5, pin_memory=True)
    x, y = next(iter(loader))
    assert not x.is_cuda
    gx, gy = x.to("cuda", non_blocking=True), y.cuda(non_blocking=True)
    assert_on(gx, "cuda:0") and gy.dtype == disttorch.int64
    # a dataset of CUDA tensors collates on the device
    ds = TensorDataset(disttorch.arange(6.0, device="cuda"), disttorch.arange(6, device="cuda"))
    bx, by = next(iter(DataLoader(ds, batch_size=4)))
    assert_on(bx, "cuda:0") and host(by).tolist() == [0, 1, 2, 3]


def test_checkpoint_of_a_cuda_model(gpu, tmp_path):
    disttorch.manual_seed(0)
    model = _cnn().cuda()
    opt = disttorch.optim.Adam(model.parameters(), lr=0.01)
    model(disttorch.randn(2, 1, 8, 8, device="cuda")).sum().backward()
    opt.step()
    path = tmp_path / "ckpt.pt"
    disttorch.save({"model": model.state_dict(), "opt": opt.state_dict()}, path)
    back = disttorch.load(path)  # where it was saved: the GPU
    assert all(v.is_cuda for v in back["model"].values())
    on_cpu = disttorch.load(path, map_location="cpu")
    assert not any(v.is_cuda for v in on_cpu["model"].values())
    last = f"cuda:{disttorch.cuda.device_count() - 1}"
    on_last = disttorch.load(path, map_location=last)
    assert all(v.device == disttorch.device(last) for v in on_last["model"].values())
    fresh = _cnn()
    fresh.load_state_dict(on_cpu["model"])
    fresh.cuda().load_state_dict(back["model"])
    for a, b in zip(fresh.parameters(), model.parameters()):
        np.testing.assert_array_equal(host(a), host(b))
    # a CPU checkpoint mapped onto the GPU
    cpu_path = tmp_path / "cpu.pt"
    disttorch.save(on_cpu["model"], cpu_path)
    assert all(v.is_cuda for v in disttorch.load(cpu_path, map_location="cuda").values())


def test_pickled_cuda_tensor_comes_back_on_its_device(gpu):
    last = f"cuda:{disttorch.cuda.device_count() - 1}"
    t = disttorch.arange(4.0, device=last).requires_grad_()
    u = pickle.loads(pickle.dumps(t))
    assert u.device == disttorch.device(last) and u.requires_grad
    buf = io.BytesIO()
    disttorch.save(t.detach(), buf)
    buf.seek(0)
    assert disttorch.load(buf).device == disttorch.device(last)
