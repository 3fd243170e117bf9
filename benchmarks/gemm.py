"""Matrix products at the shapes training steps use: NumPy's BLAS, disttorch's GEMM path
(``disttorch/_gemm.py``: MKL when the ``mkl`` wheel is installed) and PyTorch, side by side.

    python benchmarks/gemm.py [--threads 1 2] [--repeats 50]

Each row is one product ``(m x k) @ (k x n)`` (``A^T`` / ``B^T``: the operand is a transposed
view, as in a backward pass); times are medians in milliseconds, and the ratios are against
PyTorch. Every thread count runs in a subprocess of its own, with the BLAS pools sized before
NumPy and PyTorch load.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from _timing import median_time

# (label, m, k, n, transpose A, transpose B)
SHAPES = [
    ("MLP fc1 forward", 256, 784, 512, False, True),
    ("MLP fc1 weight grad", 512, 256, 784, True, False),
    ("MLP fc2 forward", 256, 512, 512, False, True),
    ("MLP fc2 input grad", 256, 512, 512, False, False),
    ("CNN conv2 im2col", 43264, 288, 64, False, True),
    ("CNN fc1 forward", 64, 9216, 128, False, True),
    ("ResNet 3x3 128ch", 1024, 1152, 128, False, True),
    ("ResNet 3x3 512ch", 64, 4608, 512, False, True),
    ("GPT qkv", 1024, 128, 384, False, True),
    ("GPT decoder", 1024, 128, 2000, False, True),
    ("LSTM gates", 700, 200, 800, False, True),
]


def _measure(repeats: int) -> list:
    import numpy as np
    import torch

    from disttorch import _gemm

    rng = np.random.default_rng(0)
    rows = []

    def best(fn):
        return median_time(fn, repeats, warmup=2) * 1e3

    cases = []
    for label, m, k, n, ta, tb in SHAPES:
        a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
        ta_t, tb_t = torch.from_numpy(a), torch.from_numpy(b)
        cases.append(((a.T if ta else a), (b.T if tb else b), np.empty((m, n), np.float32),
                      (ta_t.t() if ta else ta_t), (tb_t.t() if tb else tb_t), torch.empty((m, n))))
        rows.append({"label": label, "shape": f"{m}x{k}@{k}x{n}" + (" A^T" if ta else "") + (" B^T" if tb else "")})
    # One library at a time, NumPy first: once disttorch's MKL path is active it narrows NumPy's own
    # BLAS to one thread (disttorch/_gemm.py, narrow_other_blas), and an OpenBLAS pool that just ran
    # spins on the cores for up to ~0.1 s, so each library gets a pause before its turn.
    for name, run in (("numpy", lambda c: np.matmul(c[0], c[1], out=c[2])),
                      ("disttorch", lambda c: _gemm.matmul(c[0], c[1], out=c[2])),
                      ("torch", lambda c: torch.mm(c[3], c[4], out=c[5]))):
        time.sleep(0.3)
        for row, case in zip(rows, cases):
            row[name] = best(lambda: run(case))
    for row in rows:
        row["backend"] = _gemm.backend()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--_child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        import torch

        import disttorch

        torch.set_num_threads(args._child)
        disttorch.set_num_threads(args._child)
        print(json.dumps(_measure(args.repeats)))
        return
    for threads in args.threads:
        env = {**os.environ, **{v: str(threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}}
        out = subprocess.run([sys.executable, __file__, "--_child", str(threads), "--repeats", str(args.repeats)],
                             env=env, capture_output=True, text=True, check=True)
        rows = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"\n{threads} thread(s); disttorch's GEMM: {rows[0]['backend']}")
        print(f"{'product':22} {'shape':28} {'numpy ms':>9} {'disttorch':>9} {'torch ms':>9} {'numpy/torch':>11} "
              f"{'disttorch/torch':>15}")
        for r in rows:
            print(f"{r['label']:22} {r['shape']:28} {r['numpy']:9.3f} {r['disttorch']:9.3f} {r['torch']:9.3f} "
                  f"{r['numpy'] / r['torch']:11.2f} {r['disttorch'] / r['torch']:15.2f}")


if __name__ == "__main__":
    main()
