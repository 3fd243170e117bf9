"""Train a small CNN on scikit-learn's 8x8 digits with DistributedDataParallel.

    disttorch-run --nproc-per-node 2 examples/train_digits.py        # 2 ranks
    python examples/train_digits.py                                  # 1 process, no launcher
    disttorch-run --nproc-per-node 2 --max-restarts 3 examples/train_digits.py --resume

Each epoch: every rank trains on its DistributedSampler shard, DDP averages gradients, rank 0
writes a checkpoint (model, optimizer, scheduler, the data loader's position, every rank's RNG
streams including the augmentation generator) every ``--checkpoint-every`` steps and at the end of
the epoch, and a JSON line of metrics per epoch. After a launcher restart training continues from
the last checkpoint of this run (the step after it, not the start of the epoch), so it ends with
the weights an unbroken run ends with; a checkpoint left by an earlier run is used only with
``--resume``. Resuming with another number of ranks re-shards the rest of the epoch.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

import disttorch as torch
import disttorch.nn as nn
import disttorch.nn.functional as F
from disttorch.nn.parallel import DistributedDataParallel as DDP
from disttorch.training import Checkpointer, MetricsLogger, all_reduce_mean, cleanup, progress, seed_everything
from disttorch.training import setup_distributed
from disttorch.utils.data import DataLoader, DistributedSampler, TensorDataset


class DigitsCNN(nn.Module):
    """1x8x8 -> conv16 -> conv32 -> pool -> 512 -> 128 -> 10 logits."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 4 * 4, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


def load_digits_split(train: bool):
    """(images N x 1 x 8 x 8 float32 in [0, 1], labels int64) of disttorch's Digits split."""
    from disttorch.vision.datasets import Digits
    ds = Digits(train=train)
    return ds.data.numpy(), ds.targets.numpy()


