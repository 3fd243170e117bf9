"""Rank-side test bodies, run by ``harness.run`` in spawned processes.

Each rank builds its inputs from (rank, case) deterministically, so every rank can compute what
NumPy says every collective must produce. The matrix functions return a list of failure strings
(empty when everything matched) so one job checks hundreds of cases.
"""
from __future__ import annotations

import numpy as np

DTYPES = [np.bool_, np.uint8, np.int8, np.int16, np.int32, np.int64, np.float16, np.float32, np.float64,
          np.complex64, np.complex128]
SIZES = [(0,), (1,), (7,), (3, 5), (1001,), (40_000,)]
TOL = {np.float16: 2e-2, np.float32: 1e-5, np.float64: 1e-12, np.complex64: 1e-5, np.complex128: 1e-12}


def make(rank: int, shape, dtype, salt: int = 0) -> np.ndarray:
    rng = np.random.default_rng([rank, salt, int(np.prod(shape, dtype=np.int64)), np.dtype(dtype).num])
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return rng.random(shape) < 0.5
    if dt.kind == "u":
        return rng.integers(0, 4, shape).astype(dt)
    if dt.kind == "i":
        return rng.integers(-3, 4, shape).astype(dt)
    if dt.kind == "c":
        return (rng.uniform(-2, 2, shape) + 1j * rng.uniform(-2, 2, shape)).astype(dt)
    return rng.uniform(-2, 2, shape).astype(dt)


def reference(op_name: str, arrays: list[np.ndarray]) -> np.ndarray:
    """NumPy's answer for a reduction over ranks (PyTorch semantics for bool and integer AVG)."""
    st = np.stack(arrays)
    dt = arrays[0].dtype
    if op_name == "SUM":
        return np.any(st, 0) if dt.kind == "b" else np.sum(st, 0, dtype=dt)
    if op_name == "PRODUCT":
        return np.all(st, 0) if dt.kind == "b" else np.prod(st, 0, dtype=dt)
    if op_name == "MIN":
        return np.min(st, 0)
    if op_name == "MAX":
        return np.max(st, 0)
    if op_name == "BAND":
        return np.bitwise_and.reduce(st, 0)
    if op_name == "BOR":
        return np.bitwise_or.reduce(st, 0)
    if op_name == "BXOR":
        return np.bitwise_xor.reduce(st, 0)
    if op_name == "AVG":
        if dt.kind in "fc":
            return (np.sum(st.astype(np.complex128 if dt.kind == "c" else np.float64), 0) / len(arrays)).astype(dt)
        return np.fix(np.sum(st.astype(np.float64), 0) / len(arrays)).astype(dt)
    raise ValueError(op_name)


def valid(op_name: str, dtype) -> bool:
    k = np.dtype(dtype).kind
    if op_name in ("BAND", "BOR", "BXOR"):
        return k in "biu"
    if op_name in ("MIN", "MAX"):
        return k != "c"
    if op_name == "AVG":
        return k != "b"
    return True


def same(got: np.ndarray, want: np.ndarray) -> bool:
    if got.shape != want.shape or got.dtype != want.dtype:
        return False
    tol = TOL.get(got.dtype.type)
    if tol is None:
        return bool(np.array_equal(got, want))
    return bool(np.allclose(got, want, rtol=tol, atol=tol))


