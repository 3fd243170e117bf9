"""Digits: the 8 x 8 handwritten digits that ship with scikit-learn, the examples' offline dataset."""
from __future__ import annotations

import numpy as np

from disttorch.utils.data import _arrays

from .vision import VisionDataset

_TEST_EVERY = 5  # every 5th sample is held out: 1437 train / 360 test, all ten digits in both


class Digits(VisionDataset):
    """The 1797 UCI handwritten digits bundled with scikit-learn (no download needed).

    Samples are ``(image, label)``: ``image`` a ``1 x 8 x 8`` float32 tensor in [0, 1] (the raw
    pixel counts 0..16 divided by 16) and ``label`` an int 0..9. The split is deterministic:
    samples whose index is a multiple of 5 form the test set (``train=False``, 360 samples), the
    rest the training set (1437). ``data`` is the ``N x 1 x 8 x 8`` tensor and ``targets`` an
    int64 tensor. ``root`` is accepted for symmetry with the other datasets and ignored.

    Needs scikit-learn (``pip install scikit-learn``).
    """

    classes = [str(d) for d in range(10)]

    def __init__(self, root=None, train: bool = True, transform=None, target_transform=None) -> None:
        super().__init__(root, transform=transform, target_transform=target_transform)
        try:
            from sklearn.datasets import load_digits
        except ImportError as error:
            raise ImportError("disttorch.vision.datasets.Digits needs scikit-learn, which ships the "
                              "digits: pip install scikit-learn") from error
        bunch = load_digits()
        images = (bunch.images.astype(np.float32) / np.float32(16.0))[:, None]  # N x 1 x 8 x 8
        labels = bunch.target.astype(np.int64)
        held_out = np.arange(len(labels)) % _TEST_EVERY == 0
        keep = ~held_out if train else held_out
        self.train = train
        self.data = _arrays.wrap(np.ascontiguousarray(images[keep]))
        self.targets = _arrays.wrap(np.ascontiguousarray(labels[keep]))

    def __getitem__(self, index: int):
        img = _arrays.wrap(_arrays.array_of(self.data)[index].copy())
        target = int(_arrays.array_of(self.targets)[index])
        return self._transformed(img, target)

    def __len__(self) -> int:
        return len(_arrays.array_of(self.data))

    def extra_repr(self) -> str:
        return f"Split: {'Train' if self.train is True else 'Test'}"
