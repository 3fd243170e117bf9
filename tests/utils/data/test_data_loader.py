"""DataLoader semantics (batching, shuffling, edge cases), in-process and with workers."""
import numpy as np
import pytest

import disttorch
from disttorch.utils.data import (BatchSampler, DataLoader, Dataset, IterableDataset, SequentialSampler,
                                  TensorDataset, get_worker_info)


class Squares(Dataset):
    """Sample i: (a 1 x 4 x 4 float image filled with i, i * i)."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(f"index {i} out of range")
        return np.full((1, 4, 4), i, np.float32), i * i


class Count(IterableDataset):
    """0 .. n-1, sharded across workers by get_worker_info."""

    def __init__(self, n):
        self.n = n

    def __iter__(self):
        info = get_worker_info()
        start, step = (0, 1) if info is None else (info.id, info.num_workers)
        return iter(range(start, self.n, step))

    def __len__(self):
        return self.n


def batches(loader):
    return [(x.numpy().copy(), y.numpy().tolist()) for x, y in loader]


def test_sequential_batches_and_last_partial_batch():
    out = batches(DataLoader(Squares(10), batch_size=4))
    assert [y for _, y in out] == [[0, 1, 4, 9], [16, 25, 36, 49], [64, 81]]
    assert out[0][0].shape == (4, 1, 4, 4) and out[2][0].shape == (2, 1, 4, 4)
    assert out[2][0][1, 0, 0, 0] == 9.0
    assert len(DataLoader(Squares(10), batch_size=4)) == 3


def test_drop_last():
    loader = DataLoader(Squares(10), batch_size=4, drop_last=True)
    assert len(loader) == 2
    assert [y for _, y in batches(loader)] == [[0, 1, 4, 9], [16, 25, 36, 49]]


def test_batch_larger_than_dataset():
    assert [y for _, y in batches(DataLoader(Squares(3), batch_size=8))] == [[0, 1, 4]]
    assert list(DataLoader(Squares(3), batch_size=8, drop_last=True)) == []
    assert len(DataLoader(Squares(3), batch_size=8, drop_last=True)) == 0


@pytest.mark.parametrize("num_workers", [0, 2])
def test_empty_dataset(num_workers):
    loader = DataLoader(Squares(0), batch_size=4, num_workers=num_workers)
    assert len(loader) == 0
    assert list(loader) == []


def test_empty_dataset_with_shuffle_is_rejected_like_torch():
    with pytest.raises(ValueError, match="num_samples should be a positive integer value, but got num_samples=0"):
        DataLoader(Squares(0), shuffle=True)


def test_shuffle_is_a_seeded_permutation():
    disttorch.manual_seed(0)
    first = [y for _, ys in batches(DataLoader(Squares(20), batch_size=5, shuffle=True)) for y in ys]
    assert sorted(first) == sorted(i * i for i in range(20)) and first != sorted(first)
    disttorch.manual_seed(0)
    again = [y for _, ys in batches(DataLoader(Squares(20), batch_size=5, shuffle=True)) for y in ys]
    assert again == first
    g = disttorch.Generator().manual_seed(5)
    loader = DataLoader(Squares(20), batch_size=5, shuffle=True, generator=g)
    epoch1, epoch2 = batches(loader), batches(loader)
    assert [y for _, y in epoch1] != [y for _, y in epoch2]  # reshuffled every epoch


def test_batch_size_none_converts_single_samples():
    out = list(DataLoader(Squares(3), batch_size=None))
    assert len(out) == 3
    image, label = out[2]
    assert isinstance(image, disttorch.Tensor) and image.shape == (1, 4, 4) and label == 4


def test_custom_batch_sampler_and_collate_fn():
    sampler = BatchSampler(SequentialSampler(range(5)), batch_size=2, drop_last=False)
    loader = DataLoader(Squares(5), batch_sampler=sampler, collate_fn=lambda items: [y for _, y in items])
    assert list(loader) == [[0, 1], [4, 9], [16]]


def test_tensor_dataset_loader():
    x = disttorch.tensor(np.arange(6, dtype=np.float32).reshape(6, 1))
    y = disttorch.tensor([0, 1, 0, 1, 0, 1])
    out = [(a.numpy().ravel().tolist(), b.numpy().tolist()) for a, b in DataLoader(TensorDataset(x, y), batch_size=4)]
    assert out == [([0.0, 1.0, 2.0, 3.0], [0, 1, 0, 1]), ([4.0, 5.0], [0, 1])]


def test_iterable_dataset_in_process():
    out = [b.numpy().tolist() for b in DataLoader(Count(7), batch_size=3)]
    assert out == [[0, 1, 2], [3, 4, 5], [6]]
    assert [b.numpy().tolist() for b in DataLoader(Count(7), batch_size=3, drop_last=True)] == [[0, 1, 2], [3, 4, 5]]
    assert len(DataLoader(Count(7), batch_size=3)) == 3


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_workers=-1), "num_workers option should be non-negative"),
    (dict(timeout=-1), "timeout option should be non-negative"),
    (dict(prefetch_factor=2), "prefetch_factor option could only be specified in multiprocessing"),
    (dict(persistent_workers=True), "persistent_workers option needs num_workers > 0"),
    (dict(sampler=[0, 1], shuffle=True), "sampler option is mutually exclusive with shuffle"),
    (dict(batch_sampler=[[0]], batch_size=2), "batch_sampler option is mutually exclusive with batch_size"),
    (dict(batch_size=None, drop_last=True), "batch_size=None option disables auto-batching"),
    (dict(num_workers=1, prefetch_factor=0), "prefetch_factor option should be a positive integer"),
])
def test_argument_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DataLoader(Squares(4), **kwargs)


def test_iterable_dataset_rejects_shuffle_and_samplers():
    with pytest.raises(ValueError, match="expected unspecified shuffle option, but got shuffle=True"):
        DataLoader(Count(3), shuffle=True)
    with pytest.raises(ValueError, match="expected unspecified sampler option"):
        DataLoader(Count(3), sampler=[0])


def test_attributes_are_frozen_after_init():
    loader = DataLoader(Squares(4), batch_size=2)
    with pytest.raises(ValueError, match="batch_size attribute should not be set after DataLoader is initialized"):
        loader.batch_size = 3
    loader.num_workers = 0  # other attributes stay settable, as in torch


def test_pin_memory_is_accepted():
    with pytest.warns(UserWarning, match="pin_memory"):
        loader = DataLoader(Squares(4), batch_size=2, pin_memory=True)
    assert [y for _, y in batches(loader)] == [[0, 1], [4, 9]]


@pytest.mark.parametrize("shuffle", [False, True])
def test_workers_give_identical_batches(shuffle):
    results = []
    for num_workers in (0, 2):
        g = disttorch.Generator().manual_seed(123)
        loader = DataLoader(Squares(37), batch_size=5, shuffle=shuffle, num_workers=num_workers, generator=g)
        results.append(batches(loader))
    (single, multi) = results
    assert len(single) == len(multi) == 8
    for (x0, y0), (x2, y2) in zip(single, multi):
        assert y0 == y2
        np.testing.assert_array_equal(x0, x2)


def test_workers_identical_with_drop_last_and_default_generator():
    results = []
    for num_workers in (0, 2):
        disttorch.manual_seed(9)
        results.append(batches(DataLoader(Squares(23), batch_size=4, shuffle=True, drop_last=True,
                                          num_workers=num_workers)))
    assert [y for _, y in results[0]] == [y for _, y in results[1]]
    assert len(results[0]) == 5
