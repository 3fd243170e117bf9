"""The Module contract: registration, traversal, state_dict keys and load errors, repr, hooks,
train/eval, zero_grad, dtype moves, Parameter and Buffer — compared with PyTorch where it runs."""
from __future__ import annotations

import copy
import pickle
import re
from collections import OrderedDict

import numpy as np
import pytest

import disttorch
import disttorch.nn as dnn
from disttorch.nn import Buffer, Parameter

from _nn_parity import load_from_torch, needs_torch, torch

tnn = torch.nn if torch is not None else None


def _norm(text):
    return re.sub(r"\bdisttorch\.", "torch.", text)


def _net(nn):
    """A model touching most registration paths: submodules, containers, buffers, shared layers."""

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.bn = nn.BatchNorm1d(4)
            self.register_buffer("scale", nn.Parameter(nn.Parameter(torch_or_dt(nn).ones(1)).data, False).data)
            self.register_buffer("scratch", torch_or_dt(nn).zeros(2), persistent=False)

        def forward(self, x):
            return self.bn(self.fc(x)) * self.scale

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 4, padding_idx=0)
            self.blocks = nn.ModuleList([Block(), Block()])
            self.head = nn.Sequential(OrderedDict(act=nn.GELU(), drop=nn.Dropout(0.1), out=nn.Linear(4, 3)))
            self.norm = nn.LayerNorm(4)
            self.gain = nn.Parameter(torch_or_dt(nn).ones(3))

        def forward(self, idx):
            h = self.embed(idx).mean(1)
            for b in self.blocks:
                h = b(h)
            return self.head(self.norm(h)) * self.gain

    return Net()


def torch_or_dt(nn):
    return torch if nn is tnn else disttorch


@needs_torch
def test_parameter_and_buffer_names_match_pytorch():
    t, d = _net(tnn), _net(dnn)
    assert [n for n, _ in d.named_parameters()] == [n for n, _ in t.named_parameters()]
    assert [n for n, _ in d.named_buffers()] == [n for n, _ in t.named_buffers()]
    assert list(d.state_dict().keys()) == list(t.state_dict().keys())
    assert [n for n, _ in d.named_modules()] == [n for n, _ in t.named_modules()]
    assert [n for n, _ in d.named_children()] == [n for n, _ in t.named_children()]
    assert "blocks.0.scratch" not in d.state_dict()
    assert sum(p.numel() for p in d.parameters()) == sum(p.numel() for p in t.parameters())


@needs_torch
def test_repr_matches_pytorch():
    assert repr(_net(dnn)) == repr(_net(tnn))
    seq_t = tnn.Sequential(tnn.Linear(2, 2), tnn.Linear(2, 2), tnn.Linear(2, 2), tnn.ReLU(), tnn.Linear(2, 1))
    seq_d = dnn.Sequential(dnn.Linear(2, 2), dnn.Linear(2, 2), dnn.Linear(2, 2), dnn.ReLU(), dnn.Linear(2, 1))
    assert repr(seq_d) == repr(seq_t)
    assert repr(dnn.ModuleList([dnn.ReLU(), dnn.ReLU(), dnn.Tanh()])) == repr(
        tnn.ModuleList([tnn.ReLU(), tnn.ReLU(), tnn.Tanh()]))


