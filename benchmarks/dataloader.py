"""Throughput of a transform-heavy image pipeline through DataLoader, disttorch vs PyTorch.

The pipeline is MNIST-style augmentation on 28 x 28 uint8 images: ToTensor, RandomCrop(28,
padding=4), RandomHorizontalFlip, Normalize, batches of 128, shuffled. It runs with 0, 1 and 2
workers through disttorch's DataLoader and, when PyTorch is installed, through PyTorch's
DataLoader with the same settings (torchvision's transforms if installed, else the same ops
written with torch tensor calls, which is what torchvision runs on tensors).

    python benchmarks/dataloader.py [--samples 20480] [--rounds 5] [--workers 0 1 2]

Every configuration keeps its (persistent) workers, runs one warm-up epoch, then ``--rounds``
timed epochs interleaved with the other configurations, so that a noisy machine slows them all
alike. Reported: median and best samples per second, and the CPU time (main process plus
workers) per batch, which shows the pipeline's overhead independently of how many cores the
machine really delivers.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

MEAN, STD = 0.1307, 0.3081


def make_images(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8), rng.integers(0, 10, size=n).astype(np.int64)


# ---- disttorch ----------------------------------------------------------------------------------

def disttorch_loader(images, labels, batch_size, num_workers):
    from disttorch.utils.data import DataLoader, Dataset
    from disttorch.vision import transforms as T

    class Images(Dataset):
        def __init__(self):
            self.transform = T.Compose([T.ToTensor(), T.RandomCrop(28, padding=4), T.RandomHorizontalFlip(),
                                        T.Normalize((MEAN,), (STD,))])

        def __len__(self):
            return len(images)

        def __getitem__(self, i):
            return self.transform(images[i]), int(labels[i])

    return DataLoader(Images(), batch_size=batch_size, shuffle=True, num_workers=num_workers,
                      persistent_workers=num_workers > 0)


# ---- PyTorch ------------------------------------------------------------------------------------

def torch_loader(images, labels, batch_size, num_workers):
    from torch.utils.data import DataLoader, Dataset

    try:
        from torchvision import transforms as T

        transform = T.Compose([T.ToTensor(), T.RandomCrop(28, padding=4), T.RandomHorizontalFlip(),
                               T.Normalize((MEAN,), (STD,))])
    except ImportError:
        transform = _torch_transform

    class Images(Dataset):
        def __len__(self):
            return len(images)

        def __getitem__(self, i):
            return transform(images[i]), int(labels[i])

    return DataLoader(Images(), batch_size=batch_size, shuffle=True, num_workers=num_workers,
                      persistent_workers=num_workers > 0)


def _torch_transform(img):
    """ToTensor + RandomCrop(28, padding=4) + RandomHorizontalFlip + Normalize in torch ops."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(img).unsqueeze(0).to(torch.float32).div(255)
    x = F.pad(x, (4, 4, 4, 4))
    i = int(torch.randint(0, 9, (1,)).item())
    j = int(torch.randint(0, 9, (1,)).item())
    x = x[:, i:i + 28, j:j + 28]
    if torch.rand(1) < 0.5:
        x = x.flip(-1)
    return x.sub(MEAN).div(STD)


# ---- timing -------------------------------------------------------------------------------------

def _cpu_seconds(process) -> float:
    """User + system CPU of ``process`` and its live children (the loader's workers)."""
    total = sum(process.cpu_times()[:2])
    for child in process.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except Exception:
            pass
    return total


def run_epoch(loader, process) -> tuple:
    """(samples/s, CPU ms per batch) of one epoch."""
    cpu0 = _cpu_seconds(process) if process else 0.0
    start = time.perf_counter()
    seen = batches = 0
    for batch, target in loader:
        seen += len(target)
        batches += 1
    wall = time.perf_counter() - start
    cpu = (_cpu_seconds(process) - cpu0) if process else float("nan")
    return seen / wall, 1e3 * cpu / max(batches, 1)


