"""vision.utils.make_grid and save_image against torchvision's values and PNG bytes."""
import io

import numpy as np
import pytest
from torchvision_reference import load_torchvision

import disttorch
from disttorch.vision.utils import make_grid, save_image

Image = pytest.importorskip("PIL.Image")
tv = load_torchvision()
needs_torchvision = pytest.mark.skipif(tv is None, reason="torchvision (and torch) not installed")

GRID_SETTINGS = [
    {},
    {"nrow": 2, "padding": 1},
    {"nrow": 3, "padding": 0, "pad_value": 0.25},
    {"normalize": True},
    {"normalize": True, "scale_each": True, "pad_value": 1.0},
    {"normalize": True, "value_range": (-1.0, 1.0), "nrow": 4, "padding": 3},
    {"normalize": True, "value_range": (-0.5, 0.5), "scale_each": True, "nrow": 1},
]


def images(shape, seed=0):
    return np.random.RandomState(seed).randn(*shape).astype(np.float32)


@needs_torchvision
@pytest.mark.parametrize("settings", GRID_SETTINGS, ids=lambda s: ",".join(map(str, s.items())))
@pytest.mark.parametrize("shape", [(5, 3, 7, 6), (4, 1, 5, 5), (3, 8, 8), (6, 4)])
def test_make_grid_equals_torchvision(shape, settings):
    import torch

    x = images(shape)
    expected = tv.utils.make_grid(torch.from_numpy(x), **settings).numpy()
    got = make_grid(disttorch.tensor(x), **settings)
    assert isinstance(got, disttorch.Tensor)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got.numpy(), expected)


@needs_torchvision
def test_make_grid_of_a_list_and_of_integers():
    import torch

    x = images((3, 3, 4, 5))
    expected = tv.utils.make_grid([torch.from_numpy(i) for i in x], nrow=2).numpy()
    np.testing.assert_array_equal(make_grid([disttorch.tensor(i) for i in x], nrow=2).numpy(),
                                  expected)
    u8 = (np.arange(2 * 3 * 4 * 4) % 256).astype(np.uint8).reshape(2, 3, 4, 4)
    expected = tv.utils.make_grid(torch.from_numpy(u8), pad_value=255).numpy()
    got = make_grid(disttorch.tensor(u8), pad_value=255)
    assert got.dtype is disttorch.uint8
    np.testing.assert_array_equal(got.numpy(), expected)


def test_make_grid_layout_without_reference():
    x = disttorch.arange(2 * 1 * 2 * 2, dtype=disttorch.float32).reshape(2, 1, 2, 2)
    grid = make_grid(x, nrow=2, padding=1, pad_value=-1)
    assert grid.shape == (3, 4, 7)  # 1 channel repeated to 3; 1 + 2 + 1 rows, 1 + 2 + 1 + 2 + 1 cols
    np.testing.assert_array_equal(grid[0].numpy(), [[-1, -1, -1, -1, -1, -1, -1],
                                                    [-1, 0, 1, -1, 4, 5, -1],
                                                    [-1, 2, 3, -1, 6, 7, -1],
                                                    [-1, -1, -1, -1, -1, -1, -1]])
    normalised = make_grid(x, normalize=True, padding=0)
    assert float(normalised.min()) == 0.0 and float(normalised.max()) == 1.0
    assert float(x.max()) == 7.0  # the caller's tensor is not rescaled in place


def test_make_grid_errors():
    with pytest.raises(TypeError, match="tensor or list of tensors expected, got "
                                        "<class 'numpy.ndarray'>"):
        make_grid(np.zeros((2, 3, 4, 4)))
    with pytest.raises(TypeError, match="tensor or list of tensors expected, got a list "
                                        "containing <class 'int'>"):
        make_grid([disttorch.zeros(3, 2, 2), 5])
    with pytest.raises(TypeError, match="value_range has to be a tuple"):
        make_grid(disttorch.zeros(2, 3, 2, 2), normalize=True, value_range=[0, 1])


@needs_torchvision
@pytest.mark.parametrize("settings", [{}, {"nrow": 3, "padding": 1, "normalize": True}])
def test_save_image_png_decodes_to_torchvisions_pixels(settings, tmp_path):
    import torch

    x = np.random.RandomState(3).rand(5, 3, 9, 7).astype(np.float32) * 1.2 - 0.1  # some clipped
    reference = io.BytesIO()
    tv.utils.save_image(torch.from_numpy(x), reference, format="png", **settings)
    path = tmp_path / "grid.png"
    save_image(disttorch.tensor(x), str(path), **settings)  # the format from the file name
    mine = Image.open(path)
    theirs = Image.open(io.BytesIO(reference.getvalue()))
    assert mine.format == "PNG" and mine.mode == theirs.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))
    assert path.read_bytes() == reference.getvalue()


def test_save_image_rounds_to_nearest_level(tmp_path):
    levels = disttorch.tensor([[[0.0, 0.5 / 255, 1.49 / 255, 1.51 / 255, 1.0, 2.0, -1.0]]])
    out = io.BytesIO()
    save_image(levels, out, format="png")
    pixels = np.asarray(Image.open(io.BytesIO(out.getvalue())))
    assert pixels.shape == (1, 7, 3)  # one grey image becomes RGB
    assert pixels[0, :, 0].tolist() == [0, 1, 1, 2, 255, 255, 0]
