"""ImageNet-style training in the manner of PyTorch's imagenet example run with --dummy: a
torchvision ResNet, FakeData images through torchvision transforms, SGD with momentum and weight
decay, a step learning-rate schedule, top-1/top-5 accuracy meters, and a checkpoint saved with
torch.save and read back with torch.load. Small images and few classes keep it to seconds."""
import argparse
import os
import tempfile

import torch
import torch.nn as nn
import torchvision.datasets as datasets
import torchvision.models as models
import torchvision.transforms as transforms


class AverageMeter:
    def __init__(self):
        self.sum, self.count = 0.0, 0

    def update(self, value, n=1):
        self.sum += value * n
        self.count += n

    @property
    def avg(self):
        return self.sum / max(self.count, 1)


def accuracy(output, target, topk=(1,)):
    """Percentage of samples whose label is among the k highest scores, for each k in topk."""
    with torch.no_grad():
        maxk = max(topk)
        _, pred = output.topk(maxk, 1, True, True)
        correct = pred.t().eq(target.view(1, -1).expand_as(pred.t()))
        return [correct[:k].reshape(-1).float().sum(0, keepdim=True).mul_(100.0 / target.size(0)) for k in topk]


def main():
    parser = argparse.ArgumentParser(description="ImageNet-style training on dummy data")
    parser.add_argument("-a", "--arch", default="resnet18", choices=models.list_models())
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("-b", "--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    normalize = transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    train_dataset = datasets.FakeData(64, (3, 32, 32), 10, transforms.Compose([transforms.ToTensor(), normalize]))
    train_loader = torch.utils.data.DataLoader(train_dataset, batch_size=args.batch_size, shuffle=True)
    model = models.__dict__[args.arch](num_classes=10)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), args.lr, momentum=0.9, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.1)
    for epoch in range(args.epochs):
        model.train()
        losses, top1, top5 = AverageMeter(), AverageMeter(), AverageMeter()
        for images, target in train_loader:
            output = model(images)
            loss = criterion(output, target)
            acc1, acc5 = accuracy(output, target, topk=(1, 5))
            losses.update(loss.item(), images.size(0))
            top1.update(acc1[0].item(), images.size(0))
            top5.update(acc5[0].item(), images.size(0))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
        print(f"Epoch {epoch}: Loss {losses.avg:.4f} Acc@1 {top1.avg:.2f} Acc@5 {top5.avg:.2f}")
    path = os.path.join(tempfile.mkdtemp(), "checkpoint.pth.tar")
    torch.save({"epoch": args.epochs, "arch": args.arch, "state_dict": model.state_dict(),
                "optimizer": optimizer.state_dict()}, path)
    checkpoint = torch.load(path)
    restored = models.__dict__[checkpoint["arch"]](num_classes=10)
    restored.load_state_dict(checkpoint["state_dict"])
    restored.eval()
    model.eval()
    with torch.no_grad():
        images = torch.stack([train_dataset[i][0] for i in range(4)])
        same = torch.equal(restored(images), model(images))
    print(f"RESULT loss={losses.avg:.4f} top5={top5.avg:.2f} restored_equal={int(same)}")


if __name__ == "__main__":
    main()
