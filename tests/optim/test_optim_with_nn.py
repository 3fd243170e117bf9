"""Optimizers and schedulers driving nn modules (Parameters, real backward) in step with PyTorch."""
from __future__ import annotations

import numpy as np
import pytest

from _optim_parity import torch

import disttorch
import disttorch.optim as optim

nn = pytest.importorskip("disttorch.nn", reason="disttorch.nn is not available yet")


def _model(lib):
    net = lib.nn.Sequential(lib.nn.Linear(4, 8), lib.nn.Tanh(), lib.nn.Linear(8, 2))
    rng = np.random.default_rng(0)
    with lib.no_grad():
        for p in net.parameters():
            p.copy_(lib.from_numpy(rng.uniform(-0.5, 0.5, tuple(p.shape)).astype(np.float32)))
    return net


@pytest.mark.parametrize("name,kwargs", [("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
                                         ("AdamW", dict(lr=0.01, amsgrad=True)),
                                         ("RMSprop", dict(lr=0.01, centered=True))])
def test_training_a_module_matches_pytorch(name, kwargs):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 4)).astype(np.float32)
    y = rng.standard_normal((16, 2)).astype(np.float32)
    runs = []
    for lib, optim_mod in ((disttorch, optim), (torch, torch.optim)):
        net = _model(lib)
        opt = getattr(optim_mod, name)(net.parameters(), **kwargs)
        sched = optim_mod.lr_scheduler.StepLR(opt, step_size=4, gamma=0.5)
        losses = []
        for _ in range(12):
            opt.zero_grad()
            loss = lib.nn.functional.mse_loss(net(lib.from_numpy(x)), lib.from_numpy(y))
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        runs.append((losses, [p.detach().numpy().copy() for p in net.parameters()]))
    (our_losses, ours), (their_losses, theirs) = runs
    np.testing.assert_allclose(our_losses, their_losses, rtol=1e-5)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_module_state_dict_and_optimizer_checkpoint_round_trip(tmp_path):
    from disttorch.serialization import load, save
    net = _model(disttorch)
    opt = optim.Adam(net.parameters(), lr=0.01)
    x = disttorch.randn(8, 4)
    for _ in range(3):
        opt.zero_grad()
        net(x).pow(2).mean().backward()
        opt.step()
    save({"model": net.state_dict(), "optim": opt.state_dict()}, tmp_path / "ck.pt")
    ck = load(tmp_path / "ck.pt")
    net2 = _model(disttorch)
    net2.load_state_dict(ck["model"])
    opt2 = optim.Adam(net2.parameters(), lr=0.01)
    opt2.load_state_dict(ck["optim"])
    for model, o in ((net, opt), (net2, opt2)):
        o.zero_grad()
        model(x).pow(2).mean().backward()
        o.step()
    for a, b in zip(net.parameters(), net2.parameters()):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
