"""Measures PyTorch's own seed-to-seed spread of each corpus program's RESULT figures, the band
test_corpus.py holds disttorch's figures to. Writes corpus_pytorch_spread.json beside itself.

    python tests/examples/measure_corpus_spread.py [--seeds 1 2 3 4 5] [PROGRAM ...]

Each program runs with the real PyTorch (through corpus_pytorch_runner.py) once per seed, one
thread (OMP_NUM_THREADS=1), as the test runs it.
"""
import argparse
import json
import os
import pathlib
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CORPUS = ROOT / "examples" / "corpus"
OUT = HERE / "corpus_pytorch_spread.json"


def programs():
    return sorted(p.stem for p in CORPUS.glob("*.py") if p.stem != "as_disttorch")


def parse_result(stdout):
    """The figures of the last ``RESULT name=value ...`` line."""
    lines = [line for line in stdout.splitlines() if "RESULT " in line]
    if not lines:
        raise ValueError(f"no RESULT line in:\n{stdout[-2000:]}")
    fields = lines[-1].split("RESULT ", 1)[1].split()
    return {k: float(v) for k, v in (f.split("=") for f in fields)}


def free_port():
    """A loopback port free now, for a program that forms a process group of one."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_in_scratch(command, env, timeout):
    """Runs a corpus program with TMPDIR set to a directory removed afterwards: the programs
    write checkpoints, snapshots and sample images under tempfile.mkdtemp(), as their public
    originals do, and tens of megabytes a run would otherwise pile up in /tmp."""
    with tempfile.TemporaryDirectory(prefix="corpus-") as scratch:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env=dict(env, TMPDIR=scratch), cwd=ROOT, check=False)


def run_pytorch(program, seed, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_PORT=str(free_port()))
    env.pop("PYTHONPATH", None)  # the real torch, not a worktree's disttorch
    proc = run_in_scratch([sys.executable, str(HERE / "corpus_pytorch_runner.py"),
                           str(CORPUS / f"{program}.py"), "--seed", str(seed)], env, timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{program} seed {seed} failed:\n{proc.stderr[-3000:]}")
    return parse_result(proc.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("names", nargs="*")
    args = parser.parse_args()
    import torch

    table = json.loads(OUT.read_text()) if OUT.exists() else {"programs": {}}
    table["measured_with"] = {"torch": torch.__version__, "python": platform.python_version(),
                              "seeds": args.seeds, "threads": 1,
                              "command": "python tests/examples/measure_corpus_spread.py"}
    for name in args.names or programs():
        start = time.time()
        runs = [run_pytorch(name, seed) for seed in args.seeds]
        figures = {}
        for key in runs[0]:
            values = [r[key] for r in runs]
            figures[key] = {"mean": statistics.mean(values), "std": statistics.stdev(values),
                            "min": min(values), "max": max(values), "values": values}
        table["programs"][name] = figures
        print(name, f"{time.time() - start:.1f}s",
              {k: (round(v["mean"], 4), round(v["std"], 4)) for k, v in figures.items()}, flush=True)
        OUT.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
