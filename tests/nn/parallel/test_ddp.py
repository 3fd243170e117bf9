"""DistributedDataParallel against single-process training, over real ZeroMQ process groups.

Each test spawns the ranks once and runs several scenarios in them (process start-up dominates).
"""
from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _spawn import run_ranks  # noqa: E402

HERE = pathlib.Path(__file__).parent
WORKER = HERE / "_ddp_worker.py"


def reference(world, accum, seed=100):
    """One process, global batch world*B, the worker's data and SGD."""
    w = load_worker()
    model = w.make_model(seed)  # rank 0's initial weights
    saved_b = w.B
    w.B = world * saved_b
    try:
        return w.train(model, 1, 0, accum)
    finally:
        w.B = saved_b


def run(tmp_path, world, *scenarios, overlap="on", per_rank_env=None):
    """Runs the scenarios on ``world`` ranks; ``overlap`` on: buckets reduced on the communication
    thread during backward; off: all in the last hook (what ``auto`` picks on a host without a
    spare core), through the shared-memory input areas (direct_reduce.py); "bucket": off, with the
    bucket all-reduce instead of the areas."""
    env = {"DISTTORCH_DDP_OVERLAP": "off" if overlap == "bucket" else overlap,
           "DISTTORCH_DDP_DIRECT": "off" if overlap == "bucket" else "on"}
    results = run_ranks(WORKER, world, [tmp_path, *scenarios], timeout=80, extra_env=env, per_rank_env=per_rank_env)
    for rank, (code, out) in enumerate(results):
        assert code == 0, f"rank {rank} failed (exit {code}):\n{out[-4000:]}"
    return [dict(np.load(tmp_path / f"rank{r}.npz")) for r in range(world)]


def load_worker():
    import importlib.util
    spec = importlib.util.spec_from_file_location("_ddp_worker_ref", WORKER)
    w = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(w)
    return w


def subgroup_reference(world):
    """Group rank 0's initial weights and the mean gradient of the two members' batches."""
    import disttorch as torch
    w = load_worker()
    model = w.make_model(200)
    init = np.concatenate([p._data.ravel() for p in model.parameters()])
    for r in (0, world - 1):
        (model(torch.from_numpy(np.full((w.B, 8), r + 1.0))) ** 2).mean().backward()
    return init, np.concatenate([p.grad._data.ravel() for p in model.parameters()]) / 2


def join_reference(world):
    """One process replaying the join scenario: rank r has 3 + 2r batches of 0.1 * (r + 1)."""
    import disttorch as torch
    w = load_worker()
    model = w.make_model(3)
    params = list(model.parameters())
    for step in range(3 + 2 * (world - 1)):
        total = [np.zeros_like(p._data) for p in params]
        for r in range(world):
            if step < 3 + 2 * r:  # rank r still has a batch; joined ranks contribute zeros
                (model(torch.from_numpy(np.full((w.B, 8), 0.1 * (r + 1)))) ** 2).mean().backward()
                for t, p in zip(total, params):
                    t += p.grad._data
                    p.grad = None
        for t, p in zip(total, params):
            p._data -= w.LR * t / world
    return np.concatenate([p._data.ravel() for p in params])


def batchnorm_reference(world):
    """One process, BatchNorm, global batch world*B: what SyncBatchNorm on world ranks must give."""
    import disttorch as torch
    w = load_worker()
    model = w.make_bn_model(11)
    xs, ys = w.bn_data(world)
    traj = []
    for s in range(w.STEPS):
        x = torch.from_numpy(xs[s].copy()).requires_grad_()
        output = model(x)
        ((output - torch.from_numpy(ys[s])) ** 2).mean().backward()
        if s == 0:
            first = (output._data.copy(), x.grad._data.copy(),
                     np.concatenate([p.grad._data.ravel() for p in model.parameters()]))
        w.sgd(list(model.parameters()))
        traj.append(w.flat_state(model))
    return first, np.stack(traj)


