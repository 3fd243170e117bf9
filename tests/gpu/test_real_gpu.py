"""On real hardware only (skipped, with the reason, where CuPy or a GPU is missing): the CuPy path end to
end, the cupyx kernels, memory statistics, a worker's default GPU and NCCL between two GPUs.

The stand-in suites in this directory run on the hardware too with ``DISTTORCH_GPU_TESTS=cupy``."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import disttorch
import disttorch.nn as dnn
from disttorch import _backend

pytestmark = pytest.mark.skipif(not disttorch.cuda.is_available(), reason="needs CuPy and a GPU")


@pytest.fixture
def real_cupy():
    _backend.set_cupy_for_testing(None)  # drop any stand-in: the real CuPy loads again
    if not disttorch.cuda.is_available():
        pytest.skip("needs CuPy and a GPU")
    return _backend.cupy_module()


def test_tensors_live_in_cupy_arrays(real_cupy):
    x = disttorch.randn(4, 5, device="cuda")
    assert isinstance(x._data, real_cupy.ndarray) and x.is_cuda and x.device.type == "cuda"
    y = (x @ x.T).relu().sum()
    assert isinstance(y._data, real_cupy.ndarray)
    with pytest.raises(TypeError, match="can't convert cuda"):
        x.numpy()
    np.testing.assert_allclose(x.cpu().numpy() @ x.cpu().numpy().T, (x @ x.T).cpu().numpy(), rtol=1e-4, atol=1e-5)


def _cnn_step(device):
    disttorch.manual_seed(0)
    model = dnn.Sequential(dnn.Conv2d(1, 4, 3, padding=1), dnn.BatchNorm2d(4), dnn.GELU(), dnn.MaxPool2d(2),
                           dnn.Flatten(), dnn.Linear(4 * 4 * 4, 3)).to(device)
    opt = disttorch.optim.Adam(model.parameters(), lr=0.01)
    x = disttorch.randn(8, 1, 8, 8).to(device)
    y = disttorch.randint(0, 3, (8,)).to(device)
    for _ in range(3):
        opt.zero_grad()
        loss = dnn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return loss.item(), [p.detach().cpu().numpy() for p in model.parameters()]


def test_cnn_training_on_the_gpu_matches_the_cpu(real_cupy):
    gl, gp = _cnn_step("cuda")
    cl, cp_ = _cnn_step("cpu")
    assert gl == pytest.approx(cl, rel=1e-4)
    for a, b in zip(gp, cp_):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_gelu_erf_runs_on_the_device(real_cupy):
    x = disttorch.linspace(-4, 4, 101)
    np.testing.assert_allclose(dnn.functional.gelu(x.cuda()).cpu().numpy(), dnn.functional.gelu(x).numpy(),
                               rtol=1e-5, atol=1e-6)


def test_memory_statistics(real_cupy):
    disttorch.cuda.synchronize()
    before = disttorch.cuda.memory_allocated()
    x = disttorch.zeros(1 << 20, device="cuda")  # 4 MiB
    assert disttorch.cuda.memory_allocated() >= before + (4 << 20)
    assert disttorch.cuda.max_memory_allocated() >= before + (4 << 20)
    del x
    assert disttorch.cuda.memory_allocated() == before
    free, total = disttorch.cuda.mem_get_info()
    assert 0 < free <= total


@pytest.mark.skipif(disttorch.cuda.device_count() < 2, reason="needs CuPy and two GPUs")
def test_local_rank_picks_the_workers_gpu():
    code = "import disttorch; print(disttorch.ones(1, device='cuda').device.index, disttorch.cuda.current_device())"
    env = dict(os.environ, LOCAL_RANK="1")
    env.pop("DISTTORCH_DEVICE_INDEX", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["1", "1"], out.stderr


@pytest.mark.skipif(disttorch.cuda.device_count() < 2, reason="needs CuPy and two GPUs")
def test_nccl_all_reduce_between_two_gpus(real_cupy, monkeypatch):
    from disttorch.distributed.nccl import NcclProcessGroup
    from disttorch.distributed.reduce_op import ReduceOp
    from disttorch.distributed.store import TCPStore
    try:
        _backend.nccl_module()
    except RuntimeError as e:
        pytest.skip(str(e))
    monkeypatch.setenv("DISTTORCH_SECRET", "real-gpu-nccl-test")
    master = TCPStore("127.0.0.1", 0, is_master=True, timeout=60)
    results, errors = [None, None], [None, None]

    def rank_main(r):
        client = TCPStore("127.0.0.1", master.port, timeout=60)
        try:
            real_cupy.cuda.Device(r).use()
            g = NcclProcessGroup(None, client, rank=r, world_size=2, key="nccl/real", device_index=r)
            x = disttorch.full((1 << 20,), float(r + 1), device=f"cuda:{r}")
            g.all_reduce(x._data, ReduceOp.SUM)
            outs = [disttorch.zeros(3, device=f"cuda:{r}")._data for _ in range(2)]
            g.all_gather(disttorch.full((3,), float(r), device=f"cuda:{r}")._data, outs)
            g.barrier()
            results[r] = (float(x.sum().item()), [o.get().tolist() for o in outs])
            g.close()
        except BaseException as e:  # noqa: BLE001
            errors[r] = e
        finally:
            client.close()

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    master.close()
    for e in errors:
        if e is not None:
            raise e
    for total, gathered in results:
        assert total == 3.0 * (1 << 20)
        assert gathered == [[0.0] * 3, [1.0] * 3]
