"""Hogwild training in the manner of PyTorch's mnist_hogwild example (Recht et al., 2011): the
model's parameters are put in shared memory, several torch.multiprocessing processes each run
SGD on them without locks, and the parent tests the result. Data: scikit-learn's 8x8 digits."""
import argparse

import torch
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        return F.log_softmax(self.fc2(F.relu(self.fc1(x.view(-1, 64)))), dim=1)


def digits():
    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    return TensorDataset(x[:1400], y[:1400]), TensorDataset(x[1400:], y[1400:])


def train(rank, args, model, dataset):
    torch.manual_seed(args.seed + rank)
    torch.set_num_threads(1)
    loader = DataLoader(dataset, batch_size=32, shuffle=True)
    optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=0.5)
    model.train()
    for _ in range(args.epochs):
        for data, target in loader:
            optimizer.zero_grad()
            F.nll_loss(model(data), target).backward()
            optimizer.step()


def main():
    parser = argparse.ArgumentParser(description="Hogwild on digits")
    parser.add_argument("--num-processes", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    train_set, test_set = digits()
    model = Net()
    model.share_memory()  # gradients are allocated per process; parameters are shared
    before = model.fc2.weight.detach().clone()
    processes = []
    for rank in range(args.num_processes):
        p = mp.Process(target=train, args=(rank, args, model, train_set))
        p.start()
        processes.append(p)
    for p in processes:
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"worker exited with {p.exitcode}")
    moved = (model.fc2.weight.detach() - before).abs().max().item()
    model.eval()
    test_loss, correct = 0.0, 0
    with torch.no_grad():
        for data, target in DataLoader(test_set, batch_size=200):
            output = model(data)
            test_loss += F.nll_loss(output, target, reduction="sum").item()
            correct += output.argmax(1).eq(target).sum().item()
    n = len(test_set)
    print(f"Test set: average loss {test_loss / n:.4f}, accuracy {correct}/{n}")
    print(f"RESULT test_loss={test_loss / n:.4f} accuracy={correct / n:.4f} shared_updates={int(moved > 0)}")


if __name__ == "__main__":
    main()
