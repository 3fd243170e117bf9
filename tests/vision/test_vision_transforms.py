"""vision.transforms on tensors, NumPy arrays and PIL images."""
import colorsys

import numpy as np
import pytest

import disttorch
from disttorch.vision import transforms as T
from disttorch.vision.transforms import functional as F

Image = pytest.importorskip("PIL.Image")


def gradient(h=6, w=8, c=3):
    """A uint8 H x W x C image whose pixels are all different."""
    return (np.arange(h * w * c).reshape(h, w, c) * 5 % 256).astype(np.uint8)


def test_to_tensor_array_and_pil():
    img = gradient()
    t = T.ToTensor()(img)
    assert isinstance(t, disttorch.Tensor) and t.dtype is disttorch.float32 and t.shape == (3, 6, 8)
    np.testing.assert_array_equal(t.numpy(), img.transpose(2, 0, 1).astype(np.float32) / np.float32(255))
    from_pil = T.ToTensor()(Image.fromarray(img))
    np.testing.assert_array_equal(from_pil.numpy(), t.numpy())
    grey = T.ToTensor()(np.full((2, 3), 51, np.uint8))
    assert grey.shape == (1, 2, 3) and np.allclose(grey.numpy(), 0.2)
    floats = T.ToTensor()(np.ones((2, 2, 1), np.float64) * 3)
    assert floats.dtype is disttorch.float64 and floats.numpy().max() == 3.0  # non-uint8 is not scaled


def test_to_tensor_errors():
    with pytest.raises(ValueError, match="pic should be 2/3 dimensional. Got 4 dimensions."):
        T.ToTensor()(np.zeros((1, 2, 2, 1), np.uint8))
    with pytest.raises(TypeError, match="pic should be PIL Image or ndarray"):
        T.ToTensor()([1, 2, 3])


def test_pil_to_tensor_and_back():
    img = gradient()
    t = T.PILToTensor()(Image.fromarray(img))
    assert t.dtype is disttorch.uint8 and t.numpy().tolist() == img.transpose(2, 0, 1).tolist()
    back = T.ToPILImage()(T.ToTensor()(img))
    assert back.mode == "RGB" and np.array_equal(np.asarray(back), img)
    assert T.ToPILImage()(np.zeros((2, 2), np.uint8)).mode == "L"


def test_convert_image_dtype():
    t = disttorch.tensor([[[0, 128, 255]]], dtype=disttorch.uint8)
    f = T.ConvertImageDtype(disttorch.float32)(t)
    assert f.dtype is disttorch.float32 and np.allclose(f.numpy(), [[[0, 128 / 255, 1.0]]])
    back = F.convert_image_dtype(disttorch.tensor([[[0.0, 0.5, 1.0]]]), disttorch.uint8)
    assert back.numpy().tolist() == [[[0, 127, 255]]]
    with pytest.raises(RuntimeError, match="The cast from disttorch.float32 to disttorch.int64 cannot be performed safely"):
        F.convert_image_dtype(disttorch.tensor([[[0.5]]]), disttorch.int64)


def test_normalize():
    t = disttorch.tensor(np.arange(12, dtype=np.float32).reshape(3, 2, 2))
    out = T.Normalize(mean=[0.0, 4.0, 8.0], std=[1.0, 2.0, 4.0])(t).numpy()
    assert out[:, 0, 0].tolist() == [0.0, 0.0, 0.0] and out[:, 1, 1].tolist() == [3.0, 1.5, 0.75]
    assert t.numpy()[1, 0, 0] == 4.0  # not in place by default
    T.Normalize([1.0], [1.0], inplace=True)(t)
    assert t.numpy()[0, 0, 0] == -1.0
    with pytest.raises(TypeError, match="Input tensor should be a float tensor. Got disttorch.uint8."):
        T.Normalize([0.5], [0.5])(disttorch.zeros(1, 2, 2, dtype=disttorch.uint8))
    with pytest.raises(ValueError, match="std evaluated to zero"):
        T.Normalize([0.5], [0.0])(disttorch.zeros(1, 2, 2))
    batch = T.Normalize([0.5], [0.5])(disttorch.ones(4, 1, 2, 2))  # [N, C, H, W] works too
    assert batch.shape == (4, 1, 2, 2) and np.all(batch.numpy() == 1.0)


def test_resize_matches_torch_interpolate():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).random((3, 20, 30)).astype(np.float32)
    for mode, antialias in [("bilinear", True), ("bilinear", False), ("bicubic", True), ("nearest", False)]:
        ours = F.resize(disttorch.from_numpy(x), [9, 14], F.InterpolationMode(mode), antialias=antialias).numpy()
        kwargs = {} if mode == "nearest" else {"align_corners": False, "antialias": antialias}
        ref = torch.nn.functional.interpolate(torch.from_numpy(x)[None], size=(9, 14), mode=mode, **kwargs)[0].numpy()
        np.testing.assert_allclose(ours, ref, atol=2e-6)


