"""GradScaler against torch.amp.GradScaler("cpu"): scale sequence over steps with and without
inf gradients, skipped steps, unscale_, state_dict, enabled=False pass-through, errors."""
import numpy as np
import pytest

import disttorch as dt

torch = pytest.importorskip("torch")


def _run(lib, infs, **kw):
    """Trains a Linear for len(infs) steps; where infs[i] a gradient is poisoned with inf."""
    lib.manual_seed(0)
    w0 = np.arange(6, dtype=np.float32).reshape(2, 3) / 10
    lin = lib.nn.Linear(3, 2, bias=False)
    with lib.no_grad():
        lin.weight.copy_(lib.tensor(w0))
    opt = lib.optim.SGD(lin.parameters(), lr=0.1)
    scaler = lib.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=2, **kw)
    x = lib.tensor(np.ones((4, 3), dtype=np.float32))
    scales, weights = [], []
    for poison in infs:
        opt.zero_grad()
        scaler.scale(lin(x).pow(2).sum()).backward()
        if poison:
            with lib.no_grad():
                lin.weight.grad[0, 0] = float("inf")
        scaler.step(opt)
        scaler.update()
        scales.append(scaler.get_scale())
        weights.append(lin.weight.detach().numpy().copy())
    return scales, weights, scaler.state_dict()


def test_scale_sequence_skips_and_weights_match_torch():
    infs = [False, True, False, False, False, True, False]
    d = _run(dt, infs)
    t = _run(torch, infs)
    assert d[0] == t[0]
    for a, b in zip(d[1], t[1]):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert d[2] == t[2]


def test_disabled_scaler_is_a_pass_through():
    d = _run(dt, [False, True], enabled=False)
    assert d[0] == [1.0, 1.0] and d[2] == {}
    assert not np.isfinite(d[1][1]).all()  # the inf step was not skipped: nothing is checked


def test_unscale_then_clip_then_step_and_errors():
    lin = dt.nn.Linear(3, 1)
    opt = dt.optim.SGD(lin.parameters(), lr=0.1)
    scaler = dt.amp.GradScaler("cpu", init_scale=8.0)
    with pytest.raises(AssertionError, match="_scale is None"):
        scaler.unscale_(opt)
    loss = lin(dt.ones(2, 3)).sum()
    scaler.scale(loss).backward()
    scaled = lin.weight.grad.numpy().copy()
    scaler.unscale_(opt)
    np.testing.assert_allclose(lin.weight.grad.numpy(), scaled / 8.0)
    with pytest.raises(RuntimeError, match="unscale_\\(\\) has already been called on this optimizer since the last update"):
        scaler.unscale_(opt)
    scaler.step(opt)
    with pytest.raises(RuntimeError, match="step\\(\\) has already been called since the last update"):
        scaler.step(opt)
    scaler.update()


def test_state_dict_round_trip_and_cuda_scaler_without_gpu_disables():
    s = dt.amp.GradScaler("cpu", init_scale=4.0, growth_factor=3.0)
    s2 = dt.amp.GradScaler("cpu")
    s2.load_state_dict(s.state_dict())
    assert s2.get_scale() == 4.0 and s2.get_growth_factor() == 3.0
    assert s.state_dict() == torch.amp.GradScaler("cpu", init_scale=4.0, growth_factor=3.0).state_dict()
    if not dt.cuda.is_available():
        with pytest.warns(UserWarning, match="CUDA is not available"):
            assert not dt.amp.GradScaler().is_enabled()
