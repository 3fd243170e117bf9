"""Random draws: disttorch (PyTorch CPU's numbers, computed with NumPy) against PyTorch on one thread.

    python benchmarks/random_streams.py [--n 10000000]

Prints the best of three wall-clock times per call. Needs ``torch`` for the comparison column.
"""
from __future__ import annotations

import argparse
import time

import disttorch as dt


def best_of(fn, reps=3):
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000, help="elements per draw (randperm uses n / 10)")
    n = parser.parse_args().n
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        torch = None
    cases = [
        ("rand float32", lambda T: T.rand(n)),
        ("randn float32", lambda T: T.randn(n)),
        ("randn float64", lambda T: T.randn(n, dtype=T.float64)),
        ("randint", lambda T: T.randint(0, 100, (n,))),
        (f"randperm {n // 10}", lambda T: T.randperm(n // 10)),
        ("dropout float32", lambda T: T.nn.functional.dropout(T.ones(n), 0.1)),
    ]
    print(f"{'draw':20s} {'disttorch':>12s} {'torch (1 thread)':>18s}   n={n}")
    for name, make in cases:
        ours = best_of(lambda: make(dt)) * 1e3
        theirs = f"{best_of(lambda: make(torch)) * 1e3:14.1f} ms" if torch is not None else "-"
        print(f"{name:20s} {ours:9.1f} ms {theirs:>18s}")


if __name__ == "__main__":
    main()
