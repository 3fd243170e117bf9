"""The backward engine: leaves, accumulation, backward()/autograd.grad options, grad modes, hooks,
grad_fn names, PyTorch's error messages, deep graphs."""
from __future__ import annotations

import gc
import sys

import numpy as np
import pytest

import disttorch


def _torch():
    return pytest.importorskip("torch", reason="PyTorch gives the reference behaviour")


# ---- leaves, accumulation, backward arguments ------------------------------------------------------
def test_leaf_and_nonleaf_grads():
    x = disttorch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * x
    z = y.sum()
    z.backward()
    assert x.grad.tolist() == [2.0, 4.0, 6.0]
    assert y.grad is None and not y.is_leaf and x.is_leaf
    assert x.grad.requires_grad is False and x.grad.grad_fn is None


def test_grad_accumulates_across_backward_calls():
    x = disttorch.tensor([1.0, -1.0], requires_grad=True)
    (x * 3).sum().backward()
    (x ** 2).sum().backward()
    assert x.grad.tolist() == [5.0, 1.0]
    x.grad = None
    (x * 4).sum().backward()
    assert x.grad.tolist() == [4.0, 4.0]
    x.grad.zero_()
    (x * 2).sum().backward()
    assert x.grad.tolist() == [2.0, 2.0]


def test_tensor_used_twice_and_diamond():
    x = disttorch.tensor(3.0, requires_grad=True)
    a = x * 2
    b = a + x  # x reached along two paths
    c = a * b  # a reached along two paths
    c.backward()
    # c = 2x * 3x = 6x^2 -> 12x
    assert x.grad.item() == 36.0


def test_backward_with_gradient_argument():
    x = disttorch.tensor([1.0, 2.0], requires_grad=True)
    y = x * x
    y.backward(disttorch.tensor([1.0, 0.5]))
    assert x.grad.tolist() == [2.0, 2.0]
    x2 = disttorch.ones(2, 2, requires_grad=True)
    disttorch.autograd.backward([x2 * 2, x2.sum()], [disttorch.ones(2, 2), disttorch.tensor(3.0)])
    assert x2.grad.tolist() == [[5.0, 5.0], [5.0, 5.0]]


def test_retain_graph():
    x = disttorch.tensor([1.0, 2.0], requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    first = x.grad.clone()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * first.numpy())
    with pytest.raises(RuntimeError) as e:
        y.backward()
    assert str(e.value).startswith("Trying to backward through the graph a second time")


def test_backward_inputs_argument():
    a = disttorch.tensor(2.0, requires_grad=True)
    b = disttorch.tensor(3.0, requires_grad=True)
    (a * b).backward(inputs=[a])
    assert a.grad.item() == 3.0 and b.grad is None
    h = a * 1
    (h * b).backward(inputs=[h])
    assert h.grad.item() == 3.0


def test_autograd_grad():
    x = disttorch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    w = disttorch.tensor([0.5, 0.5, 0.5], requires_grad=True)
    y = (x * w).sum()
    gx, gw = disttorch.autograd.grad(y, [x, w], retain_graph=True)
    assert gx.tolist() == [0.5, 0.5, 0.5] and gw.tolist() == [1.0, 2.0, 3.0]
    assert x.grad is None and w.grad is None  # grad() does not touch .grad
    (g,) = disttorch.autograd.grad(y, x)
    assert g.tolist() == [0.5] * 3
    z = disttorch.tensor(1.0, requires_grad=True)
    out = disttorch.autograd.grad((x * 2).sum(), [x, z], allow_unused=True)
    assert out[1] is None and out[0].tolist() == [2.0] * 3
    out = disttorch.autograd.grad((x * 2).sum(), [x, z], materialize_grads=True)
    assert out[1].item() == 0.0
    v = x * x
    (gv,) = disttorch.autograd.grad(v, x, grad_outputs=disttorch.tensor([1.0, 0.0, 2.0]))
    assert gv.tolist() == [2.0, 0.0, 12.0]
    (gs,) = disttorch.autograd.grad([x.sum(), (x * 2).sum()], x)
    assert gs.tolist() == [3.0] * 3
    h = x * 3
    (gh,) = disttorch.autograd.grad((h * h).sum(), h)  # w.r.t. a non-leaf
    assert gh.tolist() == [6.0, 12.0, 18.0]


