"""_reductions.py: the reducer picks one mode per iteration, and every mode hands back the same
gradients (one process, world size 1: the sums are the gradients themselves)."""
import numpy as np
import pytest

import disttorch as dt
from disttorch.nn import Parameter
from disttorch.nn.parallel._future import completed
from disttorch.nn.parallel._reducer import Reducer
from disttorch.nn.parallel._reductions import AllAtOnce, CommHook, DirectSharedMemory, StagedAcrossHosts


def _reducer(overlap, cap=16):
    params = [Parameter(dt.zeros(3)), Parameter(dt.zeros(2, 2)), Parameter(dt.zeros(5))]
    return params, Reducer(params, ["a", "b", "c"], cap, cap, None, 0, 1, False, overlap=overlap)


def _backward(reducer, params):
    grads = [np.arange(p._data.size, dtype=np.float32).reshape(p._data.shape) + 10 * i
             for i, p in enumerate(params)]
    reducer.prepare()
    for i in reversed(range(len(params))):
        reducer.mark_ready(i, grads[i])
    return grads


@pytest.mark.parametrize("overlap, mode", [(True, StagedAcrossHosts), (False, AllAtOnce)])
def test_the_mode_follows_the_overlap_setting_and_gradients_come_back(world1, overlap, mode):
    params, reducer = _reducer(overlap)
    assert type(reducer.reduction()) is mode and len(reducer.buckets) > 1
    grads = _backward(reducer, params)
    for p, g in zip(params, grads):
        assert p.grad is not None and np.array_equal(p.grad._data, g)
    before = [p.grad for p in params]
    grads = _backward(reducer, params)  # a .grad that already exists keeps its identity
    assert all(p.grad is b for p, b in zip(params, before))
    # one process has no hierarchical all-reduce to stage: the overlap mode reduced bucket by bucket
    assert reducer.staged_iterations == 0


@pytest.mark.parametrize("overlap", [True, False])
def test_a_comm_hook_gets_undivided_buckets_and_its_result_is_handed_back(world1, overlap):
    params, reducer = _reducer(overlap)
    seen = []

    def hook(state, bucket):
        seen.append(bucket.index())
        out = bucket.buffer()
        out._data *= state
        return completed(out)

    reducer.comm_state, reducer.comm_hook = 3.0, hook
    assert type(reducer.reduction()) is CommHook and reducer.reduction().overlaps == overlap
    grads = _backward(reducer, params)
    assert seen == list(range(len(reducer.buckets)))
    for p, g in zip(params, grads):
        assert np.array_equal(p.grad._data, 3.0 * g)


def test_direct_mode_is_chosen_only_with_areas_and_without_a_hook(world1):
    params, reducer = _reducer(False)
    reducer.enable_direct()  # one rank: no shared-memory group, so no areas
    reducer.prepare()
    assert type(reducer.reduction()) is AllAtOnce
    reducer._direct_on = True  # noqa: SLF001 - what prepare() sets when areas exist
    assert type(reducer.reduction()) is DirectSharedMemory
    reducer.comm_hook = lambda state, bucket: completed(bucket.buffer())
    assert type(reducer.reduction()) is CommHook
