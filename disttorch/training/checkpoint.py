"""Checkpoints for DDP jobs: rank 0 writes atomically while the others wait; loading happens once
(rank 0) and is broadcast; resuming restores model, optimizer, scheduler, the data position and
every rank's RNG streams, so a job restarted by ``disttorch-run --max-restarts`` ends with the same
weights as one that never stopped.

- Every checkpoint records the launcher's run id (``DISTTORCH_RUN_ID``). An automatic resume after
  a restart (``resume(require_same_run=True)``) loads only a checkpoint of this run; an older
  run's file at the same path is left alone unless the user asks for it (``resume()``).
- Every tensor carries a crc32 (``checksums.py``): a damaged byte raises ``ChecksumError`` naming
  the tensor (``model.fc1.weight``) instead of loading wrong weights.
- ``save(epoch, step=k)`` checkpoints mid-epoch: with a ``loader`` the DataLoader's position is
  saved and a restart continues with the batch after step k instead of replaying the epoch.
- Another world size on resume (an elastic job re-formed with fewer or more nodes): model and
  optimizer load, the sampler re-shards the epoch's remaining samples over the new ranks; the
  per-rank random streams cannot be matched to ranks that did not exist, so each rank keeps the
  streams it seeded (a warning says so).
"""
from __future__ import annotations

import os
import warnings

from disttorch_launcher import settings

from ._zip_records import damaged_tensor
from .checksums import CHECKSUM_KEY, ChecksumError, tensor_checksums, verify_checksums
from .seeding import get_rng_states, set_rng_states
from .setup import all_gather_object, barrier, broadcast_object, rank_and_world

__all__ = ["Checkpointer", "ChecksumError", "current_run_id", "load_checkpoint", "save_checkpoint"]


def current_run_id():
    """The launcher's run id (the same for every attempt of one ``disttorch-run``), or None."""
    return settings.get("DISTTORCH_RUN_ID") or os.environ.get("TORCHELASTIC_RUN_ID") or None


def save_checkpoint(state, path):
    """Rank 0 writes ``state`` to ``path`` atomically, with a crc32 per tensor; every rank returns
    once it is on disk.

    ``disttorch.save`` writes a temporary file in the same directory, fsyncs and renames it, so a
    crash mid-write leaves the previous checkpoint intact, never a torn one.
    """
    import disttorch
    if rank_and_world()[0] == 0:
        os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
        if isinstance(state, dict):
            state = {**state, CHECKSUM_KEY: tensor_checksums(state)}
        disttorch.save(state, os.fspath(path))
    barrier()  # nobody goes on (or exits) before the file is complete


def load_checkpoint(path):
    """Rank 0 reads ``path``, checks every tensor's crc32 and broadcasts it; None on every rank
    when the file does not exist. A damaged file raises the same error on every rank."""
    state, error = None, None
    if rank_and_world()[0] == 0 and os.path.exists(path):
        try:
            state = _load_and_verify(os.fspath(path))
        except ChecksumError as exc:
            state, error = None, str(exc)
    state, error = broadcast_object((state, error), src=0)  # every rank raises, none waits forever
    if error is not None:
        raise ChecksumError(error)
    if isinstance(state, dict):
        state.pop(CHECKSUM_KEY, None)
    return state


def _load_and_verify(path):
    """``disttorch.load`` plus every tensor's crc32; a damaged byte raises ChecksumError naming
    the tensor, whether the format's own CRC (PyTorch's zip records) or ours catches it."""
    import disttorch
    try:
        state = disttorch.load(path, weights_only=True)  # no code runs from the file
    except Exception as exc:  # noqa: BLE001 - re-raised unless it names a damaged tensor record
        tensor = damaged_tensor(path, str(exc))
        if tensor is None:
            raise
        raise ChecksumError(f"checkpoint {path}: tensor {tensor!r} fails its crc32 check (the file's "
                            f"record of it is damaged: {exc})") from None
    if isinstance(state, dict):
        verify_checksums(state, path)
    return state


def _unwrap(model):
    return getattr(model, "module", model)


