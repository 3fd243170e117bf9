"""Random number generation: ``Generator`` objects and the default generator.

A generator is PyTorch CPU's: a 32-bit Mersenne Twister (mt19937) seeded the classic way
(``init_genrand`` with the low 32 bits of the seed), plus the cached second Box-Muller sample that
PyTorch's scalar normal path keeps between calls. The distributions built on it
(:mod:`disttorch._random_recipes`) follow PyTorch's recipes, so ``manual_seed(s)`` followed by the
same calls gives PyTorch CPU's numbers. The raw stream comes from NumPy's ``MT19937`` bit generator,
loaded with the state computed here, so a draw of n numbers is one vectorised call.

``get_state`` / ``set_state`` use PyTorch's 5056-byte layout, so states move between the two.
The default generator is seeded from OS entropy in every process (as PyTorch's), so unseeded programs
and separate DDP ranks draw different numbers; ``torch.Generator()`` objects start from PyTorch's
fixed default seed.
"""
from __future__ import annotations

import contextlib
import os
import struct

import numpy as np

_DEFAULT_SEED = 67280421310721  # PyTorch's seed for a new torch.Generator()
_N = 624                         # mt19937 state words
_U64 = (1 << 64) - 1
# PyTorch's CPU generator state: THGeneratorState (seed u64, left i32, seeded i32, next u64,
# state u64[624], normal_x/y/rho f64, normal_is_valid i32 + padding) then the float normal cache
# (f32 value, bool valid + padding): 5056 bytes.
_STATE_HEAD = struct.Struct("<QiiQ")
_STATE_TAIL = struct.Struct("<dddi4xf?3x")
STATE_SIZE = _STATE_HEAD.size + 8 * _N + _STATE_TAIL.size


def _init_genrand(seed32: int) -> np.ndarray:
    """mt19937's key for ``seed32`` (Matsumoto-Nishimura init_genrand)."""
    key = np.empty(_N, dtype=np.uint32)
    s = seed32
    key[0] = s
    for j in range(1, _N):
        s = (1812433253 * (s ^ (s >> 30)) + j) & 0xFFFFFFFF
        key[j] = s
    return key


def _check_seed(seed) -> int:
    try:
        seed = int(seed)
    except (TypeError, ValueError):
        raise TypeError(f"manual_seed expected an int, but got {type(seed).__name__}") from None
    if not -(1 << 63) <= seed <= _U64:
        raise ValueError(f"Overflow when unpacking long long: seed {seed} is outside [-2**63, 2**64 - 1]")
    return seed & _U64  # a negative seed is its 64-bit pattern, as PyTorch takes it


