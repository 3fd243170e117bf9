"""Every optimizer against PyTorch: same start, same gradient sequence, parameters compared after
each of 12 steps (float32, rtol 1e-5), across the option variants."""
from __future__ import annotations

import numpy as np
import pytest

from _optim_parity import run_parity, torch

import disttorch
import disttorch.optim as doptim

CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.5, maximize=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1, maximize=True)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("AdamW", dict(lr=0.01, maximize=True)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1)),
    ("Adagrad", dict(lr=0.1, weight_decay=0.1, eps=1e-6, maximize=True)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, momentum=0.9, centered=True, weight_decay=0.1, maximize=True)),
    ("Adadelta", dict()),
    ("Adadelta", dict(lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.1)),
    ("Adadelta", dict(maximize=True)),
    ("Adamax", dict()),
    ("Adamax", dict(lr=0.01, betas=(0.8, 0.9), weight_decay=0.1, maximize=True)),
    ("NAdam", dict()),
    ("NAdam", dict(momentum_decay=0.01, weight_decay=0.1)),
    ("NAdam", dict(weight_decay=0.1, decoupled_weight_decay=True, maximize=True)),
    ("RAdam", dict()),  # 12 steps cover both the un-rectified (rho_t <= 5) and rectified branches
    ("RAdam", dict(weight_decay=0.1)),
    ("RAdam", dict(weight_decay=0.1, decoupled_weight_decay=True, maximize=True)),
]


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_matches_pytorch_over_12_steps(name, kwargs):
    run_parity(name, kwargs, steps=12)


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop", "Adagrad"])
def test_param_groups_with_their_own_lr_match_pytorch(name):
    kwargs = {"momentum": 0.9} if name in ("SGD", "RMSprop") else {}
    kwargs["lr"] = 0.01
    opt, ref, _, _ = run_parity(name, kwargs, steps=10, split=True)
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in ref.param_groups] == [0.05, 0.01]


@pytest.mark.parametrize("name", ["SGD", "Adam", "NAdam"])
def test_float64_parameters_stay_float64_and_match(name):
    kwargs = {"lr": 0.01, "momentum": 0.9} if name == "SGD" else {"lr": 0.01}
    _, _, ours, _ = run_parity(name, kwargs, steps=10, dtype=np.float64)
    assert all(p.dtype == disttorch.float64 for p in ours)


def test_state_matches_pytorch_state_layout_and_values():
    opt, ref, _, _ = run_parity("Adam", {"lr": 0.01, "amsgrad": True}, steps=3)
    ours, theirs = opt.state_dict(), ref.state_dict()
    assert ours["param_groups"] == theirs["param_groups"]
    assert sorted(ours["state"]) == sorted(theirs["state"]) == [0, 1, 2]
    for i in ours["state"]:
        assert sorted(ours["state"][i]) == sorted(theirs["state"][i])
        step = ours["state"][i]["step"]
        assert step.dtype == disttorch.float32 and step.ndim == 0 and step.item() == 3.0
        for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            np.testing.assert_allclose(ours["state"][i][key].numpy(), theirs["state"][i][key].numpy(), rtol=1e-5,
                                       atol=1e-7)


def test_parameters_without_grad_are_skipped_like_pytorch():
    a = disttorch.ones(3, requires_grad=True)
    b = disttorch.ones(3, requires_grad=True)
    opt = doptim.Adam([a, b], lr=0.1)
    a.grad = disttorch.ones(3)
    opt.step()
    assert b.tolist() == [1.0, 1.0, 1.0] and len(opt.state) == 1
    assert a.tolist() == pytest.approx([0.9] * 3)


def test_complex_parameters_follow_pytorch_view_as_real_rule():
    rng = np.random.default_rng(3)
    init = (rng.standard_normal(4) + 1j * rng.standard_normal(4)).astype(np.complex64)
    ours = disttorch.tensor(init.copy(), requires_grad=True)
    theirs = torch.tensor(init.copy(), requires_grad=True)
    opt, ref = doptim.Adam([ours], lr=0.1), torch.optim.Adam([theirs], lr=0.1)
    for _ in range(5):
        g = (rng.standard_normal(4) + 1j * rng.standard_normal(4)).astype(np.complex64)
        ours.grad, theirs.grad = disttorch.tensor(g), torch.tensor(g)
        opt.step()
        ref.step()
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_update_is_in_place_and_bumps_the_version():
    p = disttorch.ones(4, requires_grad=True)
    data, version = p._data, p._version
    opt = doptim.SGD([p], lr=0.5, momentum=0.9)
    p.grad = disttorch.ones(4)
    opt.step()
    assert p._data is data and p._version > version
    assert p.tolist() == [0.5] * 4


ALGORITHMS = ["SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "Adadelta", "Adamax", "NAdam", "RAdam"]


@pytest.mark.parametrize("name", ALGORITHMS)
def test_numpy_float64_hyperparameters_keep_float32_state(name):
    p = disttorch.ones(3, requires_grad=True)
    kwargs = {"lr": np.float64(0.01)}
    if name in ("Adam", "AdamW", "Adamax", "NAdam", "RAdam"):
        kwargs["betas"] = (np.float64(0.9), np.float64(0.99))
    opt = getattr(doptim, name)([p], **kwargs)
    for _ in range(3):
        p.grad = disttorch.full((3,), 0.5)
        opt.step()
    assert p.dtype == disttorch.float32
    assert all(v.dtype == disttorch.float32 for v in opt.state[p].values() if isinstance(v, disttorch.Tensor))


@pytest.mark.parametrize("name,kwargs", [("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)),
                                         ("Adam", dict(amsgrad=True, weight_decay=0.1, maximize=True)),
                                         ("RMSprop", dict(momentum=0.9, centered=True)), ("Adadelta", dict()),
                                         ("NAdam", dict()), ("RAdam", dict())])
def test_a_step_allocates_nothing_of_parameter_size(name, kwargs):
    import tracemalloc
    p = disttorch.zeros(250_000, requires_grad=True)  # 1 MB
    opt = getattr(doptim, name)([p], **kwargs)
    p.grad = disttorch.ones(250_000)
    opt.step()  # the first step creates the state buffers and the scratch workspace
    tracemalloc.start()
    try:
        opt.step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100_000, f"{name} step allocated {peak} bytes"
