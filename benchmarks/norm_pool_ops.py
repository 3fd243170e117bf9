#!/usr/bin/env python3
"""The non-matmul ops of ResNet-18 (16x3x64x64) and the small CNN, one by one, disttorch against
PyTorch on the CPU: batch norm (training, running stats updated), ReLU (in place, as the models
call it), the residual add, max pool 3x3/2 pad 1 and 2x2/2, adaptive average pool to 1x1.

Each op runs at the shapes the models give it, forward alone and forward + backward (autograd, an
upstream gradient of ones-like random values), one thread in both frameworks; backward is the
difference. The frameworks alternate for ``--rounds`` rounds and each keeps its best median, which
filters out load from other processes. Prints both sides and the ratio.

Usage: python benchmarks/norm_pool_ops.py [--rounds 3] [--reps 30] [--ops bn relu add maxpool avgpool]
"""
from __future__ import annotations

import argparse
import os
import sys

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402
from _timing import median_time  # noqa: E402

# ResNet-18 at 16x3x64x64: the stem's output, then the four stages' (N, C, H, W)
RESNET_BN = [(16, 64, 32, 32), (16, 64, 16, 16), (16, 128, 8, 8), (16, 256, 4, 4), (16, 512, 2, 2)]
CASES = {
    "bn": [("resnet", s) for s in RESNET_BN],
    "relu": [("resnet", s) for s in RESNET_BN[:3]] + [("cnn", (64, 32, 26, 26)), ("cnn", (64, 64, 24, 24))],
    "add": [("resnet", s) for s in RESNET_BN[1:3]],
    "maxpool": [("resnet 3x3/2 p1", (16, 64, 32, 32)), ("cnn 2x2/2", (64, 64, 24, 24))],
    "avgpool": [("resnet adaptive 1x1", (16, 512, 2, 2))],
}


def _case(tl, op, label, shape, rng):
    """(forward, forward+backward) closures of one op in framework ``tl``."""
    nn = tl.nn
    x_np = rng.standard_normal(shape).astype(np.float32)
    g_np = rng.standard_normal(shape).astype(np.float32)
    if op == "bn":
        mod = nn.BatchNorm2d(shape[1]).train()
        x = tl.from_numpy(x_np).requires_grad_()

        def fwd():
            return mod(x)
    elif op == "relu":
        # as the models call it: in place on a freshly made tensor (the batch norm's output)
        x = tl.from_numpy(x_np).requires_grad_()

        def fwd():
            return (x * 1.0).relu_()
    elif op == "add":
        x = tl.from_numpy(x_np).requires_grad_()
        y = tl.from_numpy(g_np).requires_grad_()

        def fwd():
            return x + y
    elif op == "maxpool":
        mod = nn.MaxPool2d(3, 2, 1) if label.startswith("resnet") else nn.MaxPool2d(2)
        x = tl.from_numpy(x_np).requires_grad_()

        def fwd():
            return mod(x)
    else:
        mod = nn.AdaptiveAvgPool2d((1, 1))
        x = tl.from_numpy(x_np).requires_grad_()

        def fwd():
            return mod(x)
    out_shape = tuple(fwd().shape)
    g = tl.from_numpy(rng.standard_normal(out_shape).astype(np.float32))

    def fwd_bwd():
        fwd().backward(g)
        x.grad = None
    return fwd, fwd_bwd


def _time(tl, op, label, shape, reps):
    fwd, fwd_bwd = _case(tl, op, label, shape, np.random.default_rng(0))
    return median_time(fwd, reps), median_time(fwd_bwd, reps)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--ops", nargs="+", default=list(CASES), choices=list(CASES))
    args = ap.parse_args()
    import torch
    torch.set_num_threads(1)
    import disttorch
    import disttorch.nn  # noqa: F401
    disttorch.set_num_threads(1)  # also limits the BLAS pools (threadpoolctl)
    print(f"{'op':8} {'case':22} {'shape':18} {'fwd dt us':>10} {'fwd pt us':>10} {'ratio':>6} "
          f"{'bwd dt us':>10} {'bwd pt us':>10} {'ratio':>6} {'f+b ratio':>9}")
    total = {"disttorch": 0.0, "torch": 0.0}
    for op in args.ops:
        for label, shape in CASES[op]:
            best = {}
            for _ in range(args.rounds):
                for name, tl in (("disttorch", disttorch), ("torch", torch)):
                    f, fb = _time(tl, op, label, shape, args.reps)
                    old = best.get(name)
                    best[name] = (min(f, old[0]), min(fb, old[1])) if old else (f, fb)
            (df, dfb), (pf, pfb) = best["disttorch"], best["torch"]
            db, pb = max(dfb - df, 0.0), max(pfb - pf, 0.0)
            total["disttorch"] += dfb
            total["torch"] += pfb
            print(f"{op:8} {label:22} {'x'.join(map(str, shape)):18} {df * 1e6:10.0f} {pf * 1e6:10.0f} "
                  f"{df / pf:6.2f} {db * 1e6:10.0f} {pb * 1e6:10.0f} {db / max(pb, 1e-9):6.2f} {dfb / pfb:9.2f}")
    print(f"all cases, forward + backward: disttorch {total['disttorch'] * 1e3:.2f} ms, "
          f"torch {total['torch'] * 1e3:.2f} ms, ratio {total['disttorch'] / total['torch']:.2f}")


if __name__ == "__main__":
    sys.exit(main())
