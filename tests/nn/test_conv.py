"""Conv1d / Conv2d / ConvTranspose2d: PyTorch parity (outputs, input and parameter gradients),
float64 gradchecks (first and second order), initialisation, errors."""
import math

import numpy as np
import pytest

import disttorch as dt
import disttorch.nn as nn
from disttorch.autograd import gradcheck, gradgradcheck

from _spatial_parity import check_module_parity, module_gradcheck, ref_torch

# PyTorch warns that it pads a copy for even kernels with padding='same' (disttorch always pads one).
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")

rng = np.random.default_rng(1234)


def randn(*shape):
    return rng.standard_normal(shape).astype(np.float32)


CONV2D_CASES = [
    dict(in_channels=3, out_channels=4, kernel_size=3),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=(2, 1), padding=(1, 2), dilation=(2, 1), groups=2),
    dict(in_channels=4, out_channels=4, kernel_size=3, groups=4, bias=False, padding=1),
    dict(in_channels=3, out_channels=5, kernel_size=4, padding="same", dilation=(1, 2)),
    dict(in_channels=3, out_channels=5, kernel_size=3, padding="valid", stride=3),
    dict(in_channels=2, out_channels=3, kernel_size=3, padding=2, padding_mode="reflect"),
    dict(in_channels=2, out_channels=3, kernel_size=3, padding=(1, 2), padding_mode="replicate"),
    dict(in_channels=2, out_channels=3, kernel_size=3, padding="same", padding_mode="circular"),
]


@pytest.mark.parametrize("kw", CONV2D_CASES, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_conv2d_matches_torch(kw):
    torch = ref_torch()
    torch.manual_seed(0)
    check_module_parity(nn.Conv2d(**kw), torch.nn.Conv2d(**kw), [randn(2, kw["in_channels"], 9, 8)])


def test_conv2d_unbatched_matches_torch():
    torch = ref_torch()
    torch.manual_seed(0)
    out = check_module_parity(nn.Conv2d(3, 4, 3, padding=1), torch.nn.Conv2d(3, 4, 3, padding=1), [randn(3, 6, 5)])
    assert tuple(out[0].shape) == (4, 6, 5)
    assert type(out[0].grad_fn).__name__ == "SqueezeBackward1"


CONV1D_CASES = [
    dict(in_channels=3, out_channels=4, kernel_size=3),
    dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1, dilation=2, groups=2),
    dict(in_channels=3, out_channels=2, kernel_size=4, padding="same", bias=False),
    dict(in_channels=2, out_channels=2, kernel_size=3, padding=1, padding_mode="circular"),
]


@pytest.mark.parametrize("kw", CONV1D_CASES, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_conv1d_matches_torch(kw):
    torch = ref_torch()
    torch.manual_seed(0)
    out = check_module_parity(nn.Conv1d(**kw), torch.nn.Conv1d(**kw), [randn(2, kw["in_channels"], 11)])
    assert type(out[0].grad_fn).__name__ == "ConvolutionBackward0"


CONVT_CASES = [
    dict(in_channels=3, out_channels=4, kernel_size=3),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=(2, 3), padding=(1, 0), output_padding=(1, 2),
         groups=2),
    dict(in_channels=2, out_channels=3, kernel_size=3, stride=2, padding=1, dilation=2, output_padding=1, bias=False),
]


