"""State-dict round trips: stop after k steps, save with disttorch.save, load into a fresh
optimizer and continue; the result equals the uninterrupted run exactly. A PyTorch state dict
loads into the disttorch optimizer and continues in step with PyTorch."""
from __future__ import annotations

import numpy as np
import pytest

from _optim_parity import assert_close, grad_sequence, initial_params, torch

import disttorch
import disttorch.optim as optim
from disttorch.serialization import load, save

CONFIGS = [
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.9, centered=True)),
    ("Adadelta", dict(lr=0.5)),
    ("Adamax", dict()),
    ("NAdam", dict()),
    ("RAdam", dict()),
]


def _run(opt, params, grads):
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = disttorch.tensor(g)
        opt.step()


@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_save_load_continue_equals_uninterrupted(name, kwargs, tmp_path):
    inits, grads = initial_params(), grad_sequence(10)
    straight = [disttorch.tensor(a, requires_grad=True) for a in inits]
    _run(getattr(optim, name)(straight, **kwargs), straight, grads)

    first = [disttorch.tensor(a, requires_grad=True) for a in inits]
    opt = getattr(optim, name)(first, **kwargs)
    _run(opt, first, grads[:5])
    save({"params": [p.detach() for p in first], "optim": opt.state_dict()}, tmp_path / "ck.pt")
    del opt

    ck = load(tmp_path / "ck.pt")
    resumed = [disttorch.tensor(p.numpy(), requires_grad=True) for p in ck["params"]]
    opt2 = getattr(optim, name)(resumed, **kwargs)
    opt2.load_state_dict(ck["optim"])
    _run(opt2, resumed, grads[5:])
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())


def _to_ours(value):
    if isinstance(value, torch.Tensor):
        return disttorch.tensor(value.detach().numpy().copy())
    if isinstance(value, dict):
        return {k: _to_ours(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_ours(v) for v in value]
    return value


@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_pytorch_state_dict_loads_and_continues_in_step(name, kwargs):
    inits, grads = initial_params(), grad_sequence(10)
    theirs = [torch.tensor(a, requires_grad=True) for a in inits]
    ref = getattr(torch.optim, name)(theirs, **kwargs)
    for gs in grads[:5]:
        for p, g in zip(theirs, gs):
            p.grad = torch.tensor(g)
        ref.step()
    ours = [disttorch.tensor(p.detach().numpy().copy(), requires_grad=True) for p in theirs]
    opt = getattr(optim, name)(ours, **kwargs)
    opt.load_state_dict(_to_ours(ref.state_dict()))
    for gs in grads[5:]:
        for p, q, g in zip(ours, theirs, gs):
            p.grad, q.grad = disttorch.tensor(g), torch.tensor(g)
        opt.step()
        ref.step()
    assert_close(ours, theirs, f"{name} after loading PyTorch's state")


def test_lbfgs_state_round_trips_through_a_checkpoint(tmp_path):
    def problem():
        x = disttorch.tensor([1.5, -0.5, 2.0], requires_grad=True)
        opt = optim.LBFGS([x], lr=0.5, max_iter=3, history_size=4)

        def closure():
            opt.zero_grad()
            loss = ((x - 1.0) ** 4).sum() + (x * x).sum()
            loss.backward()
            return loss
        return x, opt, closure

    x1, opt1, c1 = problem()
    for _ in range(4):
        opt1.step(c1)
    x2, opt2, c2 = problem()
    for _ in range(2):
        opt2.step(c2)
    save(opt2.state_dict(), tmp_path / "lbfgs.pt")
    x3, opt3, c3 = problem()
    with disttorch.no_grad():
        x3.copy_(x2)
    opt3.load_state_dict(load(tmp_path / "lbfgs.pt"))
    for _ in range(2):
        opt3.step(c3)
    np.testing.assert_array_equal(x1.detach().numpy(), x3.detach().numpy())
