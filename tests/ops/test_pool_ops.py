"""Max pooling's array kernels (ops/pool.py): the scatter-add backward at ResNet-18's stem geometry,
ties, windows whose inputs all equal the padding value, and the int32 position arithmetic, against
PyTorch (bit-equal where the sums are the same) and finite differences in float64."""
import numpy as np
import pytest

import disttorch as dt

torch = pytest.importorskip("torch", reason="PyTorch is the reference for parity tests and is not installed")

F = dt.nn.functional
rng = np.random.default_rng(11)


def _both(x, g, **kw):
    """(disttorch, torch) (output, indices, input gradient) of max_pool2d on ``x`` with upstream ``g``."""
    res = []
    for lib, wrap in ((dt, dt.tensor), (torch, torch.tensor)):
        xt = wrap(x, requires_grad=True)
        out, idx = lib.nn.functional.max_pool2d(xt, return_indices=True, **kw)
        out.backward(wrap(g) if g is not None else lib.ones_like(out))
        res.append((out.detach().numpy(), idx.numpy(), xt.grad.numpy()))
    return res


@pytest.mark.parametrize("kw", [dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=2),
                                dict(kernel_size=3, stride=1, padding=1), dict(kernel_size=(3, 2), stride=(2, 1),
                                                                               padding=(1, 0), dilation=(2, 1))])
def test_backward_scatter_matches_torch(kw):
    # ResNet-18's stem pool (3x3/2 pad 1, overlapping windows: an input may collect several
    # gradients), the CNN's 2x2, stride 1 (up to 9 gradients per input) and a dilated window
    x = rng.standard_normal((4, 8, 16, 16)).astype(np.float32)
    out = F.max_pool2d(dt.tensor(x), **kw)
    g = rng.standard_normal(tuple(out.shape)).astype(np.float32)
    (d_out, d_idx, d_gx), (t_out, t_idx, t_gx) = _both(x, g, **kw)
    np.testing.assert_array_equal(d_out, t_out)
    np.testing.assert_array_equal(d_idx, t_idx)
    np.testing.assert_allclose(d_gx, t_gx, rtol=1e-6, atol=1e-6)


def test_repeated_maxima_collect_every_gradient():
    # a constant plane: with stride 1 each input is the first maximum of several windows, and the
    # gradient of every window lands on it (a plain assignment would keep only one)
    x = np.zeros((1, 1, 5, 5), np.float32)
    (d_out, d_idx, d_gx), (t_out, t_idx, t_gx) = _both(x, None, kernel_size=3, stride=1, padding=1)
    np.testing.assert_array_equal(d_gx, t_gx)
    assert d_gx.sum() == 25.0 and d_gx[0, 0, 0, 0] == 4.0  # the top-left input wins 4 windows


def test_windows_of_padding_value_pick_their_first_input_like_torch():
    # every real input of a window equals the padding value (-inf): PyTorch keeps the window's first
    # input, never the padding, for the index and the gradient
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    x[0, 0, :3, :3] = -np.inf
    x[1, 2] = -np.inf
    for kw in (dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=2, padding=1, ceil_mode=True),
               dict(kernel_size=3, stride=2, padding=1, dilation=2)):
        out = F.max_pool2d(dt.tensor(x), **kw)
        g = rng.standard_normal(tuple(out.shape)).astype(np.float32)
        (d_out, d_idx, d_gx), (t_out, t_idx, t_gx) = _both(x, g, **kw)
        np.testing.assert_array_equal(d_idx, t_idx, err_msg=str(kw))
        np.testing.assert_array_equal(d_gx, t_gx, err_msg=str(kw))


def test_backward_matches_finite_differences_float64():
    x = dt.tensor(rng.standard_normal((2, 3, 9, 8)), requires_grad=True)
    assert dt.autograd.gradcheck(lambda t: F.max_pool2d(t, 3, 2, 1), (x,))
    assert dt.autograd.gradcheck(lambda t: F.max_pool2d(t, 2, ceil_mode=True), (x,))