def test_resize_smaller_edge_and_kinds():
    img = gradient(10, 20)
    assert F.get_image_size(T.Resize(5)(img)) == [10, 5]
    t = T.Resize((4, 6))(T.ToTensor()(img))
    assert t.shape == (3, 4, 6)
    pil = T.Resize(5)(Image.fromarray(img))
    assert pil.size == (10, 5)
    resized = T.Resize(5)(img)
    assert resized.dtype == np.uint8 and resized.shape == (5, 10, 3)
    with pytest.raises(ValueError, match="max_size = 4 must be strictly greater"):
        T.Resize(5, max_size=4)(img)


def test_center_crop():
    img = np.arange(36, dtype=np.uint8).reshape(6, 6)
    assert T.CenterCrop(2)(img).tolist() == [[14, 15], [20, 21]]
    padded = T.CenterCrop((8, 8))(img)
    assert padded.shape == (8, 8) and padded[0].sum() == 0 and padded[1, 1] == 0 and padded[1:7, 1:7].tolist() == img.tolist()
    t = T.CenterCrop(2)(disttorch.tensor(img[None].astype(np.float32)))
    assert t.numpy().tolist() == [[[14.0, 15.0], [20.0, 21.0]]]


def test_random_crop_with_padding_is_seeded():
    img = disttorch.tensor(np.arange(1, 17, dtype=np.float32).reshape(1, 4, 4))
    crop = T.RandomCrop(4, padding=2)
    disttorch.manual_seed(0)
    first = [crop(img).numpy() for _ in range(6)]
    disttorch.manual_seed(0)
    second = [crop(img).numpy() for _ in range(6)]
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    padded = np.pad(img.numpy(), ((0, 0), (2, 2), (2, 2)))
    windows = {padded[:, i:i + 4, j:j + 4].tobytes() for i in range(5) for j in range(5)}
    assert all(a.tobytes() in windows for a in first)
    assert len({a.tobytes() for a in first}) > 1


def test_random_crop_pad_if_needed_and_errors():
    out = T.RandomCrop((5, 6), pad_if_needed=True)(np.ones((3, 4), np.uint8))
    assert out.shape == (5, 6)
    with pytest.raises(ValueError, match=r"Required crop size \(5, 5\) is larger than input image size \(3, 4\)"):
        T.RandomCrop(5)(np.ones((3, 4), np.uint8))


def test_random_resized_crop():
    img = T.ToTensor()(gradient(32, 32))
    disttorch.manual_seed(1)
    out = T.RandomResizedCrop(16)(img)
    assert out.shape == (3, 16, 16)
    disttorch.manual_seed(1)
    np.testing.assert_array_equal(T.RandomResizedCrop(16)(img).numpy(), out.numpy())
    for _ in range(20):
        i, j, h, w = T.RandomResizedCrop.get_params(img, (0.08, 1.0), (3 / 4, 4 / 3))
        assert 0 <= i and i + h <= 32 and 0 <= j and j + w <= 32 and h > 0 and w > 0
    assert T.RandomResizedCrop(8)(Image.fromarray(gradient(20, 20))).size == (8, 8)


def test_flips_on_every_kind():
    img = gradient(3, 4)
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=1.0)(img), img[:, ::-1])
    np.testing.assert_array_equal(T.RandomVerticalFlip(p=1.0)(img), img[::-1])
    assert T.RandomHorizontalFlip(p=0.0)(img) is img
    t = T.ToTensor()(img)
    np.testing.assert_array_equal(F.hflip(t).numpy(), t.numpy()[:, :, ::-1])
    np.testing.assert_array_equal(np.asarray(F.vflip(Image.fromarray(img))), img[::-1])


def test_random_flip_probability_follows_the_seed():
    flip = T.RandomHorizontalFlip()
    img = np.array([[1, 2]], np.uint8)
    disttorch.manual_seed(5)
    a = [flip(img)[0, 0] for _ in range(50)]
    disttorch.manual_seed(5)
    b = [flip(img)[0, 0] for _ in range(50)]
    assert a == b and 10 < sum(x == 2 for x in a) < 40


def test_rotation():
    img = np.arange(25, dtype=np.uint8).reshape(5, 5)
    np.testing.assert_array_equal(F.rotate(img, 90), np.rot90(img))  # counter-clockwise
    np.testing.assert_array_equal(T.RandomRotation((90, 90))(img), np.rot90(img))
    rect = np.arange(20, dtype=np.uint8).reshape(4, 5)
    np.testing.assert_array_equal(F.rotate(rect, 90, expand=True), np.rot90(rect))
    # The same as Pillow's own rotation for PIL images.
    np.testing.assert_array_equal(F.rotate(img * 10, 45), np.asarray(F.rotate(Image.fromarray(img * 10), 45)))
    t = disttorch.tensor(np.ones((1, 5, 5), np.float32))
    corners = F.rotate(t, 45, fill=0).numpy()[0]
    assert corners[0, 0] == 0 and corners[2, 2] == 1.0
    with pytest.raises(ValueError, match="it must be positive"):
        T.RandomRotation(-3)


