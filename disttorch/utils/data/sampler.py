"""Samplers: iterables of dataset indices (or, for ``BatchSampler``, of lists of indices).

Random samplers draw from a disttorch.Generator (the default one when None), so
``disttorch.manual_seed`` reproduces an epoch's order. They make PyTorch's draws (randperm,
randint, multinomial) on a stream that is PyTorch's own, so after the same ``manual_seed`` a
shuffled epoch visits the samples in PyTorch's order.
"""
from __future__ import annotations

import itertools
from typing import Iterable, Iterator, Sequence

import numpy as np

from . import _arrays

# Draws are made in chunks rather than one index at a time (cheap) or all at once (num_samples may
# be huge); 32 is PyTorch's chunk size for sampling with replacement.
_CHUNK = 32


class Sampler:
    """Base class: subclasses implement ``__iter__`` (and ``__len__`` when the size is known)."""

    def __init__(self, data_source=None) -> None:
        """``data_source`` is accepted and ignored, as PyTorch does since 2.2."""

    def __iter__(self) -> Iterator:
        raise NotImplementedError


class SequentialSampler(Sampler):
    """``0, 1, ..., len(data_source) - 1``."""

    def __init__(self, data_source) -> None:
        self.data_source = data_source

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


class RandomSampler(Sampler):
    """A random order of the indices.

    Without ``replacement`` every index appears once per pass; ``num_samples`` larger than the
    dataset chains several independent permutations. With ``replacement`` indices are drawn
    uniformly and independently. With ``generator=None`` each epoch draws a fresh seed from the
    default generator.
    """

    def __init__(self, data_source, replacement: bool = False, num_samples: int | None = None,
                 generator=None) -> None:
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        self.generator = generator
        if not isinstance(self.replacement, bool):
            raise TypeError(f"replacement should be a boolean value, but got replacement={self.replacement}")
        if not isinstance(self.num_samples, int) or self.num_samples <= 0:
            raise ValueError(f"num_samples should be a positive integer value, but got num_samples={self.num_samples}")

    @property
    def num_samples(self) -> int:
        # The dataset may change size after construction; follow it unless num_samples was fixed.
        if self._num_samples is None:
            return len(self.data_source)
        return self._num_samples

    def __iter__(self) -> Iterator[int]:
        n = len(self.data_source)
        # As PyTorch: without a generator, a private one seeded by one draw from the default.
        generator = self.generator if self.generator is not None else _arrays.new_generator(_arrays.draw_seed())
        if self.replacement:
            for _ in range(self.num_samples // _CHUNK):
                yield from _arrays.randint(n, _CHUNK, generator).tolist()
            yield from _arrays.randint(n, self.num_samples % _CHUNK, generator).tolist()
        else:
            for _ in range(self.num_samples // n):
                yield from _arrays.randperm(n, generator).tolist()
            yield from _arrays.randperm(n, generator).tolist()[: self.num_samples % n]

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(Sampler):
    """The given ``indices`` in a random order, without replacement."""

    def __init__(self, indices: Sequence[int], generator=None) -> None:
        self.indices = indices
        self.generator = generator

    def __iter__(self) -> Iterator[int]:
        for i in _arrays.randperm(len(self.indices), self.generator).tolist():
            yield self.indices[i]

    def __len__(self) -> int:
        return len(self.indices)


class WeightedRandomSampler(Sampler):
    """Indices ``0 .. len(weights)-1`` drawn with probabilities proportional to ``weights``."""

    def __init__(self, weights: Sequence[float], num_samples: int, replacement: bool = True,
                 generator=None) -> None:
        if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples <= 0:
            raise ValueError(f"num_samples should be a positive integer value, but got num_samples={num_samples}")
        if not isinstance(replacement, bool):
            raise ValueError(f"replacement should be a boolean value, but got replacement={replacement}")
        weights_array = np.asarray(_arrays.array_of(weights) if _arrays.is_tensor(weights) else weights,
                                   dtype=np.float64)
        if weights_array.ndim != 1:
            raise ValueError(f"weights should be a 1d sequence but given weights have shape "
                             f"{tuple(weights_array.shape)}")
        self.weights = _arrays.wrap(weights_array)
        self.num_samples = num_samples
        self.replacement = replacement
        self.generator = generator

    def __iter__(self) -> Iterator[int]:
        weights = _arrays.array_of(self.weights)
        # torch.multinomial's checks, with its messages.
        if not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise RuntimeError("invalid multinomial distribution (encountering probability entry < 0)")
        total = weights.sum()
        if total <= 0:
            raise RuntimeError("invalid multinomial distribution (sum of probabilities <= 0)")
        if not self.replacement and self.num_samples > np.count_nonzero(weights):
            raise RuntimeError("cannot sample n_sample > prob_dist.size(-1) samples without replacement "
                               f"(num_samples={self.num_samples}, non-zero weights={np.count_nonzero(weights)})")
        drawn = _arrays.multinomial(self.weights, self.num_samples, self.replacement, self.generator)
        yield from drawn.tolist()

    def __len__(self) -> int:
        return self.num_samples


class BatchSampler(Sampler):
    """Groups the indices of ``sampler`` into lists of ``batch_size``.

    The last list is shorter when the sampler's length is not a multiple of ``batch_size``, unless
    ``drop_last`` drops it.
    """

    def __init__(self, sampler: Sampler | Iterable[int], batch_size: int, drop_last: bool) -> None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise ValueError(f"batch_size should be a positive integer value, but got batch_size={batch_size}")
        if not isinstance(drop_last, bool):
            raise ValueError(f"drop_last should be a boolean value, but got drop_last={drop_last}")
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last

    def __iter__(self) -> Iterator[list[int]]:
        sampler_iter = iter(self.sampler)
        if self.drop_last:
            # zip over one iterator repeated batch_size times: full batches only, at C speed.
            for batch in zip(*([sampler_iter] * self.batch_size)):
                yield [*batch]
        else:
            batch = [*itertools.islice(sampler_iter, self.batch_size)]
            while batch:
                yield batch
                batch = [*itertools.islice(sampler_iter, self.batch_size)]

    def __len__(self) -> int:
        if self.drop_last:
            return len(self.sampler) // self.batch_size
        return (len(self.sampler) + self.batch_size - 1) // self.batch_size
