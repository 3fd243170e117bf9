"""init_process_group(backend="nccl") end to end on the CuPy and NCCL stand-ins: CUDA tensors go
through NCCL, CPU tensors and object collectives through the wrapped ZeroMQ group."""
from __future__ import annotations

import _fake_nccl
import pytest

import disttorch as dt
import disttorch.distributed as dist
from disttorch import _backend


@pytest.fixture
def nccl_world(monkeypatch):
    from _fake_cupy import make_fake_cupy
    monkeypatch.setenv("DISTTORCH_SECRET", "nccl-init-test")
    for var in ("LOCAL_RANK", "DISTTORCH_DEVICE_INDEX", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    cp = make_fake_cupy(device_count=2)
    nccl = _fake_nccl.install(cp)
    _backend.set_cupy_for_testing(cp)
    import disttorch.cuda as dcuda
    dcuda._reset_for_testing()
    dist.init_process_group("nccl", init_method="tcp://127.0.0.1:0", rank=0, world_size=1)
    yield nccl
    dist.destroy_process_group()
    _backend.set_cupy_for_testing(None)
    dcuda._reset_for_testing()


def test_cuda_tensors_use_nccl_and_cpu_tensors_use_zmq(nccl_world):
    assert dist.get_backend() == "nccl"
    x = dt.arange(6.0, device="cuda").reshape(2, 3)
    dist.all_reduce(x, op=dist.ReduceOp.AVG)
    assert x.is_cuda and x.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    y = dt.ones(3)
    dist.all_reduce(y)
    assert not y.is_cuda and y.tolist() == [1.0, 1.0, 1.0]
    out = dt.zeros(6, device="cuda")
    dist.all_gather_into_tensor(out, x.reshape(-1))
    assert out.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    work = dist.all_reduce(x, async_op=True)
    work.wait()
    objs = [None]
    dist.all_gather_object(objs, {"a": 1})
    assert objs == [{"a": 1}]
    called = {name for _, name in nccl_world.calls}
    assert "allReduce" in called and "allGather" in called


def test_ddp_on_cuda_parameters_matches_plain_training(nccl_world):
    from disttorch.nn.parallel import DistributedDataParallel as DDP
    dt.manual_seed(0)
    ref = dt.nn.Linear(4, 3).to("cuda")
    model = dt.nn.Linear(4, 3).to("cuda")
    model.load_state_dict(ref.state_dict())
    ddp = DDP(model)
    x = dt.randn(8, 4).to("cuda")
    for net in (ref, ddp):
        opt = dt.optim.SGD(net.parameters(), lr=0.1)
        for _ in range(3):
            opt.zero_grad()
            net(x).pow(2).mean().backward()
            opt.step()
    for a, b in zip(ref.parameters(), ddp.module.parameters()):
        assert a.is_cuda and b.is_cuda and b.grad.is_cuda
        assert dt.allclose(a.cpu(), b.cpu(), atol=1e-6)


def test_new_group_under_nccl_reads_the_peer_table_from_the_host_engine(nccl_world):
    g = dist.new_group([0])
    assert dist.get_backend(g) == "nccl" and dist.get_process_group_ranks(g) == [0]
    x = dt.arange(3.0, device="cuda")
    dist.all_reduce(x, group=g)
    assert x.is_cuda and x.tolist() == [0.0, 1.0, 2.0]
    dist.monitored_barrier(g, timeout=5)  # the timeout of the host group it carries
    dist.destroy_process_group(g)