REPR_LAYERS = [
    lambda nn: nn.BatchNorm1d(3), lambda nn: nn.BatchNorm2d(3, momentum=None, affine=False, track_running_stats=False),
    lambda nn: nn.LayerNorm((3, 4), elementwise_affine=False), lambda nn: nn.LayerNorm(3, bias=False),
    lambda nn: nn.GroupNorm(2, 4), lambda nn: nn.Dropout(), lambda nn: nn.Dropout2d(0.3, True),
    lambda nn: nn.Embedding(5, 3, padding_idx=0, max_norm=1.0), lambda nn: nn.Embedding(5, 3),
    lambda nn: nn.Flatten(), lambda nn: nn.Unflatten(1, (2, 2)), lambda nn: nn.Identity(),
    lambda nn: nn.Bilinear(2, 3, 4), lambda nn: nn.Linear(2, 3, bias=False), lambda nn: nn.CrossEntropyLoss(),
    lambda nn: nn.MSELoss(reduction="sum"), lambda nn: nn.KLDivLoss(), lambda nn: nn.TripletMarginLoss(),
    lambda nn: nn.ReLU(), lambda nn: nn.ReLU(True), lambda nn: nn.ReLU6(), lambda nn: nn.LeakyReLU(),
    lambda nn: nn.LeakyReLU(0.2, True), lambda nn: nn.PReLU(3), lambda nn: nn.ELU(alpha=0.5, inplace=True),
    lambda nn: nn.SELU(), lambda nn: nn.GELU("tanh"), lambda nn: nn.GELU(), lambda nn: nn.SiLU(True),
    lambda nn: nn.Mish(), lambda nn: nn.Softplus(2, 10), lambda nn: nn.Softplus(), lambda nn: nn.Tanh(),
    lambda nn: nn.Sigmoid(), lambda nn: nn.Hardtanh(-2, 2), lambda nn: nn.Hardtanh(), lambda nn: nn.Softmax(1),
    lambda nn: nn.Softmax(), lambda nn: nn.LogSoftmax(dim=-1), lambda nn: nn.BCEWithLogitsLoss(),
    lambda nn: nn.HuberLoss(delta=2.0), lambda nn: nn.NLLLoss(ignore_index=3),
    lambda nn: nn.ModuleDict({"a": nn.ReLU(), "b": nn.Linear(1, 2)}),
    lambda nn: nn.ParameterList([nn.Parameter(torch_or_dt(nn).ones(2, 3)), torch_or_dt(nn).zeros(3)]),
    lambda nn: nn.ParameterDict({"w": nn.Parameter(torch_or_dt(nn).ones(2))}),
]


@pytest.mark.parametrize("ctor", REPR_LAYERS)
@needs_torch
def test_layer_repr_matches_pytorch(ctor):
    assert _norm(repr(ctor(dnn))) == repr(ctor(tnn))


@needs_torch
def test_load_state_dict_roundtrip_and_outputs():
    t, d = _net(tnn).eval(), _net(dnn).eval()
    load_from_torch(d, t)
    idx = torch.tensor([[1, 2, 0], [4, 5, 6]])
    np.testing.assert_allclose(d(disttorch.tensor(idx.numpy())).detach().numpy(), t(idx).detach().numpy(), atol=1e-5)
    # state_dict values are detached views of the parameters
    sd = d.state_dict()
    assert not sd["gain"].requires_grad and not isinstance(sd["gain"], Parameter)
    sd["gain"][0] = 5.0
    assert d.gain[0].item() == 5.0
    assert isinstance(d.state_dict(keep_vars=True)["gain"], Parameter)
    assert list(d.state_dict(prefix="model.").keys())[0] == "model.gain"


def _load_error(model, state):
    try:
        model.load_state_dict(state)
    except Exception as e:  # noqa: BLE001
        return type(e), str(e)
    return None, None


@needs_torch
def test_load_state_dict_errors_match_pytorch():
    t, d = tnn.Sequential(tnn.Linear(3, 2), tnn.BatchNorm1d(2)), dnn.Sequential(dnn.Linear(3, 2), dnn.BatchNorm1d(2))
    t_sd = {k: v for k, v in t.state_dict().items() if k != "0.bias"}
    t_sd["extra.weight"] = torch.zeros(1)
    t_sd["1.running_mean"] = torch.zeros(3)
    d_sd = {k: disttorch.tensor(v.numpy()) for k, v in t_sd.items()}
    dt_type, dt_msg = _load_error(d, d_sd)
    tt_type, tt_msg = _load_error(t, t_sd)
    assert dt_type is tt_type is RuntimeError
    assert dt_msg == tt_msg.replace("torch.Size", "disttorch.Size")
    assert dt_msg.startswith('Error(s) in loading state_dict for Sequential:\n\tMissing key(s) in state_dict: "0.bias". ')
    result = d.load_state_dict({k: v for k, v in d.state_dict().items() if k != "0.bias"}, strict=False)
    assert result.missing_keys == ["0.bias"] and result.unexpected_keys == []
    assert repr(d.load_state_dict(d.state_dict())) == "<All keys matched successfully>"


def test_load_state_dict_copies_in_place_and_assign():
    lin = dnn.Linear(2, 2)
    w = lin.weight
    lin.load_state_dict({"weight": disttorch.ones(2, 2), "bias": disttorch.zeros(2)})
    assert lin.weight is w and w.tolist() == [[1.0, 1.0], [1.0, 1.0]]
    new_w = disttorch.full((2, 2), 3.0)
    lin.load_state_dict({"weight": new_w, "bias": disttorch.zeros(2)}, assign=True)
    assert isinstance(lin.weight, Parameter) and lin.weight.requires_grad and lin.weight is not w
    assert lin.weight.data_ptr() == new_w.data_ptr()