@pytest.mark.parametrize("shape", [(4, 512, 2, 2), (2, 3, 7, 7), (5, 9, 4)], ids=str)
def test_global_average_pool_matches_torch(shape):
    # ResNet's head: adaptive average pooling to 1x1 as one matrix-vector product per call
    x = rng.standard_normal(shape).astype(np.float32)
    outs = []
    for lib in (dt, torch):
        xt = lib.tensor(x, requires_grad=True)
        out = lib.nn.functional.adaptive_avg_pool2d(xt, 1)
        out.backward(lib.tensor(np.arange(out.numel(), dtype=np.float32).reshape(tuple(out.shape))))
        outs.append((out.detach().numpy(), xt.grad.numpy()))
    assert outs[0][0].shape == outs[1][0].shape
    np.testing.assert_allclose(outs[0][0], outs[1][0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(outs[0][1], outs[1][1], rtol=1e-6, atol=1e-6)
    x64 = dt.tensor(rng.standard_normal(shape[:-3] + (2, 3, 3)), requires_grad=True)  # finite differences: small
    assert dt.autograd.gradcheck(lambda t: F.adaptive_avg_pool2d(t, (1, 1)), (x64,))


def test_random_geometries_match_torch():
    # both forward paths (phase planes for overlapping windows, strided views otherwise) over random
    # kernels, strides, dilations, paddings and ceil modes, with ties, -inf corners and NaNs
    fuzz = np.random.default_rng(2)
    checked = 0
    while checked < 60:
        k = tuple(int(v) for v in fuzz.integers(1, 5, 2))
        s = tuple(int(v) for v in fuzz.integers(1, 4, 2))
        d = tuple(int(v) for v in fuzz.integers(1, 3, 2))
        p = tuple(int(fuzz.integers(0, (d[i] * (k[i] - 1) + 1) // 2 + 1)) for i in range(2))
        kw = dict(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=bool(fuzz.integers(0, 2)))
        x = fuzz.standard_normal((2, 3, int(fuzz.integers(3, 12)), int(fuzz.integers(3, 12)))).astype(np.float32)
        x = np.round(x) if checked % 3 == 0 else x
        x[0, 0, :2, :2] = -np.inf if checked % 5 == 0 else x[0, 0, :2, :2]
        x[1, 1, 1, 1] = np.nan if checked % 7 == 0 else x[1, 1, 1, 1]
        try:
            t_out, t_idx = torch.nn.functional.max_pool2d(torch.tensor(x), return_indices=True, **kw)
        except RuntimeError:  # a geometry PyTorch refuses (output too small)
            continue
        d_out, d_idx = F.max_pool2d(dt.tensor(x), return_indices=True, **kw)
        np.testing.assert_array_equal(d_out.numpy(), t_out.numpy(), err_msg=str(kw))
        np.testing.assert_array_equal(d_idx.numpy(), t_idx.numpy(), err_msg=str(kw))
        checked += 1


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1)],
                         ids=["disjoint", "overlapping"])
def test_max_pool_on_two_threads_pools_ranges_of_planes_with_the_same_result(kw, split_parts):
    # Large inputs are cut into ranges of planes pooled on the intra-op threads at once
    # (ops/pool._max_over_planes), and their gradients scattered the same way (_scatter_planes):
    # values, winning positions and gradients equal one thread's.
    from disttorch import _intra_op, _threads

    x = rng.standard_normal((8, 40, 48, 48)).astype(np.float32)  # 737,280 elements: above the split size
    assert x.size >= _intra_op.MIN_ELEMENTS
    x[0, 0, :4, :4] = np.nan  # the NaN rule runs on the assembled result
    results = []
    previous = _threads.get_num_threads()
    try:
        for threads in (1, 2):
            _threads.set_num_threads(threads)
            xt = dt.tensor(x, requires_grad=True)
            out, idx = dt.nn.functional.max_pool2d(xt, return_indices=True, **kw)
            out.backward(dt.ones_like(out))
            results.append((out.detach().numpy(), idx.numpy(), xt.grad.numpy()))
    finally:
        _threads.set_num_threads(previous)
    assert split_parts == [2, 2]  # the 2-thread forward and backward split; the 1-thread ones ran whole
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)
    expected, expected_idx = torch.nn.functional.max_pool2d(torch.from_numpy(x), return_indices=True, **kw)
    np.testing.assert_array_equal(results[1][0], expected.numpy())
    np.testing.assert_array_equal(results[1][1], expected_idx.numpy())
