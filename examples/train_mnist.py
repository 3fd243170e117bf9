"""Train PyTorch's MNIST example CNN with DistributedDataParallel, from a local MNIST directory.

    disttorch-run --nproc-per-node 2 examples/train_mnist.py --data-dir ~/data
    python examples/train_mnist.py --data-dir ~/data --epochs 1        # 1 process, no launcher

``--data-dir`` is the ``root`` of ``disttorch.vision.datasets.MNIST``: the IDX files (plain or
``.gz``) live in ``DATA_DIR/MNIST/raw``. Nothing is downloaded unless ``--download`` is given.
The model, optimizer (Adadelta, lr 1.0, StepLR gamma 0.7) and normalisation are those of
PyTorch's ``examples/mnist``; the batch size is per rank.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import disttorch as torch
import disttorch.nn as nn
import disttorch.nn.functional as F
from disttorch.nn.parallel import DistributedDataParallel as DDP
from disttorch.training import Checkpointer, MetricsLogger, all_reduce_mean, cleanup, progress, seed_everything
from disttorch.training import setup_distributed
from disttorch.utils.data import DataLoader, DistributedSampler
from disttorch.vision import datasets, transforms


class Net(nn.Module):
    """1x28x28 -> conv32 -> conv64 -> pool -> dropout -> 128 -> dropout -> 10 log-probabilities."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = self.dropout1(x)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return F.log_softmax(self.fc2(self.dropout2(x)), dim=1)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True, help="MNIST root: IDX files in DATA_DIR/MNIST/raw")
    p.add_argument("--download", action="store_true", help="fetch missing files into --data-dir")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64, help="per rank")
    p.add_argument("--test-batch-size", type=int, default=1000)
    p.add_argument("--lr", type=float, default=1.0)
    p.add_argument("--gamma", type=float, default=0.7, help="StepLR decay per epoch")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes per rank")
    p.add_argument("--checkpoint", default="checkpoints/mnist.pt")
    p.add_argument("--resume", action="store_true",
                   help="continue from --checkpoint if it exists, even one written by an earlier run")
    p.add_argument("--metrics", default="checkpoints/mnist_metrics.jsonl")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    rank, world = setup_distributed()
    try:
        torch.set_num_threads(1)
        seed_everything(args.seed)                  # same initial weights everywhere
        model = Net()
        ddp = DDP(model) if world > 1 else model
        opt = torch.optim.Adadelta(ddp.parameters(), lr=args.lr)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=args.gamma)
        seed_everything(args.seed, rank)            # per-rank dropout stream

        normalize = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
        if args.download and rank == 0:
            datasets.MNIST(args.data_dir, train=True, download=True)
            datasets.MNIST(args.data_dir, train=False, download=True)
        if world > 1:
            import disttorch.distributed as dist
            dist.barrier()                          # the files are complete before anyone reads them
        train_set = datasets.MNIST(args.data_dir, train=True, transform=normalize)
        test_set = datasets.MNIST(args.data_dir, train=False, transform=normalize)
        sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=args.seed)
        loader = DataLoader(train_set, batch_size=args.batch_size, sampler=sampler, num_workers=args.workers)
        test_loader = DataLoader(test_set, batch_size=args.test_batch_size, num_workers=args.workers,
                                 sampler=DistributedSampler(test_set, num_replicas=world, rank=rank, shuffle=False))

        ckpt = Checkpointer(args.checkpoint, ddp, opt, sched, sampler)
        restarts = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
        # This run's own checkpoint (a restart, an elastic re-form) is always taken up; a
        # checkpoint left by an earlier run only with --resume.
        start_epoch = ckpt.resume(require_same_run=not args.resume)[0]
        if ckpt.resumed_from is None and rank == 0 and args.metrics and os.path.exists(args.metrics):
            os.unlink(args.metrics)  # a fresh run starts a fresh metrics file
        logger = MetricsLogger(args.metrics, rank)
        if rank == 0:
            print(f"{len(train_set)} training / {len(test_set)} test images, {world} rank(s), "
                  f"batch {args.batch_size} per rank", flush=True)
            if restarts == 0 and ckpt.resumed_from is None:
                print(f"checkpoints: {os.path.abspath(args.checkpoint)} (each epoch); metrics: "
                      f"{os.path.abspath(args.metrics) if args.metrics else 'not written'}", flush=True)

        for epoch in range(start_epoch, args.epochs):
            sampler.set_epoch(epoch)
            ddp.train()
            loss_sum, seen = 0.0, 0
            for x, y in progress(loader, desc=f"epoch {epoch}"):
                opt.zero_grad()
                loss = F.nll_loss(ddp(x), y)
                loss.backward()
                opt.step()
                loss_sum += loss.item() * len(y)
                seen += len(y)
            sched.step()
            train_loss = all_reduce_mean({"loss": loss_sum / max(seen, 1)}, seen)["loss"]
            test_loss, acc = evaluate(ddp, test_loader)
            ckpt.save(epoch)
            logger.log(epoch=epoch, train_loss=round(train_loss, 5), test_loss=round(test_loss, 5),
                       test_acc=round(acc, 5), lr=opt.param_groups[0]["lr"])
            if rank == 0:
                print(f"epoch {epoch:2d}  train_loss {train_loss:.4f}  test_loss {test_loss:.4f}  "
                      f"test_acc {acc:.4f}", flush=True)
        if rank == 0:
            print(f"done in {time.perf_counter() - start:.1f} s", flush=True)
    finally:
        cleanup()


def evaluate(model, loader):
    """(mean test loss, accuracy) over all ranks' shards."""
    model.eval()
    loss_sum, correct, total = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            out = model(x)
            loss_sum += F.nll_loss(out, y, reduction="sum").item()
            correct += int((out.argmax(1) == y).sum().item())
            total += len(y)
    model.train()
    stats = all_reduce_mean({"loss": loss_sum / max(total, 1), "acc": correct / max(total, 1)}, total)
    return stats["loss"], stats["acc"]


if __name__ == "__main__":
    main()
    sys.exit(0)
