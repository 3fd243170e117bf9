"""Helpers for the spatial/sequence layer tests: PyTorch parity (outputs and gradients of inputs
and parameters, weights copied by state_dict key) and float64 finite-difference gradchecks."""
from __future__ import annotations

import numpy as np
import pytest

import disttorch as dt

TOL = 1e-4


def ref_torch():
    """The PyTorch reference module, or skip the calling test when it is not installed."""
    return pytest.importorskip("torch", reason="PyTorch is the reference for parity tests and is not installed")


def leaves(out):
    """The tensors of a (nested tuple / list / None) module output, in order."""
    if out is None:
        return []
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in leaves(o)]
    return [out]


def copy_weights(dmod, tmod):
    """Loads PyTorch module ``tmod``'s state_dict into disttorch module ``dmod`` by key."""
    state = {k: dt.tensor(v.detach().numpy()) for k, v in tmod.state_dict().items()}
    dmod.load_state_dict(state)


def assert_close(actual, expected, what, tol=TOL):
    """|actual - expected| <= tol * (1 + |expected|) elementwise; a negative ``tol`` means relative to
    the largest |expected| instead (for long float32 sums, whose rounding scales with the total)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if tol < 0:
        tol = -tol
        scale = max(1.0, float(np.abs(expected).max())) if expected.size else 1.0
        np.testing.assert_allclose(actual, expected, rtol=0, atol=tol * scale, err_msg=what)
        return
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol, err_msg=what)


def check_module_parity(dmod, tmod, arrays, call=None, seed=0, tol=TOL, grad_inputs=True):
    """Runs ``call(module, *inputs)`` on both stacks with the same weights and float32 inputs;
    checks outputs, then the gradients of sum(outputs * random) for inputs and every parameter."""
    torch = ref_torch()
    call = call or (lambda m, *xs: m(*xs))
    copy_weights(dmod, tmod)
    for p in list(dmod.parameters()) + list(tmod.parameters()):
        p.grad = None  # a module checked more than once starts from clean gradients
    t_in = [torch.tensor(a, requires_grad=grad_inputs and a.dtype.kind == "f") for a in arrays]
    d_in = [dt.tensor(a, requires_grad=grad_inputs and a.dtype.kind == "f") for a in arrays]
    t_out = [o for o in leaves(call(tmod, *t_in)) if o.dtype.is_floating_point]
    d_out = [o for o in leaves(call(dmod, *d_in)) if o.is_floating_point()]
    assert len(t_out) == len(d_out)
    rng = np.random.default_rng(seed)
    t_loss = d_loss = 0
    for k, (t, d) in enumerate(zip(t_out, d_out)):
        assert tuple(d.shape) == tuple(t.shape), f"output {k}: shape {tuple(d.shape)} != {tuple(t.shape)}"
        assert_close(d.detach().numpy(), t.detach().numpy(), f"output {k}", tol)
        if t.requires_grad:
            g = rng.standard_normal(tuple(t.shape)).astype(np.float32)
            t_loss = t_loss + (t * torch.tensor(g)).sum()
            d_loss = d_loss + (d * dt.tensor(g)).sum()
    t_loss.backward()
    d_loss.backward()
    for k, (t, d) in enumerate(zip(t_in, d_in)):
        if t.requires_grad:
            assert_close(d.grad.numpy(), t.grad.numpy(), f"grad of input {k}", tol)
    d_params = dict(dmod.named_parameters())
    for name, p in tmod.named_parameters():
        assert name in d_params, f"parameter {name} missing from the disttorch module"
        if p.grad is None:
            assert d_params[name].grad is None, name
            continue
        assert_close(d_params[name].grad.numpy(), p.grad.numpy(), f"grad of {name}", tol)
    return d_out


def double_module(dmod):
    """Converts a module's parameters to float64 in place (for gradcheck)."""
    for p in dmod.parameters():
        p.data = dt.tensor(p.detach().numpy().astype(np.float64))
    return dmod


def module_gradcheck(dmod, arrays, call=None, params=True, **kw):
    """Finite-difference gradcheck (float64) of ``call(module, *inputs)`` w.r.t. inputs and parameters.

    The parameters are passed to gradcheck as extra inputs: it perturbs their arrays in place, which
    the module reads directly, so ``fn`` only needs the real inputs.
    """
    from disttorch.autograd import gradcheck
    call = call or (lambda m, *xs: m(*xs))
    double_module(dmod)
    inputs = tuple(dt.tensor(np.asarray(a, dtype=np.float64), requires_grad=True) for a in arrays)
    plist = tuple(dmod.parameters()) if params else ()

    def fn(*args):
        out = leaves(call(dmod, *args[:len(inputs)]))
        return tuple(o for o in out if o.is_floating_point())

    return gradcheck(fn, inputs + plist, **kw)