@pytest.mark.parametrize("kw", CONVT_CASES, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_conv_transpose2d_matches_torch(kw):
    torch = ref_torch()
    torch.manual_seed(0)
    check_module_parity(nn.ConvTranspose2d(**kw), torch.nn.ConvTranspose2d(**kw), [randn(2, kw["in_channels"], 5, 6)])


def test_conv_transpose2d_output_size_matches_torch():
    torch = ref_torch()
    torch.manual_seed(0)
    kw = dict(in_channels=2, out_channels=3, kernel_size=3, stride=2, padding=1)
    out = check_module_parity(nn.ConvTranspose2d(**kw), torch.nn.ConvTranspose2d(**kw), [randn(1, 2, 4, 4)],
                              call=lambda m, x: m(x, output_size=[8, 8]))
    assert tuple(out[0].shape) == (1, 3, 8, 8)
    with pytest.raises(ValueError, match="valid sizes range from 7 to 8"):
        nn.ConvTranspose2d(**kw)(dt.randn(1, 2, 4, 4), output_size=[9, 9])


def test_conv_larger_batch_uses_several_chunks():
    # A batch bigger than one column chunk exercises the chunked im2col / col2im loops. The weight
    # gradient sums 16000 float32 products, so its tolerance is 1e-4 of the largest gradient.
    torch = ref_torch()
    torch.manual_seed(0)
    check_module_parity(nn.Conv2d(8, 16, 3, padding=1), torch.nn.Conv2d(8, 16, 3, padding=1), [randn(40, 8, 20, 20)],
                        tol=-1e-4)



def test_conv_grouped_strided_and_transposed_over_several_chunks():
    # The batch sits side by side in one GEMM per chunk and group (columns laid out
    # (G, C*kh*kw, samples*Ho*Wo)); several chunks, groups, stride, padding and the transposed
    # direction all go through that layout, as does a deep layer with 2x2 output positions.
    torch = ref_torch()
    torch.manual_seed(0)
    kw = dict(in_channels=8, out_channels=12, kernel_size=3, stride=2, padding=1, groups=2)
    check_module_parity(nn.Conv2d(**kw), torch.nn.Conv2d(**kw), [randn(300, 8, 15, 15)], tol=-1e-4)
    kw = dict(in_channels=64, out_channels=32, kernel_size=3, stride=2, padding=1, bias=False)
    check_module_parity(nn.Conv2d(**kw), torch.nn.Conv2d(**kw), [randn(5, 64, 4, 4)], tol=-1e-4)
    kw = dict(in_channels=6, out_channels=4, kernel_size=3, stride=2, padding=1, output_padding=1, groups=2)
    check_module_parity(nn.ConvTranspose2d(**kw), torch.nn.ConvTranspose2d(**kw), [randn(300, 6, 8, 8)],
                        tol=-1e-4)

@pytest.mark.parametrize("make,shape", [
    (lambda: nn.Conv2d(2, 2, (2, 3), stride=(2, 1), padding=(1, 0), dilation=(1, 2)), (1, 2, 4, 5)),
    (lambda: nn.Conv2d(4, 2, 2, groups=2, padding="same"), (1, 4, 3, 3)),
    (lambda: nn.Conv1d(2, 3, 3, stride=2, padding=1), (2, 2, 5)),
    (lambda: nn.ConvTranspose2d(2, 2, 3, stride=2, padding=1, output_padding=1), (1, 2, 2, 2)),
    (lambda: nn.ConvTranspose2d(2, 4, 2, groups=2, dilation=2), (1, 2, 2, 3)),
])
def test_conv_layers_gradcheck(make, shape):
    dt.manual_seed(0)
    assert module_gradcheck(make(), [rng.standard_normal(shape)])


def test_conv_double_backward_matches_finite_differences():
    x = dt.tensor(rng.standard_normal((1, 2, 4, 4)), requires_grad=True)
    w = dt.tensor(rng.standard_normal((3, 2, 2, 2)), requires_grad=True)
    b = dt.tensor(rng.standard_normal(3), requires_grad=True)
    f = lambda x, w, b: nn.functional.conv2d(x, w, b, stride=2, padding=1)  # noqa: E731
    assert gradcheck(f, (x, w, b))
    assert gradgradcheck(f, (x, w, b))
    g = lambda x, w: nn.functional.conv_transpose2d(x, w, stride=2, output_padding=1)  # noqa: E731
    wt = dt.tensor(rng.standard_normal((2, 3, 2, 2)), requires_grad=True)
    assert gradgradcheck(g, (x, wt))


def test_conv_initialisation_bounds_and_shapes():
    dt.manual_seed(0)
    conv = nn.Conv2d(4, 8, 3, groups=2)
    assert tuple(conv.weight.shape) == (8, 2, 3, 3)
    bound = 1 / math.sqrt(2 * 9)  # kaiming_uniform_(a=sqrt(5)) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    w, b = conv.weight.detach().numpy(), conv.bias.detach().numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound
    assert np.abs(b).max() <= bound
    assert w.dtype == np.float32
    convt = nn.ConvTranspose2d(4, 6, (2, 3), groups=2, bias=False)
    assert tuple(convt.weight.shape) == (4, 3, 2, 3) and convt.bias is None
    assert np.abs(convt.weight.detach().numpy()).max() <= 1 / math.sqrt(3 * 6)
    assert sorted(k for k, _ in nn.Conv1d(2, 3, 4).named_parameters()) == ["bias", "weight"]


def test_conv_repr_matches_torch_style():
    assert repr(nn.Conv2d(1, 32, 3)) == "Conv2d(1, 32, kernel_size=(3, 3), stride=(1, 1))"
    assert repr(nn.Conv1d(2, 4, 3, stride=2, padding=1, bias=False)) == \
        "Conv1d(2, 4, kernel_size=(3,), stride=(2,), padding=(1,), bias=False)"


def test_conv_keeps_float32():
    out = nn.Conv2d(2, 3, 3)(dt.randn(2, 2, 6, 6))
    assert out.dtype == dt.float32


def test_conv2d_errors_name_the_bad_values():
    F = nn.functional
    w = dt.randn(4, 3, 3, 3)
    with pytest.raises(RuntimeError, match=r"Expected 3D \(unbatched\) or 4D \(batched\) input to conv2d, but got input "
                                           r"of size: \[64, 1\]"):
        F.conv2d(dt.randn(64, 1), w)
    with pytest.raises(RuntimeError, match=r"Given groups=1, weight of size \[4, 3, 3, 3\], expected input\[64, 1, 28, 28\] "
                                           r"to have 3 channels, but got 1 channels instead"):
        F.conv2d(dt.randn(64, 1, 28, 28), w)
    with pytest.raises(RuntimeError, match="Kernel size can't be greater than actual input size"):
        F.conv2d(dt.randn(1, 3, 2, 2), w)
    with pytest.raises(RuntimeError, match="padding='same' is not supported for strided convolutions"):
        F.conv2d(dt.randn(1, 3, 5, 5), w, stride=2, padding="same")
    with pytest.raises(RuntimeError, match="Invalid padding string: 'full'"):
        F.conv2d(dt.randn(1, 3, 5, 5), w, padding="full")
    with pytest.raises(RuntimeError, match="expected bias to be 1-dimensional with 4 elements"):
        F.conv2d(dt.randn(1, 3, 5, 5), w, dt.randn(3))
    with pytest.raises(RuntimeError, match="should be the same"):
        F.conv2d(dt.randn(1, 3, 5, 5, dtype=dt.float64), w)
    with pytest.raises(RuntimeError, match=r"Expected 2D \(unbatched\) or 3D \(batched\) input to conv1d"):
        F.conv1d(dt.randn(1, 3, 5, 5), dt.randn(2, 3, 3))
    with pytest.raises(RuntimeError, match="Given transposed=1"):
        F.conv_transpose2d(dt.randn(1, 3, 5, 5), dt.randn(4, 2, 3, 3))
    with pytest.raises(RuntimeError, match="output padding must be smaller than either stride or dilation"):
        F.conv_transpose2d(dt.randn(1, 4, 5, 5), dt.randn(4, 2, 3, 3), output_padding=1)
    with pytest.raises(ValueError, match="in_channels must be divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        nn.Conv2d(3, 4, 3, padding_mode="mirror")


@pytest.mark.parametrize("kw,shape", [
    (dict(in_channels=8, out_channels=6, kernel_size=1), (3, 8, 5, 7)),               # 1x1: the input is its columns
    (dict(in_channels=8, out_channels=6, kernel_size=1, stride=2, bias=False), (3, 8, 7, 6)),  # ResNet's downsample
    (dict(in_channels=5, out_channels=7, kernel_size=3, padding=1), (2, 5, 12, 12)),  # >= 64 positions: per-sample GEMMs
    (dict(in_channels=5, out_channels=7, kernel_size=3, padding=1), (6, 5, 3, 3)),    # few positions: chunk GEMM + transpose
    (dict(in_channels=3, out_channels=4, kernel_size=(3, 2), stride=(2, 3), dilation=(2, 1), padding=(2, 1)), (2, 3, 11, 10)),
    # weight larger than the batch's columns (out channels >= samples * positions): channel-major
    # columns over the NCHW input, no weight permutation
    (dict(in_channels=4, out_channels=40, kernel_size=3, padding=1), (2, 4, 3, 3)),
    (dict(in_channels=6, out_channels=40, kernel_size=1, stride=2, bias=False), (3, 6, 5, 5)),
])
def test_conv2d_channels_last_kernels_match_torch(kw, shape):
    # Ungrouped convolutions run over a channels-last copy of the input (ops/conv_nhwc.py); each case
    # takes another branch of it: unstrided 1x1 (no window copy), strided 1x1, the forward's
    # per-sample GEMM into NCHW and its whole-chunk GEMM + transpose, dilation with uneven strides,
    # and the channel-major columns of deep layers.
    torch = ref_torch()
    torch.manual_seed(0)
    check_module_parity(nn.Conv2d(**kw), torch.nn.Conv2d(**kw), [randn(*shape)])


def test_conv2d_channels_last_strided_input_and_retained_graph():
    # A channels-last-strided (non-contiguous) input, and a second backward through a retained graph
    # (the forward's channels-last input and permuted weight are reused by every backward).
    torch = ref_torch()
    x = randn(2, 6, 5, 4)
    w, g = randn(3, 6, 3, 3), randn(2, 3, 5, 4)
    xs = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)  # same values, NHWC strides
    d_x, t_x = dt.tensor(xs, requires_grad=True), torch.tensor(x, requires_grad=True)
    d_w, t_w = dt.tensor(w, requires_grad=True), torch.tensor(w, requires_grad=True)
    d_out = nn.functional.conv2d(d_x, d_w, padding=1)
    t_out = torch.nn.functional.conv2d(t_x, t_w, padding=1)
    np.testing.assert_allclose(d_out.detach().numpy(), t_out.detach().numpy(), rtol=1e-5, atol=1e-5)
    for _ in range(2):
        (d_out * dt.tensor(g)).sum().backward(retain_graph=True)
        (t_out * torch.tensor(g)).sum().backward(retain_graph=True)
        np.testing.assert_allclose(d_x.grad.numpy(), t_x.grad.numpy(), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(d_w.grad.numpy(), t_w.grad.numpy(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("shape,kw", [((12, 8, 20, 20), dict(kernel_size=3, padding=1)),     # per-sample GEMMs
                                      ((12, 16, 4, 4), dict(kernel_size=3, padding=1)),      # whole-chunk GEMMs
                                      ((12, 8, 20, 20), dict(kernel_size=2, stride=2))])     # disjoint windows
def test_conv2d_on_two_threads_matches_one(shape, kw, monkeypatch):
    """With 2 intra-op threads the chunks of samples run in parallel: the output and the input
    gradient are the same bits as with 1 thread (each chunk writes its own samples, and the chunks
    do not depend on the thread count), the weight gradient sums the same terms in two ranges of
    chunks (so it may differ in the last bits only)."""
    from disttorch import _threads
    from disttorch.ops import conv_nhwc

    monkeypatch.setattr(conv_nhwc, "_CHUNK_BYTES", 4096)  # several chunks even at this small size
    monkeypatch.setattr(conv_nhwc, "PARALLEL_MACS", 0)  # and in parallel
    split_calls = []
    real_run = conv_nhwc._intra_op.run

    def counting_run(fn, parts):
        split_calls.append(parts if _threads.intra_op_threads() == 2 else 0)
        return real_run(fn, parts)

    monkeypatch.setattr(conv_nhwc._intra_op, "run", counting_run)
    x = randn(*shape)
    gy = None
    results = []
    previous = _threads.get_num_threads()
    try:
        for threads in (1, 2):
            _threads.set_num_threads(threads)
            dt.manual_seed(0)
            conv = nn.Conv2d(shape[1], 16, **kw)
            xt = dt.tensor(x, requires_grad=True)
            y = conv(xt)
            if gy is None:
                gy = randn(*y.shape)
            y.backward(dt.tensor(gy))
            results.append((y.detach().numpy(), xt.grad.numpy(), conv.weight.grad.numpy(), conv.bias.grad.numpy()))
    finally:
        _threads.set_num_threads(previous)
    (y1, gx1, gw1, gb1), (y2, gx2, gw2, gb2) = results
    np.testing.assert_array_equal(y2, y1)
    np.testing.assert_array_equal(gx2, gx1)
    np.testing.assert_allclose(gw2, gw1, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(gb2, gb1)
    assert split_calls.count(2) >= 2  # 2 threads: the forward's and the backward's chunks ran as 2 ranges at once


@pytest.mark.parametrize("kw", [dict(kernel_size=3, padding=1), dict(kernel_size=3, padding=0),
                                dict(kernel_size=3, padding=2), dict(kernel_size=(5, 3), padding=(2, 1)),
                                dict(kernel_size=4, padding="same")],
                         ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_stride1_input_grad_as_correlation_matches_the_scatter_and_torch(kw, monkeypatch):
    """Stride-1 input gradients with >= 64 positions are one correlation of the padded gradient
    with the flipped weight: the same values as the column scatter (float64) and as PyTorch.
    (Shapes that suit the shifted products, ``conv_shifted``, are kept off them here.)"""
    from disttorch.ops import conv_nhwc, conv_shifted

    monkeypatch.setattr(conv_shifted, "suits", lambda *a: False)

    torch = ref_torch()
    x = rng.standard_normal((3, 8, 11, 10))
    w = rng.standard_normal((12, 8) + ((kw["kernel_size"],) * 2 if isinstance(kw["kernel_size"], int) else kw["kernel_size"]))
    grads = []
    calls = []
    real = conv_nhwc.correlate_full
    monkeypatch.setattr(conv_nhwc, "correlate_full", lambda *a: calls.append(1) or real(*a))
    for correlation in (True, False):
        if not correlation:
            assert calls  # the first pass took the correlation
            monkeypatch.setattr(conv_nhwc, "_input_grad_as_correlation", lambda *a: False)
        xt = dt.tensor(x, requires_grad=True)
        y = dt.nn.functional.conv2d(xt, dt.tensor(w), padding=kw["padding"])
        assert y.shape[2] * y.shape[3] >= conv_nhwc._DIRECT_MIN_POSITIONS
        gy = np.cos(np.arange(y.numel())).reshape(y.shape)
        y.backward(dt.tensor(gy))
        grads.append(xt.grad.numpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-12, atol=1e-12)
    xr = torch.tensor(x, requires_grad=True)
    torch.nn.functional.conv2d(xr, torch.tensor(w), padding=kw["padding"]).backward(torch.tensor(gy))
    np.testing.assert_allclose(grads[0], xr.grad.numpy(), rtol=1e-10, atol=1e-10)
