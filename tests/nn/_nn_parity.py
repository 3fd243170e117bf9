"""Helpers for nn tests: PyTorch-parity checks for modules and functions, float64 gradchecks.

A parity check builds the same layer in PyTorch and disttorch, copies PyTorch's state_dict into
disttorch by key, runs both on the same input, then backpropagates the same random upstream
gradient and compares the output, the input gradients and every parameter gradient.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

import disttorch
from disttorch.autograd import gradcheck, gradgradcheck

try:  # the reference implementation; tests that compare against it are marked @needs_torch
    import torch
except ImportError:  # pragma: no cover - depends on the environment
    torch = None

TORCH_REASON = "PyTorch (the parity reference) is not installed"


def needs_torch(test):
    """Skips ``test`` (through pytest.importorskip) when PyTorch cannot be imported; the float64
    finite-difference checks and the other self-contained tests still run."""
    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        pytest.importorskip("torch", reason=TORCH_REASON)
        return test(*args, **kwargs)
    return wrapper

ATOL = 1e-4
RTOL = 1e-4


def to_dt(t, requires_grad=None):
    """A disttorch copy of a torch tensor (keeps dtype; requires_grad as given or as the source)."""
    out = disttorch.tensor(t.detach().numpy().copy())
    rg = t.requires_grad if requires_grad is None else requires_grad
    if rg and out.is_floating_point():
        out.requires_grad_(True)
    return out


def load_from_torch(dt_module, torch_module):
    """Copies the torch module's state_dict into the disttorch module by key (strict)."""
    state = {k: disttorch.tensor(v.detach().numpy().copy()) for k, v in torch_module.state_dict().items()}
    dt_module.load_state_dict(state)


def assert_close(actual, expected, atol=ATOL, rtol=RTOL, what=""):
    a = actual.detach().numpy() if hasattr(actual, "detach") else np.asarray(actual)
    e = expected.detach().numpy() if hasattr(expected, "detach") else np.asarray(expected)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != torch {e.shape}"
    np.testing.assert_allclose(a, e, atol=atol, rtol=rtol, err_msg=what)


def _tensors(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def check_module_parity(torch_module, dt_module, torch_inputs, atol=ATOL, rtol=RTOL, seed=0):
    """Forward, input gradients and parameter gradients of the two modules agree."""
    load_from_torch(dt_module, torch_module)
    torch_module.zero_grad()
    for t in torch_inputs:
        t.grad = None
    dt_inputs = [to_dt(t) for t in torch_inputs]
    t_out = _tensors(torch_module(*torch_inputs))
    d_out = _tensors(dt_module(*dt_inputs))
    for i, (d, t) in enumerate(zip(d_out, t_out)):
        assert_close(d, t, atol, rtol, f"output {i}")
    rng = np.random.default_rng(seed)
    grads = [rng.standard_normal(tuple(t.shape)).astype(np.float32) for t in t_out]
    torch.autograd.backward([t for t in t_out if t.requires_grad],
                            [torch.from_numpy(g) for g, t in zip(grads, t_out) if t.requires_grad])
    disttorch.autograd.backward([d for d in d_out if d.requires_grad],
                                [disttorch.tensor(g) for g, d in zip(grads, d_out) if d.requires_grad])
    for i, (d, t) in enumerate(zip(dt_inputs, torch_inputs)):
        if t.requires_grad:
            assert_close(d.grad, t.grad, atol, rtol, f"grad of input {i}")
    t_params = dict(torch_module.named_parameters())
    for name, p in dt_module.named_parameters():
        tp = t_params[name]
        if tp.grad is None:
            assert p.grad is None or not np.any(p.grad.numpy()), f"grad of {name}: torch has none"
        else:
            assert_close(p.grad, tp.grad, atol, rtol, f"grad of parameter {name}")
    return d_out


def check_fn_parity(fn, torch_inputs, atol=ATOL, rtol=RTOL, seed=0):
    """``fn(M, *xs)`` written against the torch API gives the same value and gradients with
    M = torch and M = disttorch (gradients of a random projection of the output)."""
    for t in torch_inputs:  # a test may reuse its torch inputs: start from fresh gradients
        t.grad = None
    dt_inputs = [to_dt(t) for t in torch_inputs]
    t_out = fn(torch, *torch_inputs)
    d_out = fn(disttorch, *dt_inputs)
    assert_close(d_out, t_out, atol, rtol, "value")
    if t_out.requires_grad:
        g = np.random.default_rng(seed).standard_normal(tuple(t_out.shape)).astype(t_out.detach().numpy().dtype)
        t_out.backward(torch.from_numpy(g))
        d_out.backward(disttorch.tensor(g))
        for i, (d, t) in enumerate(zip(dt_inputs, torch_inputs)):
            if t.requires_grad and t.grad is None:  # an input the function does not use
                assert d.grad is None or not d.grad.numpy().any(), f"grad of input {i}: torch has none"
            elif t.requires_grad:
                assert_close(d.grad, t.grad, atol, rtol, f"grad of input {i}")
    return d_out, t_out


def grad_fn_name(t):
    return None if t.grad_fn is None else type(t.grad_fn).__name__


def check_gradcheck(fn, *arrays, requires_grad=None, second_order=False, atol=1e-5, rtol=1e-3):
    """Float64 finite-difference check of ``fn(*tensors)`` (and its second derivatives)."""
    inputs = []
    for i, a in enumerate(arrays):
        t = disttorch.tensor(np.asarray(a, dtype=np.float64) if np.asarray(a).dtype.kind == "f" else np.asarray(a))
        if t.is_floating_point() and (requires_grad is None or requires_grad[i]):
            t.requires_grad_(True)
        inputs.append(t)
    assert gradcheck(fn, tuple(inputs), atol=atol, rtol=rtol)
    if second_order:
        assert gradgradcheck(fn, tuple(inputs), atol=atol, rtol=rtol)


def module_gradcheck(module, *input_arrays, second_order=False, atol=1e-5, rtol=1e-3):
    """Gradcheck of a float64 module w.r.t. its inputs and all its parameters."""
    module = module.double()
    params = [p for p in module.parameters() if p.requires_grad]
    inputs = [disttorch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True) for a in input_arrays]
    n = len(inputs)

    def fn(*xs):
        out = module(*xs[:n])  # xs[n:] are the module's own parameters, perturbed in place
        return out

    assert gradcheck(fn, tuple(inputs) + tuple(params), atol=atol, rtol=rtol)
    if second_order:
        assert gradgradcheck(fn, tuple(inputs) + tuple(params), atol=atol, rtol=rtol)