@pytest.mark.parametrize("world,overlap", [(2, "on"), (2, "off"), (2, "bucket"), (3, "on"), (3, "off")])
def test_ddp_matches_single_process_full_batch(tmp_path, world, overlap):
    ranks = run(tmp_path, world, "equiv", "init", "subgroup", overlap=overlap)
    assert all(bool(r["overlap"]) == (overlap == "on") for r in ranks)
    # one host with shared memory: without overlap the gradients go through the direct areas
    assert all(bool(r["direct"]) == (overlap == "off") for r in ranks)
    for r in range(world):  # construction overwrote every rank's own initialisation with rank 0's
        assert not np.array_equal(ranks[r]["init_before"], ranks[0]["init_before"]) or r == 0
        np.testing.assert_array_equal(ranks[r]["init_after"], ranks[0]["init_before"])
    ref1, ref2 = reference(world, 1), reference(world, 2)
    assert int(ranks[0]["buckets_nbuckets"]) >= 3, "small bucket_cap_mb should give several buckets"
    # Buckets start in reverse registration order, and after the first iteration follow the order
    # rank 0's gradients arrived in, on every rank (as PyTorch's bucket rebuild).
    n_params = 6
    initial = json.loads(str(ranks[0]["plain_initial_buckets"]))
    assert [i for b in initial for i in b] == list(reversed(range(n_params)))
    arrival = [int(i) for i in ranks[0]["buckets_arrival"]]
    assert sorted(arrival) == list(range(n_params))
    for got in ranks:
        rebuilt = json.loads(str(got["buckets_rebuilt_buckets"]))
        assert [i for b in rebuilt for i in b] == arrival and len(rebuilt) >= 3, (rebuilt, arrival)
    init, grad = subgroup_reference(world)  # DDP over new_group([0, world-1])
    for r in (0, world - 1):
        np.testing.assert_array_equal(ranks[r]["sub_init"], init)
        np.testing.assert_allclose(ranks[r]["sub_grad"], grad, rtol=1e-12, atol=1e-14)
    assert all("sub_grad" not in ranks[r] for r in range(1, world - 1))
    for name, ref in [("plain", ref1), ("buckets", ref1), ("nosync", ref2), ("view", ref1)]:
        for r, got in enumerate(ranks):
            traj = got[f"{name}_traj"]
            assert traj.shape == ref.shape
            err = np.abs(traj - ref).max()
            assert err < 1e-5, f"{name}: rank {r} of {world} differs from 1-process training by {err:g}"


def tied_reference(world):
    """One process: the Tied model's weight gradients (tied, head) averaged over the ranks' batches."""
    import disttorch as torch
    w = load_worker()
    torch.manual_seed(21)
    model = w.Tied().double()
    for r in range(world):
        (model(w.tied_batch(r)) ** 2).mean().backward()
    return model.lin.weight.grad._data / world, model.head.weight.grad._data / world


def test_weight_gradients_computed_in_the_shared_areas_are_reduced_right(tmp_path):
    # Without overlap the Linear layers compute their weight gradients straight into DDP's
    # shared-memory input areas (ops/_base.grad_destination): one copy less per weight and step.
    world = 2
    ranks = run(tmp_path, world, "equiv", "sink", overlap="off")
    steps = 10
    for got in ranks:
        assert bool(got["direct"])
        assert int(got["plain_sunk"]) == 3 * steps  # each of the 3 weights, every step
        # no_sync: the synced step adds to the .grad accumulated before, so nothing goes to the areas
        assert int(got["nosync_sunk"]) == 0
    tied, head = tied_reference(world)
    for r, got in enumerate(ranks):
        assert int(got["sink_tied_sunk"]) == 2  # the head's weight and the tied weight's first product
        np.testing.assert_allclose(got["sink_tied_grad"], tied, rtol=1e-12, atol=1e-15)
        assert str(got["sink_failure"]) == "backward stopped on purpose"
        assert bool(got["sink_failed_in_area"])
        assert bool(got["sink_released_at_forward"])  # copied out of the area (Reducer._release_sunk)
        assert str(got["sink_unfinished"]).startswith("Expected to have finished reduction"), got["sink_unfinished"]
        # the failed step's .grad (zeroed in place, so kept) got memory of its own before the next
        # reduction: that one lands in it, not in the area every rank reads
        assert bool(got["sink_after_error_private"])
        np.testing.assert_allclose(got["sink_after_error_grad"], head, rtol=1e-12, atol=1e-15)


