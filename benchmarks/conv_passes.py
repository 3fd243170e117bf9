"""A convolution's three passes, disttorch against PyTorch, on 1 and 2 threads.

    python benchmarks/conv_passes.py [--threads 1 2] [--repeats 15]

For each shape, through the public API: the forward (``F.conv2d``), the forward and backward with
the weight gradient only (an input that needs no gradient, as a first layer), and the forward and
backward with both gradients; medians in milliseconds, ratios against PyTorch (oneDNN). The
shapes are the CNN benchmark's two layers, a ResNet-18 stem and two of its 3x3 layers.
"""
from __future__ import annotations

import argparse

import numpy as np
from _timing import median_time

# (label, input shape (N, C, H, W), output channels, kernel, stride, padding)
SHAPES = [
    ("CNN conv1 1->32 28x28", (64, 1, 28, 28), 32, 3, 1, 0),
    ("CNN conv2 32->64 26x26", (64, 32, 26, 26), 64, 3, 1, 0),
    ("ResNet stem 3->64 7x7/2", (16, 3, 64, 64), 64, 7, 2, 3),
    ("ResNet 64->64 16x16", (16, 64, 16, 16), 64, 3, 1, 1),
    ("ResNet 256->256 4x4", (16, 256, 4, 4), 256, 3, 1, 1),
]


def _passes(lib, x, w, stride, padding, g):
    """(forward, forward + weight gradient, forward + both gradients) as callables."""
    F = lib.nn.functional
    x_plain, w_leaf = lib.from_numpy(x), lib.from_numpy(w).requires_grad_(True)
    x_leaf = lib.from_numpy(x).requires_grad_(True)
    grad = lib.from_numpy(g)

    def forward():
        F.conv2d(x_plain, w_leaf, stride=stride, padding=padding)

    def weight_only():
        F.conv2d(x_plain, w_leaf, stride=stride, padding=padding).backward(grad)
        w_leaf.grad = None

    def both():
        F.conv2d(x_leaf, w_leaf, stride=stride, padding=padding).backward(grad)
        w_leaf.grad = x_leaf.grad = None

    return forward, weight_only, both


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    import torch

    import disttorch

    rng = np.random.default_rng(0)
    for threads in args.threads:
        torch.set_num_threads(threads)
        disttorch.set_num_threads(threads)
        print(f"\n{threads} thread(s); ms, disttorch / PyTorch (ratio)")
        print(f"{'shape':26} {'forward':>24} {'fwd + weight grad':>24} {'fwd + both grads':>24}")
        for label, shape, out_channels, k, stride, padding in SHAPES:
            x = rng.standard_normal(shape, dtype=np.float32)
            w = (rng.standard_normal((out_channels, shape[1], k, k)) / np.sqrt(shape[1] * k * k)).astype(np.float32)
            size = (shape[2] + 2 * padding - k) // stride + 1
            g = rng.standard_normal((shape[0], out_channels, size, size), dtype=np.float32)
            cells = []
            for ours, theirs in zip(_passes(disttorch, x, w, stride, padding, g), _passes(torch, x, w, stride, padding, g)):
                a = median_time(ours, args.repeats, warmup=2) * 1e3
                b = median_time(theirs, args.repeats, warmup=2) * 1e3
                cells.append(f"{a:7.2f} / {b:7.2f} ({a / b:4.2f})")
            print(f"{label:26} " + " ".join(f"{c:>24}" for c in cells))


if __name__ == "__main__":
    main()
