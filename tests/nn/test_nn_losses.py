"""Loss parity against PyTorch (values, gradients, grad_fn names, error messages) for every
reduction and option, plus float64 finite-difference checks."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import disttorch
import disttorch.nn as dnn
import disttorch.nn.functional as DF

from _nn_parity import check_fn_parity, check_gradcheck, grad_fn_name, needs_torch, torch

TF = torch.nn.functional if torch is not None else None


def _t(*shape, seed=0, requires_grad=True, kind="normal"):
    g = torch.Generator().manual_seed(seed)
    if kind == "prob":
        x = torch.rand(*shape, generator=g) * 0.9 + 0.05
    elif kind == "simplex":
        x = torch.softmax(torch.randn(*shape, generator=g), dim=-1 if len(shape) < 2 else 1)
    else:
        x = torch.randn(*shape, generator=g)
    return x.requires_grad_(requires_grad)


def _idx(values):
    return torch.tensor(values)


REDUCTIONS = ["mean", "sum", "none"]


def _nn(M):
    return M.nn


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", [
    ("mse", lambda M, r, x, y: _nn(M).MSELoss(reduction=r)(x, y)),
    ("l1", lambda M, r, x, y: _nn(M).L1Loss(reduction=r)(x, y)),
    ("smooth_l1", lambda M, r, x, y: _nn(M).SmoothL1Loss(reduction=r)(x, y)),
    ("smooth_l1_beta", lambda M, r, x, y: _nn(M).SmoothL1Loss(reduction=r, beta=0.5)(x, y)),
    ("smooth_l1_beta0", lambda M, r, x, y: _nn(M).functional.smooth_l1_loss(x, y, reduction=r, beta=0.0)),
    ("huber", lambda M, r, x, y: _nn(M).HuberLoss(reduction=r)(x, y)),
    ("huber_delta", lambda M, r, x, y: _nn(M).HuberLoss(reduction=r, delta=0.3)(x, y)),
    ("mse_weighted", lambda M, r, x, y: _nn(M).functional.mse_loss(x, y, reduction=r, weight=(y * 0 + 2).detach())),
    ("l1_weighted", lambda M, r, x, y: _nn(M).functional.l1_loss(x, y, reduction=r, weight=(y * 0 + 0.5).detach())),
], ids=lambda c: c[0] if isinstance(c, tuple) else c)
@needs_torch
def test_regression_loss_parity(case, reduction):
    name, fn = case
    x, y = _t(3, 4, seed=1), _t(3, 4, seed=2)
    d_out, t_out = check_fn_parity(lambda M, a, b: fn(M, reduction, a, b), [x, y])
    assert grad_fn_name(d_out) == grad_fn_name(t_out)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kwargs", [{}, {"weight": [0.2, 1.0, 3.0, 0.5, 1.5]}, {"ignore_index": 2},
                                    {"label_smoothing": 0.2}, {"label_smoothing": 0.1, "weight": [1, 2, 3, 4, 5.0]},
                                    {"label_smoothing": 0.3, "ignore_index": 0}],
                         ids=["plain", "weight", "ignore", "smooth", "smooth_weight", "smooth_ignore"])
@needs_torch
def test_cross_entropy_class_indices_parity(kwargs, reduction):
    kw = dict(kwargs)
    w = kw.pop("weight", None)
    target = _idx([0, 4, 2, 1, 2, 3])

    def fn(M, x, t):
        weight = None if w is None else M.tensor(w)
        return _nn(M).CrossEntropyLoss(weight=weight, reduction=reduction, **kw)(x, t)

    d_out, t_out = check_fn_parity(fn, [_t(6, 5), target])
    assert grad_fn_name(d_out) == grad_fn_name(t_out)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@needs_torch
def test_cross_entropy_nd_input_parity(reduction):
    target = torch.randint(0, 4, (2, 3, 2), generator=torch.Generator().manual_seed(0))
    target[0, 1, 1] = -100
    for weight in (None, [1.0, 0.5, 2.0, 1.5]):
        d_out, t_out = check_fn_parity(
            lambda M, x, t: _nn(M).functional.cross_entropy(
                x, t, weight=None if weight is None else M.tensor(weight), reduction=reduction),
            [_t(2, 4, 3, 2), target])
        assert grad_fn_name(d_out) == grad_fn_name(t_out)


@needs_torch
def test_cross_entropy_unbatched_input():
    check_fn_parity(lambda M, x, t: _nn(M).functional.cross_entropy(x, t), [_t(5), torch.tensor(3)])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kwargs", [{}, {"label_smoothing": 0.25}, {"weight": [0.3, 1.0, 2.0, 1.2]}])
@needs_torch
def test_cross_entropy_probability_targets_parity(kwargs, reduction):
    kw = dict(kwargs)
    w = kw.pop("weight", None)
    fn = lambda M, x, p: _nn(M).functional.cross_entropy(x, p, reduction=reduction,  # noqa: E731
                                                         weight=None if w is None else M.tensor(w), **kw)
    check_fn_parity(fn, [_t(3, 4), _t(3, 4, seed=5, kind="simplex", requires_grad=False)])
    check_fn_parity(fn, [_t(2, 4, 3), _t(2, 4, 3, seed=6, kind="simplex", requires_grad=False)])


@needs_torch
def test_cross_entropy_is_stable_for_huge_logits():
    x = disttorch.tensor([[1000.0, -1000.0, 0.0], [-5e4, 5e4, 1.0]], requires_grad=True)
    loss = DF.cross_entropy(x, disttorch.tensor([1, 1]))
    loss.backward()
    xt = torch.tensor(x.detach().numpy(), requires_grad=True)
    lt = TF.cross_entropy(xt, torch.tensor([1, 1]))
    lt.backward()
    np.testing.assert_allclose(loss.item(), lt.item(), rtol=1e-6)
    assert np.isfinite(x.grad.numpy()).all()
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), atol=1e-6)


@needs_torch
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_backward_twice_through_a_retained_graph_gives_pytorchs_gradient_each_time(reduction):
    # the first backward turns the kept softmax into the gradient in place; the second recomputes it
    x0 = np.random.default_rng(7).standard_normal((6, 9)).astype(np.float32) * 4
    target = [0, 8, 3, 3, 5, 1]
    x = disttorch.tensor(x0, requires_grad=True)
    loss = DF.cross_entropy(x, disttorch.tensor(target), reduction=reduction)
    xt = torch.tensor(x0, requires_grad=True)
    lt = TF.cross_entropy(xt, torch.tensor(target), reduction=reduction)
    upstream = np.linspace(0.5, 2.0, 6, dtype=np.float32) if reduction == "none" else np.float32(1.5)
    for _ in range(2):
        loss.backward(disttorch.tensor(upstream), retain_graph=True)
        lt.backward(torch.tensor(upstream), retain_graph=True)
        np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_cross_entropy_keeps_float32():
    x = disttorch.randn(8, 5, requires_grad=True)
    loss = DF.cross_entropy(x, disttorch.tensor([0, 1, 2, 3, 4, 0, 1, 2]), weight=disttorch.ones(5))
    loss.backward()
    assert loss.dtype is disttorch.float32 and x.grad.dtype is disttorch.float32


@pytest.mark.parametrize("reduction", REDUCTIONS)
@needs_torch
def test_nll_loss_parity(reduction):
    target = _idx([1, 0, 3, 3])
    for kw in ({}, {"ignore_index": 3}):
        for weight in (None, [1.0, 2.0, 0.5, 1.5]):
            d_out, t_out = check_fn_parity(
                lambda M, x, t: _nn(M).NLLLoss(weight=None if weight is None else M.tensor(weight),
                                               reduction=reduction, **kw)(x.log_softmax(1), t),
                [_t(4, 4), target])
            assert grad_fn_name(d_out) == grad_fn_name(t_out)
    check_fn_parity(lambda M, x, t: _nn(M).functional.nll_loss(x, t, reduction=reduction),
                    [_t(2, 3, 2, 2), torch.randint(0, 3, (2, 2, 2), generator=torch.Generator().manual_seed(1))])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@needs_torch
def test_bce_parity(reduction):
    p, y = _t(3, 4, kind="prob"), _t(3, 4, seed=1, kind="prob")
    for weight in (None, [0.5, 1.0, 2.0, 1.5]):
        d_out, t_out = check_fn_parity(
            lambda M, a, b: _nn(M).BCELoss(weight=None if weight is None else M.tensor(weight), reduction=reduction)(a, b),
            [p, y])
        assert grad_fn_name(d_out) == grad_fn_name(t_out)
    check_fn_parity(lambda M, a, b: _nn(M).BCELoss(reduction=reduction)(a, b),
                    [_t(2, 3, kind="prob"), (_t(2, 3, seed=4, kind="prob", requires_grad=False) > 0.5).float()])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@needs_torch
def test_bce_with_logits_parity(reduction):
    x, y = _t(3, 4), _t(3, 4, seed=1, kind="prob")
    for kw in ({}, {"weight": [0.5, 1.0, 2.0, 1.5]}, {"pos_weight": [3.0, 1.0, 0.5, 2.0]},
               {"weight": [1.0, 2.0, 1.0, 0.5], "pos_weight": [2.0, 2.0, 0.5, 1.0]}):
        d_out, t_out = check_fn_parity(
            lambda M, a, b: _nn(M).BCEWithLogitsLoss(reduction=reduction,
                                                     **{k: M.tensor(v) for k, v in kw.items()})(a, b), [x, y])
        assert grad_fn_name(d_out) == grad_fn_name(t_out)


@needs_torch
def test_bce_with_logits_is_stable():
    x = disttorch.tensor([[200.0, -200.0], [-1e4, 1e4]], requires_grad=True)
    y = disttorch.tensor([[0.0, 1.0], [1.0, 0.0]])
    loss = DF.binary_cross_entropy_with_logits(x, y)
    loss.backward()
    expected = TF.binary_cross_entropy_with_logits(torch.tensor(x.detach().numpy()), torch.tensor(y.numpy()))
    np.testing.assert_allclose(loss.item(), expected.item(), rtol=1e-6)
    assert np.isfinite(x.grad.numpy()).all()


@pytest.mark.parametrize("reduction", ["mean", "batchmean", "sum", "none"])
@pytest.mark.parametrize("log_target", [False, True])
@needs_torch
def test_kl_div_parity(reduction, log_target):
    target = _t(3, 4, seed=3, kind="simplex", requires_grad=False)
    target[0, 1] = 0.0  # xlogy(0, 0) = 0
    if log_target:
        target = target.clamp_min(1e-3).log()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d_out, t_out = check_fn_parity(
            lambda M, x, t: _nn(M).KLDivLoss(reduction=reduction, log_target=log_target)(x.log_softmax(1), t),
            [_t(3, 4), target])
    assert grad_fn_name(d_out) == grad_fn_name(t_out)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@needs_torch
def test_cosine_embedding_loss_parity(reduction):
    target = torch.tensor([1, -1, 1, -1])
    check_fn_parity(lambda M, a, b, t: _nn(M).CosineEmbeddingLoss(margin=0.2, reduction=reduction)(a, b, t),
                    [_t(4, 5), _t(4, 5, seed=1), target])
    check_fn_parity(lambda M, a, b, t: _nn(M).functional.cosine_embedding_loss(a, b, t, reduction=reduction),
                    [_t(5), _t(5, seed=1), torch.tensor(-1)])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@needs_torch
def test_margin_ranking_loss_parity(reduction):
    check_fn_parity(lambda M, a, b, t: _nn(M).MarginRankingLoss(margin=0.1, reduction=reduction)(a, b, t),
                    [_t(6), _t(6, seed=1), torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0, -1.0])])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kwargs", [{}, {"margin": 0.5, "p": 1.0}, {"swap": True}, {"p": 3.0, "margin": 2.0}])
@needs_torch
def test_triplet_margin_loss_parity(kwargs, reduction):
    check_fn_parity(lambda M, a, p, n: _nn(M).TripletMarginLoss(reduction=reduction, **kwargs)(a, p, n),
                    [_t(4, 3), _t(4, 3, seed=1), _t(4, 3, seed=2)])


def test_seed_snippet_values():
    output = disttorch.tensor([[0.5, 1.5, -0.5], [2.0, 0.0, 1.0]], requires_grad=True)
    loss = dnn.CrossEntropyLoss()(output, disttorch.tensor([1, 0]))
    assert repr(loss) == "tensor(0.4076, grad_fn=<NllLossBackward0>)"
    mse = dnn.MSELoss()(output, disttorch.tensor([[1.0, 1.0, 0.0], [1.5, 0.5, 1.0]]))
    assert repr(mse) == "tensor(0.2083, grad_fn=<MseLossBackward0>)"


# ---- errors -------------------------------------------------------------------------------------------
def _error(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - the type and message are what is compared
        return type(e), str(e)
    return None, None


ERROR_CASES = [
    ("target_out_of_bounds", lambda M: _nn(M).functional.cross_entropy(M.zeros(3, 5), M.tensor([0, 5, 1]))),
    ("negative_target", lambda M: _nn(M).functional.cross_entropy(M.zeros(3, 5), M.tensor([0, -2, 1]))),
    ("batch_mismatch", lambda M: _nn(M).functional.cross_entropy(M.zeros(3, 5), M.tensor([0, 1]))),
    ("nd_target_size", lambda M: _nn(M).functional.cross_entropy(M.zeros(2, 5, 3), M.zeros(2, 4, dtype=M.long))),
    ("multi_target", lambda M: _nn(M).functional.cross_entropy(M.zeros(3, 5), M.zeros(3, 4))),
    ("float_index_target", lambda M: _nn(M).functional.nll_loss(M.zeros(3, 5), M.tensor([0.0, 1.0, 2.0]))),
    ("int_prob_target", lambda M: _nn(M).functional.cross_entropy(M.tensor(1.0), M.tensor(1))),
    ("bad_weight", lambda M: _nn(M).functional.cross_entropy(M.zeros(3, 5), M.tensor([0, 1, 1]), weight=M.ones(4))),
    ("label_smoothing", lambda M: _nn(M).functional.cross_entropy(M.zeros(3, 5), M.tensor([0, 1, 1]),
                                                                  label_smoothing=1.5)),
    ("nll_oob", lambda M: _nn(M).functional.nll_loss(M.zeros(3, 5), M.tensor([0, 5, 1]))),
    ("bad_reduction", lambda M: _nn(M).functional.mse_loss(M.zeros(2), M.zeros(2), reduction="foo")),
    ("bce_size", lambda M: _nn(M).functional.binary_cross_entropy(M.rand(3), M.rand(4))),
    ("bce_range", lambda M: _nn(M).functional.binary_cross_entropy(M.tensor([1.5]), M.tensor([1.0]))),
    ("bce_logits_size", lambda M: _nn(M).functional.binary_cross_entropy_with_logits(M.rand(3), M.rand(4))),
    ("huber_delta", lambda M: _nn(M).functional.huber_loss(M.zeros(2), M.zeros(2), delta=-1.0)),
    ("smooth_l1_beta", lambda M: _nn(M).functional.smooth_l1_loss(M.zeros(2), M.zeros(2), beta=-1.0)),
    ("triplet_margin", lambda M: _nn(M).functional.triplet_margin_loss(M.zeros(2, 3), M.zeros(2, 3),
                                                                       M.zeros(2, 3), margin=0.0)),
    ("margin_ranking_dims", lambda M: _nn(M).functional.margin_ranking_loss(M.zeros(2), M.zeros(2, 1), M.zeros(2))),
]


@pytest.mark.parametrize("name,fn", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
@needs_torch
def test_loss_errors_match_pytorch(name, fn):
    d_type, d_msg = _error(fn, disttorch)
    t_type, t_msg = _error(fn, torch)
    assert t_type is not None
    assert d_type is t_type, (name, d_type, d_msg, t_type, t_msg)
    assert d_msg == t_msg.replace("torch.Size", "disttorch.Size")


def test_all_ignored_targets_give_nan_like_pytorch():
    loss = DF.cross_entropy(disttorch.zeros(2, 3), disttorch.tensor([-100, -100]))
    assert np.isnan(loss.item())


def test_mse_broadcast_warning():
    with pytest.warns(UserWarning, match="Using a target size"):
        DF.mse_loss(disttorch.zeros(3, 2), disttorch.zeros(3, 1))


# ---- float64 finite differences ---------------------------------------------------------------------
_r = np.random.default_rng(0)


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides")
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_loss_gradcheck_float64(reduction):
    x, y = _r.standard_normal((3, 4)), _r.standard_normal((3, 4))
    p, q = _r.uniform(0.1, 0.9, (3, 4)), _r.uniform(0.1, 0.9, (3, 4))
    t = disttorch.tensor([0, 3, 1])
    w = disttorch.tensor([0.5, 1.0, 2.0, 1.5], dtype=disttorch.float64)
    second = reduction == "mean"
    check_gradcheck(lambda a, b: DF.mse_loss(a, b, reduction=reduction), x, y, second_order=second)
    check_gradcheck(lambda a, b: DF.smooth_l1_loss(a, b, reduction=reduction, beta=0.7), x, y)
    check_gradcheck(lambda a, b: DF.huber_loss(a, b, reduction=reduction, delta=0.8), x, y)
    check_gradcheck(lambda a, b: DF.l1_loss(a, b, reduction=reduction), x, y)
    check_gradcheck(lambda a: DF.cross_entropy(a, t, weight=w, reduction=reduction), x, second_order=second)
    check_gradcheck(lambda a: DF.cross_entropy(a, t, label_smoothing=0.2, reduction=reduction), x)
    check_gradcheck(lambda a, b: DF.cross_entropy(a, b.softmax(1), reduction=reduction), x, y)
    check_gradcheck(lambda a: DF.nll_loss(a, t, weight=w, reduction=reduction), x, second_order=second)
    check_gradcheck(lambda a, b: DF.binary_cross_entropy(a, b, reduction=reduction), p, q, second_order=second)
    check_gradcheck(lambda a, b: DF.binary_cross_entropy_with_logits(a, b, pos_weight=w, reduction=reduction), x, q,
                    second_order=second)
    check_gradcheck(lambda a, b: DF.kl_div(a, b, reduction=reduction, log_target=True), x, y)
    check_gradcheck(lambda a, b, c: DF.triplet_margin_loss(a, b, c, reduction=reduction), x, y, p)
    check_gradcheck(lambda a, b: DF.cosine_embedding_loss(a, b, disttorch.tensor([1, -1, 1]), margin=-0.9,
                                                          reduction=reduction), x, y)


def test_cross_entropy_nd_gradcheck_float64():
    t = disttorch.tensor([[0, 2], [1, -100]])
    check_gradcheck(lambda a: DF.cross_entropy(a, t, reduction="mean"), _r.standard_normal((2, 3, 2)),
                    second_order=True)


_MISMATCHED = [((3, 4), (3, 5)), ((2, 3, 4), (5, 4)), ((4,), (3,)), ((2, 1, 4), (3, 2))]


def _error_of(call):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the size-mismatch UserWarning comes first, as in PyTorch
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - the test compares the exception itself
            return type(exc).__name__, str(exc).replace("disttorch.", "torch.")
    return None


@needs_torch
@pytest.mark.parametrize("shapes", _MISMATCHED)
@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "kl_div"])
def test_pointwise_losses_with_shapes_that_do_not_broadcast_raise_pytorchs_error(name, shapes):
    a, b = shapes
    ours = _error_of(lambda: getattr(DF, name)(disttorch.rand(*a), disttorch.rand(*b)))
    theirs = _error_of(lambda: getattr(TF, name)(torch.rand(*a), torch.rand(*b)))
    assert theirs is not None and theirs[0] == "RuntimeError"
    assert ours == theirs


@needs_torch
@pytest.mark.parametrize("weight_shape", [(5, 4), (3, 5), (2, 1, 4, 1)])
@pytest.mark.parametrize("name,keyword", [("binary_cross_entropy", "weight"),
                                          ("binary_cross_entropy_with_logits", "weight"),
                                          ("binary_cross_entropy_with_logits", "pos_weight")])
def test_bce_weights_that_do_not_broadcast_raise_pytorchs_error(name, keyword, weight_shape):
    x, w = torch.rand(2, 3, 4), torch.rand(*weight_shape)
    theirs = _error_of(lambda: getattr(TF, name)(x, x, **{keyword: w}))
    ours = _error_of(lambda: getattr(DF, name)(disttorch.tensor(x.numpy()), disttorch.tensor(x.numpy()),
                                               **{keyword: disttorch.tensor(w.numpy())}))
    assert theirs is not None and theirs[0] == "RuntimeError"
    assert ours == theirs
