"""VisionDataset: the base of the image datasets (root, transform, target_transform, repr)."""
from __future__ import annotations

import os
import sys

import numpy as np

from disttorch.utils.data import Dataset


class StandardTransform:
    """Applies ``transform`` to the input and ``target_transform`` to the target."""

    def __init__(self, transform=None, target_transform=None) -> None:
        self.transform = transform
        self.target_transform = target_transform

    def __call__(self, input, target):
        return _apply_each(self.transform, self.target_transform, input, target)

    def __repr__(self) -> str:
        body = [self.__class__.__name__]
        if self.transform is not None:
            body.append(_indent("Transform: ", repr(self.transform)))
        if self.target_transform is not None:
            body.append(_indent("Target transform: ", repr(self.target_transform)))
        return "\n".join(body)


def _apply_each(transform, target_transform, input, target):
    """``(transform(input), target_transform(target))``, each transform applied only when given."""
    if transform is not None:
        input = transform(input)
    if target_transform is not None:
        target = target_transform(target)
    return input, target


def _indent(head: str, text: str) -> str:
    lines = text.splitlines()
    return "\n".join([head + lines[0]] + [" " * len(head) + line for line in lines[1:]])


class VisionDataset(Dataset):
    """Base class: ``transforms`` (input and target together) or ``transform`` / ``target_transform``."""

    _repr_indent = 4

    def __init__(self, root=None, transforms=None, transform=None, target_transform=None) -> None:
        self.root = os.path.expanduser(os.fspath(root)) if root is not None else None
        has_transforms = transforms is not None
        has_separate = transform is not None or target_transform is not None
        if has_transforms and has_separate:
            raise ValueError("Only transforms or transform/target_transform can be passed as argument")
        self.transform = transform
        self.target_transform = target_transform
        self.transforms = StandardTransform(transform, target_transform) if has_separate else transforms

    def __len__(self) -> int:
        raise NotImplementedError

    def _transformed(self, input, target):
        """One sample through ``transform`` and ``target_transform`` as they are now (torchvision's
        datasets read the attributes at every access, so assigning ``ds.transform`` takes effect)."""
        return _apply_each(self.transform, self.target_transform, input, target)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        body = [f"Number of datapoints: {self.__len__()}"]
        if self.root is not None:
            body.append(f"Root location: {self.root}")
        body += self.extra_repr().splitlines()
        if self.transforms is not None:
            body += repr(self.transforms).splitlines()
        lines = [f"Dataset {self.__class__.__name__}"] + [" " * self._repr_indent + line for line in body]
        return "\n".join(lines)


def pillow_available() -> bool:
    if "PIL.Image" in sys.modules:
        return True
    try:
        import PIL.Image  # noqa: F401
    except ImportError:
        return False
    return True


def as_image(array: np.ndarray):
    """A sample image as torchvision returns it: a PIL image when Pillow is installed, otherwise the
    uint8 ``H x W (x C)`` array itself (which every transform, ``ToTensor`` included, accepts)."""
    if pillow_available():
        from PIL import Image

        return Image.fromarray(array)
    return array
