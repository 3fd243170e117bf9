"""Pooling layers: PyTorch parity (values, indices, input gradients), float64 gradchecks, errors."""
import numpy as np
import pytest

import disttorch as dt
import disttorch.nn as nn

from _spatial_parity import check_module_parity, module_gradcheck, ref_torch

rng = np.random.default_rng(7)


def randn(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def ids(kw):
    return ",".join(f"{k}={v}" for k, v in kw.items())


MAX2D = [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=(3, 2), stride=(2, 1),
         padding=(1, 1), dilation=(2, 1)), dict(kernel_size=3, stride=2, ceil_mode=True),
         dict(kernel_size=2, padding=1, ceil_mode=True), dict(kernel_size=3, stride=1)]


@pytest.mark.parametrize("kw", MAX2D, ids=ids)
def test_maxpool2d_matches_torch(kw):
    torch = ref_torch()
    check_module_parity(nn.MaxPool2d(**kw), torch.nn.MaxPool2d(**kw), [randn(2, 3, 9, 8)])


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1, dilation=2),
                                dict(kernel_size=3, stride=2, ceil_mode=True)], ids=ids)
def test_maxpool1d_matches_torch(kw):
    torch = ref_torch()
    check_module_parity(nn.MaxPool1d(**kw), torch.nn.MaxPool1d(**kw), [randn(2, 3, 11)])


def test_maxpool_return_indices_match_torch():
    torch = ref_torch()
    x = randn(2, 3, 9, 8)
    x[0, 0, :2, :2] = 5.0  # a tie: the first maximum in scan order wins, as in PyTorch
    for kw in MAX2D:
        d_out, d_idx = nn.MaxPool2d(return_indices=True, **kw)(dt.tensor(x))
        t_out, t_idx = torch.nn.MaxPool2d(return_indices=True, **kw)(torch.tensor(x))
        np.testing.assert_array_equal(d_idx.numpy(), t_idx.numpy(), err_msg=str(kw))
        assert d_idx.dtype == dt.int64
    d_out, d_idx = nn.MaxPool1d(3, 2, 1, return_indices=True)(dt.tensor(x[0]))
    t_out, t_idx = torch.nn.MaxPool1d(3, 2, 1, return_indices=True)(torch.tensor(x[0]))
    np.testing.assert_array_equal(d_idx.numpy(), t_idx.numpy())


def test_maxpool_propagates_nan_like_torch():
    torch = ref_torch()
    x = randn(1, 1, 4, 4)
    x[0, 0, 1, 1] = np.nan
    np.testing.assert_array_equal(nn.MaxPool2d(2)(dt.tensor(x)).numpy(), torch.nn.MaxPool2d(2)(torch.tensor(x)).numpy())


AVG2D = [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=3, stride=2, padding=1,
         count_include_pad=False), dict(kernel_size=3, stride=2, ceil_mode=True), dict(kernel_size=(2, 3), padding=1,
         ceil_mode=True, count_include_pad=False), dict(kernel_size=3, stride=1, padding=1, divisor_override=4)]


@pytest.mark.parametrize("kw", AVG2D, ids=ids)
def test_avgpool2d_matches_torch(kw):
    torch = ref_torch()
    check_module_parity(nn.AvgPool2d(**kw), torch.nn.AvgPool2d(**kw), [randn(2, 3, 9, 8)])


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
                                dict(kernel_size=3, stride=2, ceil_mode=True)], ids=ids)
def test_avgpool1d_matches_torch(kw):
    torch = ref_torch()
    check_module_parity(nn.AvgPool1d(**kw), torch.nn.AvgPool1d(**kw), [randn(2, 3, 11)])


