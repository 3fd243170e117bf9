"""Samplers."""
import numpy as np
import pytest

import disttorch
from disttorch.utils.data import (BatchSampler, RandomSampler, SequentialSampler, SubsetRandomSampler,
                                  WeightedRandomSampler)


def test_sequential_sampler():
    assert list(SequentialSampler(range(5))) == [0, 1, 2, 3, 4]
    assert len(SequentialSampler(range(5))) == 5


def test_random_sampler_is_a_reproducible_permutation():
    g = disttorch.Generator().manual_seed(7)
    first = list(RandomSampler(range(20), generator=g))
    assert sorted(first) == list(range(20)) and first != list(range(20))
    again = list(RandomSampler(range(20), generator=disttorch.Generator().manual_seed(7)))
    assert first == again
    # A shared generator advances: the next epoch is a different permutation.
    sampler = RandomSampler(range(20), generator=disttorch.Generator().manual_seed(7))
    assert list(sampler) != list(sampler)


def test_random_sampler_follows_default_generator_seed():
    disttorch.manual_seed(11)
    a = list(RandomSampler(range(30)))
    disttorch.manual_seed(11)
    b = list(RandomSampler(range(30)))
    assert a == b


def test_random_sampler_num_samples_without_replacement_chains_permutations():
    order = list(RandomSampler(range(4), num_samples=10, generator=disttorch.Generator().manual_seed(0)))
    assert len(order) == 10
    assert sorted(order[:4]) == [0, 1, 2, 3] and sorted(order[4:8]) == [0, 1, 2, 3]
    assert len(set(order[8:])) == 2


def test_random_sampler_with_replacement():
    order = list(RandomSampler(range(3), replacement=True, num_samples=100,
                               generator=disttorch.Generator().manual_seed(0)))
    assert len(order) == 100 and set(order) == {0, 1, 2}


def test_random_sampler_validation():
    with pytest.raises(TypeError, match="replacement should be a boolean value, but got replacement=1"):
        RandomSampler(range(3), replacement=1)
    with pytest.raises(ValueError, match="num_samples should be a positive integer value, but got num_samples=0"):
        RandomSampler(range(0))
    with pytest.raises(ValueError, match="num_samples=-1"):
        RandomSampler(range(3), num_samples=-1)


def test_subset_random_sampler():
    order = list(SubsetRandomSampler([10, 20, 30, 40], generator=disttorch.Generator().manual_seed(1)))
    assert sorted(order) == [10, 20, 30, 40]


def test_weighted_random_sampler_respects_weights():
    g = disttorch.Generator().manual_seed(0)
    draws = list(WeightedRandomSampler([0.0, 1.0, 3.0], num_samples=4000, generator=g))
    counts = np.bincount(draws, minlength=3)
    assert counts[0] == 0
    assert abs(counts[2] / counts[1] - 3.0) < 0.4
    no_repeat = list(WeightedRandomSampler([1, 1, 1, 1], 4, replacement=False, generator=g))
    assert sorted(no_repeat) == [0, 1, 2, 3]


def test_weighted_random_sampler_errors():
    with pytest.raises(ValueError, match="weights should be a 1d sequence but given weights have shape \\(2, 2\\)"):
        WeightedRandomSampler([[1, 2], [3, 4]], 2)
    with pytest.raises(ValueError, match="num_samples should be a positive integer value, but got num_samples=0"):
        WeightedRandomSampler([1, 2], 0)
    with pytest.raises(RuntimeError, match="cannot sample n_sample > prob_dist.size"):
        list(WeightedRandomSampler([1, 0, 1], 3, replacement=False))
    with pytest.raises(RuntimeError, match="invalid multinomial distribution"):
        list(WeightedRandomSampler([1, -1], 3))


@pytest.mark.parametrize("n, size, drop_last, expected", [
    (10, 3, False, [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]),
    (10, 3, True, [[0, 1, 2], [3, 4, 5], [6, 7, 8]]),
    (2, 5, False, [[0, 1]]),
    (2, 5, True, []),
    (0, 4, False, []),
])
def test_batch_sampler(n, size, drop_last, expected):
    sampler = BatchSampler(SequentialSampler(range(n)), size, drop_last)
    assert list(sampler) == expected
    assert len(sampler) == len(expected)


def test_batch_sampler_validation():
    with pytest.raises(ValueError, match="batch_size should be a positive integer value, but got batch_size=0"):
        BatchSampler(range(3), 0, False)
    with pytest.raises(ValueError, match="drop_last should be a boolean value, but got drop_last=None"):
        BatchSampler(range(3), 2, None)
