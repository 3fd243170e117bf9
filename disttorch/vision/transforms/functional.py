"""torchvision.transforms.functional for disttorch: stateless image operations.

Each function accepts a disttorch Tensor ``[..., C, H, W]``, a NumPy array ``H x W (x C)`` or a
PIL image, and returns the same kind (see ``_image``). The maths runs on NumPy arrays directly:
transforms never need autograd, and it avoids a tensor op per step.
"""
from __future__ import annotations

import enum
import numbers
from typing import Sequence

import numpy as np

import disttorch
from disttorch.utils.data import _arrays

from . import _color, _geometry
from ._image import (ARRAY, PIL, TENSOR, channels_first, dimensions, from_planes, is_pil_image,
                     kind_of, max_value, pil_module, to_planes)


class InterpolationMode(enum.Enum):
    """How pixels are resampled; the values are torch.nn.functional.interpolate's mode names."""

    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


def _interpolation(mode) -> str:
    if isinstance(mode, InterpolationMode):
        return mode.value
    if isinstance(mode, str) and mode in {m.value for m in InterpolationMode}:
        return mode
    raise TypeError(f"Argument interpolation should be a InterpolationMode or a string "
                    f"('nearest', 'nearest-exact', 'bilinear', 'bicubic'), got {mode!r}")


_PIL_RESAMPLE = {"nearest": 0, "nearest-exact": 0, "bilinear": 2, "bicubic": 3}  # Image.Resampling


def get_dimensions(img) -> list:
    """[channels, height, width]."""
    return dimensions(img)


def get_image_size(img) -> list:
    """[width, height]."""
    _, height, width = dimensions(img)
    return [width, height]


def get_image_num_channels(img) -> int:
    return dimensions(img)[0]


# ---- conversions ------------------------------------------------------------------------------

def to_tensor(pic):
    """A PIL image or ``H x W (x C)`` array as a ``C x H x W`` tensor; uint8 is scaled to [0, 1].

    Other dtypes keep their values and type, as torchvision's ``to_tensor`` does.
    """
    if is_pil_image(pic):
        array = _pil_to_array(pic)
        if pic.mode == "1":
            array = 255 * array.astype(np.uint8)
    elif isinstance(pic, np.ndarray):
        if pic.ndim not in (2, 3):
            raise ValueError(f"pic should be 2/3 dimensional. Got {pic.ndim} dimensions.")
        array = pic
    else:
        raise TypeError(f"pic should be PIL Image or ndarray. Got {type(pic)}")
    if array.ndim == 2:
        array = array[:, :, None]
    chw = np.ascontiguousarray(array.transpose(2, 0, 1))
    if chw.dtype == np.uint8:
        dtype = disttorch.get_default_dtype().np
        # Same float32 rounding as torch's .to(float32).div(255).
        return _arrays.wrap(np.divide(chw, dtype.type(255), dtype=dtype))
    return _arrays.wrap(_supported(chw))


def pil_to_tensor(pic):
    """A PIL image as a ``C x H x W`` tensor of its own integer type (no scaling)."""
    if not is_pil_image(pic):
        raise TypeError(f"pic should be PIL Image. Got {type(pic)}")
    array = _pil_to_array(pic)
    if array.ndim == 2:
        array = array[:, :, None]
    return _arrays.wrap(_supported(np.ascontiguousarray(array.transpose(2, 0, 1))))


def _pil_to_array(pic) -> np.ndarray:
    if pic.mode == "I;16":
        return np.asarray(pic, dtype=np.int32)  # no uint16 tensors: widen losslessly
    return np.array(pic)


def _supported(array: np.ndarray) -> np.ndarray:
    """Widens NumPy types that have no tensor dtype (uint16, uint32) losslessly."""
    if array.dtype == np.uint16:
        return array.astype(np.int32)
    if array.dtype == np.uint32:
        return array.astype(np.int64)
    return array


