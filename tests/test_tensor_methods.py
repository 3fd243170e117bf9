"""Tensor methods' fast in-place paths (_tensor_methods.py) under autograd, against PyTorch:
``relu_`` writes into the tensor's own memory and its node saves that memory at the new version."""
import numpy as np
import pytest

import disttorch as dt

torch = pytest.importorskip("torch", reason="PyTorch is the reference for parity tests and is not installed")

rng = np.random.default_rng(5)


def _grad_after_relu_(lib, a_np, g_np, prepare):
    a = lib.tensor(a_np, requires_grad=True)
    out = prepare(lib, a)
    out.backward(lib.tensor(g_np))
    return out.detach().numpy(), a.grad.numpy()


def test_relu_in_place_writes_own_memory_and_matches_torch():
    a_np = rng.standard_normal((4, 8, 5, 5)).astype(np.float32)
    g_np = rng.standard_normal(a_np.shape).astype(np.float32)
    a = dt.tensor(a_np, requires_grad=True)
    x = a * 1.5
    ptr = x.data_ptr()
    y = x.relu_()
    assert y is x and x.data_ptr() == ptr and x._version == 1
    assert type(x.grad_fn).__name__ == "ReluBackward0"
    x.backward(dt.tensor(g_np))
    ta = torch.tensor(a_np, requires_grad=True)
    tx = (ta * 1.5).relu_()
    tx.backward(torch.tensor(g_np))
    np.testing.assert_array_equal(x.detach().numpy(), tx.detach().numpy())
    np.testing.assert_array_equal(a.grad.numpy(), ta.grad.numpy())


def test_relu_in_place_output_modified_later_raises_torch_error():
    msgs = []
    for lib in (dt, torch):
        a = lib.tensor([1.0, -2.0, 3.0], requires_grad=True)
        x = (a * 2).relu_()
        x.add_(1)
        with pytest.raises(RuntimeError) as err:
            x.sum().backward()
        msgs.append(str(err.value))
    assert msgs[0] == msgs[1]
    assert "output 0 of Relu, is at version 2; expected version 1" in msgs[0]


@pytest.mark.parametrize("case", ["exp_output", "relu_output_scaled"])
def test_relu_in_place_of_a_saved_output_raises_torch_error(case):
    # exp and relu save their outputs: writing into them must make their backward refuse
    msgs = []
    for lib in (dt, torch):
        a = lib.tensor([1.0, -2.0, 3.0], requires_grad=True)
        if case == "exp_output":
            x = a.exp()
            x.relu_()
        else:
            x = (a * 2).relu_().mul_(-1).relu_()
        with pytest.raises(RuntimeError) as err:
            x.sum().backward()
        msgs.append(str(err.value))
    assert msgs[0] == msgs[1]


@pytest.mark.parametrize("case", ["view_taken_before", "relu_on_view", "twice", "double_backward"])
def test_relu_in_place_histories_match_torch(case):
    a_np = rng.standard_normal((3, 6)).astype(np.float32)
    g_np = rng.standard_normal((3, 6)).astype(np.float32)

    def prepare(lib, a):
        x = a * 2 - 0.5
        if case == "view_taken_before":  # the view's gradient must go through the relu
            v = x[1:]
            x.relu_()
            return lib.cat([x[:1], v * 3])
        if case == "relu_on_view":  # a write through a view: recorded on the base
            x[:, 2:].relu_()
            return x
        if case == "twice":
            return (x.relu_() - 0.2).relu_()
        x.relu_()
        (gx,) = lib.autograd.grad((x * x).sum(), a, create_graph=True)
        return gx * a

    d_out, d_grad = _grad_after_relu_(dt, a_np, g_np, prepare)
    t_out, t_grad = _grad_after_relu_(torch, a_np, g_np, prepare)
    np.testing.assert_allclose(d_out, t_out, rtol=1e-6)
    np.testing.assert_allclose(d_grad, t_grad, rtol=1e-6)


def test_relu_in_place_on_leaf_requiring_grad_is_refused():
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place operation"):
        dt.ones(3, requires_grad=True).relu_()
