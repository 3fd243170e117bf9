"""A training job for the elastic-resume test.

Alone (world 1) it trains 5 steps of epoch 0, checkpoints there (mid-epoch) and waits to be
stopped by the group re-forming. In the re-formed group (world 2, same run id) it resumes that
checkpoint, finishes the epoch on the re-sharded rest and records which samples each rank saw.
"""
import json
import os
import time

import numpy as np

import disttorch as torch
import disttorch.nn as nn
import disttorch.nn.functional as F
from disttorch.nn.parallel import DistributedDataParallel as DDP
from disttorch.training import Checkpointer, cleanup, seed_everything, setup_distributed
from disttorch.utils.data import DataLoader, DistributedSampler, TensorDataset

N = 40  # samples; ids ride along as the second field so the test can see who saw what
rank, world = setup_distributed()
seed_everything(0)
model = nn.Linear(4, 2)
ddp = DDP(model) if world > 1 else model
opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
x = np.random.default_rng(0).standard_normal((N, 4)).astype(np.float32)
data = TensorDataset(torch.from_numpy(x), torch.arange(N), torch.from_numpy((x[:, 0] > 0).astype(np.int64)))
sampler = DistributedSampler(data, num_replicas=world, rank=rank, seed=1)
loader = DataLoader(data, batch_size=2, sampler=sampler)
ckpt = Checkpointer(os.path.join(os.getcwd(), "ckpt.pt"), ddp, opt, loader=loader)
start = ckpt.resume(require_same_run=True)[0]
sampler.set_epoch(start)
seen = []
for step, (xb, ids, yb) in enumerate(loader, start=ckpt.start_step):
    opt.zero_grad()
    F.cross_entropy(ddp(xb), yb).backward()
    opt.step()
    seen += ids.tolist()
    if world == 1 and step + 1 == 5:
        ckpt.save(0, step=5)
        with open("seen_before.json", "w") as f:
            json.dump(seen, f)
        time.sleep(60)  # stopped when the second node joins
with open(f"seen_world{world}_rank{rank}.json", "w") as f:
    json.dump({"seen": seen, "resumed_from": ckpt.resumed_from, "start_step": ckpt.start_step,
               "run_id": os.environ["DISTTORCH_RUN_ID"]}, f)
cleanup()
