"""Super-resolution by sub-pixel convolution in the manner of PyTorch's super_resolution example
(Shi et al., 2016): convs on the low-resolution image, then nn.PixelShuffle rearranges channels
into an upscale_factor times larger image. The low-resolution inputs are scikit-learn's 8x8
digits average-pooled to 4x4; the targets are the 8x8 originals."""
import argparse
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset


class Net(nn.Module):
    def __init__(self, upscale_factor):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5, 1, 2)
        self.conv2 = nn.Conv2d(32, 32, 3, 1, 1)
        self.conv3 = nn.Conv2d(32, upscale_factor ** 2, 3, 1, 1)
        self.pixel_shuffle = nn.PixelShuffle(upscale_factor)

    def forward(self, x):
        x = torch.tanh(self.conv1(x))
        x = torch.tanh(self.conv2(x))
        return torch.sigmoid(self.pixel_shuffle(self.conv3(x)))


def main():
    parser = argparse.ArgumentParser(description="digits super-resolution")
    parser.add_argument("--upscale-factor", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    high = torch.tensor(load_digits().images, dtype=torch.float32).unsqueeze(1) / 16.0
    low = F.avg_pool2d(high, args.upscale_factor)
    train_loader = DataLoader(TensorDataset(low[:1500], high[:1500]), batch_size=32, shuffle=True)
    test_loader = DataLoader(TensorDataset(low[1500:], high[1500:]), batch_size=100)
    model = Net(args.upscale_factor)
    criterion = nn.MSELoss()
    optimizer = optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(1, args.epochs + 1):
        epoch_loss = 0.0
        for inputs, targets in train_loader:
            optimizer.zero_grad()
            loss = criterion(model(inputs), targets)
            loss.backward()
            optimizer.step()
            epoch_loss += loss.item()
        psnr = 0.0
        with torch.no_grad():
            for inputs, targets in test_loader:
                mse = criterion(model(inputs), targets).item()
                psnr += 10 * math.log10(1 / mse)
        psnr /= len(test_loader)
        print(f"epoch {epoch}: loss {epoch_loss / len(train_loader):.5f}, test PSNR {psnr:.3f} dB")
    # The baseline: nearest-neighbour upsampling of the low-resolution test images.
    nearest = F.interpolate(low[1500:], scale_factor=args.upscale_factor, mode="nearest")
    baseline = 10 * math.log10(1 / F.mse_loss(nearest, high[1500:]).item())
    print(f"RESULT loss={epoch_loss / len(train_loader):.5f} psnr={psnr:.3f} nearest_psnr={baseline:.3f}")


if __name__ == "__main__":
    main()
