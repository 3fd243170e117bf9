"""Mid-epoch resume: DistributedSampler / DataLoader ``state_dict`` and ``load_state_dict``.

A pass interrupted after k batches and restored into fresh objects must return exactly the
batches the uninterrupted pass returns after its k-th; under another world size the samples the
interrupted pass had not reached are re-sharded over the new ranks, each seen once.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import disttorch
from disttorch.utils.data import (
    DataLoader,
    Dataset,
    DistributedSampler,
    IterableDataset,
    TensorDataset,
)


def _dataset(n):
    return TensorDataset(disttorch.arange(n))


def _rank_indices(n, world, rank, epoch=3, **kw):
    sampler = DistributedSampler(_dataset(n), num_replicas=world, rank=rank, seed=11, **kw)
    sampler.set_epoch(epoch)
    return list(sampler)


@pytest.mark.parametrize("n,world,consumed,kw", [(23, 2, 5, {}), (23, 3, 4, {"drop_last": True}),
                                                  (20, 4, 0, {"shuffle": False}), (17, 2, 9, {})])
def test_sampler_resumes_the_same_world_exactly(n, world, consumed, kw):
    for rank in range(world):
        full = _rank_indices(n, world, rank, **kw)
        before = DistributedSampler(_dataset(n), num_replicas=world, rank=rank, seed=11, **kw)
        before.set_epoch(3)
        list(itertools.islice(iter(before), consumed))
        state = before.state_dict(samples_yielded=consumed)
        after = DistributedSampler(_dataset(n), num_replicas=world, rank=rank, seed=11, **kw)
        after.load_state_dict(state)
        after.set_epoch(3)  # the training loop sets the same epoch again: the position stays
        assert len(after) == len(full) - consumed
        assert list(after) == full[consumed:]
        assert list(after) == full  # the next pass is a whole epoch again


@pytest.mark.parametrize("old_world,new_world,consumed", [(2, 3, 4), (3, 1, 2), (2, 4, 7), (4, 2, 1)])
def test_sampler_reshards_the_rest_of_the_epoch_over_a_new_world_size(old_world, new_world, consumed):
    n = 30
    seen = []
    for rank in range(old_world):
        seen += _rank_indices(n, old_world, rank)[:consumed]
    state = DistributedSampler(_dataset(n), num_replicas=old_world, rank=0, seed=11)
    state.set_epoch(3)
    iter(state)
    saved = state.state_dict(samples_yielded=consumed)
    rest = []
    lengths = set()
    for rank in range(new_world):
        s = DistributedSampler(_dataset(n), num_replicas=new_world, rank=rank, seed=11)
        s.load_state_dict(saved)
        expected_len = len(s)
        got = list(s)
        assert len(got) == expected_len
        lengths.add(len(got))
        rest += got
    assert len(lengths) == 1  # new ranks still step in lockstep
    remaining = n - len(set(seen))
    assert set(seen) | set(rest) == set(range(n))  # nothing lost
    assert not set(rest) & set(seen)  # nothing replayed: padding repeats the rest's own head
    assert sorted(set(rest)) == sorted(set(range(n)) - set(seen))
    assert len(rest) == remaining + (-remaining) % new_world  # padded to a multiple, as a full epoch is


def test_sampler_position_is_dropped_for_another_epoch_and_checked_against_the_sampler():
    s = DistributedSampler(_dataset(10), num_replicas=2, rank=0, seed=11)
    s.set_epoch(1)
    saved = s.state_dict(samples_yielded=3)
    other = DistributedSampler(_dataset(10), num_replicas=2, rank=0, seed=11)
    other.load_state_dict(saved)
    other.set_epoch(2)
    assert list(other) == _rank_indices(10, 2, 0, epoch=2)  # a whole epoch 2, seed 11
    with pytest.raises(ValueError, match=r"saved seed is 11, this sampler's is 12"):
        DistributedSampler(_dataset(10), num_replicas=2, rank=0, seed=12).load_state_dict(saved)


class _Squares(Dataset):
    def __len__(self):
        return 37

    def __getitem__(self, i):
        return np.float32(i * i)


class _Stream(IterableDataset):
    def __iter__(self):
        return iter(range(0, 50, 2))


def _make(kind, workers):
    if kind == "distributed":
        sampler = DistributedSampler(_Squares(), num_replicas=2, rank=1, seed=5)
        sampler.set_epoch(2)
        return DataLoader(_Squares(), batch_size=4, sampler=sampler, num_workers=workers), sampler
    if kind == "sequential":
        return DataLoader(_Squares(), batch_size=5, num_workers=workers), None
    return DataLoader(_Stream(), batch_size=3), None


@pytest.mark.parametrize("kind,workers", [("distributed", 0), ("distributed", 2), ("sequential", 0),
                                          ("stream", 0)])
def test_loader_continues_after_the_last_returned_batch(kind, workers):
    loader, _ = _make(kind, workers)
    full = [b.tolist() for b in loader]
    loader, _ = _make(kind, workers)
    it = iter(loader)
    first = [next(it).tolist() for _ in range(3)]  # workers have prefetched more than this
    state = loader.state_dict()
    del it
    assert state["batches_yielded"] == 3 and not state["finished"]
    fresh, _ = _make(kind, workers)
    fresh.load_state_dict(state)
    if kind != "stream":
        assert len(fresh) == len(full) - 3
    rest = [b.tolist() for b in fresh]
    assert first + rest == full
    again = fresh.state_dict()
    assert again["batches_yielded"] == len(full) and again["finished"]
    assert [b.tolist() for b in fresh] == full  # the pass after a resumed one is whole


def test_loader_state_of_a_resumed_pass_can_be_resumed_again():
    loader, _ = _make("distributed", 0)
    full = [b.tolist() for b in loader]
    loader, _ = _make("distributed", 0)
    it = iter(loader)
    next(it)
    state = loader.state_dict()
    second, _ = _make("distributed", 0)
    second.load_state_dict(state)
    it = iter(second)
    got = [next(it).tolist() for _ in range(2)]
    third, _ = _make("distributed", 0)
    third.load_state_dict(second.state_dict())
    assert [full[0]] + got + [b.tolist() for b in third] == full


def test_resumed_pass_reuses_the_worker_seed_and_leaves_the_global_stream_alone():
    disttorch.manual_seed(0)
    loader = DataLoader(_Squares(), batch_size=4, shuffle=False)
    it = iter(loader)
    next(it)
    state = loader.state_dict()
    after_draw = disttorch.get_rng_state()
    fresh = DataLoader(_Squares(), batch_size=4, shuffle=False)
    fresh.load_state_dict(state)
    disttorch.set_rng_state(after_draw)
    iter(fresh)
    assert fresh.state_dict()["base_seed"] == state["base_seed"]
    assert np.array_equal(disttorch.get_rng_state().numpy(), after_draw.numpy())
