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
        self._resume = None  # a position from load_state_dict, applied by the next __iter__
        self._pass = None  # origin and skip of the pass under way, for state_dict

    def _permutation(self) -> list:
        """This epoch's order of all ``len(dataset)`` indices (the same on every rank)."""
        n = len(self.dataset)
        if self.shuffle:
            # A private generator seeded identically on every rank: same permutation everywhere.
            return _arrays.randperm(n, _arrays.new_generator(self.seed + self.epoch)).tolist()
        return list(range(n))

    def _pass_list(self, origin: int, world: int) -> list:
        """The indices of one pass from ``origin`` on, padded (or cut) to a multiple of ``world``.

        A full pass has ``origin == 0``; a pass resumed under another world size starts where the
        interrupted one stopped, so each remaining sample is seen once (plus padding)."""
        indices = self._permutation()[origin:]
        size = len(indices)
        if self.drop_last:
            return indices[: size - size % world]
        padding_size = (-size) % world
        if padding_size == 0 or size == 0:
            return indices
        if padding_size <= size:
            return indices + indices[:padding_size]
        return indices + (indices * math.ceil(padding_size / size))[:padding_size]

    def __iter__(self) -> Iterator[int]:
        origin, world, skip = 0, self.num_replicas, 0
        if self._resume is not None:
            origin, world, skip = self._resume_plan()
            self._resume = None  # a resumed pass happens once; later passes are whole epochs
        self._pass = {"origin": origin, "skip": skip}
        indices = self._pass_list(origin, world)
        if origin == 0 and len(indices) != self.total_size:
            raise AssertionError(f"DistributedSampler built {len(indices)} indices, expected {self.total_size}")
        indices = indices[self.rank::self.num_replicas][skip:]
        return iter(indices)

    def __len__(self) -> int:
        if self._resume is not None:
            origin, _, skip = self._resume_plan()
            return len(self._pass_list(origin, self.num_replicas)) // self.num_replicas - skip
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch that seeds the next ``__iter__``'s shuffle (same value on every rank).

        A position restored by ``load_state_dict`` belongs to its epoch: setting another epoch
        drops it."""
        if self._resume is not None and epoch != self._resume["epoch"]:
            self._resume = None
        self.epoch = epoch

    # ---- resuming mid-epoch ----------------------------------------------------------------
    def state_dict(self, samples_yielded: int = 0) -> dict:
        """Where this rank is in the current pass, for ``load_state_dict`` after a restart.

        ``samples_yielded`` is how many of this pass's indices were consumed (the DataLoader
        counts the samples of the batches it returned; prefetched ones do not count). The
        state is the same on every rank: ranks step in lockstep."""
        current = self._pass or {"origin": 0, "skip": 0}
        return {"epoch": self.epoch, "seed": self.seed, "shuffle": self.shuffle, "drop_last": self.drop_last,
                "dataset_len": len(self.dataset), "num_replicas": self.num_replicas,
                "origin": current["origin"], "consumed": current["skip"] + int(samples_yielded)}

    def load_state_dict(self, state: dict) -> None:
        """Continue the saved pass on the next ``__iter__``: the same ranks skip what they had
        consumed; a different world size re-shards the samples the saved pass had not reached."""
        for key in ("seed", "shuffle", "drop_last", "dataset_len"):
            mine = len(self.dataset) if key == "dataset_len" else getattr(self, key)
            if state[key] != mine:
                raise ValueError(f"DistributedSampler.load_state_dict: the saved {key} is {state[key]!r}, "
                                 f"this sampler's is {mine!r}; the saved position does not apply")
        self.epoch = int(state["epoch"])
        self._resume = {"epoch": self.epoch, "origin": int(state["origin"]), "world": int(state["num_replicas"]),
                        "consumed": int(state["consumed"])}

    def _resume_plan(self):
        """(origin, world of the list, per-rank skip) of the pass a restored state continues."""
        r = self._resume
        if r["world"] == self.num_replicas:
            return r["origin"], r["world"], r["consumed"]
        # Another world size: the saved ranks consumed the first consumed * world indices of
        # their pass list together; start a new pass after them (padding is not real data).
        origin = min(r["origin"] + r["consumed"] * r["world"], len(self.dataset))
        return origin, self.num_replicas, 0


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