def collective_matrix(rank: int, world: int, sizes=None, dtypes=None) -> dict:
    """Every collective, op and dtype on ``sizes``; returns {"checked": n, "failures": [...]}."""
    import disttorch.distributed as dist
    from disttorch.distributed import ReduceOp

    sizes = SIZES if sizes is None else sizes
    dtypes = DTYPES if dtypes is None else dtypes
    fails: list[str] = []
    checked = 0

    def check(label, got, want):
        nonlocal checked
        checked += 1
        if not same(got, want):
            fails.append(f"rank {rank}: {label}: got {got.ravel()[:6]} ({got.dtype}, {got.shape}), "
                         f"want {want.ravel()[:6]} ({want.dtype}, {want.shape})")

    ops = [o.name for o in ReduceOp]
    for dt in dtypes:
        dname = np.dtype(dt).name
        for shape in sizes:
            inputs = [make(r, shape, dt) for r in range(world)]
            n = inputs[0].size
            for op in ops:
                x = inputs[rank].copy()
                if not valid(op, dt):
                    try:
                        dist.all_reduce(x, op=ReduceOp[op])
                        fails.append(f"all_reduce {op} {dname} did not raise")
                    except TypeError:
                        checked += 1
                    continue
                ident = x
                dist.all_reduce(x, op=ReduceOp[op])
                check(f"all_reduce {op} {dname} {shape}", x, reference(op, inputs))
                if x is not ident:
                    fails.append("all_reduce replaced the array object")
            for op in ("SUM", "MAX", "AVG", "BXOR"):
                if not valid(op, dt):
                    continue
                root = world - 1
                x = inputs[rank].copy()
                dist.reduce(x, dst=root, op=ReduceOp[op])
                check(f"reduce {op} {dname} {shape}", x, reference(op, inputs) if rank == root else inputs[rank])
            root = 1 % world
            x = inputs[rank].copy()
            dist.broadcast(x, src=root)
            check(f"broadcast {dname} {shape}", x, inputs[root])
            outs = [np.zeros_like(inputs[0]) for _ in range(world)]
            dist.all_gather(outs, inputs[rank])
            for k in range(world):
                check(f"all_gather {dname} {shape} block {k}", outs[k], inputs[k])
            flat_out = np.zeros((world,) + tuple(shape), dt)
            dist.all_gather_into_tensor(flat_out, inputs[rank])
            check(f"all_gather_into_tensor {dname} {shape}", flat_out, np.stack(inputs))
            gl = [np.zeros_like(inputs[0]) for _ in range(world)] if rank == 0 else None
            dist.gather(inputs[rank], gl, dst=0)
            if rank == 0:
                for k in range(world):
                    check(f"gather {dname} {shape} block {k}", gl[k], inputs[k])
            src = world - 1
            pieces = [make(src, shape, dt, salt=10 + k) for k in range(world)]
            out = np.zeros(shape, dt)
            dist.scatter(out, pieces if rank == src else None, src=src)
            check(f"scatter {dname} {shape}", out, pieces[rank])
            for op in ("SUM", "MIN", "AVG", "BOR"):
                if not valid(op, dt):
                    continue
                lists = [[make(r, shape, dt, salt=20 + k) for k in range(world)] for r in range(world)]
                out = np.zeros(shape, dt)
                dist.reduce_scatter(out, lists[rank], op=ReduceOp[op])
                check(f"reduce_scatter {op} {dname} {shape}", out, reference(op, [lists[r][rank] for r in range(world)]))
                big = np.concatenate([a.reshape(-1) for a in lists[rank]])
                out = np.zeros(n, dt)
                dist.reduce_scatter_tensor(out, big, op=ReduceOp[op])
                check(f"reduce_scatter_tensor {op} {dname} {shape}", out,
                      reference(op, [lists[r][rank].reshape(-1) for r in range(world)]))
            # all_to_all with pieces of different sizes: rank r sends (r + k) % 3 + n elements to rank k
            ins = [make(rank, ((rank + k) % 3 + n,), dt, salt=30 + k) for k in range(world)]
            outs = [np.zeros(((k + rank) % 3 + n,), dt) for k in range(world)]
            dist.all_to_all(outs, ins)
            for k in range(world):
                check(f"all_to_all {dname} {shape} from {k}", outs[k], make(k, ((k + rank) % 3 + n,), dt, salt=30 + rank))
            rows = world * 2
            inp = make(rank, (rows, 3), dt, salt=40)
            out = np.zeros((rows, 3), dt)
            dist.all_to_all_single(out, inp)
            want = np.concatenate([make(k, (rows, 3), dt, salt=40)[2 * rank: 2 * rank + 2] for k in range(world)])
            check(f"all_to_all_single {dname}", out, want)
    dist.barrier()
    return {"checked": checked, "failures": fails}


