"""PixelShuffle / PixelUnshuffle and F.pixel_shuffle / pixel_unshuffle against PyTorch: values,
gradients, batch dims, repr and errors."""
import numpy as np
import pytest
from _spatial_parity import check_module_parity, ref_torch

import disttorch as dt
import disttorch.nn.functional as F
from disttorch import nn


@pytest.mark.parametrize("shape,r", [((2, 8, 3, 5), 2), ((18, 2, 2), 3), ((2, 1, 4, 3, 3), 2)])
def test_pixel_shuffle_and_unshuffle_match_torch(shape, r):
    torch = ref_torch()
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    check_module_parity(nn.PixelShuffle(r), torch.nn.PixelShuffle(r), [x])
    y = F.pixel_shuffle(dt.tensor(x), r)
    check_module_parity(nn.PixelUnshuffle(r), torch.nn.PixelUnshuffle(r), [y.numpy()])
    np.testing.assert_array_equal(F.pixel_unshuffle(y, r).numpy(), x)  # inverse
    assert repr(nn.PixelShuffle(r)) == repr(torch.nn.PixelShuffle(r))


@pytest.mark.parametrize("call", [
    lambda lib: lib.nn.functional.pixel_shuffle(lib.zeros(5, 2, 2), 2),
    lambda lib: lib.nn.functional.pixel_shuffle(lib.zeros(4, 2), 2),
    lambda lib: lib.nn.functional.pixel_unshuffle(lib.zeros(1, 5, 4), 2),
    lambda lib: lib.nn.functional.pixel_unshuffle(lib.zeros(1, 4, 5), 2),
], ids=["channels", "dims", "height", "width"])
def test_errors_match_torch(call):
    torch = ref_torch()
    with pytest.raises(RuntimeError) as expected:
        call(torch)
    with pytest.raises(RuntimeError) as got:
        call(dt)
    assert str(got.value) == str(expected.value)