def _shared_model(nn):
    shared = nn.Linear(2, 2)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    model.tied = nn.Linear(2, 2)
    model.tied.weight = shared.weight
    return model


@needs_torch
def test_shared_parameters_are_deduplicated():
    summary = []
    for nn in (tnn, dnn):
        model = _shared_model(nn)
        summary.append(([n for n, _ in model.named_parameters()],
                        [n for n, _ in model.named_parameters(remove_duplicate=False)],
                        len(list(model.modules())), len(list(model.modules(remove_duplicate=False))),
                        len(list(model.children()))))
    assert summary[1] == summary[0]
    assert summary[1][0] == ["0.weight", "0.bias", "tied.bias"]
    assert summary[1][2:] == (4, 5, 3)


def test_parameters_recurse_false_and_get_helpers():
    d = _net(dnn)
    assert [n for n, _ in d.named_parameters(recurse=False)] == ["gain"]
    assert d.get_submodule("blocks.1.fc") is d.blocks[1].fc
    assert d.get_parameter("blocks.0.fc.weight") is d.blocks[0].fc.weight
    assert d.get_buffer("blocks.0.bn.running_mean") is d.blocks[0].bn.running_mean
    with pytest.raises(AttributeError, match="Linear has no attribute `nope`"):
        d.get_submodule("blocks.0.fc.nope")
    with pytest.raises(AttributeError, match="`weight` is not an nn.Module"):
        d.get_submodule("blocks.0.fc.weight")
    with pytest.raises(AttributeError, match="`scale` is not an nn.Parameter"):
        d.get_parameter("blocks.0.scale")
    with pytest.raises(AttributeError, match="'Net' object has no attribute 'missing'"):
        d.missing  # noqa: B018
    assert "gain" in dir(d) and "head" in dir(d) and "forward" in dir(d)


@needs_torch
def test_registration_errors():
    m = dnn.Module()
    m.w = Parameter(disttorch.ones(1))
    with pytest.raises(TypeError, match=r"cannot assign 'torch.FloatTensor' as parameter 'w' \(torch.nn.Parameter "
                                        r"or None expected\)"):
        m.w = disttorch.ones(1)
    m.w = None
    assert m.w is None and "w" in m._parameters
    with pytest.raises(KeyError, match="attribute 'training' already exists"):
        m.register_buffer("training", disttorch.ones(1))
    with pytest.raises(KeyError, match="buffer name can.*contain"):
        m.register_buffer("a.b", disttorch.ones(1))
    with pytest.raises(TypeError, match="cannot assign 'int' object to buffer 'b'"):
        m.register_buffer("b", 3)
    with pytest.raises(TypeError, match="cannot assign 'torch.FloatTensor' object to parameter 'p'"):
        m.register_parameter("p", disttorch.ones(1))
    with pytest.raises(ValueError, match="Cannot assign non-leaf Tensor to parameter 'q'"):
        x = disttorch.ones(1, requires_grad=True)
        nonleaf = x * 2
        nonleaf.__class__ = Parameter
        m.register_parameter("q", nonleaf)
    with pytest.raises(TypeError, match="int is not a Module subclass"):
        m.add_module("c", 3)
    with pytest.raises(AttributeError, match=r"cannot assign parameters before Module.__init__\(\) call"):
        class Bad(dnn.Module):
            def __init__(self):
                self.w = Parameter(disttorch.ones(1))
        Bad()


def test_buffers_and_buffer_class():
    m = dnn.Module()
    m.running = Buffer(disttorch.zeros(2))
    m.temp = Buffer(disttorch.zeros(2), persistent=False)
    assert list(m.state_dict()) == ["running"]
    assert [n for n, _ in m.named_buffers()] == ["running", "temp"]
    m.running = disttorch.ones(2)  # re-assigning a plain tensor keeps it a buffer
    assert m._buffers["running"].tolist() == [1.0, 1.0]
    del m.running
    assert "running" not in m._buffers
    assert isinstance(m.temp, Buffer) and not isinstance(disttorch.ones(1), Buffer)