def p2p_and_objects(rank: int, world: int) -> dict:
    """send/recv, isend/irecv, recv from any source, batch_isend_irecv, async ops, object collectives, groups."""
    import disttorch.distributed as dist

    fails: list[str] = []
    right, left = (rank + 1) % world, (rank - 1) % world
    for size in (0, 5, 300_000):
        x = make(rank, (size,), np.float32, salt=50)
        got = np.zeros(size, np.float32)
        if rank % 2 == 0:
            dist.send(x, dst=right, tag=7)
            dist.recv(got, src=left, tag=7)
        else:
            dist.recv(got, src=left, tag=7)
            dist.send(x, dst=right, tag=7)
        if not np.array_equal(got, make(left, (size,), np.float32, salt=50)):
            fails.append(f"send/recv ring size {size}")
    # irecv posted before the matching send, both directions at once
    x = np.full(4, rank, np.int64)
    got = np.zeros(4, np.int64)
    w_r = dist.irecv(got, src=left)
    w_s = dist.isend(x, dst=right)
    w_r.wait()
    w_s.wait()
    if not (got == left).all() or not w_r.is_completed():
        fails.append(f"isend/irecv got {got}")
    # recv from any source: everybody sends to rank 0
    if rank == 0:
        seen = set()
        for _ in range(world - 1):
            buf = np.zeros(1, np.int32)
            src = dist.recv(buf, tag=3)
            seen.add((src, int(buf[0])))
        if seen != {(r, 100 + r) for r in range(1, world)}:
            fails.append(f"recv any source saw {seen}")
    else:
        dist.send(np.array([100 + rank], np.int32), dst=0, tag=3)
    # batch_isend_irecv
    got = np.zeros(3, np.float64)
    ops = [dist.P2POp(dist.isend, np.full(3, rank, np.float64), right), dist.P2POp(dist.irecv, got, left)]
    for w in dist.batch_isend_irecv(ops):
        w.wait()
    if not (got == left).all():
        fails.append(f"batch_isend_irecv got {got}")
    # several async all-reduces in flight, waited out of order
    bufs = [np.full(1000 * (i + 1), rank + i, np.float32) for i in range(4)]
    works = [dist.all_reduce(b, async_op=True) for b in bufs]
    for w in reversed(works):
        w.wait()
    for i, b in enumerate(bufs):
        if not np.allclose(b, sum(r + i for r in range(world))):
            fails.append(f"async all_reduce {i}")
    if not all(w.is_completed() and w.is_success() for w in works):
        fails.append("async works not completed")
    ones = np.ones(3, np.float32)
    value = dist.all_reduce(ones, async_op=True).get_future().wait()
    if not (isinstance(value, list) and len(value) == 1 and value[0] is ones and np.all(ones == world)):
        fails.append(f"all_reduce future value {value!r} (PyTorch: [tensor])")
    # object collectives
    objs = [None] * world
    dist.all_gather_object(objs, {"rank": rank, "data": list(range(rank))})
    if objs != [{"rank": r, "data": list(range(r))} for r in range(world)]:
        fails.append(f"all_gather_object {objs}")
    gl = [None] * world if rank == 0 else None
    dist.gather_object(("r", rank), gl, dst=0)
    if rank == 0 and gl != [("r", r) for r in range(world)]:
        fails.append(f"gather_object {gl}")
    lst = [1, "two", {3: 4}] if rank == 0 else [None, None, None]
    dist.broadcast_object_list(lst, src=0)
    if lst != [1, "two", {3: 4}]:
        fails.append(f"broadcast_object_list {lst}")
    out = [None]
    dist.scatter_object_list(out, [f"obj{r}" * r for r in range(world)] if rank == world - 1 else None, src=world - 1)
    if out[0] != f"obj{rank}" * rank:
        fails.append(f"scatter_object_list {out}")
    fn = [None] * world
    dist.all_gather_object(fn, lambda v, r=rank: v + r)  # needs cloudpickle
    if [f(1) for f in fn] != [1 + r for r in range(world)]:
        fails.append("all_gather_object of lambdas")
    # groups: evens and odds, plus a group that excludes rank 0
    evens = dist.new_group([r for r in range(world) if r % 2 == 0])
    odds = dist.new_group([r for r in range(world) if r % 2 == 1])
    tail = dist.new_group(list(range(1, world)))
    mine = evens if rank % 2 == 0 else odds
    x = np.array([rank], np.int64)
    dist.all_reduce(x, group=mine)
    want = sum(r for r in range(world) if r % 2 == rank % 2)
    if int(x[0]) != want:
        fails.append(f"group all_reduce got {x[0]} want {want}")
    if dist.get_rank(mine) != rank // 2 or dist.get_world_size(mine) != len(range(rank % 2, world, 2)):
        fails.append("group rank / size")
    if rank == 0:
        if tail is not dist.GroupMember.NON_GROUP_MEMBER or dist.get_rank(tail) != -1:
            fails.append("non-member group handle")
    else:
        y = np.array([rank], np.int64)
        dist.broadcast(y, src=world - 1, group=tail)
        if y[0] != world - 1:
            fails.append(f"group broadcast {y}")
        if world > 2:
            g = np.zeros(1, np.int64)
            if rank == 1:
                dist.send(np.array([42]), dst=world - 1, group=tail)
            elif rank == world - 1:
                dist.recv(g, src=1, group=tail)
                if g[0] != 42:
                    fails.append("group p2p")
    dist.destroy_process_group(odds)
    dist.barrier()
    if not (dist.get_world_size() == world and dist.get_rank() == rank and dist.is_initialized()):
        fails.append("world rank / size")
    return {"failures": fails}


