"""Every optimizer (and LBFGS, the schedulers, state_dict round trips) on CUDA parameters (strict CuPy
stand-in): the same parameter trajectory as on the host, with all state on the device."""
from __future__ import annotations

import numpy as np
import pytest

import disttorch
import disttorch.optim as doptim
from _on_device import assert_on, assert_same, host

SHAPES = [(4, 3), (5,), (2, 3, 2)]

CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.5, maximize=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1, maximize=True)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1)),
    ("Adagrad", dict(lr=0.1, weight_decay=0.1, eps=1e-6, maximize=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, momentum=0.9, centered=True, weight_decay=0.1, maximize=True)),
    ("Adadelta", dict(lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.1)),
    ("Adamax", dict(lr=0.01, betas=(0.8, 0.9), weight_decay=0.1, maximize=True)),
    ("NAdam", dict(momentum_decay=0.01, weight_decay=0.1)),
    ("NAdam", dict(weight_decay=0.1, decoupled_weight_decay=True, maximize=True)),
    ("RAdam", dict(weight_decay=0.1)),
    ("RAdam", dict(weight_decay=0.1, decoupled_weight_decay=True, maximize=True)),
]


def _trajectory(name, kwargs, device, steps=8, dtype=np.float32):
    rng = np.random.default_rng(0)
    params = [disttorch.tensor(rng.standard_normal(s).astype(dtype), device=device, requires_grad=True)
              for s in SHAPES]
    opt = getattr(doptim, name)([{"params": params[:1], "lr": 0.05}, {"params": params[1:]}], **kwargs)
    seen = []
    for _ in range(steps):
        for p in params:
            p.grad = disttorch.tensor(rng.standard_normal(tuple(p.shape)).astype(dtype), device=device)
        opt.step()
        seen.append([p.detach().clone() for p in params])
    return opt, params, seen


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_optimizer_on_device_follows_the_host_trajectory(gpu, name, kwargs):
    opt, params, got = _trajectory(name, kwargs, "cuda")
    _, _, want = _trajectory(name, kwargs, "cpu")
    assert_same(got, want, "cuda:0", rtol=1e-6, atol=1e-7, what=name)
    for state in opt.state.values():
        for key, value in state.items():
            if isinstance(value, disttorch.Tensor) and value.ndim:  # step / mu_product stay host scalars (PyTorch)
                assert_on(value, "cuda:0")


def test_float64_and_in_place_update_on_device(gpu):
    opt, params, got = _trajectory("Adam", dict(lr=0.01), "cuda", dtype=np.float64)
    _, _, want = _trajectory("Adam", dict(lr=0.01), "cpu", dtype=np.float64)
    assert_same(got, want, "cuda:0", rtol=1e-12, atol=1e-12)
    p = params[0]
    data, version = p._data, p._version
    p.grad = disttorch.ones_like(p)
    opt.step()
    assert p._data is data and p._version > version


def _lbfgs(device):
    disttorch.manual_seed(0)
    x = disttorch.tensor([1.5, -0.5], device=device, requires_grad=True)
    opt = doptim.LBFGS([x], lr=1, max_iter=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2  # Rosenbrock
        loss.backward()
        return loss

    for _ in range(3):
        loss = opt.step(closure)
    return x.detach(), loss.detach()


def test_lbfgs_on_device(gpu):
    assert_same(_lbfgs("cuda"), _lbfgs("cpu"), "cuda:0", rtol=1e-5, atol=1e-6)


def test_schedulers_and_zero_grad_on_device(gpu):
    p = disttorch.zeros(3, device="cuda", requires_grad=True)
    opt = doptim.SGD([p], lr=1.0, momentum=0.9)
    sched = doptim.lr_scheduler.OneCycleLR(opt, max_lr=0.5, total_steps=10)
    plateau_opt = doptim.SGD([p], lr=1.0)
    plateau = doptim.lr_scheduler.ReduceLROnPlateau(plateau_opt, patience=0)
    for _ in range(4):
        p.grad = disttorch.ones(3, device="cuda")
        opt.step()
        sched.step()
        plateau.step(disttorch.tensor(1.0, device="cuda"))  # a CUDA metric is read as a number
    assert_on(p, "cuda:0")
    opt.zero_grad()
    assert p.grad is None
    assert plateau_opt.param_groups[0]["lr"] < 1.0


def test_optimizer_state_dict_round_trip_moves_state_to_the_parameters_device(gpu):
    opt, params, _ = _trajectory("Adam", dict(lr=0.01, amsgrad=True), "cuda", steps=2)
    sd = opt.state_dict()
    assert_on(sd["state"][0]["exp_avg"], "cuda:0")
    cpu_params = [disttorch.tensor(host(p), requires_grad=True) for p in params]
    cpu_opt = doptim.Adam([{"params": cpu_params[:1]}, {"params": cpu_params[1:]}], lr=0.01, amsgrad=True)
    cpu_opt.load_state_dict(sd)  # CUDA state into CPU parameters: cast to their device, as PyTorch does
    assert not cpu_opt.state[cpu_params[0]]["exp_avg"].is_cuda
    back = doptim.Adam([{"params": params[:1]}, {"params": params[1:]}], lr=0.01, amsgrad=True)
    back.load_state_dict(cpu_opt.state_dict())
    assert_on(back.state[params[0]]["exp_avg_sq"], "cuda:0")
    np.testing.assert_array_equal(host(back.state[params[0]]["exp_avg"]), host(sd["state"][0]["exp_avg"]))
