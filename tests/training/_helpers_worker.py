"""One rank of the training-helper tests under a real 2-rank process group; writes rank{r}.json."""
from __future__ import annotations

import json
import os
import sys

import numpy as np

import disttorch as torch
import disttorch.nn as nn
from disttorch.training import Checkpointer, all_reduce_mean, cleanup, load_checkpoint, progress, save_checkpoint
from disttorch.training import seed_everything, setup_distributed


def main(out_dir):
    rank, world = setup_distributed()
    out = {"rank": rank, "world": world}
    try:
        # Ranks cover 1 and 2 samples with means 1 and 2: the global mean is (1*1 + 2*2) / 3.
        out["mean"] = all_reduce_mean({"loss": rank + 1.0}, count=rank + 1)["loss"]
        out["bar"] = type(progress(range(3), desc="x")).__name__

        path = os.path.join(out_dir, "ckpt.pt")
        save_checkpoint({"writer": rank, "w": torch.tensor([float(rank)])}, path)
        out["exists_after_save"] = os.path.exists(path)  # the barrier: the file is complete for all
        if rank != 0:
            torch.load = _refuse  # load once (rank 0) and broadcast: other ranks never read the file
        state = load_checkpoint(path)
        out["loaded_writer"], out["loaded_w"] = state["writer"], state["w"].tolist()

        # Checkpointer: per-rank RNG streams, including a script's private generator, come back.
        seed_everything(3)                        # the same model on every rank, as DDP has it
        model = nn.Linear(2, 2)
        seed_everything(3, rank)
        private = np.random.default_rng(100 + rank)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        model(torch.ones(1, 2)).sum().backward()
        opt.step()
        ckpt = Checkpointer(os.path.join(out_dir, "full.pt"), model, opt, generators={"private": private})
        ckpt.save(epoch=4)
        expected = [torch.rand(2).tolist(), private.random(2).tolist(), float(np.random.rand())]
        weights = model.weight.detach().numpy().copy()
        seed_everything(99, rank)                 # scramble everything, as a restarted process would
        private.random(7)
        with torch.no_grad():
            model.weight.zero_()
        ckpt.optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        start, _ = ckpt.resume()
        got = [torch.rand(2).tolist(), private.random(2).tolist(), float(np.random.rand())]
        out["resume_epoch"] = start
        out["rng_restored"] = got == expected
        out["weights_restored"] = bool(np.array_equal(model.weight.detach().numpy(), weights))
        out["momentum_restored"] = len(ckpt.optimizer.state_dict()["state"]) == 2
    finally:
        cleanup()
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(out, f)


def _refuse(*args, **kwargs):
    raise AssertionError("only rank 0 may read the checkpoint file")


if __name__ == "__main__":
    main(sys.argv[1])
