"""One rank of benchmarks/crosshost.py: `FRAMEWORK allreduce BYTES ITERS` or `FRAMEWORK ddp STEPS`,
FRAMEWORK being disttorch (under disttorch-run) or torch (gloo, under torchrun). Rank 0 prints one
`RESULT {...}` line: the median all-reduce time, or the median DDP step time."""
import json
import statistics
import sys
import time

framework, what = sys.argv[1], sys.argv[2]
if framework == "disttorch":
    import disttorch as torch
    import disttorch.distributed as dist
    from disttorch import nn
    from disttorch.nn.parallel import DistributedDataParallel as DDP
    dist.init_process_group("zmq")
else:
    import torch
    import torch.distributed as dist
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel as DDP
    dist.init_process_group("gloo")
torch.set_num_threads(1)
rank, world = dist.get_rank(), dist.get_world_size()

if what == "allreduce":
    nbytes, iters = int(sys.argv[3]), int(sys.argv[4])
    x = torch.ones(nbytes // 4)
    times = []
    for i in range(iters + 2):  # two warm-up calls (connections, buffers)
        dist.barrier()
        t = time.perf_counter()
        dist.all_reduce(x)
        times.append(time.perf_counter() - t)
    result = {"seconds": statistics.median(times[2:]), "min": min(times[2:])}
else:
    steps, batch = int(sys.argv[3]), 256
    torch.manual_seed(0)
    model = DDP(nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                              nn.Linear(512, 10)))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    x, y = torch.randn(batch, 784), torch.randint(0, 10, (batch,))
    times = []
    for i in range(steps + 5):
        t = time.perf_counter()
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
        times.append(time.perf_counter() - t)
    step = statistics.median(times[5:])
    # Where a DDP step's time goes: the same step without DDP timed from a barrier to a barrier (the
    # compute of the slowest rank, with every rank sharing the cores), and an all-reduce of the
    # gradients' size alone. DDP's step minus their sum is what overlap hid (negative) or what the
    # interplay of the two cost (positive).
    plain = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    plain_opt = torch.optim.SGD(plain.parameters(), lr=0.01, momentum=0.9)
    compute = []
    for i in range(steps // 2 + 3):
        dist.barrier()
        t = time.perf_counter()
        plain_opt.zero_grad()
        loss_fn(plain(x), y).backward()
        plain_opt.step()
        dist.barrier()
        compute.append(time.perf_counter() - t)
    grads = torch.zeros(sum(p.numel() for p in plain.parameters()))
    reduce_times = []
    for i in range(steps // 2 + 3):
        dist.barrier()
        t = time.perf_counter()
        dist.all_reduce(grads)
        reduce_times.append(time.perf_counter() - t)
    result = {"seconds": step, "samples_per_s": world * batch / step,
              "compute_s": statistics.median(compute[3:]), "all_reduce_s": statistics.median(reduce_times[3:]),
              "gradient_bytes": grads.numel() * 4}
if rank == 0:
    print("RESULT " + json.dumps(result), flush=True)
dist.destroy_process_group()
