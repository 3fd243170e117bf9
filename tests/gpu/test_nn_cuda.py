"""Every nn layer, functional form and loss on a CUDA device (strict CuPy stand-in) against the same code on
the host: outputs, input gradients, parameter gradients and buffers agree, and all of them live on the
device. Module.to/cuda move parameters in place."""
from __future__ import annotations

import numpy as np
import pytest

import disttorch
import disttorch.nn as dnn
import disttorch.nn.functional as F
from _on_device import assert_on, assert_same, host

_rng = np.random.default_rng(0)


def _arr(shape, kind="normal"):
    if kind == "prob":
        return _rng.uniform(0.05, 0.95, shape).astype(np.float32)
    if kind == "away":  # off the kinks of relu-like functions
        x = _rng.standard_normal(shape)
        return np.where(np.abs(x) < 0.1, np.sign(x) * 0.1 + x, x).astype(np.float32)
    return _rng.standard_normal(shape).astype(np.float32)


# (id, constructor, input shapes, kwargs of the call)
MODULES = [
    ("linear", lambda: dnn.Linear(5, 3), [(4, 5)]),
    ("linear_3d", lambda: dnn.Linear(5, 3, bias=False), [(2, 3, 5)]),
    ("bilinear", lambda: dnn.Bilinear(3, 4, 2), [(5, 3), (5, 4)]),
    ("batchnorm1d", lambda: dnn.BatchNorm1d(4), [(6, 4)]),
    ("batchnorm2d", lambda: dnn.BatchNorm2d(3), [(2, 3, 4, 4)]),
    ("batchnorm_eval", lambda: dnn.BatchNorm2d(3).eval(), [(2, 3, 2, 2)]),
    ("layernorm", lambda: dnn.LayerNorm((3, 4)), [(2, 3, 4)]),
    ("groupnorm", lambda: dnn.GroupNorm(2, 4), [(3, 4, 5)]),
    ("prelu", lambda: dnn.PReLU(4, init=0.1), [(3, 4, 5)]),
    ("activations", lambda: dnn.Sequential(dnn.ReLU(), dnn.ReLU6(), dnn.LeakyReLU(0.2), dnn.ELU(0.7), dnn.SELU(),
                                           dnn.GELU(), dnn.GELU("tanh"), dnn.SiLU(), dnn.Mish(), dnn.Softplus(2.0),
                                           dnn.Tanh(), dnn.Sigmoid(), dnn.Hardtanh(-0.5, 0.8)), [(4, 5)]),
    ("inplace_activations", lambda: dnn.Sequential(dnn.Linear(5, 5), dnn.ReLU(inplace=True), dnn.Linear(5, 5),
                                                   dnn.ELU(inplace=True), dnn.Linear(5, 5), dnn.SiLU(True)), [(4, 5)]),
    ("softmax", lambda: dnn.Sequential(dnn.Softmax(dim=1), dnn.LogSoftmax(dim=-1)), [(4, 5)]),
    ("dropout", lambda: dnn.Dropout(0.4), [(6, 7)]),
    ("dropout2d", lambda: dnn.Dropout2d(0.5), [(2, 4, 3, 3)]),
    ("conv1d", lambda: dnn.Conv1d(2, 3, 3, stride=2, padding=1), [(2, 2, 7)]),
    ("conv2d", lambda: dnn.Conv2d(3, 4, 3, padding=1), [(2, 3, 6, 6)]),
    ("conv2d_strided_dilated", lambda: dnn.Conv2d(2, 2, (2, 3), stride=(2, 1), padding=(1, 0), dilation=(1, 2)),
     [(1, 2, 5, 7)]),
    ("conv2d_groups_same", lambda: dnn.Conv2d(4, 2, 3, groups=2, padding="same"), [(2, 4, 5, 5)]),
    ("conv_transpose2d", lambda: dnn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1), [(1, 2, 3, 3)]),
    ("conv_transpose2d_groups", lambda: dnn.ConvTranspose2d(2, 4, 2, groups=2, dilation=2), [(1, 2, 2, 3)]),
    ("maxpool2d", lambda: dnn.MaxPool2d(2), [(2, 3, 6, 6)]),
    ("maxpool2d_pad", lambda: dnn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), [(1, 2, 7, 7)]),
    ("maxpool1d", lambda: dnn.MaxPool1d(3, stride=2), [(2, 3, 9)]),
    ("avgpool2d", lambda: dnn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), [(1, 2, 7, 7)]),
    ("avgpool1d", lambda: dnn.AvgPool1d(2), [(2, 3, 8)]),
    ("adaptive_avg", lambda: dnn.AdaptiveAvgPool2d((3, 2)), [(2, 3, 7, 5)]),
    ("adaptive_max", lambda: dnn.AdaptiveMaxPool2d(2), [(2, 3, 5, 5)]),
    ("embedding", lambda: dnn.Embedding(10, 4, padding_idx=0), "indices"),
    ("embedding_max_norm", lambda: dnn.Embedding(10, 4, max_norm=1.0), "indices"),
    ("rnn", lambda: dnn.RNN(3, 4, num_layers=2, nonlinearity="relu"), [(5, 2, 3)]),
    ("lstm", lambda: dnn.LSTM(3, 4, bidirectional=True, batch_first=True), [(2, 5, 3)]),
    ("lstm_proj", lambda: dnn.LSTM(3, 4, proj_size=2), [(5, 2, 3)]),
    ("gru", lambda: dnn.GRU(3, 4, num_layers=2, dropout=0.3), [(5, 2, 3)]),
    ("cells", lambda: _Cells(), [(4, 3)]),
    ("mha", lambda: dnn.MultiheadAttention(8, 2, batch_first=True), "mha"),
    ("mha_kv", lambda: dnn.MultiheadAttention(6, 3, kdim=5, vdim=3, add_bias_kv=True, dropout=0.2), "mha_kv"),
    ("encoder", lambda: dnn.TransformerEncoder(dnn.TransformerEncoderLayer(8, 2, 16, dropout=0.1, batch_first=True,
                                                                           norm_first=True), 2), [(2, 5, 8)]),
    ("flatten_unflatten", lambda: dnn.Sequential(dnn.Flatten(), dnn.Unflatten(1, (4, 3))), [(2, 3, 4)]),
]


