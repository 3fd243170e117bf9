"""Many simulated workers on one host: a tiny DDP job, launch to exit, and memory per worker.

    python benchmarks/many_workers.py [--sizes 8,32,64,128] [--spawn-sizes 8,32]
                                      [--torch-sizes 8,32] [--timeout 600]

Every job is 20 SGD steps of a small model (Linear(16, 32), ReLU, Linear(32, 1)) under
DistributedDataParallel on the collective layer's default transport, each rank on its own batch.
Between two barriers after the last step every worker records its unique memory (USS: the pages
no other process shares, psutil's memory_full_info) and its final loss; a job counts only if
every rank's final parameters agree.

Rows: disttorch-run with the fork server (the default), disttorch-run --start-method spawn (fresh
interpreters, today's way), and torchrun with the same job in PyTorch (gloo), each at the sizes
asked for. Columns: wall time from launch to exit, median and max USS per worker. Targets (on the
2-core development machine): 64 workers <= 8 s, USS per worker <= 25 MB, 128 workers run at all.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from _console import console_script

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

JOB = """
import json, os, sys
import psutil
torch_name = os.environ["BENCH_TORCH"]
torch = __import__(torch_name)
import importlib
dist = importlib.import_module(torch_name + ".distributed")
nn = importlib.import_module(torch_name + ".nn")
DDP = importlib.import_module(torch_name + ".nn.parallel").DistributedDataParallel

dist.init_process_group("gloo" if torch_name == "torch" else "zmq")
rank, world = dist.get_rank(), dist.get_world_size()
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1))
ddp = DDP(model)
opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
gen = torch.Generator().manual_seed(rank)
x = torch.randn(8, 16, generator=gen)
y = x.sum(dim=1, keepdim=True)
for _ in range(20):
    opt.zero_grad()
    loss = ((ddp(x) - y) ** 2).mean()
    loss.backward()
    opt.step()
dist.barrier()
uss = psutil.Process().memory_full_info().uss
flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
with open(os.path.join(os.environ["BENCH_OUT"], f"rank{rank}.json"), "w") as f:
    json.dump({"uss": uss, "loss": float(loss), "params": [float(v) for v in flat[:8]]}, f)
dist.barrier()
dist.destroy_process_group()
"""


def _run(label: str, argv: list[str], n: int, torch_name: str, timeout: float) -> dict:
    out = tempfile.mkdtemp(prefix="many-workers-")
    env = {**os.environ, "BENCH_TORCH": torch_name, "BENCH_OUT": out,
           "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))}
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "OMP_NUM_THREADS"):
        env.pop(key, None)
    started = time.perf_counter()
    try:
        proc = subprocess.run(argv, env=env, cwd=out, capture_output=True, text=True,
                              timeout=timeout)
        wall = time.perf_counter() - started
        records = []
        for r in range(n):
            try:
                with open(os.path.join(out, f"rank{r}.json")) as f:
                    records.append(json.load(f))
            except (OSError, ValueError):
                pass
    except subprocess.TimeoutExpired:
        return {"label": label, "n": n, "error": f"timed out after {timeout:g} s"}
    finally:
        shutil.rmtree(out, ignore_errors=True)
    if proc.returncode != 0 or len(records) != n:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        first = [line.strip() for line in lines  # the report's first failure, else the last lines
                 if line.startswith(("  rank      :", "  exit      :", "  error     :"))][:3]
        tail = first or lines[-3:]
        return {"label": label, "n": n, "error": f"exit {proc.returncode}, {len(records)}/{n} "
                                                   f"ranks reported: {' | '.join(tail)}"}
    agree = all(r["params"] == records[0]["params"] for r in records)
    uss = [r["uss"] / 2**20 for r in records]
    return {"label": label, "n": n, "wall_s": wall, "uss_median_mb": statistics.median(uss),
            "uss_max_mb": max(uss), "uss_max_rank": uss.index(max(uss)), "params_agree": agree}


def _sizes(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="8,32,64,128", help="fork-server job sizes")
    parser.add_argument("--spawn-sizes", default="8,32", help="--start-method spawn job sizes")
    parser.add_argument("--torch-sizes", default="8,32",
                        help="torchrun job sizes (each PyTorch worker holds ~150 MB or more)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per job")
    args = parser.parse_args()
    script = os.path.join(tempfile.mkdtemp(prefix="many-workers-job-"), "tiny_ddp.py")
    with open(script, "w") as f:
        f.write(JOB)
    launcher = [sys.executable, "-m", "disttorch_launcher"]
    load_at_start = os.getloadavg()[0]
    rows = []
    for n in _sizes(args.sizes):
        rows.append(_run("disttorch-run (fork server)",
                         [*launcher, "--nproc-per-node", str(n), script], n, "disttorch",
                         args.timeout))
    for n in _sizes(args.spawn_sizes):
        rows.append(_run("disttorch-run --start-method spawn",
                         [*launcher, "--start-method", "spawn", "--nproc-per-node", str(n), script],
                         n, "disttorch", args.timeout))
    torchrun = console_script("torchrun")
    for n in _sizes(args.torch_sizes) if torchrun else []:
        rows.append(_run("torchrun (PyTorch, gloo)",
                         [torchrun, "--standalone", "--nproc-per-node", str(n), script], n, "torch",
                         args.timeout))
    load = os.getloadavg()
    print(f"# {os.cpu_count()} cores, load average {load_at_start:.1f} at the start, {load[0]:.1f} {load[1]:.1f} "
          f"{load[2]:.1f} at the end")
    print(f"{'launcher':<36} {'workers':>7} {'launch to exit':>15} {'USS median':>11} "
          f"{'USS max':>8}")
    for row in rows:
        if "error" in row:
            print(f"{row['label']:<36} {row['n']:>7}  FAILED: {row['error']}")
            continue
        agree = "" if row["params_agree"] else "  (ranks' parameters differ!)"
        print(f"{row['label']:<36} {row['n']:>7} {row['wall_s']:>13.2f} s {row['uss_median_mb']:>8.1f} MB "
              f"{row['uss_max_mb']:>5.1f} MB (rank {row['uss_max_rank']}){agree}")
    shutil.rmtree(os.path.dirname(script), ignore_errors=True)


if __name__ == "__main__":
    main()
