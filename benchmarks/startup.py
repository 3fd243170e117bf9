"""Startup time of a 2-rank job: launch, initialise the process group, one barrier, exit.

    python benchmarks/startup.py [REPEATS]

Rows (median wall time of REPEATS runs, each a fresh job):

  empty script            the launcher alone: two workers that do nothing
  torch gloo barrier      the same torch.distributed script under torchrun and disttorch-run
  disttorch zmq barrier   disttorch.distributed (zmq) under disttorch-run: the target row,
                          compared with `torchrun --standalone` running the torch gloo script
  import ...              one bare interpreter importing the collective layer: the workers'
                          share of the rows above (the launcher's share is the empty row)

The target is disttorch's row at most 0.3x torchrun's. Rows that need PyTorch are left out when
it is missing; the disttorch row is left out while disttorch.distributed has no
init_process_group. Figures depend on the machine: compare ratios from one run.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

from _console import console_script

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TARGET = 0.3

EMPTY = "pass\n"
TORCH_BARRIER = """
import torch.distributed as dist
dist.init_process_group("gloo", init_method="env://")
dist.barrier()
dist.destroy_process_group()
"""
DISTTORCH_BARRIER = """
import datetime
import disttorch.distributed as dist
dist.init_process_group(backend="zmq", init_method="env://",
                        timeout=datetime.timedelta(seconds=60))
dist.barrier()
dist.destroy_process_group()
"""


def _has_module(name: str, attr: str | None = None) -> bool:
    code = f"import {name}" + (f"; assert hasattr({name}, {attr!r})" if attr else "")
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def _run_once(argv: list[str], env: dict[str, str]) -> float:
    """Wall time of one run in seconds; raises when the job fails."""
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return elapsed


def _medians(jobs: list[tuple[str, str, list[str]]], repeats: int, env: dict[str, str]
             ) -> list[tuple[str, str, float]]:
    """Median wall time of every job. Runs are interleaved (one of each job per round) so that
    a change in the machine's load hits every row alike."""
    times: list[list[float]] = [[] for _ in jobs]
    for _ in range(repeats):
        for i, (_, _, argv) in enumerate(jobs):
            times[i].append(_run_once(argv, env))
    return [(job, launcher, statistics.median(t)) for (job, launcher, _), t in zip(jobs, times)]


def main() -> int:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "OMPI_", "PMI_", "TORCHELASTIC_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    disttorch_run = console_script("disttorch-run")
    dt = [disttorch_run] if disttorch_run else [sys.executable, "-m", "disttorch_launcher"]
    torchrun = console_script("torchrun")
    have_torch = torchrun is not None and _has_module("torch.distributed")
    have_disttorch = _has_module("disttorch.distributed", "init_process_group")

    jobs: list[tuple[str, str, list[str]]] = []
    with tempfile.TemporaryDirectory(prefix="disttorch-startup-") as tmp:
        scripts = {}
        for name, text in (("empty", EMPTY), ("torch", TORCH_BARRIER),
                           ("disttorch", DISTTORCH_BARRIER)):
            # not "torch.py": a script's directory comes first on sys.path and would shadow torch
            scripts[name] = os.path.join(tmp, f"job_{name}.py")
            with open(scripts[name], "w") as f:
                f.write(text)
        two = ["--nproc-per-node", "2"]
        tr = [torchrun, "--standalone", "--nproc-per-node", "2"] if have_torch else None
        if tr:
            jobs.append(("empty script", "torchrun --standalone", [*tr, scripts["empty"]]))
        jobs.append(("empty script", "disttorch-run", [*dt, *two, scripts["empty"]]))
        if tr:
            jobs.append(("torch gloo barrier", "torchrun --standalone", [*tr, scripts["torch"]]))
            jobs.append(("torch gloo barrier", "disttorch-run", [*dt, *two, scripts["torch"]]))
        if have_disttorch:
            jobs.append(("disttorch zmq barrier", "disttorch-run",
                         [*dt, *two, scripts["disttorch"]]))
            # What one worker spends importing the collective layer (the tensor stack with it),
            # to tell the launcher's share from the workers'.
            jobs.append(("import disttorch.distributed", "(one process, no launcher)",
                         [sys.executable, "-c", "import disttorch.distributed"]))
        if have_torch:
            jobs.append(("import torch.distributed", "(one process, no launcher)",
                         [sys.executable, "-c", "import torch.distributed"]))
        load = os.getloadavg()[0]
        rows = _medians(jobs, repeats, env)

    print(f"2-rank startup, median of {repeats} interleaved runs (wall seconds); load average "
          f"{load:.1f} at start, {os.getloadavg()[0]:.1f} at end, {os.cpu_count()} cores")
    print(f"{'job':30s} {'launcher':28s} {'seconds':>8s}")
    for job, launcher, seconds in rows:
        print(f"{job:30s} {launcher:28s} {seconds:8.3f}")
    found = {(job, launcher): s for job, launcher, s in rows}
    reference = found.get(("torch gloo barrier", "torchrun --standalone"))
    if reference is None:
        print("PyTorch (torchrun) not installed: no reference to compare with")
        return 0
    print(f"launcher alone: disttorch-run / torchrun = "
          f"{found[('empty script', 'disttorch-run')] / found[('empty script', 'torchrun --standalone')]:.2f}x")
    print(f"same torch script: disttorch-run / torchrun = "
          f"{found[('torch gloo barrier', 'disttorch-run')] / reference:.2f}x")
    ours = found.get(("disttorch zmq barrier", "disttorch-run"))
    if ours is None:
        print("disttorch.distributed.init_process_group is not available yet: target row skipped")
        return 0
    ratio = ours / reference
    verdict = "meets" if ratio <= TARGET else "misses"
    print(f"target: disttorch zmq barrier / torchrun gloo barrier = {ratio:.2f}x "
          f"({verdict} the {TARGET}x target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
