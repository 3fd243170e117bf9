"""Datasets and random_split."""
import numpy as np
import pytest

import disttorch
from disttorch.utils.data import (ChainDataset, ConcatDataset, Dataset, IterableDataset, Subset,
                                  TensorDataset, random_split)


class Range(Dataset):
    def __init__(self, n, offset=0):
        self.n, self.offset = n, offset

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.offset + i


class Stream(IterableDataset):
    def __init__(self, items):
        self.items = items

    def __iter__(self):
        return iter(self.items)

    def __len__(self):
        return len(self.items)


def test_tensor_dataset_rows_and_length():
    x = disttorch.tensor(np.arange(12, dtype=np.float32).reshape(4, 3))
    y = disttorch.tensor([10, 11, 12, 13])
    ds = TensorDataset(x, y)
    assert len(ds) == 4
    row, label = ds[2]
    assert row.numpy().tolist() == [6.0, 7.0, 8.0]
    assert int(label) == 12


def test_tensor_dataset_size_mismatch_names_shapes():
    with pytest.raises(AssertionError, match=r"Size mismatch between tensors.*\(4, 3\).*\(3,\)"):
        TensorDataset(disttorch.zeros(4, 3), disttorch.zeros(3))


def test_subset_and_getitems():
    sub = Subset(Range(10), [9, 2, 5])
    assert len(sub) == 3
    assert [sub[i] for i in range(3)] == [9, 2, 5]
    assert sub.__getitems__([2, 0]) == [5, 9]


def test_concat_dataset_indexing():
    ds = ConcatDataset([Range(3), Range(2, offset=100), Range(4, offset=200)])
    assert len(ds) == 9
    assert ds.cumulative_sizes == [3, 5, 9]
    assert [ds[i] for i in range(9)] == [0, 1, 2, 100, 101, 200, 201, 202, 203]
    assert ds[-1] == 203 and ds[-9] == 0
    with pytest.raises(ValueError, match="absolute value of index should not exceed dataset length"):
        ds[-10]
    with pytest.raises(IndexError):
        ds[9]
    assert (Range(2) + Range(1, offset=7))[2] == 7


def test_concat_dataset_rejects_empty_and_iterable():
    with pytest.raises(AssertionError, match="should not be an empty iterable"):
        ConcatDataset([])
    with pytest.raises(AssertionError, match="does not support IterableDataset"):
        ConcatDataset([Range(2), Stream([1])])


def test_chain_dataset():
    chain = ChainDataset([Stream([1, 2]), Stream([3])])
    assert list(chain) == [1, 2, 3]
    assert len(chain) == 3
    assert list(Stream([1]) + Stream([2, 3])) == [1, 2, 3]
    with pytest.raises(AssertionError, match="only supports IterableDataset"):
        list(ChainDataset([Stream([1]), Range(2)]))


def test_random_split_lengths_is_a_seeded_partition():
    disttorch.manual_seed(3)
    a, b, c = random_split(Range(10), [5, 3, 2])
    assert (len(a), len(b), len(c)) == (5, 3, 2)
    values = sorted(part[i] for part in (a, b, c) for i in range(len(part)))
    assert values == list(range(10))
    disttorch.manual_seed(3)
    a2, _, _ = random_split(Range(10), [5, 3, 2])
    assert a2.indices == a.indices
    g = disttorch.Generator().manual_seed(3)
    a3, _, _ = random_split(Range(10), [5, 3, 2], generator=g)
    assert a3.indices == a.indices  # same seed, same stream, whichever generator holds it


def test_random_split_fractions_spread_the_remainder():
    parts = random_split(Range(11), [0.5, 0.3, 0.2], generator=disttorch.Generator().manual_seed(0))
    # floor(5.5)=5, floor(3.3)=3, floor(2.2)=2, remainder 1 goes to the first split
    assert [len(p) for p in parts] == [6, 3, 2]


def test_random_split_errors():
    with pytest.raises(ValueError, match="Sum of input lengths does not equal the length of the input dataset"):
        random_split(Range(10), [5, 4])
    with pytest.raises(ValueError, match="Fraction at index 1 is not between 0 and 1"):
        random_split(Range(10), [0.5, 1.5, -1.0])
