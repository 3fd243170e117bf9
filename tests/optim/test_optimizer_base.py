"""The Optimizer contract: groups, validation errors, zero_grad, closures, hooks, state dicts."""
from __future__ import annotations

import re
from collections import defaultdict

import pytest

import disttorch
import disttorch.optim as optim


def leaf(*values):
    return disttorch.tensor(list(values) if values else [1.0, 2.0], requires_grad=True)


@pytest.mark.parametrize("make,error,message", [
    (lambda p: optim.SGD([], lr=0.1), ValueError, "optimizer got an empty parameter list"),
    (lambda p: optim.SGD([p], lr=-1.0), ValueError, "Invalid learning rate: -1.0"),
    (lambda p: optim.Adam([p], lr=-1.0), ValueError, "Invalid learning rate: -1.0"),
    (lambda p: optim.SGD([p], lr=0.1, momentum=-0.5), ValueError, "Invalid momentum value: -0.5"),
    (lambda p: optim.SGD([p], lr=0.1, weight_decay=-1), ValueError, "Invalid weight_decay value: -1"),
    (lambda p: optim.SGD([p], lr=0.1, nesterov=True), ValueError,
     "Nesterov momentum requires a momentum and zero dampening"),
    (lambda p: optim.Adam([p], betas=(1.0, 0.9)), ValueError, "Invalid beta parameter at index 0: 1.0"),
    (lambda p: optim.Adam([p], betas=(0.9, -0.1)), ValueError, "Invalid beta parameter at index 1: -0.1"),
    (lambda p: optim.Adam([p], eps=-1e-8), ValueError, "Invalid epsilon value: -1e-08"),
    (lambda p: optim.RMSprop([p], alpha=-0.1), ValueError, "Invalid alpha value: -0.1"),
    (lambda p: optim.Adadelta([p], rho=1.5), ValueError, "Invalid rho value: 1.5"),
    (lambda p: optim.Adagrad([p], lr_decay=-1), ValueError, "Invalid lr_decay value: -1"),
    (lambda p: optim.NAdam([p], momentum_decay=-1), ValueError, "Invalid momentum_decay value: -1"),
    (lambda p: optim.SGD(p, lr=0.1), TypeError,
     "params argument given to the optimizer should be an iterable of Tensors or dicts, but got torch.FloatTensor"),
    (lambda p: optim.SGD([p, 1], lr=0.1), TypeError,
     "optimizer can only optimize Tensors, but one of the params is int"),
    (lambda p: optim.SGD([p * 2], lr=0.1), ValueError, "can't optimize a non-leaf Tensor"),
    (lambda p: optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1), ValueError,
     "some parameters appear in more than one parameter group"),
    (lambda p: optim.LBFGS([{"params": [p]}, {"params": [leaf()]}]), ValueError,
     "LBFGS doesn't support per-parameter options (parameter groups)"),
])
def test_errors_match_pytorch(make, error, message):
    with pytest.raises(error, match="^" + re.escape(message) + "$"):
        make(leaf())


# each optimizer's checked arguments with a bad value ("T2": a 2-element Tensor lr)
_BAD_ARGS = {
    "Adam": dict(lr=[-1, float("nan"), "T2"], eps=[-1], betas=[(1.0, 0.9), (0.9, -1)], weight_decay=[-1]),
    "AdamW": dict(lr=[-1, "T2"], eps=[-1], weight_decay=[-1]),
    "Adamax": dict(lr=[-1], eps=[-1], weight_decay=[-1]),
    "NAdam": dict(lr=[-1], eps=[-1], momentum_decay=[-1]),
    "RAdam": dict(lr=[-1], weight_decay=[-1]),
    "Adadelta": dict(lr=[-1, "T2"], rho=[1.5], eps=[-1], weight_decay=[-1]),
    "Adagrad": dict(lr=[-1, "T2", float("nan")], lr_decay=[-1], weight_decay=[-1], initial_accumulator_value=[-1],
                    eps=[-1]),
    "RMSprop": dict(lr=[-1, "T2"], eps=[-1], momentum=[-1], weight_decay=[-1], alpha=[-1]),
    "LBFGS": dict(lr=[-1, "T2"]),
    "SGD": dict(lr=[-1, "T2", float("nan")], momentum=[-1], weight_decay=[-1]),
}