def augment(images, rng):
    """Shifts each image by up to one pixel (per-rank RNG: ranks see different shifts)."""
    out = np.zeros_like(images)
    for i, (dy, dx) in enumerate(rng.integers(-1, 2, size=(len(images), 2))):
        out[i] = np.roll(images[i], (dy, dx), axis=(-2, -1))
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=32, help="per rank")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--augment", action="store_true", help="random one-pixel shifts")
    p.add_argument("--checkpoint", default="checkpoints/digits.pt")
    p.add_argument("--resume", action="store_true",
                   help="continue from --checkpoint if it exists, even one written by an earlier run")
    p.add_argument("--checkpoint-every", type=int, default=10, metavar="STEPS",
                   help="also checkpoint every STEPS steps within an epoch (0: at epoch ends only)")
    p.add_argument("--metrics", default="checkpoints/digits_metrics.jsonl")
    p.add_argument("--limit-train", type=int, default=0, help="use only the first N training samples")
    p.add_argument("--save-weights", default="", help="write final weights here (.npz)")
    p.add_argument("--crash-at", default="", help="EPOCH:STEP: exit abruptly there on the first attempt "
                                                   "(exercises --max-restarts)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    rank, world = setup_distributed()
    try:
        torch.set_num_threads(1)
        seed_everything(args.seed)                  # same initial weights everywhere
        model = DigitsCNN()
        ddp = DDP(model) if world > 1 else model
        opt = torch.optim.Adam(ddp.parameters(), lr=args.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
        seed_everything(args.seed, rank)            # per-rank stream for augmentation / dropout
        aug_rng = np.random.default_rng(np.random.randint(0, 2 ** 31))

        x_train, y_train = load_digits_split(True)
        if args.limit_train:
            x_train, y_train = x_train[:args.limit_train], y_train[:args.limit_train]
        x_test, y_test = load_digits_split(False)
        train_set = TensorDataset(torch.from_numpy(x_train), torch.from_numpy(y_train))
        test_set = TensorDataset(torch.from_numpy(x_test), torch.from_numpy(y_test))
        sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=args.seed)
        loader = DataLoader(train_set, batch_size=args.batch_size, sampler=sampler)
        test_loader = DataLoader(test_set, batch_size=256,
                                 sampler=DistributedSampler(test_set, num_replicas=world, rank=rank, shuffle=False))

        ckpt = Checkpointer(args.checkpoint, ddp, opt, sched, sampler, generators={"augment": aug_rng},
                            loader=loader)
        restarts = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
        # This run's own checkpoint is always taken up: after a launcher restart, and after an
        # elastic group re-forms with more or fewer nodes (the restart count stays the same then,
        # as in torchelastic). A checkpoint left by an earlier run only with --resume.
        start_epoch, partial = ckpt.resume(require_same_run=not args.resume)
        if rank == 0 and ckpt.resumed_from is not None:
            print(f"resumed from {args.checkpoint} at epoch {start_epoch} step {ckpt.start_step} "
                  f"(restart {restarts}, {world} rank{'s' if world > 1 else ''})", flush=True)
        if ckpt.resumed_from is None and rank == 0 and args.metrics and os.path.exists(args.metrics):
            os.unlink(args.metrics)  # a fresh run starts a fresh metrics file
        if rank == 0 and restarts == 0 and ckpt.resumed_from is None:
            every = f"every {args.checkpoint_every} steps and " if args.checkpoint_every else ""
            print(f"checkpoints: {os.path.abspath(args.checkpoint)} ({every}each epoch); metrics: "
                  f"{os.path.abspath(args.metrics) if args.metrics else 'not written'}", flush=True)
        logger = MetricsLogger(args.metrics, rank)
        crash_epoch, crash_step = (int(v) for v in args.crash_at.split(":")) if args.crash_at else (-1, -1)

        for epoch in range(start_epoch, args.epochs):
            sampler.set_epoch(epoch)
            ddp.train()
            first_step = ckpt.start_step if epoch == start_epoch else 0
            # A resumed epoch's loss counts the steps before the checkpoint as well.
            loss_sum, seen = partial.get("loss_sum", 0.0), partial.get("seen", 0)
            for step, (x, y) in enumerate(progress(loader, desc=f"epoch {epoch}"), start=first_step):
                if epoch == crash_epoch and step == crash_step and restarts == 0:
                    print(f"rank {rank}: simulated crash at epoch {epoch} step {step}", flush=True)
                    os._exit(17)
                if args.augment:
                    x = torch.from_numpy(augment(x.numpy(), aug_rng))
                opt.zero_grad()
                loss = F.cross_entropy(ddp(x), y)
                loss.backward()
                opt.step()
                loss_sum += loss.item() * len(y)
                seen += len(y)
                if args.checkpoint_every and (step + 1) % args.checkpoint_every == 0:
                    ckpt.save(epoch, step=step + 1, loss_sum=loss_sum, seen=seen)
            partial = {}
            sched.step()
            acc = evaluate(ddp, test_loader)
            stats = all_reduce_mean({"train_loss": loss_sum / max(seen, 1)}, seen)
            ckpt.save(epoch)
            record = logger.log(epoch=epoch, train_loss=round(stats["train_loss"], 5), test_acc=round(acc, 5),
                                lr=opt.param_groups[0]["lr"])
            if rank == 0:
                print(f"epoch {epoch:2d}  train_loss {record['train_loss']:.4f}  test_acc {acc:.4f}", flush=True)

        acc = evaluate(ddp, test_loader)
        if rank == 0:
            print(f"final test accuracy {acc:.4f} ({world} rank{'s' if world > 1 else ''}, "
                  f"{time.perf_counter() - start:.1f} s)", flush=True)
            if args.save_weights:
                np.savez(args.save_weights, **{k: v.numpy() for k, v in model.state_dict().items()})
        return acc
    finally:
        cleanup()


def evaluate(model, loader):
    """Test accuracy over all ranks' shards."""
    model.eval()
    correct, total = 0, 0
    with torch.no_grad():
        for x, y in loader:
            correct += int((model(x).argmax(1) == y).sum().item())
            total += len(y)
    model.train()
    return all_reduce_mean({"acc": correct / max(total, 1)}, total)["acc"]


if __name__ == "__main__":
    main()
    sys.exit(0)