def test_color_jitter_brightness_contrast_saturation():
    img = T.ToTensor()(gradient())
    half = T.ColorJitter(brightness=(0.5, 0.5))(img)
    np.testing.assert_allclose(half.numpy(), img.numpy() * 0.5, rtol=1e-6)
    grey = F.adjust_saturation(img, 0.0).numpy()
    assert np.allclose(grey[0], grey[1]) and np.allclose(grey[1], grey[2])
    flat = F.adjust_contrast(img, 0.0).numpy()
    assert np.allclose(flat, flat.flat[0])
    assert np.isclose(flat.flat[0], (0.2989 * img.numpy()[0] + 0.587 * img.numpy()[1] + 0.114 * img.numpy()[2]).mean())
    brighter = F.adjust_brightness(gradient(), 2.0)
    assert brighter.dtype == np.uint8 and brighter.max() == 255


def test_hue_shift_matches_colorsys():
    rgb = np.array([0.8, 0.3, 0.1], np.float32)
    img = disttorch.tensor(np.broadcast_to(rgb[:, None, None], (3, 2, 2)).copy())
    out = F.adjust_hue(img, 0.25).numpy()[:, 0, 0]
    h, s, v = colorsys.rgb_to_hsv(*rgb)
    expected = colorsys.hsv_to_rgb((h + 0.25) % 1.0, s, v)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    with pytest.raises(ValueError, match=r"hue_factor \(0.7\) is not in \[-0.5, 0.5\]"):
        F.adjust_hue(img, 0.7)


def test_color_jitter_is_seeded_and_validates():
    jitter = T.ColorJitter(0.4, 0.4, 0.4, 0.1)
    img = T.ToTensor()(gradient())
    disttorch.manual_seed(3)
    a = jitter(img).numpy()
    disttorch.manual_seed(3)
    np.testing.assert_array_equal(jitter(img).numpy(), a)
    assert not np.allclose(a, img.numpy())
    assert T.ColorJitter(brightness=0).brightness is None
    with pytest.raises(ValueError, match=r"hue values should be between \(-0.5, 0.5\)"):
        T.ColorJitter(hue=0.6)


def test_pad_modes():
    img = np.arange(6, dtype=np.uint8).reshape(2, 3)
    for mode in ("constant", "edge", "reflect", "symmetric"):
        np.testing.assert_array_equal(T.Pad(1, padding_mode=mode)(img), np.pad(img, 1, mode=mode))
    lt_rb = T.Pad((1, 2, 3, 4), fill=9)(img)
    assert lt_rb.shape == (2 + 2 + 4, 3 + 1 + 3) and lt_rb[0, 0] == 9 and lt_rb[2, 1] == 0
    rgb = T.Pad(1, fill=(10, 20, 30))(T.ToTensor()(gradient(2, 2)) * 0 + 0)
    assert rgb.numpy()[:, 0, 0].tolist() == [10, 20, 30]
    with pytest.raises(ValueError, match="Padding must be an int or a 1, 2, or 4 element tuple, not a 3 element tuple"):
        T.Pad((1, 2, 3))
    with pytest.raises(ValueError, match="Padding mode should be either constant, edge, reflect or symmetric"):
        T.Pad(1, padding_mode="wrap")


def test_grayscale():
    img = gradient()
    grey = T.Grayscale()(T.ToTensor()(img)).numpy()
    expected = (0.2989 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2]) / 255.0
    assert grey.shape == (1, 6, 8) and np.allclose(grey[0], expected, atol=1e-6)
    assert T.Grayscale(3)(img).shape == (6, 8, 3)
    assert T.Grayscale()(Image.fromarray(img)).mode == "L"


def test_compose_lambda_random_apply():
    pipeline = T.Compose([T.ToTensor(), T.Lambda(lambda t: t * 2), T.Normalize([0.5], [0.5])])
    out = pipeline(np.full((2, 2), 255, np.uint8))
    assert np.allclose(out.numpy(), 3.0)
    assert repr(T.Compose([T.ToTensor(), T.Normalize([0.5], [0.5])])) == (
        "Compose(\n    ToTensor()\n    Normalize(mean=[0.5], std=[0.5])\n)")
    double = T.RandomApply([T.Lambda(lambda x: x * 2)], p=1.0)
    assert double(3) == 6 and T.RandomApply([T.Lambda(lambda x: x * 2)], p=0.0)(3) == 3
    with pytest.raises(TypeError, match="Argument lambd should be callable, got 'int'"):
        T.Lambda(3)


def test_augmentation_pipeline_on_batches_and_arrays():
    pipeline = T.Compose([T.RandomCrop(28, padding=4), T.RandomHorizontalFlip(), T.Normalize([0.1307], [0.3081])])
    batch = T.ToTensor()(np.zeros((28, 28, 1), np.uint8))
    assert pipeline(batch).shape == (1, 28, 28)
    assert T.RandomCrop(28, padding=4)(np.zeros((28, 28), np.uint8)).shape == (28, 28)
    nchw = disttorch.zeros(5, 3, 10, 10)
    assert F.center_crop(nchw, 4).shape == (5, 3, 4, 4)