@pytest.mark.parametrize("name", list(_BAD_ARGS))
def test_constructor_checks_raise_pytorchs_first_error(name):
    """Every bad argument alone, and every pair (which error wins shows the order of the checks)."""
    torch = pytest.importorskip("torch")
    singles = [(k, v) for k, values in _BAD_ARGS[name].items() for v in values]
    combos = [[s] for s in singles] + [[a, b] for i, a in enumerate(singles) for b in singles[i + 1:] if a[0] != b[0]]

    def error(lib, combo):
        kwargs = {k: lib.tensor([0.1, 0.2]) if v == "T2" else v for k, v in combo}
        try:
            getattr(lib.optim, name)([lib.zeros(2, requires_grad=True)], **kwargs)
        except Exception as e:  # noqa: BLE001 - the type and text are what is compared
            return type(e).__name__, str(e)
        return None

    for combo in combos:
        assert error(disttorch, combo) == error(torch, combo), combo


def test_param_groups_take_defaults_and_keep_their_own_options():
    a, b = leaf(), leaf()
    opt = optim.SGD([{"params": [a]}, {"params": b, "lr": 0.5, "momentum": 0.9}], lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert [g["momentum"] for g in opt.param_groups] == [0, 0.9]
    assert opt.param_groups[1]["params"][0] is b  # a lone tensor becomes a one-element list
    assert opt.defaults["lr"] == 0.1
    assert isinstance(opt.state, defaultdict)


def test_add_param_group_rejects_a_parameter_already_present():
    a, b = leaf(), leaf()
    opt = optim.Adam([a], lr=0.1)
    opt.add_param_group({"params": [b], "lr": 0.01})
    assert opt.param_groups[1]["lr"] == 0.01 and opt.param_groups[1]["betas"] == (0.9, 0.999)
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter group"):
        opt.add_param_group({"params": [a]})
    with pytest.raises(TypeError, match="param_group must be a dict"):
        opt.add_param_group([b])


def test_named_parameters_record_param_names():
    a, b = leaf(), leaf()
    opt = optim.SGD([("w", a), ("b", b)], lr=0.1)
    assert opt.param_groups[0]["param_names"] == ["w", "b"]
    assert opt.state_dict()["param_groups"][0]["param_names"] == ["w", "b"]
    with pytest.raises(ValueError, match="all optimizer param groups should be with/without names"):
        opt.add_param_group({"params": [leaf()]})


def test_zero_grad_sets_none_or_zeros():
    p = leaf()
    opt = optim.SGD([p], lr=0.1)
    p.grad = disttorch.tensor([3.0, 4.0])
    opt.zero_grad(set_to_none=False)
    assert p.grad.tolist() == [0.0, 0.0]
    opt.zero_grad()
    assert p.grad is None


def test_step_returns_the_closure_loss_with_grad_enabled():
    p = leaf(2.0)
    opt = optim.SGD([p], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    with disttorch.no_grad():  # the closure still records: step enables grad for it
        loss = opt.step(closure)
    assert loss.item() == 4.0
    assert p.tolist() == [1.0]  # 2 - 0.25 * (2 * 2)


def test_step_hooks_run_in_order_and_can_be_removed():
    p = leaf()
    opt = optim.SGD([p], lr=0.1)
    calls = []
    h1 = opt.register_step_pre_hook(lambda o, args, kwargs: calls.append("pre"))
    h2 = opt.register_step_post_hook(lambda o, args, kwargs: calls.append("post"))
    g = optim.register_optimizer_step_pre_hook(lambda o, args, kwargs: calls.append("global-pre"))
    try:
        p.grad = disttorch.ones(2)
        opt.step()
        assert calls == ["global-pre", "pre", "post"]
    finally:
        g.remove()
    h1.remove()
    h2.remove()
    opt.step()
    assert calls == ["global-pre", "pre", "post"]


def test_step_pre_hook_can_replace_the_arguments():
    p = leaf()
    opt = optim.SGD([p], lr=0.1)
    p.grad = disttorch.ones(2)
    opt.register_step_pre_hook(lambda o, args, kwargs: ((), {"closure": lambda: 42}))
    assert opt.step() == 42
    opt.register_step_pre_hook(lambda o, args, kwargs: "bad")
    with pytest.raises(RuntimeError, match="must return None or a tuple of \\(new_args, new_kwargs\\), but got bad"):
        opt.step()


def test_subclass_calling_super_step_runs_hooks_once():
    calls = []

    class Clipped(optim.SGD):
        def step(self, closure=None):
            return super().step(closure)

    p = leaf()
    opt = Clipped([p], lr=0.1)
    opt.register_step_post_hook(lambda o, a, k: calls.append(1))
    p.grad = disttorch.ones(2)
    opt.step()
    assert calls == [1]


def test_state_dict_layout_and_load_validation():
    a, b, c = leaf(), leaf(), leaf()
    opt = optim.SGD([{"params": [a, b]}, {"params": [c], "lr": 0.5}], lr=0.1, momentum=0.9)
    for p in (a, b, c):
        p.grad = disttorch.ones(2)
    opt.step()
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]
    assert sorted(sd["state"]) == [0, 1, 2]
    assert sd["state"][2]["momentum_buffer"] is opt.state[c]["momentum_buffer"]

    other = optim.SGD([leaf()], lr=0.1)
    with pytest.raises(ValueError, match="^loaded state dict has a different number of parameter groups$"):
        other.load_state_dict(sd)
    two = optim.SGD([{"params": [leaf()]}, {"params": [leaf()]}], lr=0.1)
    with pytest.raises(ValueError, match="^loaded state dict contains a parameter group that doesn't match the size "
                                         "of optimizer's group$"):
        two.load_state_dict(sd)

    x, y, z = leaf(), leaf(), leaf()
    fresh = optim.SGD([{"params": [x, y]}, {"params": [z]}], lr=1.0)
    fresh.load_state_dict(sd)
    assert fresh.param_groups[1]["lr"] == 0.5 and fresh.param_groups[0]["params"][0] is x
    assert fresh.state[z]["momentum_buffer"].tolist() == [1.0, 1.0]


def test_load_state_dict_casts_buffers_to_the_parameter_dtype_but_not_step():
    p = disttorch.zeros(2, dtype=disttorch.float64, requires_grad=True)
    opt = optim.Adam([p])
    buffers = {"step": disttorch.tensor(3.0), "exp_avg": disttorch.ones(2), "exp_avg_sq": disttorch.ones(2)}
    state = {"state": {0: buffers},
             "param_groups": [dict(opt.state_dict()["param_groups"][0])]}
    opt.load_state_dict(state)
    assert opt.state[p]["exp_avg"].dtype == disttorch.float64
    assert opt.state[p]["step"].dtype == disttorch.float32


def test_load_state_dict_accepts_a_numeric_step():
    p = leaf()
    opt = optim.Adam([p], lr=0.1)
    group = dict(opt.state_dict()["param_groups"][0])
    opt.load_state_dict({"state": {0: {"step": 5, "exp_avg": disttorch.zeros(2), "exp_avg_sq": disttorch.zeros(2)}},
                         "param_groups": [group]})
    p.grad = disttorch.ones(2)
    opt.step()
    assert opt.state[p]["step"].item() == 6.0


def test_repr_lists_group_options_like_pytorch():
    opt = optim.SGD([leaf()], lr=0.1, momentum=0.9)
    assert repr(opt) == ("SGD (\nParameter Group 0\n    dampening: 0\n    differentiable: False\n    foreach: None\n"
                         "    fused: None\n    lr: 0.1\n    maximize: False\n    momentum: 0.9\n    nesterov: False\n"
                         "    weight_decay: 0\n)")


def test_differentiable_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="differentiable=True is not supported"):
        optim.Adam([leaf()], differentiable=True)
