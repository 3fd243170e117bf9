"""ops/conv_planar.py: convolutions with 1-4 input channels over planar (NCHW) columns give
PyTorch's output, input gradient and weight gradient for strides and dilation along H, padding and
non-square kernels, over several chunks, and the same bits on two threads as on one; windows
strided or dilated along W keep the channels-last columns."""
import numpy as np
import pytest

import disttorch as dt
from disttorch import _threads
from disttorch.ops import conv_nhwc, conv_planar

torch = pytest.importorskip("torch", reason="PyTorch is the reference for parity tests")
rng = np.random.default_rng(5)

CASES = [((5, 1, 12, 12), (6, 1, 3, 3), dict()),
         ((4, 3, 15, 13), (8, 3, 7, 7), dict(stride=(2, 1), padding=3)),   # strided along H only
         ((3, 2, 11, 11), (5, 2, 3, 2), dict(padding=(1, 2), dilation=(2, 1))),
         ((6, 4, 9, 9), (7, 4, 2, 2), dict(stride=(2, 1))),                # disjoint rows of windows
         ((2, 3, 10, 10), (4, 3, 5, 5), dict(padding=4, stride=(3, 1)))]   # mostly padding


def _run(lib, x, w, kw, input_grad=True):
    xt = lib.tensor(x, requires_grad=input_grad)
    wt = lib.tensor(w, requires_grad=True)
    y = lib.nn.functional.conv2d(xt, wt, **kw)
    (y * y).sum().backward()
    return y.detach().numpy(), (xt.grad.numpy() if input_grad else None), wt.grad.numpy()


@pytest.mark.parametrize("xs,ws,kw", CASES, ids=[str(c[2]) or "plain" for c in CASES])
def test_matches_torch_in_float64_over_several_chunks(xs, ws, kw, monkeypatch):
    monkeypatch.setattr(conv_nhwc, "_CHUNK_BYTES", 2048)  # a chunk per sample or two
    calls = []
    real = conv_planar.correlate
    monkeypatch.setattr(conv_planar, "correlate", lambda *a, **k: calls.append(1) or real(*a, **k))
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    got = _run(dt, x, w, kw)
    expected = _run(torch, x, w, kw)
    assert calls, "the planar columns were not used"
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kw", [dict(stride=2, padding=3), dict(stride=(1, 2)), dict(dilation=(1, 2))])
def test_windows_strided_along_w_keep_the_channels_last_columns(kw, monkeypatch):
    # a W-strided window row would copy every other float (ResNet's 7x7/2 stem: slower than channels-last)
    calls = []
    real = conv_planar.correlate
    monkeypatch.setattr(conv_planar, "correlate", lambda *a, **k: calls.append(1) or real(*a, **k))
    x, w = rng.standard_normal((2, 3, 12, 12)), rng.standard_normal((4, 3, 3, 3))
    got, expected = _run(dt, x, w, kw), _run(torch, x, w, kw)
    assert not calls
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-10)


def test_first_layer_without_an_input_gradient_matches_torch_in_float32():
    x = rng.standard_normal((64, 1, 28, 28)).astype(np.float32)
    w = (rng.standard_normal((32, 1, 3, 3)) / 3).astype(np.float32)
    got = _run(dt, x, w, {}, input_grad=False)
    expected = _run(torch, x, w, {}, input_grad=False)
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[2], expected[2], rtol=1e-4, atol=1e-3)  # sums of 43k products


def test_two_threads_give_one_threads_bits(monkeypatch):
    monkeypatch.setattr(conv_nhwc, "_CHUNK_BYTES", 4096)
    monkeypatch.setattr(conv_nhwc, "PARALLEL_MACS", 0)
    x = rng.standard_normal((9, 3, 14, 14)).astype(np.float32)
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    previous = _threads.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            _threads.set_num_threads(threads)
            results.append(_run(dt, x, w, dict(padding=1)))
    finally:
        _threads.set_num_threads(previous)
    (y1, gx1, gw1), (y2, gx2, gw2) = results
    np.testing.assert_array_equal(y2, y1)
    np.testing.assert_array_equal(gx2, gx1)  # each chunk adds into its own samples only
    np.testing.assert_allclose(gw2, gw1, rtol=1e-5, atol=1e-5)  # two ranges' sums, added in order


def test_transposed_convolution_with_few_channels_matches_torch():
    # its backward slides windows over the output's gradient (3 channels here) through the planar columns
    x = rng.standard_normal((3, 6, 5, 5))
    w = rng.standard_normal((6, 3, 3, 3))
    got, expected = [], []
    for lib, out in ((dt, got), (torch, expected)):
        xt, wt = lib.tensor(x, requires_grad=True), lib.tensor(w, requires_grad=True)
        y = lib.nn.functional.conv_transpose2d(xt, wt, stride=2, padding=1)
        (y * y).sum().backward()
        out.extend([y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy()])
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-10)
