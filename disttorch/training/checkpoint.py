"""Checkpoints for DDP jobs: rank 0 writes atomically while the others wait; loading happens once
(rank 0) and is broadcast; resuming restores model, optimizer, scheduler, sampler epoch and every
rank's RNG streams, so a job restarted by ``disttorch-run --max-restarts`` ends with the same
weights as one that never stopped.

Checkpoints are taken at epoch boundaries: a job killed mid-epoch restarts that epoch from its
start state (weights, optimizer moments, the sampler's epoch seed and the RNG streams as they were
when the previous epoch ended), which replays exactly the steps the unbroken run takes.
"""
from __future__ import annotations

import os

from .seeding import get_rng_states, set_rng_states
from .setup import all_gather_object, barrier, broadcast_object, rank_and_world


def save_checkpoint(state, path):
    """Rank 0 writes ``state`` to ``path`` atomically; every rank returns once it is on disk.

    ``disttorch.save`` writes a temporary file in the same directory, fsyncs and renames it, so a
    crash mid-write leaves the previous checkpoint intact, never a torn one.
    """
    import disttorch
    if rank_and_world()[0] == 0:
        os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
        disttorch.save(state, os.fspath(path))
    barrier()  # nobody goes on (or exits) before the file is complete


def load_checkpoint(path):
    """Rank 0 reads ``path`` and broadcasts it; None on every rank when the file does not exist."""
    import disttorch
    state = None
    if rank_and_world()[0] == 0 and os.path.exists(path):
        state = disttorch.load(os.fspath(path), weights_only=True)  # no code runs from the file
    return broadcast_object(state, src=0)


def _unwrap(model):
    return getattr(model, "module", model)


class Checkpointer:
    """Saves and restores a training job's full state at epoch boundaries.

    ``save(epoch)`` stores: model (unwrapped from DDP, so keys have no ``module.`` prefix),
    optimizer, scheduler, the next epoch, extra fields, and each rank's RNG states -- the global
    streams plus ``generators`` (name -> a script's private NumPy / disttorch generator).
    ``resume()`` loads it back and returns ``(start_epoch, extra)`` (``(0, {})`` without a file).
    """

    def __init__(self, path, model, optimizer=None, scheduler=None, sampler=None, generators=None):
        self.path = os.fspath(path)
        self.model, self.optimizer, self.scheduler, self.sampler = model, optimizer, scheduler, sampler
        self.generators = dict(generators or {})

    def save(self, epoch, **extra):
        """Call on every rank after finishing ``epoch`` (it gathers each rank's RNG states, then
        rank 0 writes): a restart resumes at ``epoch + 1``."""
        rng = all_gather_object(get_rng_states(self.generators))  # every rank's streams, kept by rank 0
        state = {"epoch": int(epoch) + 1, "model": _unwrap(self.model).state_dict(), "rng": rng,
                 "world_size": rank_and_world()[1], "extra": extra}
        if self.optimizer is not None:
            state["optimizer"] = self.optimizer.state_dict()
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        save_checkpoint(state, self.path)

    def resume(self):
        """Call on every rank: restores everything from ``path`` if it exists (rank 0 reads, all
        receive); returns ``(start_epoch, extra)``."""
        state = load_checkpoint(self.path)
        if state is None:
            return 0, {}
        rank, world = rank_and_world()
        if state["world_size"] != world:
            raise RuntimeError(f"checkpoint {self.path} was written by {state['world_size']} ranks; this job has "
                               f"{world}: per-rank RNG streams cannot be matched")
        _unwrap(self.model).load_state_dict(state["model"])
        if self.optimizer is not None and "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])
        set_rng_states(state["rng"][rank], self.generators)
        if self.sampler is not None and hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(state["epoch"])
        return state["epoch"], state.get("extra", {})
