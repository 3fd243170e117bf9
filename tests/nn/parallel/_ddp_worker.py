"""One rank of the DDP tests: runs the scenarios named on the command line, writes results to
``OUT_DIR/rank{r}.npz`` / ``.txt``. Plain SGD updates by hand, so only DDP is under test."""
from __future__ import annotations

import json
import os
import sys
import traceback

import numpy as np

import disttorch as torch
import disttorch.distributed as dist
import disttorch.nn as nn
from disttorch.nn.parallel import DistributedDataParallel as DDP
from disttorch.nn.modules.syncbatchnorm import SyncBatchNorm
from disttorch.nn.parallel.comm_hooks import default_hooks

STEPS, B, LR = 10, 4, 0.1


def make_model(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 4)).double()


def data(world, accum):
    rng = np.random.default_rng(0)
    return rng.standard_normal((STEPS, accum, world * B, 8)), rng.standard_normal((STEPS, accum, world * B, 4))


def sgd(params):
    for p in params:
        p._data -= LR * p.grad._data
        p.grad = None


def train(model, world, rank, accum, step_ctx=None):
    """Returns the parameter trajectory (list of flat arrays, one per step)."""
    xs, ys = data(world, accum)
    traj = []
    for s in range(STEPS):
        for a in range(accum):
            x = torch.from_numpy(xs[s, a, rank * B:(rank + 1) * B])
            y = torch.from_numpy(ys[s, a, rank * B:(rank + 1) * B])
            ctx = model.no_sync() if (a < accum - 1 and hasattr(model, "no_sync")) else _null()
            with ctx:
                loss = ((model(x) - y) ** 2).mean() / accum
                loss.backward()
        sgd(list(model.parameters()))
        traj.append(np.concatenate([p._data.ravel() for p in model.parameters()]))
    return np.stack(traj)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def scenario_equiv(rank, world, out):
    """Different init per rank; tiny buckets; plain and no_sync accumulation."""
    for name, kw, accum in [("plain", {}, 1), ("buckets", {"bucket_cap_mb": 0.0005}, 1),
                            ("nosync", {"bucket_cap_mb": 0.0005}, 2), ("view", {"gradient_as_bucket_view": True}, 1)]:
        model = make_model(100 + rank)
        ddp = DDP(model, **kw)
        arrival = []  # registered after DDP's hooks, so they see the order DDP sees
        handles = [p.register_post_accumulate_grad_hook(lambda p, i=i: arrival.append(i))
                   for i, p in enumerate(model.parameters())]
        out[f"{name}_initial_buckets"] = np.array(json.dumps([b.param_indices for b in ddp._buckets]))
        out[f"{name}_traj"] = train(ddp, world, rank, accum)
        out[f"{name}_nbuckets"] = np.array(len(ddp._buckets))
        out["overlap"] = np.array(ddp.reducer.overlap)
        out[f"{name}_staged"] = np.array(ddp.reducer.staged_iterations)
        out[f"{name}_sunk"] = np.array(ddp.reducer.sunk_total)  # weight gradients computed in the areas
        if name == "plain":
            out["direct"] = np.array(bool(ddp.reducer._direct))
        out[f"{name}_rebuilt_buckets"] = np.array(json.dumps([b.param_indices for b in ddp._buckets]))
        out[f"{name}_arrival"] = np.array(arrival[:len(handles)])  # the first iteration's order
        for h in handles:
            h.remove()


def user_allreduce_hook(process_group, bucket):
    """A hook as PyTorch's docs write one: average in place, return the async work's future."""
    seen_buckets.append((bucket.index(), bucket.is_last(), len(bucket.gradients()), len(bucket.parameters())))
    tensor = bucket.buffer().div_(dist.get_world_size())
    return dist.all_reduce(tensor, async_op=True).get_future().then(lambda fut: tensor)


seen_buckets = []


def scenario_hooks(rank, world, out):
    for name, hook in [("fp16", default_hooks.fp16_compress_hook), ("bf16", default_hooks.bf16_compress_hook),
                       ("user", user_allreduce_hook)]:
        model = make_model(7)
        ddp = DDP(model)
        ddp.register_comm_hook(None, hook)
        out[f"{name}_traj"] = train(ddp, world, rank, 1)
    out["user_buckets_seen"] = np.array(seen_buckets[:2])


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4).double()
        self.b = nn.Linear(4, 4).double()

    def forward(self, x):
        return self.a(x)