def test_parameter_semantics():
    t = disttorch.tensor([1.0, 2.0])
    p = Parameter(t)
    assert isinstance(p, disttorch.Tensor) and p.requires_grad and p.is_leaf
    p.data[0] = 7.0
    assert t[0].item() == 7.0  # shares memory with its source
    assert repr(p) == "Parameter containing:\ntensor([7., 2.], requires_grad=True)"
    assert repr(Parameter(disttorch.ones(2), requires_grad=False)) == "Parameter containing:\ntensor([1., 1.])"
    assert type(p * 2) is disttorch.Tensor
    with pytest.raises(RuntimeError, match="Only Tensors of floating point and complex dtype can require gradients"):
        Parameter(disttorch.tensor([1, 2]))
    q = copy.deepcopy(p)
    assert isinstance(q, Parameter) and q.requires_grad and q.data_ptr() != p.data_ptr()
    r = pickle.loads(pickle.dumps(p))
    assert isinstance(r, Parameter) and r.tolist() == p.tolist()
    assert Parameter().shape == (0,)


def test_deepcopy_and_pickle_keep_sharing_and_state():
    shared = dnn.Linear(2, 2)
    model = dnn.Sequential(shared, dnn.ReLU(), shared, dnn.BatchNorm1d(2))
    model(disttorch.randn(4, 2))
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert clone[0] is clone[2] and clone[0] is not shared
        assert len(list(clone.parameters())) == 4
        np.testing.assert_array_equal(clone[3].running_mean.numpy(), model[3].running_mean.numpy())
        np.testing.assert_array_equal(clone[0].weight.detach().numpy(), shared.weight.detach().numpy())


def test_train_eval_and_requires_grad():
    d = _net(dnn)
    assert d.training and d.blocks[0].bn.training
    assert d.eval() is d
    assert not any(m.training for m in d.modules())
    d.train()
    assert all(m.training for m in d.modules())
    with pytest.raises(ValueError, match="training mode is expected to be boolean"):
        d.train(1)
    d.requires_grad_(False)
    assert not any(p.requires_grad for p in d.parameters())


def test_zero_grad():
    lin = dnn.Linear(3, 2)
    lin(disttorch.randn(4, 3)).sum().backward()
    g = lin.weight.grad
    lin.zero_grad(set_to_none=False)
    assert lin.weight.grad is g and not g.numpy().any()
    lin.zero_grad()
    assert lin.weight.grad is None and lin.bias.grad is None


def test_to_and_dtype_moves_keep_parameter_identity():
    model = dnn.Sequential(dnn.Linear(3, 2), dnn.BatchNorm1d(2))
    params = list(model.parameters())
    model(disttorch.randn(4, 3)).sum().backward()
    assert model.double() is model
    assert [id(p) for p in model.parameters()] == [id(p) for p in params]
    assert all(p.dtype is disttorch.float64 and p.grad.dtype is disttorch.float64 for p in params)
    assert model[1].running_mean.dtype is disttorch.float64
    assert model[1].num_batches_tracked.dtype is disttorch.int64  # integer buffers keep their dtype
    model.to(disttorch.float32)
    assert all(p.dtype is disttorch.float32 for p in params)
    model.to("cpu", disttorch.float16)
    assert params[0].dtype is disttorch.float16
    model.float().to(dtype=disttorch.float64).to(disttorch.zeros(1))
    assert params[0].dtype is disttorch.float32
    model.half().type(disttorch.float64)
    assert params[0].dtype is disttorch.float64
    assert model.cpu() is model and model.share_memory() is model
    with pytest.raises(TypeError, match="nn.Module.to only accepts floating point or complex dtypes, but got desired "
                                        "dtype=disttorch.int64"):
        model.to(disttorch.int64)
    if not disttorch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            model.cuda()


def test_apply_visits_children_first():
    seen = []
    model = dnn.Sequential(dnn.Linear(1, 1), dnn.Sequential(dnn.ReLU()))
    model.apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Linear", "ReLU", "Sequential", "Sequential"]


