"""The NCCL backend's logic, in CI: ranks are threads, each on its own GPU of the strict CuPy stand-in,
talking through an in-process NCCL stand-in that sees only raw device pointers. The unique id travels
through a real TCPStore, as in a job."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import _fake_nccl
import disttorch
from disttorch import _backend
from disttorch.distributed.nccl import NcclProcessGroup, decode_unique_id, encode_unique_id
from disttorch.distributed.reduce_op import ReduceOp
from disttorch.distributed.store import TCPStore


@pytest.fixture
def gpus(monkeypatch):
    """A four-GPU stand-in with NCCL; yields (cupy, nccl)."""
    from _fake_cupy import make_fake_cupy
    monkeypatch.setenv("DISTTORCH_SECRET", "nccl-test-secret")
    monkeypatch.delenv("DISTTORCH_CURVE", raising=False)
    for var in ("LOCAL_RANK", "DISTTORCH_DEVICE_INDEX"):
        monkeypatch.delenv(var, raising=False)
    cp = make_fake_cupy(device_count=4)
    nccl = _fake_nccl.install(cp)
    _backend.set_cupy_for_testing(cp)
    yield cp, nccl
    _backend.set_cupy_for_testing(None)


@pytest.fixture
def store(gpus):
    master = TCPStore("127.0.0.1", 0, world_size=None, is_master=True, timeout=15)
    yield master
    master.close()


def run_ranks(cp, master, world, fn, key="nccl/0"):
    """Runs ``fn(rank, group)`` in ``world`` threads (rank r on GPU r); returns the results by rank."""
    results, errors = [None] * world, [None] * world

    def rank_main(r):
        client = TCPStore("127.0.0.1", master.port, timeout=15)
        try:
            cp.cuda.Device(r).use()
            group = NcclProcessGroup(None, client, rank=r, world_size=world, key=key)
            results[r] = fn(r, group)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors[r] = e
        finally:
            client.close()

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for e in errors:
        if e is not None:
            raise e
    return results


def dev(cp, values, dtype=np.float32):
    return cp.asarray(np.asarray(values, dtype=dtype))


@pytest.mark.parametrize("world", [2, 3])
def test_all_reduce_ops_and_dtypes(gpus, store, world):
    cp, _ = gpus

    def body(r, g):
        out = {}
        for op in (ReduceOp.SUM, ReduceOp.AVG, ReduceOp.PRODUCT, ReduceOp.MIN, ReduceOp.MAX):
            x = dev(cp, [r + 1.0, -r, 2.0 * r])
            assert g.all_reduce(x, op) is None
            assert x.device.id == r
            out[op.name] = cp.asnumpy(x)
        ints = dev(cp, [r - 2, 7], np.int64)
        g.all_reduce(ints, ReduceOp.AVG)  # integer average truncates toward zero, as PyTorch
        flags = dev(cp, [r == 0, False, True], np.bool_)
        g.all_reduce(flags, ReduceOp.SUM)  # logical or
        both = dev(cp, [r == 0, True], np.bool_)
        g.all_reduce(both, ReduceOp.PRODUCT)  # logical and
        z = dev(cp, [1 + 1j * r], np.complex64)
        g.all_reduce(z, ReduceOp.SUM)
        strided = dev(cp, np.arange(12).reshape(3, 4) * (r + 1))[:, ::2]  # not contiguous
        g.all_reduce(strided, ReduceOp.SUM)
        out.update(ints=cp.asnumpy(ints), flags=cp.asnumpy(flags), both=cp.asnumpy(both), z=cp.asnumpy(z),
                   strided=cp.asnumpy(strided))
        return out

    res = run_ranks(cp, store, world, body)
    per_rank = np.array([[r + 1.0, -r, 2.0 * r] for r in range(world)], np.float32)
    for out in res:
        np.testing.assert_allclose(out["SUM"], per_rank.sum(0))
        np.testing.assert_allclose(out["AVG"], per_rank.mean(0), rtol=1e-6)
        np.testing.assert_allclose(out["PRODUCT"], per_rank.prod(0))
        np.testing.assert_allclose(out["MIN"], per_rank.min(0))
        np.testing.assert_allclose(out["MAX"], per_rank.max(0))
        assert out["ints"].tolist() == [int(np.trunc(sum(r - 2 for r in range(world)) / world)), 7]
        assert out["flags"].tolist() == [True, False, True] and out["both"].tolist() == [False, True]
        assert out["z"][0] == world + 1j * sum(range(world))
        np.testing.assert_array_equal(out["strided"], (np.arange(12).reshape(3, 4) * sum(range(1, world + 1)))[:, ::2])


def test_broadcast_reduce_gathers_and_scatters(gpus, store):
    cp, _ = gpus
    world = 3

    def body(r, g):
        b = dev(cp, [r, r, r])
        g.broadcast(b, root=2)
        red = dev(cp, [r + 1.0, 1.0])
        g.reduce(red, ReduceOp.SUM, root=1)
        gathered = [cp.zeros((2, 2), dtype=np.float32) for _ in range(world)]
        g.all_gather(dev(cp, [[r, r + 0.5], [-r, 1.0]]), gathered)
        gat = [cp.zeros(2, dtype=np.float32) for _ in range(world)] if r == 0 else None
        g.gather(dev(cp, [r, 10 * r]), gat, root=0)
        sc_out = cp.zeros(2, dtype=np.float32)
        sc_in = [dev(cp, [k, -k]) for k in range(world)] if r == 1 else None
        g.scatter(sc_in, sc_out, root=1)
        rs_out = cp.zeros(2, dtype=np.float32)
        g.reduce_scatter([dev(cp, [r + k, 1.0]) for k in range(world)], rs_out, ReduceOp.AVG)
        # all_to_all with a different size for every pair (all_to_all_single with splits)
        ins = [dev(cp, [10 * r + k] * (k + 1)) for k in range(world)]
        outs = [cp.zeros(r + 1, dtype=np.float32) for _ in range(world)]
        work = g.all_to_all(ins, outs, async_op=True)
        assert work.wait() and work.is_completed()
        return (cp.asnumpy(b), cp.asnumpy(red), [cp.asnumpy(a) for a in gathered],
                None if gat is None else [cp.asnumpy(a) for a in gat], cp.asnumpy(sc_out), cp.asnumpy(rs_out),
                [cp.asnumpy(o) for o in outs])

    res = run_ranks(cp, store, world, body)
    for r, (b, red, gathered, gat, sc, rs, outs) in enumerate(res):
        assert b.tolist() == [2, 2, 2]
        assert red.tolist() == ([6.0, 3.0] if r == 1 else [r + 1.0, 1.0])  # non-roots keep their input
        for k, a in enumerate(gathered):
            assert a.tolist() == [[k, k + 0.5], [-k, 1.0]]
        if r == 0:
            assert [a.tolist() for a in gat] == [[k, 10 * k] for k in range(world)]
        assert sc.tolist() == [r, -r]
        np.testing.assert_allclose(rs, [np.mean([k + r for k in range(world)]), 1.0])
        assert [o.tolist() for o in outs] == [[10 * j + r] * (r + 1) for j in range(world)]


def test_send_recv_barrier_and_async(gpus, store):
    cp, nccl = gpus

    def body(r, g):
        peer = 1 - r
        got = cp.zeros(3, dtype=np.float64)
        if r == 0:
            g.send(dev(cp, [1, 2, 3], np.float64), peer)
            work = g.recv(got, peer)
        else:
            work = g.recv(got, peer)
            g.send(got * 2, peer)
        assert work.wait() and work.source_rank() == peer
        g.barrier()
        work = g.all_reduce(dev(cp, [1.0]), ReduceOp.SUM, async_op=True)
        assert work.is_completed()
        return cp.asnumpy(got)

    res = run_ranks(cp, store, 2, body)
    assert res[0].tolist() == [2, 4, 6] and res[1].tolist() == [1, 2, 3]
    assert ("allReduce" in {name for _, name in nccl.calls})  # the barrier is a one-element all-reduce


def test_refuses_host_arrays_other_devices_and_unsupported_ops(gpus, store):
    cp, _ = gpus

    def body(r, g):
        errors = []
        for call in (lambda: g.all_reduce(np.ones(3, np.float32), ReduceOp.SUM),
                     lambda: g.all_gather(dev(cp, [1.0]), [np.zeros(1, np.float32), cp.zeros(1, np.float32)]),
                     lambda: g.all_reduce(dev(cp, [1, 2], np.int32), ReduceOp.BAND),
                     lambda: g.all_reduce(dev(cp, [1, 2], np.int16), ReduceOp.SUM),
                     lambda: g.all_reduce(dev(cp, [1j], np.complex64), ReduceOp.MAX),
                     lambda: g.recv(cp.zeros(1), None)):
            with pytest.raises((TypeError, RuntimeError)) as e:
                call()
            errors.append(str(e.value))
        with cp.cuda.Device(1 - r):
            elsewhere = cp.zeros(2, dtype=np.float32)
        with pytest.raises(ValueError, match=f"a tensor is on cuda:{1 - r} but this rank's NCCL communicator is "
                                             f"on cuda:{r}"):
            g.all_reduce(elsewhere, ReduceOp.SUM)
        g.close()
        with pytest.raises(RuntimeError, match="closed or aborted"):
            g.all_reduce(cp.zeros(1, dtype=np.float32), ReduceOp.SUM)
        return errors

    errors = run_ranks(cp, store, 2, body)[0]
    assert errors[0] == ("all_reduce: the NCCL backend works on CUDA tensors, got a host array (shape (3,), dtype "
                         "float32); move it with .cuda() or use backend 'zmq'")
    assert "tensors must all be CUDA tensors (NCCL) or all host tensors, not a mix" in errors[1]
    assert "ReduceOp.BAND is not supported by the NCCL backend" in errors[2]
    assert "NCCL has no datatype for int16" in errors[3]
    assert "ReduceOp.MAX is not defined for complex tensors" in errors[4]
    assert "cannot receive from any source" in errors[5]


class _HostGroup:
    """Records what the NCCL group hands to its ZeroMQ group."""

    def __init__(self, rank, size):
        self._r, self._s, self.calls = rank, size, []
        self.global_ranks = list(range(size))

    def rank(self):
        return self._r

    def size(self):
        return self._s

    def all_reduce(self, buf, op, async_op=False, after=None):
        self.calls.append(("all_reduce", type(buf)))
        buf *= self._s
        if after:
            after()

    def describe_rank(self, g):
        return f"rank {g}"

    def close(self):
        self.calls.append(("close",))


def test_host_arrays_go_to_the_host_group_and_it_owns_the_rest(gpus, store):
    cp, _ = gpus
    hosts = [_HostGroup(r, 2) for r in range(2)]

    def body(r, _g):
        client = TCPStore("127.0.0.1", store.port, timeout=15)
        try:
            g = NcclProcessGroup(hosts[r], client, key="nccl/hosted", device_index=r)
            assert g.rank() == r and g.size() == 2 and g.backend == "nccl" and g.describe_rank(1) == "rank 1"
            host = np.ones(2, np.float32)
            g.all_reduce(host, ReduceOp.SUM)  # a CPU tensor: the ZeroMQ group runs it
            device = dev(cp, [r, 1.0])
            committed = []
            g.all_reduce(device, ReduceOp.SUM, after=lambda: committed.append(True))
            g.close()
            return host.tolist(), cp.asnumpy(device).tolist(), committed
        finally:
            client.close()

    res = run_ranks(cp, store, 2, body)
    for r, (host, device, committed) in enumerate(res):
        assert host == [2.0, 2.0] and device == [1.0, 2.0] and committed == [True]
        assert hosts[r].calls == [("all_reduce", np.ndarray), ("close",)]


def test_unique_id_round_trip_keeps_signed_bytes():
    uid = tuple(range(-128, 0))
    assert decode_unique_id(encode_unique_id(uid)) == uid
    with pytest.raises(ValueError, match="no valid NCCL unique id"):
        decode_unique_id(b"not an id")
    with pytest.raises(ValueError, match="128 byte values"):
        encode_unique_id((1, 2, 3))


def test_without_nccl_the_error_says_what_to_install(fake_cupy):
    with pytest.raises(RuntimeError, match="the .nccl. backend needs CuPy with the NCCL library"):
        _backend.nccl_module()


def test_zmq_backend_stages_gpu_tensors_through_the_host(fake_cupy):
    """backend='zmq' with CUDA tensors: copied to the host for the collective, written back on the device."""
    from disttorch.distributed._arrays import Staged
    t = disttorch.arange(6.0, device="cuda").reshape(2, 3)[:, ::2]
    st = Staged(t, True)
    assert type(st.host) is np.ndarray and st.host.flags.c_contiguous
    st.host *= 10
    version = t._version
    st.commit()
    assert t.is_cuda and t.tolist() == [[0.0, 20.0], [30.0, 50.0]] and t._version == version + 1
