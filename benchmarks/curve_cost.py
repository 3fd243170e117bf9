"""What CURVE encryption costs an all-reduce: the same job with and without it, in one run.

    python benchmarks/curve_cost.py                          # 2 ranks on this machine, loopback tcp
    python benchmarks/curve_cost.py --sizes 4K 1M 16M --repeat 3

On two hosts (e.g. the test-host rig's namespaces), run one rank on each, naming node 0's address
and the address each rank binds:

    host A: python benchmarks/curve_cost.py --rank 0 --master-addr 198.18.0.1 --bind-addr 198.18.0.1
    host B: python benchmarks/curve_cost.py --rank 1 --master-addr 198.18.0.1 --bind-addr 198.18.0.2

Every mode (``DISTTORCH_CURVE=0`` plain, ``1`` CURVE) runs as a fresh job on its own port
(``--port``, ``--port + 10``), ranks forced onto tcp sockets (``DISTTORCH_TRANSPORT=tcp``, and
distinct host ids so that two ranks on one machine cannot take the shared-memory path). For each
size it prints the median time of one float32 all-reduce over ``--iters`` calls (after a warm-up)
and the ratio CURVE / plain; ``--repeat`` rounds alternate the modes and the median is kept.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

UNITS = {"K": 1 << 10, "M": 1 << 20}
DEFAULT_SIZES = ["4K", "16M"]
MODES = (("plain", "0"), ("curve", "1"))


def parse_size(text: str) -> int:
    text = text.strip().upper().rstrip("IB")
    return int(float(text[:-1]) * UNITS[text[-1]]) if text[-1] in UNITS else int(text)


def iterations(nbytes: int, budget: int) -> int:
    return max(5, min(300, budget // nbytes))


def worker(args) -> None:
    """One rank of one mode: time the all-reduces, print one JSON line (rank 0)."""
    import numpy as np

    import disttorch as torch
    import disttorch.distributed as dist

    dist.init_process_group("zmq")
    out = {}
    for text in args.sizes:
        nbytes = parse_size(text)
        t = torch.from_numpy(np.ones(nbytes // 4, np.float32))
        n = iterations(nbytes, args.budget)
        for _ in range(3):
            dist.all_reduce(t)
        times = []
        for _ in range(n):
            dist.barrier()
            start = time.perf_counter()
            dist.all_reduce(t)
            times.append(time.perf_counter() - start)
        out[text] = statistics.median(times)
    if dist.get_rank() == 0:
        print(json.dumps(out), flush=True)
    dist.destroy_process_group()


def run_mode(args, rank: int, curve: str, port: int, bind_addr: str):
    env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": "0",
           "MASTER_ADDR": args.master_addr, "MASTER_PORT": str(port),
           "DISTTORCH_SECRET": os.environ.get("DISTTORCH_SECRET", "curve-cost-benchmark"),
           "DISTTORCH_TRANSPORT": "tcp", "DISTTORCH_HOST_ID": f"curve-cost-host{rank}",
           "DISTTORCH_CURVE": curve, "DISTTORCH_BIND_ADDR": bind_addr}
    argv = [sys.executable, os.path.abspath(__file__), "--worker", "--sizes", *args.sizes,
            "--budget", str(args.budget)]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=DEFAULT_SIZES)
    p.add_argument("--repeat", type=int, default=3, help="rounds of (plain, curve) (3)")
    p.add_argument("--budget", type=int, default=256 << 20,
                   help="bytes all-reduced per size and mode (sets the iterations; 256 MiB)")
    p.add_argument("--rank", type=int, default=None,
                   help="run only this rank (one per host); default: both ranks here")
    p.add_argument("--master-addr", default="127.0.0.1", help="address of rank 0 (127.0.0.1)")
    p.add_argument("--bind-addr", default=None,
                   help="address this rank binds (default: the master address on one machine)")
    p.add_argument("--port", type=int, default=29650, help="first port (29650)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    ranks = [0, 1] if args.rank is None else [args.rank]
    results: dict[str, dict[str, list[float]]] = {m: {s: [] for s in args.sizes} for m, _ in MODES}
    step = 0
    for _ in range(args.repeat):
        for mode, curve in MODES:
            port = args.port + 10 * (step % 10)
            step += 1
            procs = [(r, run_mode(args, r, curve, port, args.bind_addr or args.master_addr))
                     for r in ranks]
            for r, proc in procs:
                out, _ = proc.communicate(timeout=600)
                if proc.returncode != 0:
                    sys.exit(f"rank {r} of the {mode} job failed (exit {proc.returncode})")
                if r == 0:
                    for size, seconds in json.loads(out.strip().splitlines()[-1]).items():
                        results[mode][size].append(seconds)
    if 0 not in ranks:
        print("rank 1 done (rank 0 prints the table)")
        return
    where = "loopback" if args.rank is None else f"rank 0 at {args.master_addr}"
    print(f"float32 all-reduce, 2 ranks over tcp ({where}), median of {args.repeat} rounds")
    print(f"{'size':>6} | {'plain ms':>9} | {'CURVE ms':>9} | {'CURVE / plain':>13}")
    for size in args.sizes:
        plain = statistics.median(results["plain"][size]) * 1e3
        curve = statistics.median(results["curve"][size]) * 1e3
        print(f"{size:>6} | {plain:9.3f} | {curve:9.3f} | {curve / plain:13.2f}")


if __name__ == "__main__":
    main()