@pytest.mark.parametrize("size", [1, (3, 4), (4, 3), (5, None), (2, 7), (9, 8)], ids=str)
def test_adaptive_pools_match_torch(size):
    torch = ref_torch()
    check_module_parity(nn.AdaptiveAvgPool2d(size), torch.nn.AdaptiveAvgPool2d(size), [randn(2, 3, 9, 8)])
    check_module_parity(nn.AdaptiveMaxPool2d(size), torch.nn.AdaptiveMaxPool2d(size), [randn(2, 3, 9, 8)])
    x = np.arange(72, dtype=np.float32).reshape(1, 9, 8)[:, ::-1].copy()
    d_idx = nn.AdaptiveMaxPool2d(size, return_indices=True)(dt.tensor(x))[1]
    t_idx = torch.nn.AdaptiveMaxPool2d(size, return_indices=True)(torch.tensor(x))[1]
    np.testing.assert_array_equal(d_idx.numpy(), t_idx.numpy())


def test_pools_accept_unbatched_inputs():
    torch = ref_torch()
    for d, t in [(nn.MaxPool2d(2), torch.nn.MaxPool2d(2)), (nn.AvgPool2d(2), torch.nn.AvgPool2d(2)),
                 (nn.AdaptiveAvgPool2d(3), torch.nn.AdaptiveAvgPool2d(3))]:
        out = check_module_parity(d, t, [randn(3, 6, 7)])
        assert tuple(out[0].shape) == tuple(t(torch.zeros(3, 6, 7)).shape)


def test_fast_2x2_pool_on_the_benchmark_shape():
    # The CNN benchmark's maxpool: (64, 64, 24, 24), kernel 2, stride 2 (non-overlapping windows).
    torch = ref_torch()
    check_module_parity(nn.MaxPool2d(2), torch.nn.MaxPool2d(2), [randn(8, 64, 24, 24)])


@pytest.mark.parametrize("make,shape", [
    (lambda: nn.MaxPool2d(3, 2, 1), (1, 2, 5, 5)),
    (lambda: nn.MaxPool2d(2, ceil_mode=True), (1, 1, 5, 5)),
    (lambda: nn.MaxPool1d(3, 1, 1, dilation=1), (2, 1, 6)),
    (lambda: nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False), (1, 2, 6, 5)),
    (lambda: nn.AvgPool1d(2), (2, 1, 6)),
    (lambda: nn.AdaptiveAvgPool2d((2, 3)), (1, 2, 5, 5)),
    (lambda: nn.AdaptiveMaxPool2d((2, 3)), (1, 2, 5, 5)),
    (lambda: nn.AdaptiveMaxPool2d(2), (1, 2, 4, 4)),
])
def test_pool_layers_gradcheck(make, shape):
    from disttorch.autograd import gradgradcheck
    x = rng.standard_normal(shape)
    assert module_gradcheck(make(), [x])
    # the backward is itself differentiable (create_graph=True)
    assert gradgradcheck(make(), (dt.tensor(x, requires_grad=True),))


def test_pool_errors_name_the_bad_values():
    F = nn.functional
    with pytest.raises(RuntimeError, match=r"non-empty 3D or 4D \(batch mode\) tensor expected for input"):
        F.max_pool2d(dt.randn(4, 4), 2)
    with pytest.raises(RuntimeError, match="pad should be at most half of effective kernel size, but got pad=2, "
                                           "kernel_size=3 and dilation=1"):
        F.max_pool2d(dt.randn(1, 5, 5), 3, padding=2)
    with pytest.raises(RuntimeError, match=r"Given input size: \(4x2x2\). Calculated output size: \(4x0x0\). "
                                           "Output size is too small"):
        F.max_pool2d(dt.randn(1, 4, 2, 2), 3)
    with pytest.raises(RuntimeError, match="kernel_size must either be a single int, or a tuple of two ints"):
        F.max_pool2d(dt.randn(1, 4, 4), (2, 2, 2))
    with pytest.raises(RuntimeError, match=r"adaptive_avg_pool2d\(\): Expected 3D or 4D tensor, but got \[4, 4\]"):
        F.adaptive_avg_pool2d(dt.randn(4, 4), 2)
    with pytest.raises(RuntimeError, match="Expected 2 to 3 dimensions, but got 1-dimensional tensor"):
        F.avg_pool1d(dt.randn(4), 2)
