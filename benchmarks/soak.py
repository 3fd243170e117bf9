"""A soak of faults: N training jobs in a row, each hit by one random fault, all checked.

    python benchmarks/soak.py --jobs 100            # the target: 100 jobs, 0 lost, 0 leftovers
    python benchmarks/soak.py --jobs 6 --seed 1     # what .ci/run runs

Every job is a 2-rank DDP training run under ``disttorch-run --max-restarts 1`` that checkpoints
every 2 steps (mid-epoch, with the DataLoader's position). Its fault is one of ``--inject-fault``'s
kinds (kill, hang, slow, drop, corrupt) at a random collective, or a SIGTERM sent to the launcher
at a random moment. A job counts as recovered when:

- it ends with the exit code its fault calls for (0 after a restart, 0 for a slow rank; 143 for
  the launcher's SIGTERM, after which the job is run again with an explicit resume) and its
  output names the fault (the launcher's "injecting fault" note, its failure report, the
  signal);
- its final weights equal, bit for bit, those of the same job run without a fault;
- nothing of it is left: no process carrying its tag, no /dev/shm segment of its processes, no
  socket file in its runtime directory, nothing in its scratch (TMPDIR) directory.

Anything else counts as lost, with the reason. The tally at the end: jobs, faults by kind,
recovered, lost, leftovers.
"""
from __future__ import annotations

import argparse
import collections
import os
import pathlib
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
KINDS = ("kill", "hang", "slow", "drop", "corrupt", "sigterm")
COLLECTIVE_TIMEOUT = 2.0  # seconds; hang and drop are detected by the peer's timeout
FIRST_COLLECTIVE, LAST_COLLECTIVE = 3, 40  # the job makes about 60 collectives

JOB = r'''
"""One soak job: a small MLP, 2 ranks, 3 epochs of 6 steps, a checkpoint every 2 steps."""
import datetime, os, sys
import numpy as np
import disttorch as torch
import disttorch.distributed as dist
import disttorch.nn as nn
import disttorch.nn.functional as F
from disttorch.nn.parallel import DistributedDataParallel as DDP
from disttorch.training import Checkpointer, seed_everything
from disttorch.utils.data import DataLoader, DistributedSampler, TensorDataset

dist.init_process_group("zmq", timeout=datetime.timedelta(seconds=float(os.environ["SOAK_TIMEOUT"])))
rank, world = dist.get_rank(), dist.get_world_size()
torch.set_num_threads(1)
seed_everything(0)
model = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Dropout(0.1), nn.Linear(32, 3))
ddp = DDP(model)
opt = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
seed_everything(0, rank)  # per-rank dropout stream: a resumed run must draw what the unbroken one drew
rng = np.random.default_rng(7)
x = rng.standard_normal((96, 8)).astype(np.float32)
data = TensorDataset(torch.from_numpy(x), torch.from_numpy((x[:, :3].argmax(1)).astype(np.int64)))
sampler = DistributedSampler(data, num_replicas=world, rank=rank, seed=3)
loader = DataLoader(data, batch_size=8, sampler=sampler)
ckpt = Checkpointer(os.environ["SOAK_CHECKPOINT"], ddp, opt, loader=loader)
restarts = int(os.environ["TORCHELASTIC_RESTART_COUNT"])
start = 0
if os.environ.get("SOAK_RESUME") == "1":
    start = ckpt.resume()[0]                       # asked for: the run before this launch
elif restarts:
    start = ckpt.resume(require_same_run=True)[0]  # after a restart: this run's checkpoint only
if rank == 0 and ckpt.resumed_from is not None:
    print(f"SOAK resumed at epoch {start} step {ckpt.start_step}", flush=True)
for epoch in range(start, 3):
    sampler.set_epoch(epoch)
    for step, (xb, yb) in enumerate(loader, start=ckpt.start_step if epoch == start else 0):
        opt.zero_grad()
        F.cross_entropy(ddp(xb), yb).backward()
        opt.step()
        if (step + 1) % 2 == 0:
            ckpt.save(epoch, step=step + 1)
    ckpt.save(epoch)
if rank == 0:
    np.save(os.environ["SOAK_WEIGHTS"], np.concatenate([p.detach().numpy().ravel() for p in model.parameters()]))
    print("SOAK finished", flush=True)
dist.destroy_process_group()
'''


class Scratch:
    """A job's own directories: runtime (ipc sockets, keys), TMPDIR (scratch), and its files."""

    def __init__(self, base: pathlib.Path, name: str):
        self.root = base / name
        self.runtime = self.root / "run"
        self.tmp = self.root / "tmp"
        for d in (self.runtime, self.tmp):
            d.mkdir(parents=True, mode=0o700)
        self.checkpoint = self.root / "ckpt.pt"
        self.weights = self.root / "weights.npy"


