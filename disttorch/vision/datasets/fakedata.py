"""FakeData: random images for smoke tests and benchmarks, identical on every call and machine."""
from __future__ import annotations

import numpy as np

from .vision import VisionDataset, as_image


class FakeData(VisionDataset):
    """``size`` random images of ``image_size`` = (C, H, W) with labels in ``[0, num_classes)``.

    Sample ``i`` is drawn as torchvision draws it, from a generator seeded with ``i + random_offset``
    (so it neither depends on nor disturbs the global random state and is the same in every worker):
    a ``randn(C, H, W)`` image, then a ``randint(0, num_classes, (1,))`` label. The image becomes
    uint8 as ToPILImage converts a float tensor: times 255, truncated toward zero, wrapped modulo
    256. With disttorch's streams equal to PyTorch's, images and labels equal torchvision's. Images
    are ``H x W x C`` data returned as PIL images when Pillow is installed (1, 3 or 4 channels),
    else as arrays.
    """

    def __init__(self, size: int = 1000, image_size=(3, 224, 224), num_classes: int = 10, transform=None,
                 target_transform=None, random_offset: int = 0) -> None:
        super().__init__(None, transform=transform, target_transform=target_transform)
        if size < 0:
            raise ValueError(f"size should be non-negative, got {size}")
        if len(image_size) != 3:
            raise ValueError(f"image_size should be (C, H, W), got {image_size!r}")
        self.size = size
        self.num_classes = num_classes
        self.image_size = tuple(image_size)
        self.random_offset = random_offset

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.__class__.__name__} index out of range (index {index}, size {self.size})")
        from ... import Generator, int64, randint, randn

        generator = Generator()
        # torchvision seeds with the index as given, so ds[-1] is not ds[len - 1]; kept for parity.
        generator.manual_seed(index + self.random_offset)
        channels, height, width = self.image_size
        noise = randn(channels, height, width, generator=generator).numpy()
        target = int(randint(0, self.num_classes, (1,), dtype=int64, generator=generator)[0])
        # float -> uint8 as PyTorch's .byte() does on CPU: truncate, then keep the low 8 bits.
        scaled = noise * np.float32(255)
        pixels = np.ascontiguousarray(scaled.astype(np.int64).astype(np.uint8).transpose(1, 2, 0))
        img = as_image(pixels[:, :, 0] if channels == 1 else pixels) if channels in (1, 3, 4) else pixels
        return self._transformed(img, target)

    def __len__(self) -> int:
        return self.size