def _transform_only(dataset, count, queue):
    start = time.perf_counter()
    for i in range(count):
        dataset[i % len(dataset)]
    queue.put(time.perf_counter() - start)


def parallel_ceiling(dataset, samples: int, processes: int) -> float:
    """Samples/s of the bare per-sample work in ``processes`` plain processes, no DataLoader:
    the most any loader could reach on this machine (a loaded or SMT-bound machine gives
    two processes far less than 2x one)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    share = samples // processes
    workers = [context.Process(target=_transform_only, args=(dataset, share, queue)) for _ in range(processes)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return share * processes / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=20480)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5, help="timed epochs per configuration, interleaved")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()

    images, labels = make_images(args.samples)
    try:
        import torch

        torch.set_num_threads(1)  # workers use one thread each in both libraries; keep the main alike
    except ImportError:
        torch = None
    try:
        import psutil

        process = psutil.Process()
    except ImportError:
        process = None

    configs = [("disttorch", n) for n in args.workers]
    if torch is not None:
        configs += [("pytorch", n) for n in args.workers]
    builders = {"disttorch": disttorch_loader, "pytorch": torch_loader}
    loaders = {cfg: builders[cfg[0]](images, labels, args.batch_size, cfg[1]) for cfg in configs}
    for cfg in configs:
        run_epoch(loaders[cfg], None)  # warm-up: start the (persistent) workers, fill caches
    # Rounds interleave the configurations so that a noisy neighbour slows all of them alike.
    results = {cfg: [] for cfg in configs}
    bare = disttorch_loader(images, labels, args.batch_size, 0).dataset
    ceiling = {1: [], 2: []}
    for _ in range(args.rounds):
        for cfg in configs:
            results[cfg].append(run_epoch(loaders[cfg], process))
        if sys.platform.startswith("linux"):
            for n in ceiling:
                ceiling[n].append(parallel_ceiling(bare, args.samples, n))
    del loaders

    print(f"{args.samples} images 28x28, batch {args.batch_size}, ToTensor + RandomCrop(28, padding=4) + "
          f"RandomHorizontalFlip + Normalize, shuffled; {os.cpu_count()} CPUs, {args.rounds} rounds")
    print(f"{'library':>10} {'workers':>8} {'median samples/s':>17} {'best samples/s':>15} {'CPU ms/batch':>13}")
    median, best = {}, {}
    for cfg in configs:
        rates = sorted(r for r, _ in results[cfg])
        cpu = sorted(c for _, c in results[cfg])
        median[cfg], best[cfg] = rates[len(rates) // 2], rates[-1]
        print(f"{cfg[0]:>10} {cfg[1]:>8} {median[cfg]:>17.0f} {best[cfg]:>15.0f} {cpu[len(cpu) // 2]:>13.2f}")
    if ceiling[1]:
        c1, c2 = sorted(ceiling[1]), sorted(ceiling[2])
        print(f"machine ceiling (bare transforms, no loader), 2 processes vs 1: "
              f"{c2[len(c2) // 2] / c1[len(c1) // 2]:.2f}x median, {c2[-1] / c1[-1]:.2f}x best")
    if ("disttorch", 0) in median and ("disttorch", 2) in median:
        print(f"disttorch, 2 workers vs 0: {median[('disttorch', 2)] / median[('disttorch', 0)]:.2f}x median, "
              f"{best[('disttorch', 2)] / best[('disttorch', 0)]:.2f}x best (target >= 1.6x)")
    for n in args.workers:
        if ("pytorch", n) in median:
            print(f"disttorch / PyTorch time per sample, {n} workers: "
                  f"{median[('pytorch', n)] / median[('disttorch', n)]:.2f}x median, "
                  f"{best[('pytorch', n)] / best[('disttorch', n)]:.2f}x best (target <= 1.2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
