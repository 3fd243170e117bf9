"""Predicted step time of a 4-worker DDP job on 1 and 10 Gbit links vs the analytical ring cost.

    python benchmarks/simulate.py [--workers 4] [--links 1gbit 10gbit] [--steps 60] [--batch 32]
                                  [--repeats 3] [--latency 0us] [--trace-dir DIR]

For each link it runs ``disttorch-run --nproc-per-node N --simulate-network bandwidth=B`` on a
DDP MLP 784-512-512-10 (669,706 parameters: S = 2.68 MB of float32 gradients), SGD with
momentum, one BLAS thread per worker. Each worker times ``--steps`` steps inside ``no_sync()``
(forward + backward + optimizer step, no communication: the compute) and then ``--steps``
normal steps (the step time the simulation predicts), back to back after 5 warm-up steps of
each; the slowest rank's mean counts (a synchronous step waits for it), and each row is the
median of ``--repeats`` jobs. The prediction is compared with

    compute + 2(N-1)/N * S / B  (+ 2(N-1) * latency with --latency)

the cost of a ring all-reduce of S bytes on links of bandwidth B. DDP reduces all its buckets
in one all-reduce here (``DISTTORCH_DDP_OVERLAP=off``), so compute and communication add up.
A last row runs without shaping (sockets over loopback, ``DISTTORCH_TRANSPORT=tcp``): this
machine's own floor. The simulation overlaps each real transfer with its simulated one, so a
message takes the longer of the two: a simulated link faster than the machine's own all-reduce
(4 ranks sharing 2 cores, for instance) predicts the machine's time, not the link's.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARMUP = 5


def worker(steps: int, batch: int) -> None:
    """One rank: time no_sync steps (compute), then synced steps; print one BENCH line."""
    import disttorch as torch
    import disttorch.distributed as dist
    import disttorch.nn as nn
    from disttorch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    torch.manual_seed(0)
    dist.init_process_group("zmq")
    net = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    model = DDP(net)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    x, y = torch.randn(batch, 784), torch.randint(0, 10, (batch,))

    def one_step() -> None:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    def timed(n: int) -> float:
        """Mean step time over ``n`` back-to-back steps after the warm-up: the steady state, with
        the ranks competing for the cores as they do in training."""
        for _ in range(WARMUP):
            one_step()
        dist.barrier()
        start = time.perf_counter()
        for _ in range(n):
            one_step()
        return (time.perf_counter() - start) / n

    one_step()  # the first step rebuilds DDP's buckets
    with model.no_sync():
        compute = timed(steps)
    step = timed(steps)
    grad_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    print("BENCH " + json.dumps({"rank": dist.get_rank(), "compute": compute, "step": step, "bytes": grad_bytes}),
          flush=True)
    dist.destroy_process_group()


def run(workers: int, steps: int, batch: int, network: str | None, trace_dir: str | None) -> tuple[dict, list[str]]:
    """Runs one job; returns the slowest rank's numbers and where the launcher wrote its trace."""
    cmd = [sys.executable, "-m", "disttorch_launcher", "--nproc-per-node", str(workers)]
    if network is not None:
        cmd += ["--simulate-network", network]
    if trace_dir is not None:
        cmd += ["--trace-dir", trace_dir]
    cmd += [os.path.abspath(__file__), "--worker", "--steps", str(steps), "--batch", str(batch)]
    env = dict(os.environ, DISTTORCH_DDP_OVERLAP="off", DISTTORCH_TRANSPORT="tcp",
               PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    rows = [json.loads(line.split("BENCH ", 1)[1]) for line in proc.stdout.splitlines() if "BENCH " in line]
    if len(rows) != workers:
        raise SystemExit(f"expected {workers} result lines, got {len(rows)}:\n{proc.stdout[-3000:]}")
    summary = [line.split("disttorch-run: ", 1)[1] for line in proc.stderr.splitlines()
               if line.startswith("disttorch-run: trace of")]
    return {"compute": max(r["compute"] for r in rows), "step": max(r["step"] for r in rows),
            "bytes": rows[0]["bytes"]}, summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--links", nargs="+", default=["1gbit", "10gbit"], help="bandwidths to simulate")
    p.add_argument("--latency", default="0us", help="link latency (default 0: the formula has none)")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch", type=int, default=32, help="samples per rank")
    p.add_argument("--repeats", type=int, default=3, help="jobs per row, interleaved (median)")
    p.add_argument("--trace-dir", default=None, help="write each run's trace under DIR/<link>")
    args = p.parse_args()
    if args.worker:
        worker(args.steps, args.batch)
        return

    sys.path.insert(0, ROOT)
    from disttorch.distributed.simulation.link import ring_all_reduce_seconds
    from disttorch.distributed.simulation.spec import parse_network

    n = args.workers
    configs = [(link, f"bandwidth={link},latency={args.latency}") for link in args.links] + [("floor", None)]
    runs: dict = {name: [] for name, _ in configs}
    traces = []
    for rep in range(args.repeats):  # interleaved: outside load spreads over every row
        for name, spec in configs:
            trace = os.path.join(args.trace_dir, name) if args.trace_dir and rep == 0 and spec else None
            res, summary = run(n, args.steps, args.batch, spec, trace)
            runs[name].append(res)
            traces += summary

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    print(f"{n} workers, DDP MLP 784-512-512-10, batch {args.batch}/rank, one all-reduce per step "
          f"(DISTTORCH_DDP_OVERLAP=off); slowest rank's mean over {args.steps} steps, median of "
          f"{args.repeats} jobs")
    print(f"{'link':<24} {'compute':>9} {'ring cost':>10} {'analytical':>11} {'simulated':>10} {'error':>7}")
    grad_bytes = runs["floor"][0]["bytes"]
    for name, spec in configs[:-1]:
        network = parse_network(spec)
        ring = ring_all_reduce_seconds(grad_bytes, n, network)
        compute, step = med(name, "compute"), med(name, "step")
        analytical = compute + ring
        print(f"{network.describe():<24} {compute * 1e3:>7.1f}ms {ring * 1e3:>8.1f}ms {analytical * 1e3:>9.1f}ms "
              f"{step * 1e3:>8.1f}ms {(step - analytical) / analytical:>+7.0%}")
    print(f"{'no shaping (loopback)':<24} {med('floor', 'compute') * 1e3:>7.1f}ms {'':>10} {'':>11} "
          f"{med('floor', 'step') * 1e3:>8.1f}ms   (this machine's floor)")
    print(f"S = {grad_bytes:,} bytes of gradients; ring cost = 2(N-1)/N * S * 8 / B"
          + (f" + 2(N-1) * {args.latency}" if parse_network(f"latency={args.latency}").latency_s else ""))
    for line in traces:
        print(line)

if __name__ == "__main__":
    main()
