#!/usr/bin/env python3
"""Per-op overhead and large-tensor throughput of disttorch against PyTorch eager (CPU) and plain
NumPy, in one run. Usage: python benchmarks/ops.py [--threads N]

Prints, for each case, the median time of a forward + backward and the ratios:
- small: a 100-element chain of mul/add/tanh/sub (per-op overhead, microseconds per op);
- large: the same chain on 4M elements (milliseconds), against NumPy doing the same arithmetic
  (forward and the hand-written backward) as the floor;
- matmul: 1024x1024 @ 1024x1024 forward + backward, against NumPy's three matmuls.
"""
import argparse
import os
import sys

import numpy as np

from _timing import median_time


def chain_step(mod, x, w, ops):
    def step():
        y = x
        for _ in range(ops // 4):
            y = y * w
            y = y + w
            y = y.tanh()
            y = y - w
        y.sum().backward()
        x.grad = None
    return step


def numpy_chain(n, ops):
    x = np.ones(n, np.float32)
    w = np.full(n, 1.0001, np.float32)

    def step():
        saved = []
        y = x
        for _ in range(ops // 4):
            saved.append(y)
            y = y * w
            y = y + w
            y = np.tanh(y)
            saved.append(y)
            y = y - w
        g = np.ones(n, np.float32)
        for i in range(ops // 4 - 1, -1, -1):
            t = saved[2 * i + 1]
            g = g * (1 - t * t)
            g = g * w
    return step


def matmul_case(mod, n):
    a = mod.randn(n, n, requires_grad=True) if mod is not np else None
    b = mod.randn(n, n, requires_grad=True)

    def step():
        (a @ b).sum().backward()
        a.grad = b.grad = None
    return step


def numpy_matmul(n):
    a = np.random.randn(n, n).astype(np.float32)
    b = np.random.randn(n, n).astype(np.float32)

    def step():
        _ = a @ b
        g = np.ones((n, n), np.float32)
        _ = g @ b.T
        _ = a.T @ g
    return step


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.threads)
    except ImportError:
        pass
    import disttorch
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
        print("PyTorch not installed: disttorch and NumPy only", file=sys.stderr)

    rows = []
    ops = 40
    for label, n, reps in (("small chain (100 el), us/op", 100, 300), ("large chain (4M el), ms", 4_000_000, 5)):
        scale = 1e6 / ops if n == 100 else 1e3
        res = {}
        for name, mod in (("disttorch", disttorch), ("torch", torch)):
            if mod is None:
                continue
            x = mod.ones(n, requires_grad=True)
            w = mod.full((n,), 1.0001)
            res[name] = median_time(chain_step(mod, x, w, ops), reps) * scale
        res["numpy"] = median_time(numpy_chain(n, ops), reps) * scale
        rows.append((label, res))
    res = {}
    for name, mod in (("disttorch", disttorch), ("torch", torch)):
        if mod is not None:
            res[name] = median_time(matmul_case(mod, 1024), 10) * 1e3
    res["numpy"] = median_time(numpy_matmul(1024), 10) * 1e3
    rows.append(("matmul 1024x1024 fwd+bwd, ms", res))

    print(f"{'case':34s} {'disttorch':>10s} {'torch':>10s} {'numpy':>10s} {'vs torch':>9s} {'vs numpy':>9s}")
    for label, r in rows:
        d, t, npv = r.get("disttorch"), r.get("torch"), r.get("numpy")
        vt = f"{d / t:.2f}x" if t else "-"
        vn = f"{d / npv:.2f}x" if npv else "-"
        print(f"{label:34s} {d:10.2f} {t if t else float('nan'):10.2f} {npv:10.2f} {vt:>9s} {vn:>9s}")


if __name__ == "__main__":
    main()
