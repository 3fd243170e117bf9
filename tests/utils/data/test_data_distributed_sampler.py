"""DistributedSampler: PyTorch's sharding semantics."""
import itertools
import sys
import types

import pytest

from disttorch.utils.data import DistributedSampler


def shards(n, world, **kwargs):
    return [list(DistributedSampler(range(n), num_replicas=world, rank=r, **kwargs)) for r in range(world)]


@pytest.mark.parametrize("n, world", [(1, 1), (10, 3), (12, 4), (7, 8), (5, 2), (100, 7)])
@pytest.mark.parametrize("shuffle", [False, True])
def test_padded_shards_are_equal_sized_and_cover_the_data(n, world, shuffle):
    parts = shards(n, world, shuffle=shuffle, seed=5)
    sizes = {len(p) for p in parts}
    assert sizes == {-(-n // world)}  # ceil(n / world) on every rank
    everything = list(itertools.chain.from_iterable(parts))
    assert set(everything) == set(range(n))  # covers the data
    if n % world == 0:
        assert sorted(everything) == list(range(n))  # disjoint when no padding is needed


@pytest.mark.parametrize("n, world", [(10, 3), (12, 4), (7, 8), (5, 2), (100, 7)])
@pytest.mark.parametrize("shuffle", [False, True])
def test_drop_last_shards_are_disjoint(n, world, shuffle):
    parts = shards(n, world, shuffle=shuffle, drop_last=True)
    assert {len(p) for p in parts} == {n // world}
    everything = list(itertools.chain.from_iterable(parts))
    assert len(everything) == len(set(everything)) == (n // world) * world


def test_padding_repeats_the_head_and_split_is_strided():
    assert shards(10, 4, shuffle=False) == [[0, 4, 8], [1, 5, 9], [2, 6, 0], [3, 7, 1]]
    # more padding than data: the list is repeated
    assert shards(2, 5, shuffle=False) == [[0], [1], [0], [1], [0]]
    assert shards(10, 4, shuffle=False, drop_last=True) == [[0, 4], [1, 5], [2, 6], [3, 7]]


def test_every_rank_sees_the_same_permutation_and_set_epoch_changes_it():
    world = 3
    samplers = [DistributedSampler(range(30), num_replicas=world, rank=r, seed=42) for r in range(world)]
    epoch0 = [list(s) for s in samplers]
    # Rebuilding the global order from the shards gives one permutation of 0..29.
    merged = [epoch0[i % world][i // world] for i in range(30)]
    assert sorted(merged) == list(range(30)) and merged != list(range(30))
    assert [list(s) for s in samplers] == epoch0  # no set_epoch: same order again
    for s in samplers:
        s.set_epoch(1)
    epoch1 = [list(s) for s in samplers]
    assert epoch1 != epoch0
    assert sorted(itertools.chain.from_iterable(epoch1)) == list(range(30))
    other_seed = DistributedSampler(range(30), num_replicas=world, rank=0, seed=43)
    assert list(other_seed) != epoch0[0]


def test_matches_torch_without_shuffle():
    torch_data = pytest.importorskip("torch.utils.data")
    for n, world, drop_last in itertools.product([1, 5, 10, 13], [1, 2, 3, 6], [False, True]):
        for rank in range(world):
            ours = list(DistributedSampler(range(n), world, rank, shuffle=False, drop_last=drop_last))
            theirs = list(torch_data.DistributedSampler(range(n), world, rank, shuffle=False, drop_last=drop_last))
            assert ours == theirs, (n, world, rank, drop_last)
            assert len(DistributedSampler(range(n), world, rank, drop_last=drop_last)) == len(theirs)


def test_invalid_rank_message():
    with pytest.raises(ValueError, match=r"Invalid rank 3, rank should be in the interval \[0, 2\]"):
        DistributedSampler(range(4), num_replicas=3, rank=3)
    with pytest.raises(ValueError, match=r"Invalid rank -1"):
        DistributedSampler(range(4), num_replicas=3, rank=-1)


def test_defaults_need_an_initialised_process_group(monkeypatch):
    fake = types.ModuleType("disttorch.distributed")
    fake.is_initialized = lambda: False
    monkeypatch.setitem(sys.modules, "disttorch.distributed", fake)
    with pytest.raises(RuntimeError, match="Requires distributed package to be available"):
        DistributedSampler(range(4))


def test_defaults_come_from_the_process_group(monkeypatch):
    fake = types.ModuleType("disttorch.distributed")
    fake.is_initialized = lambda: True
    fake.get_world_size = lambda: 4
    fake.get_rank = lambda: 2
    monkeypatch.setitem(sys.modules, "disttorch.distributed", fake)
    sampler = DistributedSampler(range(8), shuffle=False)
    assert (sampler.num_replicas, sampler.rank) == (4, 2)
    assert list(sampler) == [2, 6]
