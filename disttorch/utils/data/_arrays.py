"""The few places where the data pipeline touches the tensor core.

The pipeline moves NumPy arrays and only wraps them as tensors at the end, because a transform or a
collate step needs no autograd and NumPy's own calls are several times cheaper than going through
tensor ops. ``disttorch``'s attributes are looked up at call time, not import time, so the tensor
core may import this package while it is itself still initialising.
"""
from __future__ import annotations

import numpy as np

import disttorch

_SEED_BOUND = 2 ** 63  # seeds are non-negative int64 values, as torch's random_() on int64 draws


def is_tensor(obj) -> bool:
    return isinstance(obj, disttorch.Tensor)


def wrap(array: np.ndarray):
    """A tensor that shares ``array``'s memory (no copy)."""
    return disttorch.Tensor._wrap(array)


def array_of(tensor) -> np.ndarray:
    """The array a tensor holds (shared memory, no copy)."""
    return tensor._data


def default_generator():
    return disttorch.default_generator


def numpy_rng(generator=None) -> np.random.Generator:
    """The NumPy bit generator behind a disttorch.Generator (the default one when None).

    Drawing from it advances the disttorch generator, so ``disttorch.manual_seed`` reproduces
    every draw made through here.
    """
    if generator is None:
        generator = disttorch.default_generator
    rng = generator.np_rng
    return rng() if callable(rng) else rng


def draw_seed(generator=None) -> int:
    """A fresh non-negative 63-bit seed drawn from ``generator`` (the default one when None)."""
    # PyTorch's loader draws its base seed as torch.empty((), dtype=torch.int64).random_(generator=...)
    return int(disttorch.empty((), dtype=disttorch.int64).random_(generator=generator).item())


def randperm(n: int, generator=None) -> np.ndarray:
    """``torch.randperm(n, generator=generator)`` as an int64 array (PyTorch's permutation)."""
    return array_of(disttorch.randperm(n, generator=generator))


def randint(high: int, size: int, generator=None) -> np.ndarray:
    """``torch.randint(high=high, size=(size,), dtype=torch.int64, generator=generator)``."""
    return array_of(disttorch.randint(high=high, size=(size,), dtype=disttorch.int64, generator=generator))


def multinomial(weights, num_samples: int, replacement: bool, generator=None) -> np.ndarray:
    """``torch.multinomial(weights, num_samples, replacement, generator=generator)`` as an array."""
    return array_of(disttorch.multinomial(weights, num_samples, replacement, generator=generator))


def new_generator(seed: int):
    """A new disttorch.Generator seeded with ``seed``."""
    gen = disttorch.Generator()
    gen.manual_seed(int(seed))
    return gen
