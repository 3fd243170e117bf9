"""The API layer in one process (world size 1): argument checks, staging, work handles, config."""
import numpy as np
import pytest

import harness
import workers
from disttorch import _backend
import disttorch.distributed as dist
from disttorch.distributed import ReduceOp
from disttorch.distributed.config import Config


class FakeCupyArray:
    """Enough of cupy.ndarray for the staging path: a device array that is not a NumPy array."""

    def __init__(self, data):
        self.data = np.array(data)

    def __setitem__(self, key, value):
        self.data[key] = value.data if isinstance(value, FakeCupyArray) else value


class FakeCupy:
    ndarray = FakeCupyArray

    @staticmethod
    def asnumpy(a):
        return a.data.copy()

    @staticmethod
    def asarray(a):
        return FakeCupyArray(a)


def test_single_rank_collectives_and_queries(world1):
    assert dist.is_initialized() and dist.get_rank() == 0 and dist.get_world_size() == 1
    assert dist.get_backend() == "zmq" and dist.group.WORLD is dist.GroupMember.WORLD
    x = np.arange(5, dtype=np.float64)
    assert dist.all_reduce(x, op=ReduceOp.AVG) is None and np.array_equal(x, np.arange(5))
    w = dist.all_reduce(x, async_op=True)
    assert w.wait() and w.is_completed() and w.is_success() and w.exception() is None
    assert w.get_future().then(lambda f: 7).wait() == 7
    value = w.get_future().wait()  # PyTorch's futures hold the list of output tensors
    assert isinstance(value, list) and len(value) == 1 and value[0] is x
    b = dist.broadcast(x, src=0, async_op=True).get_future().value()
    assert b[0] is x
    out = [np.zeros(5)]
    dist.all_gather(out, x)
    assert np.array_equal(out[0], x)
    objs = [None]
    dist.all_gather_object(objs, {"a": 1})
    assert objs == [{"a": 1}]
    dist.barrier()
    dist.monitored_barrier()
    assert dist.get_process_group_ranks(dist.group.WORLD) == [0]
    assert dist.get_global_rank(None, 0) == 0 and dist.get_group_rank(None, 0) == 0
    with pytest.raises(ValueError, match="twice"):
        dist.init_process_group("zmq", world_size=1, rank=0)


def test_arguments_are_checked_before_anything_moves(world1):
    x = np.ones(4, np.float32)
    with pytest.raises(TypeError, match="BAND needs an integer or bool tensor, got dtype float32"):
        dist.all_reduce(x, op=ReduceOp.BAND)
    with pytest.raises(TypeError, match="complex"):
        dist.all_reduce(np.ones(2, np.complex64), op="max")
    with pytest.raises(ValueError, match="unsupported reduce op 'median'"):
        dist.all_reduce(x, op="median")
    with pytest.raises(ValueError, match="one tensor per rank of the group \\(1\\), got 2"):
        dist.all_gather([x, x], x)
    with pytest.raises(TypeError, match="dtype float64, expected float32"):
        dist.all_gather([np.zeros(4)], x)
    with pytest.raises(ValueError, match="src=3 is not a rank of group world"):
        dist.broadcast(x, src=3)
    with pytest.raises(ValueError, match="either src or group_src"):
        dist.broadcast(x)
    with pytest.raises(ValueError, match="should not be the same as the rank of the current process"):
        dist.send(x, dst=0)
    with pytest.raises(ValueError, match="read-only"):
        dist.all_reduce(np.broadcast_to(np.ones(1, np.float32), (4,)))
    with pytest.raises(TypeError, match="expected a disttorch.Tensor or a numpy.ndarray, got list"):
        dist.all_reduce([1, 2])
    with pytest.raises(ValueError, match="ranks \\[5\\] are out of range for world_size 1"):
        dist.new_group([0, 5])
    with pytest.raises(ValueError, match="elements"):
        dist.all_gather_into_tensor(np.zeros(3, np.float32), x)
    with pytest.raises(ValueError, match="split_sizes \\[2\\] must be 1 non-negative sizes summing to dim 0 \\(3\\)"):
        dist.all_to_all_single(np.zeros((3, 2)), np.zeros((3, 2)), input_split_sizes=[2])
    # the group is still usable after local argument errors
    dist.all_reduce(x)


def test_cupy_arrays_are_staged_through_host_memory(world1):
    _backend.set_cupy_for_testing(FakeCupy)
    try:
        g = FakeCupyArray(np.arange(6, dtype=np.float32))
        dist.all_reduce(g, op=ReduceOp.SUM)
        dist.broadcast(g, src=0)
        assert np.array_equal(g.data, np.arange(6))
    finally:
        _backend.set_cupy_for_testing(None)


def test_config_from_env(monkeypatch):
    monkeypatch.setenv("DISTTORCH_TRANSPORT", "TCP")
    monkeypatch.setenv("DISTTORCH_CHUNK_BYTES", "65536")
    monkeypatch.setenv("TORCH_DISTRIBUTED_DEBUG", "DETAIL")
    c = Config.from_env()
    assert (c.transport, c.chunk_bytes, c.debug) == ("tcp", 65536, "detail")
    assert Config.from_json({**c.to_json(), "unknown": 1}) == c
    monkeypatch.setenv("DISTTORCH_TRANSPORT", "carrier-pigeon")
    with pytest.raises(ValueError, match="carrier-pigeon"):
        Config.from_env()
    monkeypatch.setenv("DISTTORCH_TRANSPORT", "auto")
    monkeypatch.setenv("DISTTORCH_CHUNK_BYTES", "-3")
    with pytest.raises(ValueError, match="DISTTORCH_CHUNK_BYTES"):
        Config.from_env()


def test_not_initialized():
    assert not dist.is_initialized() and dist.is_available()
    with pytest.raises(ValueError, match="has not been initialized"):
        dist.get_rank()


@pytest.mark.timeout(60)
def test_disttorch_tensors():
    res = harness.run(workers.tensors_and_views, 2)
    assert not [f for r in res for f in r["failures"]]