def test_grad_dtype_follows_leaf():
    x = disttorch.tensor([1.0, 2.0], requires_grad=True)
    (x.double() * 3).sum().backward()
    assert x.grad.dtype is disttorch.float32 and x.grad.tolist() == [3.0, 3.0]


def test_broadcast_gradients_reduce_to_input_shapes():
    a = disttorch.ones(3, 1, requires_grad=True)
    b = disttorch.ones(4, requires_grad=True)
    c = disttorch.tensor(2.0, requires_grad=True)
    ((a + b) * c).sum().backward()
    assert a.grad.shape == (3, 1) and a.grad.tolist() == [[8.0]] * 3
    assert b.grad.shape == (4,) and b.grad.tolist() == [6.0] * 4
    assert c.grad.shape == () and c.grad.item() == 24.0


# ---- grad modes ------------------------------------------------------------------------------------
def test_no_grad_enable_grad_set_grad_enabled():
    x = disttorch.ones(2, requires_grad=True)
    with disttorch.no_grad():
        y = x * 2
        assert not disttorch.is_grad_enabled()
        with disttorch.enable_grad():
            z = x * 2
            assert disttorch.is_grad_enabled()
    assert disttorch.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None and z.requires_grad
    with disttorch.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert (x * 2).requires_grad
    disttorch.set_grad_enabled(False)
    try:
        assert not (x * 2).requires_grad
    finally:
        disttorch.set_grad_enabled(True)
    assert disttorch.is_grad_enabled()

    @disttorch.no_grad()
    def f(t):
        return t * 2

    @disttorch.enable_grad()
    def g(t):
        return t * 2

    assert not f(x).requires_grad
    with disttorch.no_grad():
        assert g(x).requires_grad
    with disttorch.inference_mode():
        assert not (x * 2).requires_grad
    with disttorch.inference_mode(False):
        assert (x * 2).requires_grad

    @disttorch.inference_mode()
    def h(t):
        return t + 1

    assert not h(x).requires_grad and disttorch.is_grad_enabled()


def test_no_grad_restores_on_exception():
    with pytest.raises(ValueError):
        with disttorch.no_grad():
            raise ValueError
    assert disttorch.is_grad_enabled()


# ---- hooks -----------------------------------------------------------------------------------------
def test_register_hook_on_leaf_and_nonleaf():
    x = disttorch.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    x.register_hook(lambda g: seen.append(g.tolist()))
    h = x * 3
    handle = h.register_hook(lambda g: g * 10)  # replaces the gradient flowing on
    h.sum().backward()
    assert seen == [[30.0, 30.0]] and x.grad.tolist() == [30.0, 30.0]
    handle.remove()
    x.grad = None
    (x * 3).sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]
    with pytest.raises(RuntimeError) as e:
        disttorch.ones(2).register_hook(lambda g: g)
    assert str(e.value) == "cannot register a hook on a tensor that doesn't require gradient"


def test_retain_grad():
    x = disttorch.tensor([1.0, 2.0], requires_grad=True)
    h = x * x
    h.retain_grad()
    assert h.retains_grad
    (h * 3).sum().backward()
    assert h.grad.tolist() == [3.0, 3.0] and x.grad.tolist() == [6.0, 12.0]
    with pytest.raises(RuntimeError) as e:
        disttorch.ones(2).retain_grad()
    assert str(e.value) == "can't retain_grad on Tensor that has requires_grad=False"


@pytest.mark.parametrize("write", ["mul_", "twice", "through a view", "transposed in place"])
def test_retained_grad_after_an_in_place_op_is_the_new_versions_as_torch(write):
    # PyTorch moves the retain_grad hook to the node of the in-place op: .grad is the gradient of
    # the tensor as it is now (12 here), not of its earlier value (36). Shape-only in-place ops
    # (t_) keep the hook where it was, so that gradient has the earlier shape.
    torch = _torch()
    got = []
    for M in (disttorch, torch):
        x = M.ones(2, 3, requires_grad=True)
        y = x * 2
        y.retain_grad()
        if write == "mul_":
            y.mul_(3)
        elif write == "twice":
            y.mul_(3)
            y.add_(1)
        elif write == "through a view":
            y[0].mul_(3)
        else:
            y.t_()
        (y * y).sum().backward()
        got.append((y.grad.numpy().tolist(), x.grad.numpy().tolist()))
    assert got[0] == got[1]


