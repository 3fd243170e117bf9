"""The three kinds of image the transforms accept, and how each is viewed as planes.

* a disttorch Tensor: ``[..., C, H, W]`` (or ``[H, W]``), PyTorch's layout;
* a NumPy array: ``H x W`` or ``[..., H, W, C]``, the layout of PIL and of ``ToTensor``'s input;
* a PIL image (when Pillow is installed).

Every op works on "planes": an array whose last two axes are H and W (and, for colour ops, whose
third-last axis is C). ``to_planes`` gives that view without copying and ``from_planes`` turns
the result back into the caller's kind, so a transform returns what it was given.
"""
from __future__ import annotations

import sys

import numpy as np

from disttorch.utils.data import _arrays

TENSOR, ARRAY, PIL = "tensor", "array", "pil"


def is_pil_image(img) -> bool:
    # Never import Pillow just to ask: if it was not imported, img cannot be a PIL image.
    image_module = sys.modules.get("PIL.Image")
    return image_module is not None and isinstance(img, image_module.Image)


def pil_module():
    try:
        from PIL import Image
    except ImportError as error:
        raise ImportError("this operation needs Pillow: pip install pillow") from error
    return Image


def kind_of(img) -> str:
    if _arrays.is_tensor(img):
        return TENSOR
    if isinstance(img, np.ndarray):
        return ARRAY
    if is_pil_image(img):
        return PIL
    raise TypeError(f"img should be a disttorch Tensor, a NumPy array or a PIL Image. Got {type(img)}")


def to_planes(img):
    """(planes, kind, meta): ``planes`` views ``img`` with H, W as the last two axes."""
    kind = kind_of(img)
    if kind == TENSOR:
        planes = _arrays.array_of(img)
        if not isinstance(planes, np.ndarray):
            raise TypeError("vision transforms work on CPU tensors; move the tensor with .cpu() first")
        if planes.ndim < 2:
            raise TypeError(f"Tensor is not a torch image: expected at least 2 dimensions (..., H, W), "
                            f"got shape {tuple(planes.shape)}")
        return planes, kind, None
    if kind == ARRAY:
        if img.ndim < 2:
            raise TypeError(f"array is not an image: expected H x W or H x W x C, got shape {img.shape}")
        planes = img if img.ndim == 2 else np.moveaxis(img, -1, -3)
        return planes, kind, img.ndim
    array = np.asarray(img)
    planes = array if array.ndim == 2 else np.moveaxis(array, -1, -3)
    return planes, kind, img


def from_planes(planes: np.ndarray, kind: str, meta):
    """The result ``planes`` as the kind of image the caller passed in."""
    if kind == TENSOR:
        return _arrays.wrap(planes)
    array = planes if planes.ndim == 2 else np.moveaxis(planes, -3, -1)
    if kind == ARRAY:
        return array
    return array_to_pil(np.ascontiguousarray(array), like=meta)


def array_to_pil(array: np.ndarray, like=None):
    """An H x W (x C) array as a PIL image, keeping ``like``'s mode (and palette) when given."""
    Image = pil_module()
    if like is not None and like.mode == "1":
        array = array.astype(bool)
    image = Image.fromarray(array)
    if like is not None and like.mode == "P" and image.mode == "L":
        image.putpalette(like.getpalette())  # an "L" image with a palette becomes a "P" image again
    return image


def channels_first(planes: np.ndarray) -> np.ndarray:
    """``planes`` with an explicit channel axis (a lone H x W image is one channel)."""
    return planes[None] if planes.ndim == 2 else planes


def dimensions(img) -> list:
    """[channels, height, width] of an image of any kind."""
    planes, kind, _ = to_planes(img)
    channels = 1 if planes.ndim == 2 else planes.shape[-3]
    if kind == PIL:
        channels = len(img.getbands())
    return [int(channels), int(planes.shape[-2]), int(planes.shape[-1])]


def max_value(dtype: np.dtype) -> float:
    """The value meaning "full intensity": 1.0 for floats, the type's maximum for integers."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return 1.0
    if dtype.kind == "b":
        return 1
    return int(np.iinfo(dtype).max)