class Generator:
    """A seeded random stream (``torch.Generator``); pass as ``generator=`` to random functions."""

    def __init__(self, device="cpu"):
        self.device = device
        self._bits = np.random.MT19937()
        self._np_rng = np.random.Generator(self._bits)
        self.manual_seed(_DEFAULT_SEED)

    # ---- seeding ---------------------------------------------------------------------------------
    def manual_seed(self, seed):
        """Seeds the stream with ``seed`` (any 64-bit value; mt19937 takes its low 32 bits)."""
        seed = _check_seed(seed)
        self._seed = seed
        self._seeded_key = _init_genrand(seed & 0xFFFFFFFF)
        self._bits.state = {"bit_generator": "MT19937", "state": {"key": self._seeded_key, "pos": _N}}
        self.next_double_normal = None  # Box-Muller's second sample, kept for the next scalar draw
        self.next_float_normal = None
        return self

    def seed(self):
        """Reseeds from OS entropy and returns the new 64-bit seed."""
        s = int.from_bytes(os.urandom(8), "little")
        self.manual_seed(s)
        return s

    def initial_seed(self):
        return self._seed

    # ---- raw draws -------------------------------------------------------------------------------
    def random(self, n: int) -> np.ndarray:
        """``n`` raw 32-bit draws (PyTorch's ``random()``), as uint64."""
        return self._bits.random_raw(n) if n else np.empty(0, np.uint64)

    def random64(self, n: int) -> np.ndarray:
        """``n`` 64-bit draws made of two 32-bit draws each, the first one high (``random64()``)."""
        pairs = self.random(2 * n)
        return (pairs[0::2] << np.uint64(32)) | pairs[1::2]

    @property
    def np_rng(self) -> np.random.Generator:
        """A NumPy Generator over this stream, for draws with no PyTorch recipe (they advance it)."""
        return self._np_rng

    # ---- state -----------------------------------------------------------------------------------
    def get_state(self):
        """The state as a uint8 tensor in PyTorch's layout (``torch.get_rng_state()`` reads it too)."""
        from .tensor import Tensor
        st = self._bits.state["state"]
        pos = int(st["pos"])
        left = _N + 1 - pos if pos < _N else 1
        if pos == _N and self._seeded_key is not None and np.array_equal(st["key"], self._seeded_key):
            pos = 0  # nothing drawn since seeding: PyTorch's freshly seeded engine says next = 0
        dn, fn = self.next_double_normal, self.next_float_normal
        raw = (_STATE_HEAD.pack(self._seed, left, 1, pos)
               + np.asarray(st["key"], dtype="<u8").tobytes()
               + _STATE_TAIL.pack(0.0, dn or 0.0, 0.0, dn is not None, fn or 0.0, fn is not None))
        return Tensor._wrap(np.frombuffer(raw, dtype=np.uint8).copy())

    def set_state(self, new_state):
        """Restores a state from ``get_state`` (disttorch's or PyTorch's)."""
        data = getattr(new_state, "_data", new_state)
        arr = np.asarray(data.get() if hasattr(data, "get") else data)
        if arr.dtype != np.uint8:
            raise TypeError(f"RNG state must be a torch.ByteTensor, but got dtype {arr.dtype}")
        raw = arr.tobytes()
        if len(raw) != STATE_SIZE:
            raise RuntimeError(f"Expected a CPUGeneratorImplState of size {STATE_SIZE} but found the input RNG state "
                               f"size to be {len(raw)}")
        seed, left, _seeded, nxt = _STATE_HEAD.unpack_from(raw, 0)
        if not (1 <= left <= _N and 0 <= nxt <= _N):
            raise RuntimeError("The legacy_state's left and next fields are invalid")
        key = np.frombuffer(raw, dtype="<u8", count=_N, offset=_STATE_HEAD.size).astype(np.uint32)
        _x, dn, _rho, dvalid, fn, fvalid = _STATE_TAIL.unpack_from(raw, _STATE_HEAD.size + 8 * _N)
        self._seed = seed
        self._seeded_key = key.copy() if (left == 1 and nxt == 0) else None
        self._bits.state = {"bit_generator": "MT19937", "state": {"key": key, "pos": _N if left == 1 else nxt}}
        self.next_double_normal = dn if dvalid else None
        self.next_float_normal = fn if fvalid else None
        return self

    def __getstate__(self):
        return {"device": self.device, "state": bytes(np.asarray(self.get_state()._data))}

    def __setstate__(self, st):
        self.device = st["device"]
        self._bits = np.random.MT19937()
        self._np_rng = np.random.Generator(self._bits)
        self.set_state(np.frombuffer(st["state"], dtype=np.uint8))

    def __repr__(self):
        return f"<disttorch.Generator object at {id(self):#x}>"


def _entropy_seeded_generator():
    gen = Generator()
    gen.seed()
    return gen


default_generator = _entropy_seeded_generator()


def generator_or_default(generator=None) -> Generator:
    """``generator`` itself, or the default generator when None."""
    if generator is None:
        return default_generator
    if not isinstance(generator, Generator):
        raise TypeError(f"generator must be a disttorch.Generator, but got {type(generator).__name__}")
    return generator


def rng(generator=None) -> np.random.Generator:
    """A NumPy Generator over ``generator``'s stream (the default generator when None), for the draws
    that have no PyTorch recipe here."""
    return generator_or_default(generator).np_rng


def manual_seed(seed):
    """Seeds the default generator (and CUDA streams, which share it); returns it."""
    return default_generator.manual_seed(seed)


def seed():
    """Seeds the default generator from OS entropy; returns the seed."""
    return default_generator.seed()


def initial_seed():
    """The seed the default generator was last seeded with."""
    return default_generator.initial_seed()


def get_rng_state():
    """The default generator's state (a uint8 tensor, PyTorch's layout)."""
    return default_generator.get_state()


def set_rng_state(new_state):
    """Restores the default generator's state."""
    default_generator.set_state(new_state)


def fork_rng(devices=None, enabled=True):
    """Context manager restoring the default generator's state on exit."""

    @contextlib.contextmanager
    def _ctx():
        state = get_rng_state() if enabled else None
        try:
            yield
        finally:
            if enabled:
                set_rng_state(state)
    return _ctx()
