"""Reproducible seeding: one seed for the job, a derived stream per rank.

Model initialisation uses the job seed on every rank (DDP then broadcasts rank 0's weights
anyway); data augmentation and dropout use ``rank_seed(seed, rank)`` so ranks draw different
random numbers, yet a rerun with the same seed and world size draws the same ones.

``get_rng_states`` / ``set_rng_states`` capture every global stream (disttorch, NumPy's legacy
global, Python's ``random``) plus any private generators a script owns (a NumPy ``Generator`` or
``RandomState``, a ``disttorch.Generator``) -- a stream left out is the usual reason a resumed
run drifts from an unbroken one.
"""
from __future__ import annotations

import random

import numpy as np


def rank_seed(seed: int, rank: int) -> int:
    """A 63-bit seed for ``rank``'s stream, statistically independent of other ranks' streams."""
    return int(np.random.SeedSequence([int(seed), int(rank)]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def seed_everything(seed: int, rank: int | None = None) -> int:
    """Seeds disttorch, NumPy and ``random``; with ``rank`` the per-rank stream. Returns the seed used."""
    import disttorch
    used = int(seed) if rank is None else rank_seed(seed, rank)
    disttorch.manual_seed(used)
    np.random.seed(used % (2 ** 32))
    random.seed(used)
    return used


def _generator_state(gen):
    """The state of one private generator, as plain containers (checkpoint-friendly)."""
    if isinstance(gen, np.random.Generator):
        return {"kind": "numpy.Generator", "state": gen.bit_generator.state}
    if isinstance(gen, np.random.RandomState):
        return {"kind": "numpy.RandomState", "state": gen.get_state()}
    if hasattr(gen, "get_state") and hasattr(gen, "set_state"):  # disttorch.Generator
        return {"kind": "disttorch.Generator", "state": gen.get_state()}
    raise TypeError(f"cannot capture the state of a {type(gen).__name__}: expected numpy.random.Generator, "
                    "numpy.random.RandomState or disttorch.Generator")


def _set_generator_state(name, gen, saved):
    kind = saved["kind"]
    if kind == "numpy.Generator" and isinstance(gen, np.random.Generator):
        gen.bit_generator.state = saved["state"]
    elif kind == "numpy.RandomState" and isinstance(gen, np.random.RandomState):
        gen.set_state(saved["state"])
    elif kind == "disttorch.Generator" and hasattr(gen, "set_state"):
        gen.set_state(saved["state"])
    else:
        raise TypeError(f"generator {name!r}: the saved state is a {kind}, the generator a {type(gen).__name__}")


def get_rng_states(generators: dict | None = None) -> dict:
    """Every global stream's state plus ``generators`` (name -> generator), ready to save."""
    import disttorch
    states = {"disttorch": disttorch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if generators:
        states["generators"] = {name: _generator_state(g) for name, g in generators.items()}
    return states


def set_rng_states(states: dict, generators: dict | None = None) -> None:
    """Restores what ``get_rng_states`` captured; ``generators`` are set in place, by name."""
    import disttorch
    disttorch.set_rng_state(states["disttorch"])
    np.random.set_state(states["numpy"])
    random.setstate(_as_python_state(states["python"]))
    saved = states.get("generators", {})
    for name, gen in (generators or {}).items():
        if name not in saved:
            raise KeyError(f"no saved state for generator {name!r} (saved: {sorted(saved)})")
        _set_generator_state(name, gen, saved[name])


def _as_python_state(state):
    """``random.setstate`` wants (int, tuple, float|None); a round trip may have made lists."""
    version, internal, gauss = state
    return int(version), tuple(int(v) for v in internal), gauss
