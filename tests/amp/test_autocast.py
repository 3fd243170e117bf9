"""autocast against PyTorch CPU autocast: output dtypes of the lower-precision / float32 lists,
values (bfloat16 rounding) and gradients, context manager / decorator / nesting / enabled=False,
and PyTorch's warnings and errors."""
import warnings

import numpy as np
import pytest

import disttorch as dt
import disttorch.nn.functional as F

torch = pytest.importorskip("torch")

rng = np.random.default_rng(0)
X = rng.standard_normal((4, 8)).astype(np.float32)
W = rng.standard_normal((3, 8)).astype(np.float32)
B = rng.standard_normal(3).astype(np.float32)
IMG = rng.standard_normal((2, 2, 6, 6)).astype(np.float32)
KER = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
Y = np.array([0, 1, 2, 0])

OPS = {
    "linear": lambda lib, Fm: Fm.linear(lib.tensor(X), lib.tensor(W), lib.tensor(B)),
    "matmul": lambda lib, Fm: lib.tensor(X) @ lib.tensor(W).t(),
    "mm": lambda lib, Fm: lib.mm(lib.tensor(X), lib.tensor(W).t()),
    "bmm": lambda lib, Fm: lib.bmm(lib.tensor(X)[None], lib.tensor(W).t()[None]),
    "addmm": lambda lib, Fm: lib.addmm(lib.tensor(B), lib.tensor(X), lib.tensor(W).t()),
    "einsum": lambda lib, Fm: lib.einsum("ij,kj->ik", lib.tensor(X), lib.tensor(W)),
    "conv2d": lambda lib, Fm: Fm.conv2d(lib.tensor(IMG), lib.tensor(KER), lib.tensor(B), padding=1),
    "relu_of_linear": lambda lib, Fm: Fm.relu(Fm.linear(lib.tensor(X), lib.tensor(W))),
    "softmax_of_linear": lambda lib, Fm: Fm.softmax(Fm.linear(lib.tensor(X), lib.tensor(W)), -1),
    "gelu_of_linear": lambda lib, Fm: Fm.gelu(Fm.linear(lib.tensor(X), lib.tensor(W))),
    "cross_entropy": lambda lib, Fm: Fm.cross_entropy(Fm.linear(lib.tensor(X), lib.tensor(W)), lib.tensor(Y)),
    "mse_loss": lambda lib, Fm: Fm.mse_loss(Fm.linear(lib.tensor(X), lib.tensor(W)), lib.zeros(4, 3)),
    "mixed_add": lambda lib, Fm: Fm.linear(lib.tensor(X), lib.tensor(W)) + lib.ones(3),
    "float64_untouched": lambda lib, Fm: Fm.linear(lib.tensor(X).double(), lib.tensor(W).double()),
    "max_pool_of_conv": lambda lib, Fm: Fm.max_pool2d(Fm.conv2d(lib.tensor(IMG), lib.tensor(KER)), 2),
}


@pytest.mark.parametrize("name", list(OPS))
def test_dtypes_and_values_match_torch_cpu_autocast(name):
    with dt.autocast("cpu", dtype=dt.bfloat16):
        d = OPS[name](dt, F)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        t = OPS[name](torch, torch.nn.functional)
    assert str(d.dtype).split(".")[-1] == str(t.dtype).split(".")[-1]
    # bfloat16 keeps 8 significant bits: allow one unit in the last place of the larger value
    np.testing.assert_allclose(d.float().numpy(), t.float().numpy(), rtol=2 ** -7, atol=2e-2)


@pytest.mark.parametrize("cls", ["LSTM", "GRU"])
def test_recurrent_layers_run_in_the_autocast_dtype_as_torch(cls):
    torch.manual_seed(0)
    tmod = getattr(torch.nn, cls)(8, 5, num_layers=2)
    dmod = getattr(dt.nn, cls)(8, 5, num_layers=2)
    dmod.load_state_dict({k: dt.tensor(v.detach().numpy()) for k, v in tmod.state_dict().items()})
    seq = rng.standard_normal((6, 3, 8)).astype(np.float32)
    with dt.autocast("cpu"):
        d_out, d_h = dmod(dt.tensor(seq))
    with torch.autocast("cpu"):
        t_out, t_h = tmod(torch.tensor(seq))
    # CPU autocast: LSTM runs in bfloat16, GRU stays float32 (not on PyTorch's lists)
    assert str(d_out.dtype).split(".")[-1] == str(t_out.dtype).split(".")[-1] == \
        ("bfloat16" if cls == "LSTM" else "float32")
    # bfloat16 state rounding accumulates over the steps: a few rounding steps apart at most
    np.testing.assert_allclose(d_out.detach().float().numpy(), t_out.detach().float().numpy(), atol=3e-2)


