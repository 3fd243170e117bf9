"""torchvision.utils' role: tile a batch of images into one grid, and save it as an image file."""
import math

import disttorch

__all__ = ["make_grid", "save_image"]


def _as_batch(tensor):
    """Images as one (B, C, H, W) tensor; single images and 1-channel images become RGB."""
    if isinstance(tensor, list):
        for t in tensor:
            if not disttorch.is_tensor(t):
                raise TypeError(f"tensor or list of tensors expected, got a list containing {type(t)}")
        tensor = disttorch.stack(tensor, dim=0)
    elif not disttorch.is_tensor(tensor):
        raise TypeError(f"tensor or list of tensors expected, got {type(tensor)}")
    if tensor.dim() == 2:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() == 3:
        if tensor.size(0) == 1:
            tensor = disttorch.cat((tensor, tensor, tensor), 0)
        tensor = tensor.unsqueeze(0)
    if tensor.dim() == 4 and tensor.size(1) == 1:
        tensor = disttorch.cat((tensor, tensor, tensor), 1)
    if tensor.dim() != 4:
        raise ValueError(f"make_grid expects images of 2, 3 or 4 dimensions, got {tensor.dim()}")
    return tensor


def _rescale_(images, value_range):
    """Maps [low, high] (given, or the images' own min and max) onto [0, 1] in place."""
    low, high = value_range if value_range is not None else (float(images.min()),
                                                            float(images.max()))
    images.clamp_(min=low, max=high)
    # 1e-5 keeps a constant image finite instead of dividing by zero.
    images.sub_(low).div_(max(high - low, 1e-5))


@disttorch.no_grad()
def make_grid(tensor, nrow=8, padding=2, normalize=False, value_range=None, scale_each=False,
              pad_value=0.0):
    """Tiles images into a grid, ``nrow`` per row, with ``padding`` pixels of ``pad_value``.

    Args:
        tensor: a (B, C, H, W) batch, a list of (C, H, W) images, one (C, H, W) or (H, W) image.
            One-channel images are repeated to three channels.
        normalize: shift to [0, 1] by ``value_range`` (a (min, max) tuple), by default the
            images' min and max; ``scale_each`` does it image by image.

    Returns:
        a (C, rows * (H + padding) + padding, cols * (W + padding) + padding) tensor, or the
        single image itself when the batch holds one.
    """
    tensor = _as_batch(tensor)
    if normalize is True:
        tensor = tensor.clone()  # the caller's images stay as they are
        if value_range is not None and not isinstance(value_range, tuple):
            raise TypeError("value_range has to be a tuple (min, max) if specified. "
                            "min and max are numbers")
        if scale_each is True:
            for image in tensor:
                _rescale_(image, value_range)
        else:
            _rescale_(tensor, value_range)
    if tensor.size(0) == 1:
        return tensor.squeeze(0)
    count, channels, height, width = tensor.shape
    cols = min(nrow, count)
    rows = math.ceil(count / cols)
    cell_h, cell_w = height + padding, width + padding
    grid = tensor.new_full((channels, cell_h * rows + padding, cell_w * cols + padding), pad_value)
    for k in range(count):
        y, x = divmod(k, cols)
        top, left = y * cell_h + padding, x * cell_w + padding
        grid[:, top:top + cell_h - padding, left:left + cell_w - padding] = tensor[k]
    return grid


@disttorch.no_grad()
def save_image(tensor, fp, format=None, **kwargs):
    """Saves images (values in [0, 1]) as one image file through Pillow, tiled by
    :func:`make_grid` (``kwargs`` go to it). ``format`` is needed when ``fp`` is a file object;
    otherwise the file name's extension picks it."""
    try:
        from PIL import Image
    except ImportError as e:
        raise ImportError("save_image needs Pillow: pip install pillow") from e
    grid = make_grid(tensor, **kwargs)
    # +0.5 before the cast to uint8 rounds to the nearest level, as torchvision does.
    pixels = grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to("cpu", disttorch.uint8)
    Image.fromarray(pixels.numpy()).save(fp, format=format)