def test_post_accumulate_grad_hook():
    w = disttorch.tensor([1.0, 2.0], requires_grad=True)
    calls = []

    def hook(p):
        calls.append(p.grad.tolist())
        assert p is w

    handle = w.register_post_accumulate_grad_hook(hook)
    (w * 2).sum().backward()
    (w * 3).sum().backward()
    assert calls == [[2.0, 2.0], [5.0, 5.0]]  # runs after .grad is updated
    handle.remove()
    (w * 3).sum().backward()
    assert len(calls) == 2
    with pytest.raises(RuntimeError) as e:
        (w * 1).register_post_accumulate_grad_hook(hook)
    assert str(e.value) == "post accumulate grad hooks cannot be registered on non-leaf tensors"


def test_hooks_match_torch():
    torch = _torch()
    res = []
    for M in (disttorch, torch):
        x = M.tensor([1.0, -2.0], requires_grad=True)
        order = []
        x.register_hook(lambda g: order.append(("leaf", g.tolist())))
        x.register_post_accumulate_grad_hook(lambda p: order.append(("post", p.grad.tolist())))
        y = x.exp()
        y.register_hook(lambda g: order.append(("y", g.tolist())) or g * 2)
        y.retain_grad()
        (y * y).sum().backward()
        res.append((order, np.round(y.grad.numpy(), 5).tolist(), np.round(x.grad.numpy(), 5).tolist()))
    assert [o[0] for o in res[0][0]] == [o[0] for o in res[1][0]]  # same hooks, same order
    for (_, a), (_, b) in zip(res[0][0], res[1][0]):
        np.testing.assert_allclose(a, b, rtol=1e-5)
    np.testing.assert_allclose(res[0][1], res[1][1], rtol=1e-5)
    np.testing.assert_allclose(res[0][2], res[1][2], rtol=1e-5)


# ---- grad_fn names and next_functions ---------------------------------------------------------------
def test_grad_fn_graph_structure():
    w = disttorch.tensor([1.0, 2.0], requires_grad=True)
    b = disttorch.tensor(0.5, requires_grad=True)
    y = (w * 2 + b).sum()
    assert type(y.grad_fn).__name__ == "SumBackward0" and y.grad_fn.name() == "SumBackward0"
    (add, _), = y.grad_fn.next_functions
    assert type(add).__name__ == "AddBackward0"
    (mul, _), (acc_b, _) = add.next_functions
    assert type(mul).__name__ == "MulBackward0" and type(acc_b).__name__ == "AccumulateGrad"
    assert acc_b.variable is b
    assert type(mul.next_functions[0][0]).__name__ == "AccumulateGrad" and mul.next_functions[0][0].variable is w
    assert w._grad_accumulator() is mul.next_functions[0][0]  # one accumulator per leaf
    torch = _torch()
    tw = torch.tensor([1.0, 2.0], requires_grad=True)
    ty = (tw * 2 + torch.tensor(0.5, requires_grad=True)).sum()
    assert type(ty.grad_fn).__name__ == "SumBackward0"
    assert type(ty.grad_fn.next_functions[0][0]).__name__ == type(add).__name__


def test_node_hooks():
    x = disttorch.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    seen = []
    y.grad_fn.register_hook(lambda grad_inputs, grad_outputs: seen.append(len(grad_inputs)))
    y.grad_fn.register_prehook(lambda grad_outputs: seen.append("pre"))
    y.sum().backward()
    assert seen == ["pre", 2] or seen == ["pre", 1]


# ---- errors, compared with PyTorch's text -----------------------------------------------------------
def _int_requires_grad(M):
    M.tensor([1, 2], requires_grad=True)


def _nonscalar_backward(M):
    (M.ones(2, requires_grad=True) * 2).backward()


def _freed_graph(M):
    x = M.ones(2, requires_grad=True)
    y = (x * x).sum()
    y.backward()
    y.backward()


