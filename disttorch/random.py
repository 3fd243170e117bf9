"""Random number generation: ``Generator`` objects and the default generator.

Streams come from NumPy's PCG64, so they are reproducible under disttorch's own seeds (they do not
reproduce PyTorch's Mersenne-Twister numbers, which no NumPy stream can).
"""
from __future__ import annotations

import json

import numpy as np

_DEFAULT_SEED = 67280421310721  # PyTorch's default_generator initial seed


class Generator:
    """A seeded random stream (``torch.Generator``); pass as ``generator=`` to random functions."""

    def __init__(self, device="cpu"):
        self.device = device
        self._seed = _DEFAULT_SEED
        self.np_rng = np.random.Generator(np.random.PCG64(self._seed))

    def manual_seed(self, seed):
        seed = int(seed)
        if seed < 0:
            seed &= (1 << 64) - 1  # PyTorch accepts negative seeds as their 64-bit pattern
        self._seed = seed
        self.np_rng = np.random.Generator(np.random.PCG64(seed))
        return self

    def seed(self):
        """Reseeds from OS entropy and returns the new seed."""
        s = int(np.random.SeedSequence().entropy) & ((1 << 63) - 1)
        self.manual_seed(s)
        return s

    def initial_seed(self):
        return self._seed

    def get_state(self):
        """The stream state as a uint8 tensor (opaque; feed it back to ``set_state``)."""
        from .tensor import Tensor
        payload = json.dumps({"seed": self._seed, "state": self.np_rng.bit_generator.state}).encode()
        return Tensor._wrap(np.frombuffer(payload, dtype=np.uint8).copy())

    def set_state(self, new_state):
        raw = bytes(np.asarray(new_state._data if hasattr(new_state, "_data") else new_state, dtype=np.uint8))
        try:
            obj = json.loads(raw.decode())
            state = obj["state"]
        except (ValueError, KeyError, UnicodeDecodeError):
            raise RuntimeError("Generator.set_state: expected a state produced by Generator.get_state()") from None
        self._seed = obj.get("seed", self._seed)
        bg = np.random.PCG64()
        bg.state = state
        self.np_rng = np.random.Generator(bg)
        return self

    def __getstate__(self):
        return {"device": self.device, "seed": self._seed, "state": self.np_rng.bit_generator.state}

    def __setstate__(self, st):
        self.device, self._seed = st["device"], st["seed"]
        bg = np.random.PCG64()
        bg.state = st["state"]
        self.np_rng = np.random.Generator(bg)


default_generator = Generator()


def rng(generator=None) -> np.random.Generator:
    """The NumPy stream behind ``generator`` (or the default generator)."""
    return (generator or default_generator).np_rng


def manual_seed(seed):
    """Seeds the default generator (and CUDA streams, which share it)."""
    return default_generator.manual_seed(seed)


def seed():
    return default_generator.seed()


def initial_seed():
    return default_generator.initial_seed()


def get_rng_state():
    return default_generator.get_state()


def set_rng_state(new_state):
    default_generator.set_state(new_state)


def fork_rng(devices=None, enabled=True):
    """Context manager restoring the default generator's state on exit."""
    import contextlib

    @contextlib.contextmanager
    def _ctx():
        state = get_rng_state() if enabled else None
        try:
            yield
        finally:
            if enabled:
                set_rng_state(state)
    return _ctx()
