"""Batch norm's array kernels (ops/nn_norm.py): the fused training and eval paths at ResNet-18's
shapes (long rows and the repeated per-channel operands of few-position stages), every flag
combination PyTorch's module has, 1-D to 3-D inputs, against PyTorch at float32 tolerance and
against finite differences in float64."""
import numpy as np
import pytest

import disttorch as dt

torch = pytest.importorskip("torch", reason="PyTorch is the reference for parity tests and is not installed")

rng = np.random.default_rng(3)
TOL = dict(rtol=2e-4, atol=2e-5)


def _module_pair(ndim, c, **kw):
    cls = {2: "BatchNorm1d", 3: "BatchNorm1d", 4: "BatchNorm2d", 5: "BatchNorm3d"}[ndim]
    t_mod = getattr(torch.nn, cls)(c, **kw)
    d_mod = getattr(dt.nn, cls)(c, **kw)
    if t_mod.affine:  # non-trivial affine parameters, the same in both
        w = rng.uniform(0.5, 1.5, c).astype(np.float32)
        b = rng.uniform(-0.5, 0.5, c).astype(np.float32)
        with torch.no_grad():
            t_mod.weight.copy_(torch.tensor(w))
            if t_mod.bias is not None:
                t_mod.bias.copy_(torch.tensor(b))
        with dt.no_grad():
            d_mod.weight.copy_(dt.tensor(w))
            if d_mod.bias is not None:
                d_mod.bias.copy_(dt.tensor(b))
    return d_mod, t_mod


def _step(mod, lib, x_np, g_np):
    x = lib.tensor(x_np, requires_grad=True)
    out = mod(x)
    out.backward(lib.tensor(g_np))
    grads = [x.grad.numpy()] + [p.grad.numpy() for p in mod.parameters()]
    return out.detach().numpy(), grads


def _compare(d_mod, t_mod, shape, steps=2, shift=0.0):
    """Runs ``steps`` training-or-eval steps on both and compares outputs, all gradients and the
    running statistics after every step."""
    for _ in range(steps):
        x_np = (rng.standard_normal(shape) * 2 + shift).astype(np.float32)
        g_np = rng.standard_normal(shape).astype(np.float32)
        d_out, d_grads = _step(d_mod, dt, x_np, g_np)
        t_out, t_grads = _step(t_mod, torch, x_np, g_np)
        np.testing.assert_allclose(d_out, t_out, **TOL)
        for d_g, t_g in zip(d_grads, t_grads):
            np.testing.assert_allclose(d_g, t_g, rtol=2e-4, atol=2e-4 * max(1.0, float(np.abs(t_g).max())))
        for name in ("running_mean", "running_var"):
            t_buf = getattr(t_mod, name)
            if t_buf is None:
                assert getattr(d_mod, name) is None
                continue
            np.testing.assert_allclose(getattr(d_mod, name).numpy(), t_buf.numpy(), **TOL)
        if t_mod.num_batches_tracked is not None:
            assert int(d_mod.num_batches_tracked) == int(t_mod.num_batches_tracked)
        for p in list(d_mod.parameters()) + list(t_mod.parameters()):
            p.grad = None


# ResNet-18 at 16x3x64x64 (batch cut to 4 to keep the test short): the stem's 32x32 (long rows),
# then 8x8, 4x4 and 2x2 positions per channel (repeated per-channel operands)
@pytest.mark.parametrize("shape", [(4, 64, 32, 32), (4, 128, 8, 8), (4, 256, 4, 4), (4, 512, 2, 2)], ids=str)
def test_training_and_eval_match_torch_at_resnet_shapes(shape):
    d_mod, t_mod = _module_pair(4, shape[1])
    _compare(d_mod, t_mod, shape)
    d_mod.eval()
    t_mod.eval()
    _compare(d_mod, t_mod, shape, steps=1)


@pytest.mark.parametrize("kw", [dict(momentum=None), dict(affine=False), dict(track_running_stats=False),
                                dict(bias=False), dict(momentum=0.3, eps=1e-3)], ids=str)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_flags_match_torch(kw, training):
    d_mod, t_mod = _module_pair(4, 6, **kw)
    _compare(d_mod, t_mod, (5, 6, 3, 4))  # running statistics that the eval steps then use
    d_mod.train(training)
    t_mod.train(training)
    _compare(d_mod, t_mod, (5, 6, 3, 4))


@pytest.mark.parametrize("shape", [(7, 5), (4, 5, 9), (3, 5, 2, 3, 4)], ids=["1d", "1d_len", "3d"])
def test_one_and_three_d_inputs_match_torch(shape):
    d_mod, t_mod = _module_pair(len(shape), shape[1])
    _compare(d_mod, t_mod, shape)
    d_mod.eval()
    t_mod.eval()
    _compare(d_mod, t_mod, shape, steps=1)


def test_large_mean_keeps_float32_accuracy():
    # mean 1000, std 2: the variance comes from the centred input, not E[x^2] - mean^2 (which
    # would cancel to noise). The float32 input's own rounding (ulp 6e-5 at 1000) bounds what any
    # float32 kernel can reach, so both are held to a float64 reference: within twice PyTorch's error
    x = (rng.standard_normal((4, 8, 6, 6)) * 2 + 1000).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    results = {}
    for name, lib, dtype in (("dt", dt, np.float32), ("torch", torch, np.float32), ("ref", torch, np.float64)):
        xt = lib.tensor(x.astype(dtype), requires_grad=True)
        out = lib.nn.functional.batch_norm(xt, None, None, training=True)
        out.backward(lib.tensor(g.astype(dtype)))
        results[name] = (out.detach().numpy(), xt.grad.numpy())
    for k in range(2):
        ref = results["ref"][k]
        torch_err = np.abs(results["torch"][k] - ref).max()
        assert np.abs(results["dt"][k] - ref).max() <= 2 * torch_err + 1e-6


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", [(3, 4, 3, 3), (6, 3, 1, 2)], ids=["long", "few_positions"])
def test_gradients_match_finite_differences_float64(training, shape):
    x = dt.tensor(rng.standard_normal(shape), requires_grad=True)
    w = dt.tensor(rng.uniform(0.5, 1.5, shape[1]), requires_grad=True)
    b = dt.tensor(rng.uniform(-0.5, 0.5, shape[1]), requires_grad=True)
    rm = dt.tensor(rng.standard_normal(shape[1]))
    rv = dt.tensor(rng.uniform(0.5, 2.0, shape[1]))
    F = dt.nn.functional
    assert dt.autograd.gradcheck(
        lambda x, w, b: F.batch_norm(x, rm.clone(), rv.clone(), w, b, training=training), (x, w, b))
    assert dt.autograd.gradgradcheck(
        lambda x, w, b: F.batch_norm(x, rm.clone(), rv.clone(), w, b, training=training), (x, w, b))