def _tagged_pids(tag: str) -> set[int]:
    """Processes whose environment carries SOAK_TAG=tag (the launcher and all its workers)."""
    needle = f"SOAK_TAG={tag}".encode()
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.add(int(entry))
        except OSError:
            continue
    return found


def _alive(pids: set[int]) -> list[str]:
    out = []
    for pid in sorted(pids):
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            if state != "Z":
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    command = f.read().replace(b"\0", b" ").decode(errors="replace")
                out.append(f"process {pid}: {command[:120]}")
        except OSError:
            continue
    return out


_SHM_OWNER = re.compile(r"p(\d+)(?:n\d+)?$")


def _shm_of(pids: set[int], before: set[str]) -> list[str]:
    """New /dev/shm entries whose name says one of ``pids`` made them (disttorch's segment names
    end in p<pid> or p<pid>n<k>); other users' segments of the machine are not ours to judge."""
    try:
        now = set(os.listdir("/dev/shm"))
    except OSError:
        return []
    left = []
    for name in sorted(now - before):
        m = _SHM_OWNER.search(name)
        if m and int(m.group(1)) in pids:
            left.append(f"/dev/shm/{name}")
    return left


def _leftovers(scratch: Scratch, tag: str, pids: set[int], shm_before: set[str]) -> list[str]:
    deadline = time.monotonic() + 5.0
    alive = _alive(pids | _tagged_pids(tag))
    while alive and time.monotonic() < deadline:  # the launcher has returned; give reaping a moment
        time.sleep(0.1)
        alive = _alive(pids | _tagged_pids(tag))
    left = list(alive)
    left += _shm_of(pids, shm_before)
    left += [f"socket file {p}" for p in scratch.runtime.rglob("*") if p.is_socket()]
    left += [f"scratch {p}" for p in scratch.tmp.iterdir()]
    return left


def _launch(scratch: Scratch, tag: str, fault: str | None, *, resume=False, sigterm_after=None, seed=0,
            timeout=180.0):
    """Runs one launch of the job; returns (exit code, output, pids seen, seconds)."""
    script = scratch.root / "job.py"
    script.write_text(JOB)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DISTTORCH_", "TORCHELASTIC_")) and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(SOAK_TAG=tag, SOAK_TIMEOUT=str(COLLECTIVE_TIMEOUT), SOAK_CHECKPOINT=str(scratch.checkpoint),
               SOAK_WEIGHTS=str(scratch.weights), SOAK_RESUME="1" if resume else "0",
               XDG_RUNTIME_DIR=str(scratch.runtime), TMPDIR=str(scratch.tmp), OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", DISTTORCH_PROGRESS="0",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    argv = [sys.executable, "-m", "disttorch_launcher", "--nproc-per-node", "2", "--max-restarts", "1",
            "--grace-period", "3", "--fault-seed", str(seed)]
    if fault:
        argv += ["--inject-fault", fault]
    argv.append(str(script))
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, env=env, cwd=scratch.root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    pids = {proc.pid}
    chunks = []
    reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read()), daemon=True)
    reader.start()
    sent = False
    workers_up = None  # when the launcher's workers were first seen: the SIGTERM's clock starts then
    while proc.poll() is None:
        pids |= _tagged_pids(tag)
        if workers_up is None and len(pids) > 1:
            workers_up = time.monotonic()
        if sigterm_after is not None and not sent and workers_up is not None \
                and time.monotonic() - workers_up >= sigterm_after:
            proc.send_signal(signal.SIGTERM)
            sent = True
        if time.monotonic() - t0 > timeout:
            proc.kill()
            break
        time.sleep(0.1)
    proc.wait()
    reader.join(10)
    return proc.returncode, b"".join(chunks).decode(errors="replace"), pids, time.monotonic() - t0


def _expected_signs(kind: str) -> list[str]:
    """Text the output must contain for the fault to count as reported."""
    if kind == "sigterm":
        return ["SIGTERM"]
    signs = [f": {kind}" if kind != "slow" else ": slow", "injecting fault"]
    if kind != "slow":
        signs.append("restart 1 of 1")
    if kind == "kill":
        signs.append("signal SIGKILL (9)")
    elif kind in ("hang", "drop"):
        signs.append("DistTimeoutError")
    elif kind == "corrupt":
        signs.append("MessageIntegrityError")
    return signs