class _Cells(dnn.Module):
    def __init__(self):
        super().__init__()
        self.rnn, self.lstm, self.gru = dnn.RNNCell(3, 4), dnn.LSTMCell(3, 4), dnn.GRUCell(3, 4)

    def forward(self, x):
        h = self.rnn(x)
        h2, c2 = self.lstm(x, (h, h))
        return self.gru(x, h2) + c2


def _inputs(spec):
    if spec == "indices":
        return [np.array([[0, 3, 9], [9, 9, 2]])]
    if spec == "mha":
        return [_arr((2, 4, 8)), _arr((2, 5, 8)), _arr((2, 5, 8))]
    if spec == "mha_kv":
        return [_arr((4, 2, 6)), _arr((3, 2, 5)), _arr((3, 2, 3))]
    return [_arr(s, "away") for s in spec]


def _run_module(make, arrays, device, train=True):
    """Seeded build, moved to ``device``; forward, backward of a fixed upstream gradient."""
    disttorch.manual_seed(0)
    m = make().train(train)
    m.to(device)
    disttorch.manual_seed(1)  # dropout masks: the same host stream on both devices
    xs = [disttorch.tensor(a, device=device, requires_grad=a.dtype.kind == "f") for a in arrays]
    out = m(*xs)
    outs = [o for o in (out if isinstance(out, tuple) else (out,)) for o in (o if isinstance(o, tuple) else (o,))
            if isinstance(o, disttorch.Tensor) and o.requires_grad]
    ups = [disttorch.tensor(np.random.default_rng(i).standard_normal(tuple(o.shape)).astype(np.float32),
                            device=device) for i, o in enumerate(outs)]
    disttorch.autograd.backward(outs, ups)
    return (outs, [x.grad for x in xs if x.requires_grad], [p.grad for p in m.parameters()], list(m.buffers()))


@pytest.mark.parametrize("name,make,spec", MODULES, ids=[m[0] for m in MODULES])
def test_module_on_device_matches_host(gpu, name, make, spec):
    arrays = _inputs(spec)
    want = _run_module(make, arrays, "cpu")
    got = _run_module(make, arrays, "cuda")
    assert_same(got, want, "cuda:0", rtol=1e-5, atol=1e-5, what=name)


# (id, fn(F, *tensors), input arrays): the functional forms and losses
def _cls_target(*shape, classes=4):
    return _rng.integers(0, classes, shape)