def _saved_input_modified(M):
    x = M.ones(2, requires_grad=True)
    a = x + 1
    y = (a * a).sum()
    a.add_(1)
    y.backward()


def _saved_output_modified(M):
    x = M.ones(2, 3, requires_grad=True)
    a = x.exp()
    a.mul_(2)
    a.sum().backward()


def _saved_leaf_modified(M):
    x = M.ones(2, requires_grad=True)
    c = M.ones(2)
    y = (x * c).sum()
    c.add_(1)
    y.backward()


def _leaf_inplace(M):
    x = M.ones(2, requires_grad=True)
    x.add_(1)


def _leaf_view_inplace(M):
    x = M.ones(2, 2, requires_grad=True)
    x[0].mul_(2)


def _leaf_setitem(M):
    x = M.ones(2, requires_grad=True)
    x[0] = 5


def _leaf_setitem_all(M):
    x = M.ones(2, requires_grad=True)
    x[:] = 5


def _no_grad_backward(M):
    M.ones(2).sum().backward()


def _grad_unused(M):
    M.autograd.grad((M.ones(2, requires_grad=True) * 2).sum(), [M.ones(2, requires_grad=True)])


def _grad_shape_mismatch(M):
    (M.ones(2, requires_grad=True) * 2).backward(M.ones(3))


ERRORS = [
    (_int_requires_grad, "Only Tensors of floating point and complex dtype can require gradients"),
    (_nonscalar_backward, "grad can be implicitly created only for scalar outputs"),
    (_freed_graph, "Trying to backward through the graph a second time (or directly access saved tensors after they "
                   "have already been freed). Saved intermediate values of the graph are freed when you call "
                   ".backward() or autograd.grad(). Specify retain_graph=True if you need to backward through the "
                   "graph a second time or if you need to access saved tensors after calling backward."),
    (_saved_input_modified, "one of the variables needed for gradient computation has been modified by an inplace "
                            "operation: [torch.FloatTensor [2]], which is output 0 of Add, is at version 1; expected "
                            "version 0 instead. Hint: enable anomaly detection to find the operation that failed to "
                            "compute its gradient, with torch.autograd.set_detect_anomaly(True, check_nan=False)."),
    (_saved_output_modified, "one of the variables needed for gradient computation has been modified by an inplace "
                             "operation: [torch.FloatTensor [2, 3]], which is output 0 of Exp, is at version 1; "
                             "expected version 0 instead. Hint: enable anomaly detection to find the operation that "
                             "failed to compute its gradient, with torch.autograd.set_detect_anomaly(True, "
                             "check_nan=False)."),
    (_saved_leaf_modified, "one of the variables needed for gradient computation has been modified by an inplace "
                           "operation: [torch.FloatTensor [2]] is at version 1; expected version 0 instead. Hint: "
                           "enable anomaly detection to find the operation that failed to compute its gradient, "
                           "with torch.autograd.set_detect_anomaly(True, check_nan=False)."),
    (_leaf_inplace, "a leaf Variable that requires grad is being used in an in-place operation."),
    (_leaf_view_inplace, "a view of a leaf Variable that requires grad is being used in an in-place operation."),
    (_leaf_setitem, "a view of a leaf Variable that requires grad is being used in an in-place operation."),
    (_leaf_setitem_all, "a leaf Variable that requires grad is being used in an in-place operation."),
    (_no_grad_backward, "element 0 of tensors does not require grad and does not have a grad_fn"),
    (_grad_unused, "The differentiated Tensor at index 0 appears to not have been used in the graph. "
                   "Set allow_unused=True if this is the desired behavior."),
    (_grad_shape_mismatch, "Mismatch in shape: grad_output[0] has a shape of torch.Size([3]) and output[0] has a "
                           "shape of torch.Size([2])."),
]


def _message(fn, M):
    with pytest.raises(RuntimeError) as e:
        fn(M)
    return str(e.value).replace("disttorch.", "torch.")  # disttorch prints its own name for Size


@pytest.mark.parametrize("fn,msg", ERRORS, ids=[f.__name__.strip("_") for f, _ in ERRORS])
def test_error_message(fn, msg):
    assert _message(fn, disttorch) == msg


