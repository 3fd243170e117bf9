"""FakeData: random images for smoke tests and benchmarks, identical on every call and machine."""
from __future__ import annotations

import numpy as np

from .vision import VisionDataset, as_image


class FakeData(VisionDataset):
    """``size`` random images of ``image_size`` = (C, H, W) with labels in ``[0, num_classes)``.

    Sample ``i`` is drawn from its own generator seeded with ``i + random_offset``, so it does not
    depend on (or disturb) any global random state and is the same in every worker process. Images
    are uint8 ``H x W x C`` data returned as PIL images when Pillow is installed (1, 3 or 4
    channels), else as arrays.
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
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"{self.__class__.__name__} index out of range (index {index}, size {self.size})")
        rng = np.random.default_rng(index + self.random_offset)
        channels, height, width = self.image_size
        pixels = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
        target = int(rng.integers(0, self.num_classes))
        img = as_image(pixels[:, :, 0] if channels == 1 else pixels) if channels in (1, 3, 4) else pixels
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    def __len__(self) -> int:
        return self.size
