"""FakeData draws torchvision's images and labels: same seed recipe, same uint8 conversion."""
import numpy as np
import pytest
from torchvision_reference import load_torchvision

from disttorch.vision import datasets, transforms


@pytest.mark.parametrize("image_size, random_offset", [((3, 7, 5), 0), ((1, 4, 4), 11), ((4, 3, 2), 3)])
def test_fake_data_equals_torchvision(image_size, random_offset):
    torchvision = load_torchvision()
    if torchvision is None:
        pytest.skip("torchvision (the reference) is not installed")
    tv_datasets = pytest.importorskip("torchvision.datasets", reason="torchvision.datasets cannot be imported")
    import torch
    import torchvision.transforms as tv_transforms

    ref = tv_datasets.FakeData(6, image_size, 9, transform=tv_transforms.PILToTensor(), random_offset=random_offset)
    ours = datasets.FakeData(6, image_size, 9, transform=transforms.PILToTensor(), random_offset=random_offset)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    for index in (0, 1, 5, -1):
        (ref_img, ref_label), (img, label) = ref[index], ours[index]
        assert label == ref_label and type(label) is int
        np.testing.assert_array_equal(img.numpy(), ref_img.numpy())
    assert torch.equal(torch.get_rng_state(), before)