# -- faults ----------------------------------------------------------------------------------------
def dies_mid_collective(rank: int, world: int, victim: int, how: str) -> dict:
    """``victim`` exits / is SIGKILLed / SIGSTOPped while everyone is inside one all_reduce."""
    import os
    import signal
    import threading
    import time

    import disttorch.distributed as dist

    x = np.ones(1 << 20, np.float32)  # 4 MiB: the ring (the victim must forward data), 4 shm rounds
    dist.all_reduce(x)  # everyone connected and warm
    if rank == victim:
        def strike():
            if how == "exit":
                os._exit(3)
            os.kill(os.getpid(), signal.SIGKILL if how == "kill" else signal.SIGSTOP)
        threading.Timer(0.5, strike).start()
    if rank == (victim + 1) % world:
        time.sleep(1.0)  # keeps the collective open until the victim is gone
    t0 = time.monotonic()
    try:
        dist.all_reduce(x)
        if rank == victim:
            time.sleep(30)
        return {"error": None, "elapsed": time.monotonic() - t0}
    except Exception as e:  # noqa: BLE001
        elapsed = time.monotonic() - t0
        try:  # the group must refuse further work at once, not hang
            t1 = time.monotonic()
            dist.all_reduce(x)
            again = "no error"
        except Exception as e2:  # noqa: BLE001
            again = f"{type(e2).__name__} after {time.monotonic() - t1:.2f}s"
        return {"error": type(e).__name__, "message": str(e), "elapsed": elapsed, "again": again}


def mismatched(rank: int, world: int, kind: str) -> dict:
    """Ranks disagree on the shape / op / dtype / root of their third collective."""
    import time

    import disttorch.distributed as dist

    dist.all_reduce(np.ones(3, np.float32))
    dist.barrier()
    t0 = time.monotonic()
    try:
        if kind == "shape":
            dist.all_reduce(np.ones(5 if rank == 1 else 4, np.float32))
        elif kind == "dtype":
            dist.all_reduce(np.ones(4, np.float64 if rank == world - 1 else np.float32))
        elif kind == "op":
            if rank == 0:
                dist.all_gather([np.zeros(4, np.float32) for _ in range(world)], np.ones(4, np.float32))
            else:
                dist.all_reduce(np.ones(4, np.float32))
        elif kind == "root":
            dist.broadcast(np.ones(4, np.float32), src=0 if rank else 1)
        elif kind == "skip":  # rank 1 skips a collective: its next one meets the others' previous
            if rank != 1:
                dist.all_reduce(np.ones(4, np.float32))
            dist.all_gather([np.zeros(4, np.float32) for _ in range(world)], np.ones(4, np.float32))
        return {"error": None}
    except Exception as e:  # noqa: BLE001
        return {"error": type(e).__name__, "message": str(e), "elapsed": time.monotonic() - t0}