def test_gradients_flow_to_float32_parameters_as_in_torch():
    res = {}
    for lib, Fm in ((dt, F), (torch, torch.nn.functional)):
        w = lib.tensor(W, requires_grad=True)
        x = lib.tensor(X, requires_grad=True)
        with lib.autocast("cpu", dtype=lib.bfloat16):
            loss = Fm.cross_entropy(Fm.linear(x, w), lib.tensor(Y))
        loss.backward()
        res[lib] = (loss.item(), w.grad, x.grad)
    assert res[dt][1].dtype == dt.float32 and res[dt][2].dtype == dt.float32
    assert abs(res[dt][0] - res[torch][0]) < 1e-2
    np.testing.assert_allclose(res[dt][1].numpy(), res[torch][1].numpy(), rtol=2 ** -6, atol=1e-2)
    np.testing.assert_allclose(res[dt][2].numpy(), res[torch][2].numpy(), rtol=2 ** -6, atol=1e-2)


def test_enabled_false_and_outside_are_no_ops():
    x, w = dt.tensor(X), dt.tensor(W)
    plain = F.linear(x, w)
    with dt.autocast("cpu", enabled=False):
        off = F.linear(x, w)
        assert not dt.is_autocast_enabled("cpu")
    assert off.dtype == dt.float32
    np.testing.assert_array_equal(off.numpy(), plain.numpy())
    with dt.autocast("cpu"):
        assert dt.is_autocast_enabled("cpu") and not dt.is_autocast_enabled()  # no argument means cuda
        assert dt.get_autocast_dtype("cpu") == dt.bfloat16
        with dt.autocast("cpu", enabled=False):  # nested: off inside, back on after
            assert F.linear(x, w).dtype == dt.float32
        assert F.linear(x, w).dtype == dt.bfloat16
    assert not dt.is_autocast_enabled("cpu") and F.linear(x, w).dtype == dt.float32


def test_decorator_and_float16_and_amp_namespace():
    @dt.autocast("cpu")
    def forward(x, w):
        return F.linear(x, w)

    assert forward(dt.tensor(X), dt.tensor(W)).dtype == dt.bfloat16
    assert F.linear(dt.tensor(X), dt.tensor(W)).dtype == dt.float32
    with dt.amp.autocast("cpu", dtype=dt.float16):
        assert F.linear(dt.tensor(X), dt.tensor(W)).dtype == dt.float16


def test_backward_inside_autocast_keeps_parameter_dtypes():
    lin = dt.nn.Linear(8, 3)
    with dt.autocast("cpu"):
        lin(dt.tensor(X)).float().sum().backward()
    assert lin.weight.grad.dtype == dt.float32 and lin.bias.grad.dtype == dt.float32


def test_unsupported_dtype_warns_and_disables_like_torch():
    with pytest.warns(UserWarning, match="In CPU autocast, but the target dtype is not supported"):
        with dt.autocast("cpu", dtype=dt.float64):
            assert F.linear(dt.tensor(X), dt.tensor(W)).dtype == dt.float32
    with pytest.raises(RuntimeError, match="device type at start of device string: tpu"):
        dt.autocast("tpu")
    if not dt.cuda.is_available():
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            with dt.autocast("cuda"):
                assert not dt.is_autocast_enabled("cuda")
        assert "CUDA is not available" in str(w[0].message)


def test_bfloat16_tensor_basics_match_torch():
    vals = [1.0, 2.5, 3.3, -0.1, 1e-3, 300.7]
    d = dt.tensor(vals).to(dt.bfloat16)
    t = torch.tensor(vals).to(torch.bfloat16)
    np.testing.assert_array_equal(d.float().numpy(), t.float().numpy())  # same round-to-nearest-even
    assert d.element_size() == 2 and d.is_floating_point()
    assert repr(d) == repr(t)
    assert dt.promote_types(dt.bfloat16, dt.float16) == dt.float32
    assert (d + dt.ones(6)).dtype == dt.float32


def test_state_is_per_thread_and_set_autocast_enabled_works():
    import threading
    x, w = dt.tensor(X), dt.tensor(W)
    seen = {}
    with dt.autocast("cpu"):
        t = threading.Thread(target=lambda: seen.setdefault("other", F.linear(x, w).dtype))
        t.start()
        t.join()
        seen["main"] = F.linear(x, w).dtype
    assert seen == {"other": dt.float32, "main": dt.bfloat16}
    dt.set_autocast_enabled("cpu", True)
    try:
        assert F.linear(x, w).dtype == dt.bfloat16
    finally:
        dt.set_autocast_enabled("cpu", False)
    assert F.linear(x, w).dtype == dt.float32