def to_pil_image(pic, mode: str | None = None):
    """A ``C x H x W`` tensor or ``H x W (x C)`` array as a PIL image; floats are scaled by 255."""
    Image = pil_module()
    if _arrays.is_tensor(pic):
        array = _arrays.array_of(pic)
        if array.ndim == 2:
            array = array[None]
        if array.ndim != 3:
            raise ValueError(f"pic should be 2/3 dimensional. Got {array.ndim} dimensions.")
        if array.dtype.kind == "f" and mode != "F":
            array = (array * 255).astype(np.uint8)  # torchvision: pic.mul(255).byte()
        array = array.transpose(1, 2, 0)
    elif isinstance(pic, np.ndarray):
        if pic.ndim not in (2, 3):
            raise ValueError(f"pic should be 2/3 dimensional. Got {pic.ndim} dimensions.")
        array = pic if pic.ndim == 3 else pic[:, :, None]
    else:
        raise TypeError(f"pic should be Tensor or ndarray. Got {type(pic)}.")
    channels = array.shape[-1]
    if channels > 4:
        raise ValueError(f"pic should not have > 4 channels. Got {channels} channels.")
    if channels == 1:
        array = array[:, :, 0]
        expected = {np.dtype(np.uint8): "L", np.dtype(np.int16): "I;16", np.dtype(np.int32): "I",
                    np.dtype(np.float32): "F"}.get(array.dtype)
        if mode is not None and expected is not None and mode != expected:
            raise ValueError(f"Incorrect mode ({mode}) supplied for input type {array.dtype}. Should be {expected}")
        mode = mode or expected
        if mode is None:
            raise TypeError(f"Input type {array.dtype} is not supported")
        if array.dtype == np.int16:
            array = array.astype("<u2")
    else:
        allowed = {2: ["LA"], 3: ["RGB", "YCbCr", "HSV"], 4: ["RGBA", "CMYK", "RGBX"]}[channels]
        if mode is not None and mode not in allowed:
            raise ValueError(f"Only modes {allowed} are supported for {channels}D inputs")
        mode = mode or allowed[0]
        if array.dtype != np.uint8:
            raise TypeError(f"Input type {array.dtype} is not supported")
    array = np.ascontiguousarray(array)
    image = Image.fromarray(array)
    if image.mode != mode:
        # Same bytes, another interpretation (YCbCr, HSV, CMYK ...): rebuild rather than convert.
        image = Image.frombytes(mode, (array.shape[1], array.shape[0]), array.tobytes())
    return image


