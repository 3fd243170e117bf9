"""A DDP job whose gradient all-reduce is big enough for the network to matter: run it on a
simulated cluster and see what a slower link or a failing worker would do to it.

    disttorch-run --nproc-per-node 4 --simulate-network bandwidth=1gbit --trace-dir trace-1g \\
        examples/simulate_cluster.py
    disttorch-run --nproc-per-node 4 --simulate-network bandwidth=10gbit --trace-dir trace-10g \\
        examples/simulate_cluster.py
    disttorch-run --nproc-per-node 4 --simulate-network bandwidth=1gbit \\
        --inject-fault rank=2,at=collective:30,kind=slow:3x examples/simulate_cluster.py

An MLP 784-512-512-10 (669,706 parameters: 2.7 MB of float32 gradients per step) trains on
random MNIST-shaped batches with SGD; rank 0 prints the time per step every ``--report`` steps.
Without the launcher's simulation options it is an ordinary data-parallel job.
"""
from __future__ import annotations

import argparse
import time

import disttorch as torch
import disttorch.distributed as dist
import disttorch.nn as nn
from disttorch.nn.parallel import DistributedDataParallel as DDP


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=32, help="per rank")
    p.add_argument("--report", type=int, default=10, help="print the step time every N steps")
    args = p.parse_args()

    dist.init_process_group("zmq")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = DDP(nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(rank)  # each rank its own data, as a DistributedSampler gives
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        x = torch.randn(args.batch_size, 784, generator=gen)
        y = torch.randint(0, 10, (args.batch_size,), generator=gen)
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        if step % args.report == 0:
            took = (time.perf_counter() - start) / args.report
            if rank == 0:
                print(f"steps {step - args.report + 1:>3}-{step:<3} {took * 1e3:6.1f} ms/step  "
                      f"{world * args.batch_size / took:7.0f} samples/s  loss {loss.item():.3f}", flush=True)
            start = time.perf_counter()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