def nan_input(rank: int, world: int) -> dict:
    import disttorch.distributed as dist

    x = np.ones(8, np.float32)
    if rank == 1:
        x[3] = np.nan
    try:
        dist.all_reduce(x)
        return {"error": None}
    except Exception as e:  # noqa: BLE001
        return {"error": type(e).__name__, "message": str(e)}


def work_timeout(rank: int, world: int) -> dict:
    """An async op whose peer is late: wait(timeout) raises, a later wait succeeds."""
    import time

    import disttorch.distributed as dist

    x = np.ones(10, np.float32)
    if rank == 1:
        time.sleep(1.5)
    w = dist.all_reduce(x, async_op=True)
    out = {}
    if rank == 0:
        try:
            w.wait(timeout=0.3)
            out["first"] = "no timeout"
        except dist.DistTimeoutError as e:
            out["first"] = str(e)
    w.wait()
    out["value"] = float(x[0])
    return out


# -- security --------------------------------------------------------------------------------------
def under_attack(rank: int, world: int, tmpdir: str) -> dict:
    """Publishes the endpoints, waits while the test attacks, then checks 30 all-reduces."""
    import json
    import os
    import time

    import disttorch.distributed as dist
    from disttorch.distributed import _runtime

    pg = dist.GroupMember.WORLD
    if rank == 0:
        with open(os.path.join(tmpdir, "table.tmp"), "w") as f:
            json.dump({"job_id": pg.job_id, "peers": pg.peers, "store_port": pg.store.port}, f)
        os.replace(os.path.join(tmpdir, "table.tmp"), os.path.join(tmpdir, "table.json"))
    deadline = time.monotonic() + 90
    while not os.path.exists(os.path.join(tmpdir, "attacked")) and time.monotonic() < deadline:
        time.sleep(0.05)
    bad = 0
    for i in range(30):
        x = make(rank, (1000 + i,), np.float64, salt=i)
        dist.all_reduce(x)
        bad += not np.allclose(x, sum(make(r, (1000 + i,), np.float64, salt=i) for r in range(world)))
    objs = [None] * world
    dist.all_gather_object(objs, {"rank": rank})
    return {"bad": bad, "objects_ok": objs == [{"rank": r} for r in range(world)],
            "dropped": pg.transport.stats["dropped"], "rejected": _runtime.authenticator().rejected}


# -- init ------------------------------------------------------------------------------------------
def whoami(rank: int, world: int) -> dict:
    import disttorch.distributed as dist

    x = np.array([dist.get_rank()], np.int64)
    dist.all_reduce(x)
    return {"rank": dist.get_rank(), "world": dist.get_world_size(), "sum": int(x[0]),
            "local_rank": dist.get_node_local_rank(), "backend": dist.get_backend()}


def init_with(rank: int, world: int, kwargs: dict) -> dict:
    import disttorch.distributed as dist

    try:
        dist.init_process_group(**kwargs)
    except Exception as e:  # noqa: BLE001
        return {"error": type(e).__name__, "message": str(e)}
    try:
        return whoami(rank, world)
    finally:
        dist.destroy_process_group()


def tcp_init(rank: int, world: int, port: int) -> dict:
    return init_with(rank, world, {"init_method": f"tcp://127.0.0.1:{port}", "rank": rank, "world_size": world})