@pytest.mark.parametrize("fn,msg", ERRORS, ids=[f.__name__.strip("_") for f, _ in ERRORS])
def test_error_message_is_torchs(fn, msg):
    assert _message(fn, _torch()) == msg


# ---- deep graphs -------------------------------------------------------------------------------------
def test_deep_graph_backward_without_recursion():
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)  # the engine must not recurse per node
    try:
        x = disttorch.tensor([1.0, 2.0], requires_grad=True)
        y = x
        for _ in range(10_000):
            y = y * 1.0001 + 0.0
        y.sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), [1.0001 ** 10_000] * 2, rtol=1e-3)
        (g,) = disttorch.autograd.grad(y.sum(), x)
        np.testing.assert_allclose(g.numpy(), x.grad.numpy())
        del y, g
        gc.collect()
    finally:
        sys.setrecursionlimit(limit)


def test_deep_graph_create_graph():
    x = disttorch.tensor(0.5, requires_grad=True)
    y = x
    for _ in range(2000):  # autograd.grad used to be quadratic in the depth
        y = disttorch.sin(y) * 0.5 + y * 0.5
    (g,) = disttorch.autograd.grad(y, x, create_graph=True)
    assert g.requires_grad
    g.backward()
    assert np.isfinite(x.grad.item())


SCALAR_OPERAND_CASES = ["x * 2", "x + 2", "x - 2", "2 - x", "x / 2", "2 / x", "2 + x", "2 * x",
                        "x.add(2, alpha=3)", "x.sub(2, alpha=3)", "x % 2", "x ** 2", "2 ** x"]


@pytest.mark.parametrize("expr", SCALAR_OPERAND_CASES)
def test_python_number_operand_edges_match_pytorch(expr):
    # PyTorch wraps the number of add/sub/mul/div in a tensor: the node lists a (None, 0) edge for it
    torch = pytest.importorskip("torch", reason="PyTorch not installed: parity check skipped")

    def edges(mod):
        x = mod.ones(3, requires_grad=True)
        r = eval(expr, {"x": x})
        return type(r.grad_fn).__name__, [None if n is None else type(n).__name__ for n, _ in r.grad_fn.next_functions]

    assert edges(disttorch) == edges(torch)


def test_number_operand_edge_does_not_change_gradients():
    x = disttorch.tensor([1.0, 2.0], requires_grad=True)
    y = (x * 3 + 1) / 2 - 4
    assert len(y.grad_fn.next_functions) == 2
    y.sum().backward()
    assert x.grad.tolist() == [1.5, 1.5]


# Ops whose backward hands back the incoming gradient or views of it: the engine must not add into
# those in place (once it did: cat([x, x]).sum().backward() failed on sum's read-only gradient).
GRAD_ALIASING_CASES = {
    "cat_same_input": lambda m, x: m.cat([x, x, x * 2]) * m.arange(18.0).view(6, 3),
    "stack_same_input": lambda m, x: m.stack([x, x]) * m.arange(12.0).view(2, 2, 3),
    "cat_then_sum": lambda m, x: m.cat([x, x]),
    "remainder_scalar": lambda m, x: (x % 4) + (x % 5),
    "fmod_scalar": lambda m, x: x.fmod(4) + x.fmod(5),
    "index_add_twice": lambda m, x: x.index_add(0, m.tensor([1, 0]), x) + x,
    "scatter_add_twice": lambda m, x: x.scatter_add(1, m.tensor([[0, 1, 2], [2, 1, 0]]), x) + x,
}


@pytest.mark.parametrize("case", sorted(GRAD_ALIASING_CASES))
def test_gradient_aliasing_ops_accumulate_correctly(case):
    torch = pytest.importorskip("torch", reason="PyTorch not installed: parity check skipped")
    grads = []
    for mod in (disttorch, torch):
        x = mod.arange(6.0).view(2, 3).requires_grad_()
        GRAD_ALIASING_CASES[case](mod, x).sum().backward()  # incoming gradient: sum's read-only broadcast
        out = GRAD_ALIASING_CASES[case](mod, x)
        (out * mod.linspace(1.0, 2.0, out.numel()).view(out.shape)).sum().backward()  # a writable one
        grads.append(np.asarray(x.grad.tolist()))
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-6)