FUNCTIONAL = [
    ("mse", lambda F, x, y: F.mse_loss(x, y), [_arr((3, 4)), _arr((3, 4))]),
    ("l1_sum", lambda F, x, y: F.l1_loss(x, y, reduction="sum"), [_arr((3, 4)), _arr((3, 4))]),
    ("smooth_l1", lambda F, x, y: F.smooth_l1_loss(x, y, beta=0.5, reduction="none"), [_arr((3, 4)), _arr((3, 4))]),
    ("huber", lambda F, x, y: F.huber_loss(x, y, delta=0.3), [_arr((3, 4)), _arr((3, 4))]),
    ("cross_entropy", lambda F, x, t: F.cross_entropy(x, t), [_arr((5, 4)), _cls_target(5)]),
    ("cross_entropy_opts", lambda F, x, t, w: F.cross_entropy(x, t, weight=w, ignore_index=1, label_smoothing=0.1),
     [_arr((5, 4)), _cls_target(5), _arr((4,), "prob")]),
    ("cross_entropy_nd", lambda F, x, t: F.cross_entropy(x, t, reduction="none"), [_arr((2, 4, 3, 3)),
                                                                                    _cls_target(2, 3, 3)]),
    ("cross_entropy_probs", lambda F, x, p: F.cross_entropy(x, p.softmax(1), label_smoothing=0.2),
     [_arr((5, 4)), _arr((5, 4))]),
    ("nll", lambda F, x, t, w: F.nll_loss(x.log_softmax(1), t, weight=w), [_arr((5, 4)), _cls_target(5),
                                                                             _arr((4,), "prob")]),
    ("bce", lambda F, p, y, w: F.binary_cross_entropy(p, y, weight=w), [_arr((3, 4), "prob"), _arr((3, 4), "prob"),
                                                                         _arr((3, 4), "prob")]),
    ("bce_logits", lambda F, x, y, pw: F.binary_cross_entropy_with_logits(x, y, pos_weight=pw),
     [_arr((3, 4)), _arr((3, 4), "prob"), _arr((4,), "prob")]),
    ("kl_div", lambda F, x, y: F.kl_div(x.log_softmax(1), y.softmax(1), reduction="batchmean"),
     [_arr((3, 4)), _arr((3, 4))]),
    ("cosine_embedding", lambda F, a, b, y: F.cosine_embedding_loss(a, b, y.sign(), margin=0.1),
     [_arr((4, 5)), _arr((4, 5)), _arr((4,), "away")]),
    ("margin_ranking", lambda F, a, b, y: F.margin_ranking_loss(a, b, y.sign(), margin=0.2),
     [_arr((6,)), _arr((6,)), _arr((6,), "away")]),
    ("triplet", lambda F, a, p, n: F.triplet_margin_loss(a, p, n, swap=True), [_arr((4, 5)), _arr((4, 5)),
                                                                               _arr((4, 5))]),
    ("one_hot_normalize", lambda F, x, t: F.normalize(x, dim=1) * F.one_hot(t, 4), [_arr((5, 4)), _cls_target(5)]),
    ("cosine_pairwise", lambda F, a, b: F.cosine_similarity(a, b) + F.pairwise_distance(a, b),
     [_arr((4, 5)), _arr((4, 5))]),
    ("glu_celu_misc", lambda F, x: F.glu(x) + F.celu(x[:, :2]) + F.hardswish(x[:, 2:]) + F.softsign(x[:, :2])
     + F.logsigmoid(x[:, 2:]) + F.hardsigmoid(x[:, :2]) + F.threshold(x[:, 2:], 0.1, -1.0), [_arr((3, 4), "away")]),
    ("softmin", lambda F, x: F.softmin(x, dim=0), [_arr((3, 4))]),
    ("interp_nearest", lambda F, x: F.interpolate(x, scale_factor=1.5), [_arr((1, 2, 3, 4))]),
    ("interp_bilinear", lambda F, x: F.interpolate(x, size=(4, 5), mode="bilinear"), [_arr((1, 2, 3, 4))]),
    ("interp_bilinear_ac", lambda F, x: F.interpolate(x, size=(5, 7), mode="bilinear", align_corners=True),
     [_arr((2, 1, 3, 4))]),
    ("interp_linear", lambda F, x: F.interpolate(x, size=7, mode="linear"), [_arr((1, 2, 4))]),
    ("interp_area", lambda F, x: F.interpolate(x, size=(2, 3), mode="area"), [_arr((1, 1, 5, 4))]),
    ("pad_reflect", lambda F, x: F.pad(x, (2, 1, 1, 2), mode="reflect"), [_arr((1, 1, 3, 4))]),
    ("pad_replicate", lambda F, x: F.pad(x, (2, 1), mode="replicate"), [_arr((1, 2, 3))]),
    ("pad_circular", lambda F, x: F.pad(x, (2, -1, 1, 1), mode="circular"), [_arr((1, 3, 4))]),
    ("pad_constant", lambda F, x: F.pad(x, (2, -1, 1, 1), value=2.0), [_arr((1, 3, 4))]),
    ("sdpa_causal", lambda F, q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
     [_arr((2, 3, 4)), _arr((2, 3, 4)), _arr((2, 3, 4))]),
    ("sdpa_mask", lambda F, q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m > 0),
     [_arr((2, 3, 4)), _arr((2, 5, 4)), _arr((2, 5, 4)), _arr((3, 5), "away")]),
    ("embedding_fn", lambda F, w, i: F.embedding(i, w, padding_idx=1), [_arr((6, 3)), np.array([[1, 2], [5, 1]])]),
    ("batch_norm_fn", lambda F, x, rm, rv: F.batch_norm(x, rm.detach(), rv.detach().abs(), training=True),
     [_arr((4, 3)), _arr((3,)), _arr((3,))]),
]


