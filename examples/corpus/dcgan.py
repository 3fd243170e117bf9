"""A DCGAN in the manner of PyTorch's DCGAN example (Radford et al.): transposed-conv generator,
strided-conv discriminator, batch norm, LeakyReLU, BCE, Adam with beta1 = 0.5, weights drawn
from N(0, 0.02). The "dataset" is 16x16 images of random bright discs on a dark background."""
import argparse

import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import DataLoader, TensorDataset

NZ, NGF, NDF = 16, 16, 16


def discs(count, size=16):
    """Images in [-1, 1]: a disc of random centre and radius on a dark background."""
    coords = torch.arange(size, dtype=torch.float32)
    ys, xs = torch.meshgrid(coords, coords, indexing="ij")
    centres = torch.rand(count, 2) * (size - 6) + 3
    radii = torch.rand(count) * 3 + 2
    dist = ((ys - centres[:, 0].view(-1, 1, 1)) ** 2 + (xs - centres[:, 1].view(-1, 1, 1)) ** 2).sqrt()
    return ((dist < radii.view(-1, 1, 1)).float() * 2 - 1).unsqueeze(1)


def weights_init(m):
    name = m.__class__.__name__
    if name.find("Conv") != -1:
        nn.init.normal_(m.weight.data, 0.0, 0.02)
    elif name.find("BatchNorm") != -1:
        nn.init.normal_(m.weight.data, 1.0, 0.02)
        nn.init.constant_(m.bias.data, 0)


class Generator(nn.Module):
    def __init__(self):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(NZ, NGF * 4, 4, 1, 0, bias=False), nn.BatchNorm2d(NGF * 4), nn.ReLU(True),
            nn.ConvTranspose2d(NGF * 4, NGF * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(NGF * 2), nn.ReLU(True),
            nn.ConvTranspose2d(NGF * 2, 1, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, z):
        return self.main(z)


class Discriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(1, NDF, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(NDF, NDF * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(NDF * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(NDF * 2, 1, 4, 1, 0, bias=False), nn.Sigmoid())

    def forward(self, x):
        return self.main(x).view(-1, 1).squeeze(1)


def main():
    parser = argparse.ArgumentParser(description="tiny DCGAN")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    loader = DataLoader(TensorDataset(discs(512)), batch_size=args.batch_size, shuffle=True)
    netG, netD = Generator(), Discriminator()
    netG.apply(weights_init)
    netD.apply(weights_init)
    criterion = nn.BCELoss()
    fixed_noise = torch.randn(16, NZ, 1, 1)
    optimizerD = optim.Adam(netD.parameters(), lr=2e-3, betas=(0.5, 0.999))
    optimizerG = optim.Adam(netG.parameters(), lr=2e-3, betas=(0.5, 0.999))
    for epoch in range(args.epochs):
        sums = {"d": 0.0, "g": 0.0, "dx": 0.0}
        for (real,) in loader:
            b = real.size(0)
            netD.zero_grad()
            errD_real = criterion(netD(real), torch.full((b,), 1.0))
            errD_real.backward()
            fake = netG(torch.randn(b, NZ, 1, 1))
            output = netD(fake.detach())
            errD_fake = criterion(output, torch.full((b,), 0.0))
            errD_fake.backward()
            optimizerD.step()
            netG.zero_grad()
            errG = criterion(netD(fake), torch.full((b,), 1.0))
            errG.backward()
            optimizerG.step()
            sums["d"] += (errD_real + errD_fake).item()
            sums["g"] += errG.item()
            sums["dx"] += netD(real).mean().item()
        n = len(loader)
        print(f"[{epoch + 1}/{args.epochs}] Loss_D: {sums['d'] / n:.4f} Loss_G: {sums['g'] / n:.4f} "
              f"D(x): {sums['dx'] / n:.4f}")
    with torch.no_grad():
        fake = netG(fixed_noise)
    # How disc-like the samples are: the share of pixels that are clearly dark or bright.
    decided = (fake.abs() > 0.5).float().mean().item()
    print(f"RESULT loss_d={sums['d'] / n:.4f} loss_g={sums['g'] / n:.4f} decided={decided:.4f}")


if __name__ == "__main__":
    main()