def scenario_unused(rank, world, out):
    torch.manual_seed(0)
    x = torch.from_numpy(np.ones((2, 4)))
    ddp = DDP(TwoHeads(), find_unused_parameters=True)
    for _ in range(2):
        ddp(x).sum().backward()
    out["unused_b_grad_is_none"] = np.array(ddp.module.b.weight.grad is None)
    out["unused_a_grad"] = ddp.module.a.weight.grad._data.copy()
    ddp = DDP(TwoHeads())
    ddp(x).sum().backward()
    try:
        ddp(x)
        out["unused_error"] = np.array("no error")
    except RuntimeError as e:
        out["unused_error"] = np.array(str(e))


def scenario_mismatch(rank, world, out):
    model = nn.Linear(4, 4 + (rank == world - 1))
    try:
        DDP(model)
        out["mismatch_error"] = np.array("no error")
    except RuntimeError as e:
        out["mismatch_error"] = np.array(str(e))


def scenario_join(rank, world, out):
    model = make_model(3)
    ddp = DDP(model)
    n_batches = 3 + 2 * rank  # uneven: rank 0 runs out first
    x = torch.from_numpy(np.full((B, 8), 0.1 * (rank + 1)))
    with ddp.join():
        for _ in range(n_batches):
            (ddp(x) ** 2).mean().backward()
            sgd(list(model.parameters()))
    out["join_params"] = np.concatenate([p._data.ravel() for p in model.parameters()])


def scenario_init(rank, world, out):
    """Each rank builds a different model (and buffers); DDP must leave everyone with rank 0's."""
    model = make_bn_model(50 + rank)
    model[1].running_mean._data[...] = rank + 1.0
    out["init_before"] = flat_state(model)
    DDP(model)
    out["init_after"] = flat_state(model)


def scenario_subgroup(rank, world, out):
    """DDP over ``new_group([0, world-1])``: the middle ranks take no part (and run no collective)."""
    members = [0, world - 1]
    group = dist.new_group(members)
    if rank not in members:
        return
    model = make_model(200 + rank)
    ddp = DDP(model, process_group=group)
    out["sub_init"] = np.concatenate([p._data.ravel() for p in model.parameters()])
    (ddp(torch.from_numpy(np.full((B, 8), rank + 1.0))) ** 2).mean().backward()
    out["sub_grad"] = np.concatenate([p.grad._data.ravel() for p in model.parameters()])


def make_bn_model(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(3 * 4 * 4, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 2)).double()


def bn_data(world):
    """One step's data per row: inputs (STEPS, world*B, 2, 4, 4), targets (STEPS, world*B, 2)."""
    rng = np.random.default_rng(5)
    return rng.standard_normal((STEPS, world * B, 2, 4, 4)) * 2 + 1, rng.standard_normal((STEPS, world * B, 2))


def flat_state(model):
    return np.concatenate([t._data.ravel().astype(np.float64) for t in model.state_dict().values()])


def scenario_syncbn(rank, world, out):
    """SyncBatchNorm + DDP on per-rank batch B: outputs, input grads, averaged param grads, running
    stats and the 10-step trajectory, for comparison with BatchNorm on one process with world*B."""
    model = SyncBatchNorm.convert_sync_batchnorm(make_bn_model(11))
    out["syncbn_types"] = np.array(",".join(type(m).__name__ for m in model))
    ddp = DDP(model)
    xs, ys = bn_data(world)
    traj = []
    for s in range(STEPS):
        x = torch.from_numpy(xs[s, rank * B:(rank + 1) * B].copy()).requires_grad_()
        y = torch.from_numpy(ys[s, rank * B:(rank + 1) * B])
        output = ddp(x)
        loss = ((output - y) ** 2).mean()
        loss.backward()
        if s == 0:
            out["syncbn_out0"] = output._data.copy()
            out["syncbn_xgrad0"] = x.grad._data.copy()
            out["syncbn_grads0"] = np.concatenate([p.grad._data.ravel() for p in model.parameters()])
        sgd(list(model.parameters()))
        traj.append(flat_state(model))
    out["syncbn_traj"] = np.stack(traj)
    out["syncbn_staged"] = np.array(ddp.reducer.staged_iterations)


