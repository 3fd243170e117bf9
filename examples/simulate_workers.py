"""Runs one training script as 1, 2, 4 and 8 workers on this machine and shows that the final
weights match single-process training on the full batch.

    python examples/simulate_workers.py                 # 1, 2, 4 and 8 workers
    python examples/simulate_workers.py --workers 1 3   # any worker counts dividing 48

Each worker takes its 1/N slice of every global batch (48 samples); DDP averages gradients, so
N workers take exactly the steps one process takes on the whole batch. The reference trains the
same model on the whole batch in this process, without DDP; each worker count runs as separate
processes with a real process group (a group of one for 1 worker).
"""
from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
import tempfile

import numpy as np

GLOBAL_BATCH, STEPS = 48, 20
TOLERANCE = 1e-9  # float64: only summation order differs


def train(rank, world, out_path, use_ddp):
    """``STEPS`` SGD steps on this rank's slices of the global batches; rank 0 saves the weights."""
    import disttorch as torch
    import disttorch.nn as nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 1)).double()
    if use_ddp:
        import disttorch.distributed as dist
        from disttorch.nn.parallel import DistributedDataParallel as DDP
        dist.init_process_group("zmq", init_method="env://")
        model = DDP(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    rng = np.random.default_rng(1)
    per = GLOBAL_BATCH // world
    for _ in range(STEPS):
        x, y = rng.standard_normal((GLOBAL_BATCH, 10)), rng.standard_normal((GLOBAL_BATCH, 1))
        xs, ys = torch.from_numpy(x[rank * per:(rank + 1) * per]), torch.from_numpy(y[rank * per:(rank + 1) * per])
        opt.zero_grad()
        ((model(xs) - ys) ** 2).mean().backward()
        opt.step()
    if rank == 0:
        np.save(out_path, np.concatenate([p.detach().numpy().ravel() for p in model.parameters()]))
    if use_ddp:
        dist.destroy_process_group()


def spawn(world, out_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
               DISTTORCH_SECRET=secrets.token_hex(16), OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", out_path],
                              env=dict(env, RANK=str(r), LOCAL_RANK=str(r))) for r in range(world)]
    try:
        codes = [p.wait(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    if any(codes):
        raise SystemExit(f"{world}-worker run failed: exit codes {codes}")


def compare(worlds):
    """Max |w_N - w_single| for each worker count N; prints one line each."""
    for world in worlds:
        if world < 1 or GLOBAL_BATCH % world:
            raise SystemExit(f"--workers {world}: must be a positive divisor of the global batch {GLOBAL_BATCH}")
    errors = {}
    with tempfile.TemporaryDirectory() as tmp:
        ref_path = os.path.join(tmp, "single.npy")
        train(0, 1, ref_path, use_ddp=False)
        ref = np.load(ref_path)
        print(f"reference: 1 process, full batch of {GLOBAL_BATCH}, {STEPS} SGD steps, {ref.size} weights")
        for world in worlds:
            path = os.path.join(tmp, f"w{world}.npy")
            spawn(world, path)
            errors[world] = float(np.abs(np.load(path) - ref).max())
            verdict = "OK" if errors[world] < TOLERANCE else "MISMATCH"
            print(f"{world} worker{'s' if world > 1 else ' '}: max |w - w_single| = {errors[world]:.2e} {verdict}",
                  flush=True)
    return errors


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        train(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), sys.argv[2], use_ddp=True)
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    errors = compare(p.parse_args().workers)
    if any(e >= TOLERANCE for e in errors.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