def _run_functional(fn, arrays, device):
    disttorch.manual_seed(0)
    xs = [disttorch.tensor(a, device=device, requires_grad=a.dtype.kind == "f") for a in arrays]
    out = fn(F, *xs)
    up = disttorch.tensor(np.random.default_rng(5).standard_normal(tuple(out.shape)).astype(np.float32), device=device)
    grads = disttorch.autograd.grad(out, [x for x in xs if x.requires_grad], up, allow_unused=True)
    return out, grads


@pytest.mark.parametrize("name,fn,arrays", FUNCTIONAL, ids=[f[0] for f in FUNCTIONAL])
def test_functional_on_device_matches_host(gpu, name, fn, arrays):
    assert_same(_run_functional(fn, arrays, "cuda"), _run_functional(fn, arrays, "cpu"), "cuda:0", rtol=1e-5,
                atol=1e-5, what=name)


def test_module_to_cuda_keeps_parameter_objects_and_moves_grads(gpu):
    disttorch.manual_seed(0)
    model = dnn.Sequential(dnn.Conv2d(1, 2, 3), dnn.BatchNorm2d(2), dnn.Flatten(), dnn.Linear(8, 3))
    params = list(model.parameters())
    ids = [id(p) for p in params]
    model(disttorch.randn(2, 1, 4, 4)).sum().backward()
    before = [host(p) for p in params]
    assert model.to("cuda") is model and [id(p) for p in model.parameters()] == ids
    assert all(p.is_cuda and p.grad.is_cuda and isinstance(p, dnn.Parameter) for p in params)
    assert all(b.is_cuda for b in model.buffers())
    assert model[1].num_batches_tracked.device == disttorch.device("cuda:0")
    for p, b in zip(params, before):
        np.testing.assert_array_equal(host(p), b)
    sd = model.state_dict()
    assert all(v.is_cuda for v in sd.values())
    model.cpu()
    assert [id(p) for p in model.parameters()] == ids and not any(p.is_cuda for p in params)
    model.load_state_dict(sd)  # a CUDA state dict loads into a CPU model (copied across devices)
    assert not any(p.is_cuda for p in params)
    last = disttorch.cuda.device_count() - 1  # the stand-in has two GPUs
    assert model.cuda(last) is model and all(p.device == disttorch.device("cuda", last) for p in params)


def test_module_to_dtype_and_device_together(gpu):
    model = dnn.Linear(3, 2).to("cuda", disttorch.float64)
    assert model.weight.dtype is disttorch.float64 and model.weight.is_cuda
    out = model(disttorch.ones(4, 3, dtype=disttorch.float64, device="cuda"))
    assert_on(out, "cuda:0")


def test_init_functions_keep_the_device(gpu):
    w = dnn.Parameter(disttorch.empty(4, 5, device="cuda"))
    for init in (dnn.init.uniform_, dnn.init.normal_, dnn.init.xavier_uniform_, dnn.init.xavier_normal_,
                 dnn.init.kaiming_uniform_, dnn.init.kaiming_normal_, dnn.init.trunc_normal_, dnn.init.orthogonal_,
                 dnn.init.zeros_, dnn.init.ones_, lambda t: dnn.init.constant_(t, 0.3), dnn.init.eye_):
        init(w)
        assert_on(w, "cuda:0")
    b = disttorch.empty(2, 3, 3, 3, device="cuda")
    dnn.init.dirac_(b)
    assert_on(b, "cuda:0")
    # the same seed draws the same values on either device (draws come from the host stream)
    disttorch.manual_seed(3)
    a = dnn.init.kaiming_uniform_(disttorch.empty(4, 5, device="cuda"))
    disttorch.manual_seed(3)
    np.testing.assert_array_equal(host(a), host(dnn.init.kaiming_uniform_(disttorch.empty(4, 5))))


def test_clip_grad_norm_and_utils_on_device(gpu):
    from disttorch.nn.utils import clip_grad_norm_, clip_grad_value_, parameters_to_vector, vector_to_parameters
    res = []
    for device in ("cuda", "cpu"):
        disttorch.manual_seed(0)
        model = dnn.Linear(4, 3).to(device)
        model(disttorch.randn(5, 4).to(device)).pow(2).sum().backward()
        norm = clip_grad_norm_(model.parameters(), 0.5)
        clip_grad_value_(model.parameters(), 0.1)
        vec = parameters_to_vector(model.parameters())
        vector_to_parameters(vec * 2, model.parameters())
        res.append((norm, vec, [p.grad for p in model.parameters()], list(model.parameters())))
    assert_same(res[0], res[1], "cuda:0")