def convert_image_dtype(image, dtype=None):
    """Converts a tensor image to ``dtype``, rescaling values (e.g. uint8 255 -> float 1.0)."""
    dtype = disttorch.float32 if dtype is None else disttorch._dtype.as_dtype(dtype)
    kind = kind_of(image)
    array = _arrays.array_of(image) if kind == TENSOR else np.asarray(image)
    src, dst = array.dtype, dtype.np
    if src == dst:
        return image
    if src.kind == "f":
        if dst.kind == "f":
            out = array.astype(dst)
        else:
            if (src == np.float32 and dst in (np.int32, np.int64)) or (src == np.float64 and dst == np.int64):
                raise RuntimeError(f"The cast from {disttorch._dtype.from_numpy_dtype(src)} to {dtype} "
                                   f"cannot be performed safely.")
            # Scale by max+1-eps so that 1.0 maps to max and the bins stay equal-sized.
            eps = 1e-3
            out = (array * (max_value(dst) + 1.0 - eps)).astype(dst)
    elif dst.kind == "f":
        out = array.astype(dst) / dst.type(max_value(src))
    else:
        src_max, dst_max = max_value(src), max_value(dst)
        if src_max > dst_max:
            factor = (src_max + 1) // (dst_max + 1)
            out = (array // factor).astype(dst)
        else:
            factor = (dst_max + 1) // (src_max + 1)
            out = array.astype(dst) * dst.type(factor)
    return _arrays.wrap(out) if kind == TENSOR else out


def normalize(tensor, mean: Sequence[float], std: Sequence[float], inplace: bool = False):
    """``(image - mean) / std`` per channel, in the image's own float type.

    Tensors are ``[..., C, H, W]``; NumPy arrays are channel-last ``H x W x C`` images.
    """
    kind = kind_of(tensor)
    if kind == PIL:
        raise TypeError(f"img should be Tensor Image. Got {type(tensor)}")
    array = _arrays.array_of(tensor) if kind == TENSOR else tensor
    if array.dtype.kind != "f":
        dtype_name = disttorch._dtype.from_numpy_dtype(array.dtype) if kind == TENSOR else array.dtype
        raise TypeError(f"Input tensor should be a float tensor. Got {dtype_name}.")
    if kind == TENSOR and array.ndim < 3:
        raise ValueError(f"Expected tensor to be a tensor image of size (..., C, H, W). Got "
                         f"tensor.size() = {tuple(array.shape)}")
    mean_a = np.asarray(mean, dtype=array.dtype)
    std_a = np.asarray(std, dtype=array.dtype)
    if (std_a == 0).any():
        raise ValueError(f"std evaluated to zero after conversion to {array.dtype}, leading to division by zero.")
    if kind == TENSOR:
        if mean_a.ndim == 1:
            mean_a = mean_a.reshape(-1, 1, 1)
        if std_a.ndim == 1:
            std_a = std_a.reshape(-1, 1, 1)
    if inplace:
        array -= mean_a
        array /= std_a
        return tensor
    out = (array - mean_a) / std_a
    return _arrays.wrap(out) if kind == TENSOR else out


# ---- geometry ---------------------------------------------------------------------------------

def hflip(img):
    """Mirrors left-right."""
    if is_pil_image(img):
        return img.transpose(pil_module().Transpose.FLIP_LEFT_RIGHT)
    planes, kind, meta = to_planes(img)
    return from_planes(np.ascontiguousarray(planes[..., ::-1]) if kind == TENSOR else planes[..., ::-1],
                       kind, meta)


def vflip(img):
    """Mirrors top-bottom."""
    if is_pil_image(img):
        return img.transpose(pil_module().Transpose.FLIP_TOP_BOTTOM)
    planes, kind, meta = to_planes(img)
    return from_planes(np.ascontiguousarray(planes[..., ::-1, :]) if kind == TENSOR else planes[..., ::-1, :],
                       kind, meta)


def crop(img, top: int, left: int, height: int, width: int):
    """The ``height x width`` box at (top, left); parts outside the image are zero."""
    if is_pil_image(img):
        return img.crop((left, top, left + width, top + height))
    planes, kind, meta = to_planes(img)
    return from_planes(_geometry.crop(planes, int(top), int(left), int(height), int(width)), kind, meta)


def _size_pair(size, name: str = "size") -> tuple:
    if isinstance(size, numbers.Number):
        return int(size), int(size)
    if isinstance(size, Sequence) and len(size) == 1:
        return int(size[0]), int(size[0])
    if isinstance(size, Sequence) and len(size) == 2:
        return int(size[0]), int(size[1])
    raise ValueError(f"Please provide only two dimensions (h, w) for {name}, got {size!r}.")


def center_crop(img, output_size):
    """The central ``output_size`` box, zero-padded first if the image is smaller."""
    crop_h, crop_w = _size_pair(output_size, "output_size")
    _, height, width = dimensions(img)
    if crop_w > width or crop_h > height:
        padding = [(crop_w - width) // 2 if crop_w > width else 0,
                   (crop_h - height) // 2 if crop_h > height else 0,
                   (crop_w - width + 1) // 2 if crop_w > width else 0,
                   (crop_h - height + 1) // 2 if crop_h > height else 0]
        img = pad(img, padding, fill=0)
        _, height, width = dimensions(img)
        if crop_w == width and crop_h == height:
            return img
    top = int(round((height - crop_h) / 2.0))
    left = int(round((width - crop_w) / 2.0))
    return crop(img, top, left, crop_h, crop_w)


def _resized_output_size(height: int, width: int, size, max_size):
    if isinstance(size, numbers.Number) or (isinstance(size, Sequence) and len(size) == 1):
        requested = int(size if isinstance(size, numbers.Number) else size[0])
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = requested, int(requested * long / short)
        if max_size is not None:
            if max_size <= requested:
                raise ValueError(f"max_size = {max_size} must be strictly greater than the requested size "
                                 f"for the smaller edge size = {size}")
            if new_long > max_size:
                new_short, new_long = int(max_size * new_short / new_long), max_size
        return (new_long, new_short) if width <= height else (new_short, new_long)
    if isinstance(size, Sequence) and len(size) == 2:
        if max_size is not None:
            raise ValueError("max_size should only be passed if size specifies the length of the smaller "
                             "edge, i.e. size should be an int or a sequence of length 1 in torchscript mode.")
        return int(size[0]), int(size[1])
    raise TypeError(f"Size should be int or sequence. Got {type(size)}" if not isinstance(size, Sequence)
                    else f"Size must be an int or a 1 or 2 element tuple/list, not a {len(size)} element tuple/list")


def resize(img, size, interpolation=InterpolationMode.BILINEAR, max_size=None, antialias: bool = True):
    """Resizes to ``size`` = (h, w), or matches the smaller edge to ``size`` when it is an int."""
    mode = _interpolation(interpolation)
    _, height, width = dimensions(img)
    out_h, out_w = _resized_output_size(height, width, size, max_size)
    if is_pil_image(img):
        if (out_h, out_w) == (height, width):
            return img
        return img.resize((out_w, out_h), _PIL_RESAMPLE[mode])
    planes, kind, meta = to_planes(img)
    return from_planes(_geometry.resize(planes, out_h, out_w, mode, bool(antialias)), kind, meta)


def resized_crop(img, top: int, left: int, height: int, width: int, size,
                 interpolation=InterpolationMode.BILINEAR, antialias: bool = True):
    return resize(crop(img, top, left, height, width), size, interpolation, antialias=antialias)


_PADDING_MODES = ("constant", "edge", "reflect", "symmetric")


def _padding_ltrb(padding) -> tuple:
    if isinstance(padding, numbers.Number) and not isinstance(padding, bool):
        p = int(padding)
        return p, p, p, p
    if not isinstance(padding, (tuple, list)):
        raise TypeError(f"Got inappropriate padding arg: {padding!r}")
    if len(padding) == 1:
        return (int(padding[0]),) * 4
    if len(padding) == 2:
        return int(padding[0]), int(padding[1]), int(padding[0]), int(padding[1])
    if len(padding) == 4:
        return tuple(int(p) for p in padding)
    raise ValueError(f"Padding must be an int or a 1, 2, or 4 element tuple, not a {len(padding)} element tuple")


def pad(img, padding, fill=0, padding_mode: str = "constant"):
    """Pads each border: ``padding`` is one int, (left/right, top/bottom) or (left, top, right, bottom)."""
    left, top, right, bottom = _padding_ltrb(padding)
    if padding_mode not in _PADDING_MODES:
        raise ValueError(f"Padding mode should be either constant, edge, reflect or symmetric, got {padding_mode!r}")
    if not isinstance(fill, (numbers.Number, tuple, list)):
        raise TypeError(f"Got inappropriate fill arg: {fill!r}")
    planes, kind, meta = to_planes(img)
    return from_planes(_geometry.pad(planes, left, top, right, bottom, fill, padding_mode), kind, meta)


def rotate(img, angle: float, interpolation=InterpolationMode.NEAREST, expand: bool = False,
           center=None, fill=None):
    """Rotates by ``angle`` degrees counter-clockwise about ``center`` (default: the image centre)."""
    mode = _interpolation(interpolation)
    if center is not None and (not isinstance(center, Sequence) or len(center) != 2):
        raise TypeError(f"Argument center should be a sequence of two numbers, got {center!r}")
    if is_pil_image(img):
        fillcolor = None
        if fill is not None:
            fillcolor = tuple(int(f) for f in fill) if isinstance(fill, (tuple, list)) else int(fill)
        return img.rotate(angle, resample=_PIL_RESAMPLE[mode], expand=expand, center=center, fillcolor=fillcolor)
    planes, kind, meta = to_planes(img)
    if kind == ARRAY and planes.ndim >= 3 and isinstance(fill, (tuple, list)):
        fill = list(fill)
    return from_planes(_geometry.rotate(planes, float(angle), mode, expand, center, fill), kind, meta)


# ---- colour -----------------------------------------------------------------------------------

def _color_op(img, op, *args):
    planes, kind, meta = to_planes(img)
    out = op(channels_first(planes), *args)
    if planes.ndim == 2:
        out = out[0]
    return from_planes(out, kind, meta)


def adjust_brightness(img, brightness_factor: float):
    """Multiplies intensities by ``brightness_factor`` (0 gives black, 1 the original)."""
    return _color_op(img, _color.adjust_brightness, brightness_factor)


def adjust_contrast(img, contrast_factor: float):
    """Blends with the mean grey level (0 gives a solid grey image, 1 the original)."""
    return _color_op(img, _color.adjust_contrast, contrast_factor)


def adjust_saturation(img, saturation_factor: float):
    """Blends with the greyscale image (0 gives greyscale, 1 the original)."""
    return _color_op(img, _color.adjust_saturation, saturation_factor)


def adjust_hue(img, hue_factor: float):
    """Shifts the hue channel by ``hue_factor`` of a full turn, in [-0.5, 0.5]."""
    return _color_op(img, _color.adjust_hue, hue_factor)


def rgb_to_grayscale(img, num_output_channels: int = 1):
    if num_output_channels not in (1, 3):
        raise ValueError(f"num_output_channels should be either 1 or 3, got {num_output_channels}")
    if is_pil_image(img):
        gray = img.convert("L")
        return gray if num_output_channels == 1 else pil_module().merge("RGB", [gray, gray, gray])
    return _color_op(img, _color.rgb_to_grayscale, num_output_channels)

