"""ops/conv_shifted.py: the input gradient of a stride-1 convolution as kh*kw shifted GEMMs,
against PyTorch, against the column scatter, over several chunks and on two threads."""
import numpy as np
import pytest

import disttorch as dt
from disttorch import _threads
from disttorch.ops import conv_nhwc, conv_shifted
from disttorch.ops.window import Window2d

torch = pytest.importorskip("torch")

rng = np.random.default_rng(7)


def _window(h, w, kernel, pads):
    (kh, kw), (pt, pb, pl, pr) = kernel, pads
    hp, wp = h + pt + pb, w + pl + pr
    return Window2d(kernel, (1, 1), (1, 1), pads, (h, w), (hp - kh + 1, wp - kw + 1))


CASES = [  # (samples, in channels, out channels, H, W, kernel, torch padding, window pads)
    (3, 16, 24, 10, 9, (3, 3), (0, 0), (0, 0, 0, 0)),
    (2, 20, 16, 8, 8, (3, 3), (1, 1), (1, 1, 1, 1)),
    (2, 16, 18, 9, 7, (5, 3), (2, 1), (2, 2, 1, 1)),
    (4, 17, 16, 6, 11, (2, 4), (0, 0), (0, 0, 0, 0)),
]


@pytest.mark.parametrize("n,c,a,h,w,kernel,padding,pads", CASES)
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-11), (np.float32, 2e-5)], ids=["f64", "f32"])
def test_input_grad_matches_torch_and_the_scatter(n, c, a, h, w, kernel, padding, pads, dtype, tol):
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    w4 = rng.standard_normal((a, c) + kernel).astype(dtype)
    win = _window(h, w, kernel, pads)
    y = rng.standard_normal((n, a) + win.out_size).astype(dtype)
    got = conv_shifted.input_grad(y, w4, win, c)
    assert got.shape == x.shape and got.dtype == dtype and got.flags.c_contiguous
    expected = torch.ops.aten.convolution_backward(
        torch.from_numpy(y), torch.from_numpy(x), torch.from_numpy(w4), None, (1, 1), padding, (1, 1), False,
        (0, 0), 1, (True, False, False))[0].numpy()
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got, expected, rtol=0, atol=tol * scale)
    scattered, _ = conv_nhwc.backward(None, y, w4, win, c, need_input=True, need_weight=False) \
        if not conv_shifted.suits(y, win, c, a) else (None, None)
    if scattered is not None:  # the way the layer takes today for this shape
        np.testing.assert_allclose(got, scattered, rtol=0, atol=tol * scale)


def test_several_chunks_on_two_threads_give_the_same_bits_as_one(monkeypatch):
    # Each chunk writes only its own samples' rows (its products stop where its zero rows start),
    # so chunks may run on different threads with no write overlapping another's.
    monkeypatch.setattr(conv_shifted, "_CHUNK_BYTES", 1)  # one sample per chunk
    monkeypatch.setattr(conv_nhwc, "PARALLEL_MACS", 0)  # ranges on both threads, small as the work is
    n, c, a, h, w = 7, 16, 16, 9, 9
    win = _window(h, w, (3, 3), (1, 1, 1, 1))
    y = rng.standard_normal((n, a) + win.out_size).astype(np.float32)
    w4 = rng.standard_normal((a, c, 3, 3)).astype(np.float32)
    previous = _threads.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            _threads.set_num_threads(threads)
            results.append(conv_shifted.input_grad(y, w4, win, c))
    finally:
        _threads.set_num_threads(previous)
    np.testing.assert_array_equal(results[0], results[1])
    monkeypatch.setattr(conv_shifted, "_CHUNK_BYTES", 1 << 30)  # one chunk: still the same sums
    np.testing.assert_allclose(conv_shifted.input_grad(y, w4, win, c), results[0], rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("shape,kernel,pads,channels,expected", [
    ((64, 64, 24, 24), (3, 3), (0, 0, 0, 0), 32, True),    # the CNN benchmark's second convolution
    ((16, 64, 32, 32), (3, 3), (1, 1, 1, 1), 64, True),    # padding 1 on a 32x32 grid
    ((16, 64, 64, 64), (3, 3), (1, 1, 1, 1), 3, True),     # an RGB input
    ((8, 256, 16, 16), (3, 3), (1, 1, 1, 1), 256, False),  # 256 input channels: the correlation is faster
    ((16, 32, 8, 8), (3, 3), (1, 1, 1, 1), 32, False),     # 10x10 grid for 8x8 outputs: mostly padding
    ((64, 32, 26, 26), (3, 3), (0, 0, 0, 0), 1, False),    # one input channel: a product one row tall
    ((4, 4, 24, 24), (3, 3), (0, 0, 0, 0), 32, False),     # few output channels
])
def test_suits_takes_the_shapes_where_the_products_pay(shape, kernel, pads, channels, expected):
    n, a, ho, wo = shape
    h, w = ho + kernel[0] - 1 - pads[0] - pads[1], wo + kernel[1] - 1 - pads[2] - pads[3]
    win = _window(h, w, kernel, pads)
    assert win.out_size == (ho, wo)
    assert conv_shifted.suits(np.zeros(1, np.float32), win, channels, a) is expected
    strided = Window2d(kernel, (2, 2), (1, 1), pads, (h, w), ((ho + 1) // 2, (wo + 1) // 2))
    assert not conv_shifted.suits(np.zeros(1, np.float32), strided, channels, a)


def test_conv2d_backward_takes_the_shifted_products_and_matches_torch(monkeypatch):
    calls = []
    real = conv_shifted.input_grad
    monkeypatch.setattr(conv_shifted, "input_grad", lambda *a: calls.append(a[0].shape) or real(*a))
    x = rng.standard_normal((4, 16, 14, 14)).astype(np.float32)
    w4 = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((4, 32, 12, 12)).astype(np.float32)
    xd, wd = dt.tensor(x, requires_grad=True), dt.tensor(w4, requires_grad=True)
    dt.nn.functional.conv2d(xd, wd).backward(dt.tensor(gy))
    assert calls == [(4, 32, 12, 12)]
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w4, requires_grad=True)
    torch.nn.functional.conv2d(xt, wt).backward(torch.tensor(gy))
    np.testing.assert_allclose(xd.grad.numpy(), xt.grad.numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(wd.grad.numpy(), wt.grad.numpy(), rtol=1e-5, atol=1e-3)