def test_ddp_across_two_simulated_hosts_stages_one_all_reduce_and_matches_single_process(tmp_path):
    # ranks 0,1 on "host A", 2,3 on "host B": the hierarchical all-reduce, and with overlap one
    # staged all-reduce per iteration that each bucket releases in turn (tiny buckets: many
    # stages); SyncBatchNorm all-reduces inside backward, so its model reduces bucket by bucket
    world = 4
    hosts = {r: {"DISTTORCH_HOST_ID": "AB"[r // 2]} for r in range(world)}
    ranks = run(tmp_path, world, "equiv", "syncbn", overlap="on", per_rank_env=hosts)
    ref1, ref2 = reference(world, 1), reference(world, 2)
    for name, ref in [("plain", ref1), ("buckets", ref1), ("nosync", ref2), ("view", ref1)]:
        for r, got in enumerate(ranks):
            assert int(got[f"{name}_staged"]) == 10, (name, r, int(got[f"{name}_staged"]))  # every step
            err = np.abs(got[f"{name}_traj"] - ref).max()
            assert err < 1e-5, f"{name}: rank {r} of 4 differs from 1-process training by {err:g}"
            np.testing.assert_array_equal(got[f"{name}_traj"], ranks[0][f"{name}_traj"])
    _, traj = batchnorm_reference(world)
    for r, got in enumerate(ranks):
        assert int(got["syncbn_staged"]) == 0
        err = np.abs(got["syncbn_traj"] - traj).max()
        assert err < 1e-9, f"rank {r}: SyncBatchNorm+DDP across hosts differs from BatchNorm by {err:g}"


@pytest.mark.parametrize("overlap", ["on", "off", "bucket"])
def test_ddp_hooks_unused_mismatch_join_state_dict(tmp_path, overlap):
    world = 2
    ranks = run(tmp_path, world, "hooks", "unused", "mismatch", "join", "state_dict", "gradsem", overlap=overlap)
    for r in range(world):  # .grad semantics as PyTorch's, while DDP hands out bucket views (no copy)
        for key in ("sem_zero_copy", "sem_kept_unchanged", "sem_new_tensor", "sem_persistent_identity",
                    "sem_persistent_values", "sem_view_aliases_bucket"):
            assert bool(ranks[r][key]), f"rank {r}: {key} failed"
    ref = reference(world, 1, seed=7)
    for name, tol in [("fp16", 5e-3), ("bf16", 3e-2), ("user", 1e-12)]:
        for r in range(world):
            err = np.abs(ranks[r][f"{name}_traj"] - ref).max()
            assert 0 < err < tol or err == 0, f"{name} hook: rank {r} off by {err:g}"
        np.testing.assert_array_equal(ranks[0][f"{name}_traj"], ranks[1][f"{name}_traj"])
    # The user hook saw GradBucket's API: (index, is_last, #gradients, #parameters) per bucket.
    np.testing.assert_array_equal(ranks[0]["user_buckets_seen"], [[0, 1, 6, 6], [0, 1, 6, 6]])

    # find_unused_parameters: b never used on any rank -> its grad stays None; a is averaged.
    for r in range(world):
        assert bool(ranks[r]["unused_b_grad_is_none"])
        np.testing.assert_allclose(ranks[r]["unused_a_grad"], 2.0 * np.full((4, 4), 2.0), rtol=1e-12)
        msg = str(ranks[r]["unused_error"])
        assert msg.startswith("Expected to have finished reduction in the prior iteration"), msg
        assert f"Parameter indices which did not receive grad for rank {r}: 2 3" in msg, msg
        assert "b.weight, b.bias" in msg, msg

    for r in range(world):
        msg = str(ranks[r]["mismatch_error"])
        assert "DDP expects same model across all ranks, but Rank 1" in msg, msg

    # Join: rank 0 has 3 batches, rank 1 has 5; everyone ends with identical weights, those of
    # averaging the active ranks' gradients over the initial world size at every step.
    np.testing.assert_array_equal(ranks[0]["join_params"], ranks[1]["join_params"])
    np.testing.assert_allclose(ranks[0]["join_params"], join_reference(world), rtol=0, atol=1e-12)

    keys = json.loads(str(ranks[0]["state_keys"]))
    assert keys[0] == "module.0.weight" and all(k.startswith("module.") for k in keys)


@pytest.mark.parametrize("overlap", ["on", "off"])
def test_syncbatchnorm_two_ranks_equals_batchnorm_on_double_batch(tmp_path, overlap):
    world = 2
    # its backward collectives interleave with the bucket all-reduces (on) or the direct areas' filling (off)
    ranks = run(tmp_path, world, "syncbn", overlap=overlap)
    (out0, xgrad0, grads0), traj = batchnorm_reference(world)
    B = out0.shape[0] // world
    for r, got in enumerate(ranks):
        assert "SyncBatchNorm" in str(got["syncbn_types"]) and "BatchNorm2d" not in str(got["syncbn_types"])
        mine = slice(r * B, (r + 1) * B)
        np.testing.assert_allclose(got["syncbn_out0"], out0[mine], rtol=0, atol=1e-10,
                                   err_msg=f"rank {r}: forward output differs from BatchNorm on the full batch")
        # Each rank's loss is a mean over B, the reference's over world*B: input grads scale by world.
        np.testing.assert_allclose(got["syncbn_xgrad0"], world * xgrad0[mine], rtol=0, atol=1e-10,
                                   err_msg=f"rank {r}: input gradient differs")
        np.testing.assert_allclose(got["syncbn_grads0"], grads0, rtol=0, atol=1e-10,
                                   err_msg=f"rank {r}: averaged parameter gradients differ")
        err = np.abs(got["syncbn_traj"] - traj).max()  # weights and running statistics, 10 steps
        assert err < 1e-9, f"rank {r}: SyncBatchNorm+DDP trajectory differs from BatchNorm by {err:g}"
