"""All-reduce: disttorch.distributed next to PyTorch's gloo, in the same run, on this machine.

    python benchmarks/allreduce.py                      # 2 and 4 ranks, 4 KiB .. 64 MiB, gloo / shm / tcp
    python benchmarks/allreduce.py --ranks 2 --sizes 4K 1M 16M --transports auto

For every world size and message size it prints the median time of one float32 all-reduce and the
bus bandwidth ``2 (n-1)/n * bytes / time`` (what each rank's link carries in a ring), for gloo and
for disttorch with shared memory (``auto``) and without (``DISTTORCH_TRANSPORT=tcp``), plus the
ratio to gloo. Measurement as in /work/shared/bench/torch_allreduce.py: one thread per rank,
a barrier before each timed call, the median over ``max(3, min(200, 64 MiB / bytes))`` calls.
Each backend runs alone (jobs run one after the other, ``--repeat`` rounds interleaved, median of
the rounds), and the table is only comparable within one run.
"""
from __future__ import annotations

import argparse
import importlib.util
import multiprocessing as mp
import os
import statistics
import sys
import time

from disttorch_launcher.net import free_port

UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
DEFAULT_SIZES = ["4K", "64K", "256K", "1M", "4M", "16M", "64M"]


def parse_size(text: str) -> int:
    text = text.strip().upper().rstrip("IB")
    return int(float(text[:-1]) * UNITS[text[-1]]) if text[-1] in UNITS else int(text)


def human(n: int) -> str:
    for unit, size in (("M", 1 << 20), ("K", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def reps_for(nbytes: int) -> int:
    return max(3, min(200, (64 << 20) // max(1, nbytes)))


def _worker(kind: str, rank: int, world: int, port: int, sizes: list[int], env: dict, q) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank), "OMP_NUM_THREADS": "1"})
    os.environ.update(env)
    import numpy as np

    rows = []
    if kind == "gloo":
        import torch
        import torch.distributed as dist

        torch.set_num_threads(1)
        dist.init_process_group("gloo", rank=rank, world_size=world)
        make = lambda n: torch.ones(n // 4, dtype=torch.float32)  # noqa: E731
    else:
        import disttorch.distributed as dist

        dist.init_process_group("zmq")
        make = lambda n: np.ones(n // 4, np.float32)  # noqa: E731
    for nbytes in sizes:
        t = make(nbytes)
        for _ in range(3):
            dist.all_reduce(t)
        times = []
        for _ in range(reps_for(nbytes)):
            dist.barrier()
            s = time.perf_counter()
            dist.all_reduce(t)
            times.append(time.perf_counter() - s)
        rows.append((nbytes, statistics.median(times)))
    dist.barrier()
    if rank == 0:
        q.put(rows)
    dist.destroy_process_group()


def run_job(kind: str, world: int, sizes: list[int], env: dict) -> dict[int, float]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_worker, args=(kind, r, world, port, sizes, env, q), daemon=True) for r in range(world)]
    for p in procs:
        p.start()
    try:
        rows = q.get(timeout=600)
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    return dict(rows)


def busbw(nbytes: int, seconds: float, world: int) -> float:
    return 2 * (world - 1) / world * nbytes / seconds / 1e9


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--sizes", nargs="+", default=DEFAULT_SIZES, help="message sizes, e.g. 4K 1M 64M")
    ap.add_argument("--transports", nargs="*", default=["auto", "tcp"], help="disttorch DISTTORCH_TRANSPORT values")
    ap.add_argument("--no-gloo", action="store_true", help="skip PyTorch (when it is not installed)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="jobs per backend, interleaved; the table shows the median of their medians "
                         "(a shared machine's load changes from one job to the next)")
    args = ap.parse_args(argv)
    sizes = [parse_size(s) for s in args.sizes]
    have_torch = not args.no_gloo and importlib.util.find_spec("torch") is not None
    print(f"# all_reduce float32, {os.cpu_count()} CPUs, python {sys.version.split()[0]}; time = median ms, "
          f"bw = bus GB/s, x = bus bandwidth / gloo's")
    for world in args.ranks:
        load_before = os.getloadavg()[0]
        runs: dict[str, list[dict[int, float]]] = {}
        for _ in range(max(1, args.repeat)):
            if have_torch:
                runs.setdefault("gloo", []).append(run_job("gloo", world, sizes, {}))
            for tr in args.transports:
                runs.setdefault(tr, []).append(run_job("disttorch", world, sizes, {"DISTTORCH_TRANSPORT": tr}))
        results = {name: {n: statistics.median(r[n] for r in rs) for n in sizes} for name, rs in runs.items()}
        header = f"{'ranks':>5} {'size':>6}"
        for name in results:
            label = "gloo" if name == "gloo" else ("dt-shm" if name == "auto" else f"dt-{name}")
            header += f" | {label + ' ms':>10} {'bw':>6}" + (f" {'x':>6}" if name != "gloo" and have_torch else "")
        print(header)
        for nbytes in sizes:
            line = f"{world:>5} {human(nbytes):>6}"
            for name, rows in results.items():
                t = rows[nbytes]
                line += f" | {t * 1e3:>10.3f} {busbw(nbytes, t, world):>6.2f}"
                if name != "gloo" and have_torch:
                    line += f" {results['gloo'][nbytes] / t:>6.2f}"
            print(line, flush=True)
        # other jobs on the machine change every figure: say how busy it was
        print(f"# load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after ({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