def run_job(index: int, kind: str, rng: random.Random, base: pathlib.Path, reference: np.ndarray,
            keep: bool) -> dict:
    tag = f"soak-{uuid.uuid4().hex[:10]}"
    scratch = Scratch(base, f"job{index:03d}-{kind}")
    shm_before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    rank = rng.randrange(2)
    at = rng.randint(FIRST_COLLECTIVE, LAST_COLLECTIVE)
    fault = None
    if kind != "sigterm":
        fault = f"rank={rank},at=collective:{at},kind={'slow:2x' if kind == 'slow' else kind}"
    # Counted from the moment the workers exist (a signal before Python has even started the
    # launcher is not a fault of the job); they start, train about 2 s, then finish.
    sigterm_after = rng.uniform(0.0, 3.0) if kind == "sigterm" else None
    code, out, pids, seconds = _launch(scratch, tag, fault, sigterm_after=sigterm_after, seed=index)
    problems = []
    expected_code = 143 if kind == "sigterm" else 0
    if kind == "sigterm" and code == 0:
        expected_code = 0  # the job finished before the signal came: nothing to stop
    if code != expected_code:
        problems.append(f"exit code {code}, expected {expected_code}")
    missing = [s for s in _expected_signs(kind) if s not in out] if code != 0 or kind != "sigterm" else []
    if missing:
        problems.append(f"output does not name the fault (missing {missing})")
    left = _leftovers(scratch, tag, pids, shm_before)
    if kind == "sigterm" and code != 0:
        # Stopped on purpose: the user runs it again, resuming what it saved.
        code2, out2, pids2, s2 = _launch(scratch, tag, None, resume=True, seed=index)
        out += out2
        seconds += s2
        if code2 != 0:
            problems.append(f"the resumed launch after SIGTERM exited {code2}")
        left += _leftovers(scratch, tag, pids2, shm_before)
    if scratch.weights.exists():
        if not np.array_equal(np.load(scratch.weights), reference):
            problems.append("final weights differ from the unbroken run's")
    else:
        problems.append("no final weights")
    verdict = {"index": index, "kind": kind, "fault": fault or f"SIGTERM {sigterm_after:.1f} s into the job",
               "code": code, "seconds": seconds, "problems": problems, "leftovers": left,
               "resumed": "SOAK resumed" in out}
    if problems or left:
        verdict["tail"] = out[-3000:]
    if not keep and not problems and not left:
        shutil.rmtree(scratch.root, ignore_errors=True)
    return verdict


def reference_weights(base: pathlib.Path) -> np.ndarray:
    scratch = Scratch(base, "reference")
    code, out, _, _ = _launch(scratch, f"soak-ref-{uuid.uuid4().hex[:8]}", None)
    if code != 0 or not scratch.weights.exists():
        raise SystemExit(f"soak: the unbroken reference run failed (exit {code}):\n{out[-3000:]}")
    return np.load(scratch.weights)


def choose_kinds(n: int, rng: random.Random) -> list[str]:
    """Every kind once (in random order) while n allows, then random kinds."""
    first = list(KINDS)
    rng.shuffle(first)
    return (first + [rng.choice(KINDS) for _ in range(max(n - len(first), 0))])[:n]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", action="store_true", help="keep every job's directory (failed ones are always kept)")
    p.add_argument("--dir", default=None, help="where job directories go (default: a new temporary directory)")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs must be at least 1, got {args.jobs}")
    rng = random.Random(args.seed)
    base = pathlib.Path(args.dir or tempfile.mkdtemp(prefix="disttorch-soak-"))
    base.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    reference = reference_weights(base)
    by_kind = collections.Counter()
    recovered = collections.Counter()
    lost = []
    leftovers = 0
    for i, kind in enumerate(choose_kinds(args.jobs, rng)):
        v = run_job(i, kind, rng, base, reference, args.keep)
        by_kind[kind] += 1
        ok = not v["problems"] and not v["leftovers"]
        leftovers += len(v["leftovers"])
        if ok:
            recovered[kind] += 1
        else:
            lost.append(v)
        status = "recovered" if ok else "LOST: " + "; ".join(v["problems"] + v["leftovers"])
        print(f"job {i:3d}  {v['fault']:<42} exit {v['code']:>3}  {v['seconds']:5.1f} s  {status}", flush=True)
        if not ok:
            print("    " + v["tail"].replace("\n", "\n    "), flush=True)
    kinds = ", ".join(f"{k} {by_kind[k]}" for k in KINDS if by_kind[k])
    print(f"soak: {args.jobs} jobs in {time.monotonic() - t0:.0f} s; faults: {kinds}; "
          f"recovered {sum(recovered.values())}; lost {len(lost)}; leftovers {leftovers}", flush=True)
    if not lost and not args.keep and not args.dir:
        shutil.rmtree(base, ignore_errors=True)
    return 0 if not lost else 1


if __name__ == "__main__":
    sys.exit(main())