def tensors_and_views(rank: int, world: int) -> dict:
    """disttorch Tensors: results land in the tensor's own array (views and parameters stay valid),
    the version counter moves, non-contiguous views work."""
    import disttorch
    import disttorch.distributed as dist

    fails = []
    base = disttorch.tensor(np.arange(12, dtype=np.float32).reshape(3, 4) + rank)
    arr, v0 = base._data, base._version
    dist.all_reduce(base)
    if base._data is not arr or not np.allclose(arr, sum(np.arange(12).reshape(3, 4) + r for r in range(world))):
        fails.append("all_reduce did not write into the tensor's array")
    if base._version == v0:
        fails.append("version counter did not move")
    col = disttorch.Tensor._wrap(arr[:, 1])  # a strided view: staged through a contiguous copy
    dist.broadcast(col, src=0)
    want = arr[:, 1].copy()
    dist.all_reduce(disttorch.Tensor._wrap(arr[:, 1]), op=dist.ReduceOp.MAX)
    if not np.array_equal(arr[:, 1], want):
        fails.append("strided view round trip")
    outs = [disttorch.zeros(2, dtype=disttorch.int64) for _ in range(world)]
    dist.all_gather(outs, disttorch.tensor([rank, rank * 10]))
    if [o._data.tolist() for o in outs] != [[r, r * 10] for r in range(world)]:
        fails.append(f"all_gather into tensors {[o._data for o in outs]}")
    return {"failures": fails}


def wrapped_transport(rank: int, world: int) -> dict:
    """A transport wrapper (what link shaping / fault injection will plug in) sees every message."""
    import disttorch.distributed as dist
    from disttorch.distributed.process_group import set_transport_wrapper
    from disttorch.distributed.transport import Transport

    class Counting(Transport):
        def __init__(self, inner):
            self.inner, self.sent, self.received = inner, 0, 0
            self.rank, self.world_size, self.stats = inner.rank, inner.world_size, inner.stats

        def send(self, dst, header, payload, copy=False):
            self.sent += 1
            self.inner.send(dst, header, payload, copy)

        def recv(self, timeout_ms, sink):
            msg = self.inner.recv(timeout_ms, sink)
            self.received += msg is not None
            return msg

        def sends_done(self):
            return self.inner.sends_done()

        def peer_problem(self, peer):
            return self.inner.peer_problem(peer)

        def close(self):
            self.inner.close()

    # init_process_group installs the simulation's wrapper (or none): a wrapper set afterwards
    # applies to the groups created afterwards
    dist.init_process_group("zmq")
    set_transport_wrapper(Counting)
    try:
        group = dist.new_group(list(range(world)))
        x = np.full(3000, rank, np.float32)
        dist.all_reduce(x, group=group)
        t = group.transport
        return {"ok": bool(np.all(x == sum(range(world)))), "sent": t.sent, "received": t.received}
    finally:
        dist.destroy_process_group()
        set_transport_wrapper(None)


def hierarchical_bits(rank: int, world: int) -> dict:
    """All-reduces float32 inputs of several sizes (one round, many rounds, sizes that do not divide)
    and returns each result's bytes as hex digests with the worst error against float64 NumPy."""
    import hashlib

    import disttorch as torch
    import disttorch.distributed as dist

    digests, worst = [], 0.0
    for size in (0, 5, 1001, 40_000, 300_001):
        inputs = [make(r, (size,), np.float32, salt=7) for r in range(world)]
        x = torch.from_numpy(inputs[rank].copy())
        dist.all_reduce(x)
        got = x.numpy()
        want = np.sum(np.stack(inputs).astype(np.float64), 0)
        if size:
            worst = max(worst, float(np.max(np.abs(got - want))))
        digests.append(hashlib.sha256(got.tobytes()).hexdigest())
        avg = torch.from_numpy(inputs[rank].copy())
        dist.all_reduce(avg, op=dist.ReduceOp.AVG)
        if size:
            worst = max(worst, float(np.max(np.abs(avg.numpy() - want / world))))
        digests.append(hashlib.sha256(avg.numpy().tobytes()).hexdigest())
    return {"digests": digests, "worst": worst}
