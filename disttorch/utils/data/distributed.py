"""DistributedSampler: each rank's share of a map-style dataset, with PyTorch's exact semantics."""
from __future__ import annotations

import importlib
import math
from typing import Iterator

from . import _arrays
from .sampler import Sampler


class DistributedSampler(Sampler):
    """Restricts data loading to this rank's shard of ``dataset``.

    Every rank draws the same permutation (seeded by ``seed + epoch``), so the shards are
    disjoint and together cover the data. Without ``drop_last`` the index list is padded by
    repeating its head until it divides evenly (a few samples are then seen twice per epoch); with
    ``drop_last`` the tail is cut instead. Rank ``r`` takes every ``num_replicas``-th index starting
    at ``r``, so all ranks get ``num_samples`` indices and step in lockstep.

    Call ``set_epoch(epoch)`` before each epoch; otherwise every epoch repeats the same order.

    Args:
        num_replicas: number of ranks; defaults to the process group's world size.
        rank: this rank; defaults to the process group's rank.
        shuffle: permute the indices each epoch (default True).
        seed: base seed; must be the same on every rank.
        drop_last: cut the tail instead of padding.
    """

    def __init__(self, dataset, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> None:
        if num_replicas is None or rank is None:
            dist = _process_group()
            if num_replicas is None:
                num_replicas = dist.get_world_size()
            if rank is None:
                rank = dist.get_rank()
        if not isinstance(num_replicas, int) or num_replicas <= 0:
            raise ValueError(f"num_replicas should be a positive integer, but got num_replicas={num_replicas}")
        if rank >= num_replicas or rank < 0:
            raise ValueError(f"Invalid rank {rank}, rank should be in the interval [0, {num_replicas - 1}]")
        self.dataset = dataset
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.drop_last = drop_last
        n = len(self.dataset)
        if self.drop_last and n % self.num_replicas != 0:
            # Cut to the largest multiple of num_replicas so no rank needs padding.
            self.num_samples = math.ceil((n - self.num_replicas) / self.num_replicas)
        else:
            self.num_samples = math.ceil(n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas
        self.shuffle = shuffle
        self.seed = seed

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)
        if self.shuffle:
            # A private generator seeded identically on every rank: same permutation everywhere.
            rng = _arrays.numpy_rng(_arrays.new_generator(self.seed + self.epoch))
            indices = rng.permutation(n).tolist()
        else:
            indices = list(range(n))
        if not self.drop_last:
            padding_size = self.total_size - len(indices)
            if padding_size <= len(indices):
                indices += indices[:padding_size]
            else:
                indices += (indices * math.ceil(padding_size / len(indices)))[:padding_size]
        else:
            indices = indices[: self.total_size]
        if len(indices) != self.total_size:
            raise AssertionError(f"DistributedSampler built {len(indices)} indices, expected {self.total_size}")
        indices = indices[self.rank: self.total_size: self.num_replicas]
        if len(indices) != self.num_samples:
            raise AssertionError(f"DistributedSampler gave rank {self.rank} {len(indices)} indices, "
                                 f"expected {self.num_samples}")
        return iter(indices)

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch that seeds the next ``__iter__``'s shuffle (same value on every rank)."""
        self.epoch = epoch


def _process_group():
    """disttorch.distributed, initialised; imported lazily because utils.data must not need it."""
    try:
        dist = importlib.import_module("disttorch.distributed")
    except ImportError as error:
        raise RuntimeError("Requires distributed package to be available") from error
    is_available = getattr(dist, "is_available", lambda: True)
    is_initialized = getattr(dist, "is_initialized", None)
    if is_initialized is None or not is_available() or not is_initialized():
        raise RuntimeError("Requires distributed package to be available "
                           "(call disttorch.distributed.init_process_group first, "
                           "or pass num_replicas and rank)")
    return dist