def test_forward_hooks():
    lin = dnn.Linear(2, 2)
    calls = []
    h1 = lin.register_forward_pre_hook(lambda m, args: (args[0] * 0,))
    h2 = lin.register_forward_hook(lambda m, args, out: calls.append("post") or out + 1)
    h3 = lin.register_forward_hook(lambda m, args, out: calls.append("first"), prepend=True)
    out = lin(disttorch.randn(3, 2))
    np.testing.assert_allclose(out.detach().numpy(), np.broadcast_to(lin.bias.detach().numpy() + 1, (3, 2)), atol=1e-6)
    assert calls == ["first", "post"]
    for h in (h1, h2, h3):
        h.remove()
    x = disttorch.randn(3, 2)
    np.testing.assert_allclose(lin(x).detach().numpy(), (x @ lin.weight.t() + lin.bias).detach().numpy(), atol=1e-6)
    seen = {}
    with lin.register_forward_pre_hook(lambda m, a, kw: seen.update(kw), with_kwargs=True):
        dnn.Module.__call__(lin, x)
    lin.register_forward_hook(lambda m, a, kw, o: o * 0, with_kwargs=True)
    assert not lin(x).detach().numpy().any()


def test_forward_hook_always_call_runs_on_error():
    seen = []

    class Boom(dnn.Module):
        def forward(self, x):
            raise ValueError("boom")

    m = Boom()
    m.register_forward_hook(lambda mod, args, out: seen.append(out), always_call=True)
    with pytest.raises(ValueError, match="boom"):
        m(disttorch.ones(1))
    assert seen == [None]


@needs_torch
def test_full_backward_hooks_match_pytorch():
    records = {}

    def run(nn, M, key):
        M.manual_seed(0)
        lin = nn.Linear(3, 2)
        got = []
        lin.register_full_backward_pre_hook(lambda m, go: got.append(("pre", go[0].clone())))
        lin.register_full_backward_hook(lambda m, gi, go: got.append(("post", gi[0].clone(), go[0].clone())))
        return lin, got

    t_lin, t_got = run(tnn, torch, "t")
    d_lin, d_got = run(dnn, disttorch, "d")
    load_from_torch(d_lin, t_lin)
    xt = torch.randn(4, 3, requires_grad=True)
    xd = disttorch.tensor(xt.detach().numpy(), requires_grad=True)
    (t_lin(xt) ** 2).sum().backward()
    (d_lin(xd) ** 2).sum().backward()
    assert [g[0] for g in d_got] == [g[0] for g in t_got] == ["pre", "post"]
    np.testing.assert_allclose(d_got[0][1].numpy(), t_got[0][1].numpy(), atol=1e-5)
    np.testing.assert_allclose(d_got[1][1].numpy(), t_got[1][1].numpy(), atol=1e-5)
    np.testing.assert_allclose(xd.grad.numpy(), xt.grad.numpy(), atol=1e-5)
    records["ok"] = True


def test_full_backward_hook_can_replace_grad_input():
    lin = dnn.Linear(2, 2)
    lin.register_full_backward_hook(lambda m, gi, go: (gi[0] * 0,))
    x = disttorch.randn(3, 2, requires_grad=True)
    lin(x).sum().backward()
    assert not x.grad.numpy().any()
    assert lin.weight.grad is not None and lin.weight.grad.numpy().any()


def test_full_backward_hook_without_input_grad():
    lin = dnn.Linear(2, 2)
    seen = []
    lin.register_full_backward_hook(lambda m, gi, go: seen.append((gi, go[0].shape)))
    lin(disttorch.randn(3, 2)).sum().backward()
    assert seen == [((None,), (3, 2))]


def test_state_dict_hooks_and_extra_state():
    class WithExtra(dnn.Module):
        def __init__(self):
            super().__init__()
            self.lin = dnn.Linear(1, 1)
            self.counter = 0

        def get_extra_state(self):
            return {"counter": self.counter}

        def set_extra_state(self, state):
            self.counter = state["counter"]

    m = WithExtra()
    m.counter = 5
    sd = m.state_dict()
    # own entries (here only the extra state) come before the children's, as in PyTorch
    assert list(sd) == ["_extra_state", "lin.weight", "lin.bias"] and sd._metadata[""] == {"version": 1}
    other = WithExtra()
    other.load_state_dict(sd)
    assert other.counter == 5
    seen = []
    other.register_load_state_dict_post_hook(lambda mod, keys: seen.append(list(keys.missing_keys)))
    other.load_state_dict({"lin.weight": disttorch.ones(1, 1), "_extra_state": {"counter": 1}}, strict=False)
    assert seen == [["lin.bias"]]


def test_call_without_forward_and_init_args():
    with pytest.raises(NotImplementedError, match='Module \\[Module\\] is missing the required "forward" function'):
        dnn.Module()(1)
    with pytest.raises(TypeError, match="got an unexpected keyword argument 'x'"):
        dnn.Module(x=1)