class Checkpointer:
    """Saves and restores a training job's full state, at epoch ends or after any step.

    ``save(epoch)`` (epoch done) or ``save(epoch, step=k)`` (k steps of ``epoch`` done) stores:
    model (unwrapped from DDP, so keys have no ``module.`` prefix), optimizer, scheduler, where
    to continue, the run id, extra fields, the loader's position (with ``loader``) and each rank's
    RNG states -- the global streams plus ``generators`` (name -> a script's private NumPy /
    disttorch generator). ``resume()`` loads it back and returns ``(start_epoch, extra)``
    (``(0, {})`` without a file); ``start_step`` then says how many steps of ``start_epoch`` are
    done, and iterating ``loader`` yields only the batches after them.
    """

    def __init__(self, path, model, optimizer=None, scheduler=None, sampler=None, generators=None,
                 loader=None, run_id=None):
        self.path = os.fspath(path)
        self.model, self.optimizer, self.scheduler, self.sampler = model, optimizer, scheduler, sampler
        self.loader = loader
        if sampler is None and loader is not None:
            self.sampler = getattr(loader, "sampler", None)
        self.generators = dict(generators or {})
        self.run_id = run_id if run_id is not None else current_run_id()
        self.start_step = 0
        self.resumed_from = None  # the run id of the checkpoint resume() loaded, if any

    def save(self, epoch, step=None, **extra):
        """Call on every rank after finishing ``epoch`` (``step=None``) or after ``step`` steps of
        it (it gathers each rank's RNG states and loader position, then rank 0 writes)."""
        world = rank_and_world()[1]
        local = {"rng": get_rng_states(self.generators)}
        if step is not None and self.loader is not None:
            local["loader"] = self.loader.state_dict()
        gathered = all_gather_object(local)  # every rank's streams, kept by rank 0
        if "loader" in local and gathered[0]["loader"]["finished"]:
            step = None  # the pass is over: this is the end of the epoch
            local.pop("loader")
        if step is None:
            position = {"epoch": int(epoch) + 1, "step": 0}
        else:
            position = {"epoch": int(epoch), "step": int(step)}
        state = {**position, "model": _unwrap(self.model).state_dict(), "rng": [g["rng"] for g in gathered],
                 "world_size": world, "run_id": self.run_id, "extra": extra}
        if "loader" in local:
            state["loader"] = [g["loader"] for g in gathered]
        if self.optimizer is not None:
            state["optimizer"] = self.optimizer.state_dict()
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        save_checkpoint(state, self.path)

    def resume(self, require_same_run=False):
        """Call on every rank: restores everything from ``path`` if it exists (rank 0 reads, all
        receive); returns ``(start_epoch, extra)``.

        With ``require_same_run`` (the automatic resume after a launcher restart) a checkpoint
        written by another run -- an earlier job that left its file at the same path -- is not
        loaded: the job starts from scratch, and says so on rank 0.
        """
        state = load_checkpoint(self.path)
        self.start_step, self.resumed_from = 0, None
        if state is None:
            return 0, {}
        rank, world = rank_and_world()
        saved_run = state.get("run_id")
        if require_same_run and (self.run_id is None or saved_run != self.run_id):
            if rank == 0:
                print(f"checkpoint {self.path} belongs to run {saved_run!r}, not to this run {self.run_id!r}: "
                      f"starting from scratch (resume it explicitly to continue that run)", flush=True)
            return 0, {}
        _unwrap(self.model).load_state_dict(state["model"])
        if self.optimizer is not None and "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])
        same_world = state["world_size"] == world
        if same_world:
            set_rng_states(state["rng"][rank], self.generators)
        else:
            warnings.warn(f"checkpoint {self.path} was written by {state['world_size']} ranks and this job has "
                          f"{world}: model, optimizer and data position are restored, the per-rank random "
                          "streams are not (each rank keeps the ones it seeded)", stacklevel=2)
        epoch, step = int(state["epoch"]), int(state.get("step", 0))
        if self.sampler is not None and hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)
        if step and self.loader is not None and "loader" in state:
            # The DistributedSampler's state is the same on every rank; under another world size
            # rank 0's is what each new rank re-shards from.
            self.loader.load_state_dict(state["loader"][rank if same_world else 0])
        elif step:
            raise ValueError(f"checkpoint {self.path} was saved at step {step} of epoch {epoch}; pass the "
                             "DataLoader as Checkpointer(..., loader=loader) to continue from there")
        self.start_step = step
        self.resumed_from = saved_run
        return epoch, state.get("extra", {})