def scenario_gradsem(rank, world, out):
    """What ``.grad`` is after DDP's backward, with and without gradient_as_bucket_view."""
    x = torch.from_numpy(np.full((B, 8), rank + 1.0))

    def backward(model, scale):
        (model(x * scale) ** 2).mean().backward()
        return model.module[0].weight

    ddp = DDP(make_model(5))
    backward(ddp, 3.0)
    ddp.zero_grad(set_to_none=True)
    w = backward(ddp, 1.0)  # the second forward rebuilt the buckets: from here on they stay
    kept, kept_values = w.grad, w.grad._data.copy()
    bucket_flats = [b.flat for b in ddp._buckets]
    if ddp.reducer._direct:  # reduced into the array backward produced: private, not a shared area
        areas = [half for area in ddp.reducer._direct.values() for mine in area._areas for half in mine]
        out["sem_zero_copy"] = np.array(not any(np.shares_memory(kept._data, a) for a in areas)
                                        and not any(np.shares_memory(kept._data, f) for f in bucket_flats))
    else:  # .grad is handed out as a view of the bucket it was reduced in
        out["sem_zero_copy"] = np.array(any(np.shares_memory(kept._data, f) for f in bucket_flats))
    ddp.zero_grad(set_to_none=True)
    w = backward(ddp, 2.0)  # the next iteration must not change a gradient kept from the last one
    out["sem_kept_unchanged"] = np.array(np.array_equal(kept._data, kept_values))
    out["sem_new_tensor"] = np.array(w.grad is not kept and not np.array_equal(w.grad._data, kept_values))
    ddp.zero_grad(set_to_none=True)
    kept = None
    backward(ddp, 2.0)
    same_values = w.grad._data.copy()
    persistent = w.grad  # set_to_none=False: the same tensor object, updated in place, each iteration
    ddp.zero_grad(set_to_none=False)
    w = backward(ddp, 2.0)
    out["sem_persistent_identity"] = np.array(w.grad is persistent)
    out["sem_persistent_values"] = np.array(np.allclose(w.grad._data, same_values, rtol=1e-12, atol=0))

    view = DDP(make_model(5), gradient_as_bucket_view=True)
    w = backward(view, 1.0)
    out["sem_view_aliases_bucket"] = np.array(any(np.shares_memory(w.grad._data, b.flat) for b in view._buckets))


class Tied(nn.Module):
    """One Linear applied twice (its weight's gradient has two contributions), then a head."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.head = nn.Linear(8, 8)
        self.fail = False

    def forward(self, x):
        h = self.lin(self.lin(x).tanh()).tanh()
        if self.fail:
            h.register_hook(_fail)  # raises right after the head's weight gradient went in
        return self.head(h)


def _fail(grad):
    raise ValueError("backward stopped on purpose")


def tied_batch(rank):
    return torch.from_numpy(np.linspace(-1, 1, B * 8).reshape(B, 8) * (rank + 1))


def scenario_sink(rank, world, out):
    """Weight gradients computed straight into DDP's shared-memory areas: a tied weight, and a
    backward that fails after one was computed there."""
    torch.manual_seed(21)
    ddp = DDP(Tied().double())
    weight, head = ddp.module.lin.weight, ddp.module.head.weight
    (ddp(tied_batch(rank)) ** 2).mean().backward()
    out["sink_tied_grad"] = weight.grad._data.copy()
    out["sink_tied_sunk"] = np.array(ddp.reducer.sunk_total)
    ddp.zero_grad(set_to_none=True)
    ddp.module.fail = True
    try:
        (ddp(tied_batch(rank)) ** 2).mean().backward()
    except ValueError as exc:
        out["sink_failure"] = np.array(str(exc))
    ddp.module.fail = False

    def in_area(arr, mine_only):
        return any(np.shares_memory(arr, half) for area in ddp.reducer._direct.values()
                   for k, halves in enumerate(area._areas) if k == area._me or not mine_only for half in halves)

    out["sink_failed_in_area"] = np.array(in_area(head.grad._data, True))  # the head's weight gradient
    try:
        ddp(tied_batch(rank))
    except RuntimeError as exc:  # the unfinished iteration is reported at the next forward
        out["sink_unfinished"] = np.array(str(exc)[:60])
    with ddp.no_sync():  # a forward whose backward DDP does not reduce: the .grad leaves the area now
        ddp(tied_batch(rank))
    out["sink_released_at_forward"] = np.array(not in_area(head.grad._data, False))
    ddp.zero_grad(set_to_none=False)  # the .grad tensor is kept and accumulated into from here on
    (ddp(tied_batch(rank)) ** 2).mean().backward()
    out["sink_after_error_grad"] = head.grad._data.copy()
    out["sink_after_error_private"] = np.array(not in_area(head.grad._data, False))


def scenario_state_dict(rank, world, out):
    ddp = DDP(make_model(0))
    out["state_keys"] = np.array(json.dumps(list(ddp.state_dict().keys())))


def main():
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    torch.set_num_threads(1)
    dist.init_process_group("zmq", init_method="env://")
    out = {}
    try:
        for name in sys.argv[2:]:
            globals()[f"scenario_{name}"](rank, world, out)
        np.savez(os.path.join(sys.argv[1], f"rank{rank}.npz"), **out)
    except Exception:
        traceback.print_exc()
        sys.exit(1)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
