"""disttorch.distributions against PyTorch: log_prob / entropy / mean / variance values and their
gradients (parameters and value), KL closed forms and gradients, sample shapes and moments,
rsample gradients against finite differences, and PyTorch's argument-validation errors."""
import numpy as np
import pytest

import disttorch as dt
import disttorch.distributions as D

torch = pytest.importorskip("torch")
TD = torch.distributions

rng = np.random.default_rng(7)


def pos(*shape):
    return (rng.uniform(0.5, 3.0, shape)).astype(np.float64)


def real(*shape):
    return rng.standard_normal(shape).astype(np.float64)


def spd(d):
    a = rng.standard_normal((d, d))
    return a @ a.T + d * np.eye(d)


def simplex(*shape):
    p = rng.uniform(0.1, 1.0, shape)
    return p / p.sum(-1, keepdims=True)


# (name, params as numpy, value as numpy); every float param is differentiated.
CASES = [
    ("Normal", dict(loc=real(3), scale=pos(3)), real(3)),
    ("Uniform", dict(low=np.array([-1.0, 0.5]), high=np.array([2.0, 4.0])), np.array([0.3, 1.2])),
    ("Bernoulli", dict(probs=np.array([0.2, 0.7, 0.5])), np.array([1.0, 0.0, 1.0])),
    ("Bernoulli", dict(logits=real(3)), np.array([0.0, 1.0, 1.0])),
    ("Categorical", dict(probs=simplex(2, 4)), np.array([3, 0])),
    ("Categorical", dict(logits=real(2, 4)), np.array([1, 2])),
    ("Gamma", dict(concentration=pos(3), rate=pos(3)), pos(3)),
    ("Beta", dict(concentration1=pos(3), concentration0=pos(3)), np.array([0.1, 0.5, 0.93])),
    ("MultivariateNormal", dict(loc=real(3), covariance_matrix=spd(3)), real(3)),
    ("MultivariateNormal", dict(loc=real(2, 3), scale_tril=np.tril(spd(3)) / 3), real(2, 3)),
    ("MultivariateNormal", dict(loc=real(3), precision_matrix=spd(3)), real(3)),
]


def _build(name, params, value, lib, mod):
    ps = {k: lib.tensor(v, dtype=lib.float64, requires_grad=True) for k, v in params.items()}
    discrete = name == "Categorical"
    val = lib.tensor(value, dtype=lib.int64 if discrete else lib.float64, requires_grad=not discrete and
                     name not in ("Bernoulli",))
    return getattr(mod, name)(**ps), ps, val


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{'-'.join(c[1])}" for c in CASES])
def test_log_prob_entropy_moments_and_gradients_match_torch(case):
    name, params, value = case
    d, dps, dval = _build(name, params, value, dt, D)
    t, tps, tval = _build(name, params, value, torch, TD)
    assert tuple(d.batch_shape) == tuple(t.batch_shape) and tuple(d.event_shape) == tuple(t.event_shape)
    dlp, tlp = d.log_prob(dval), t.log_prob(tval)
    np.testing.assert_allclose(dlp.detach().numpy(), tlp.detach().numpy(), rtol=1e-10, atol=1e-12)
    dent, tent = d.entropy(), t.entropy()
    np.testing.assert_allclose(dent.detach().numpy(), tent.detach().numpy(), rtol=1e-10, atol=1e-12)
    if name != "Categorical":
        np.testing.assert_allclose(d.mean.detach().numpy(), t.mean.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(d.variance.detach().numpy(), t.variance.detach().numpy(), rtol=1e-10)
    # gradients of sum(log_prob) + sum(entropy) w.r.t. every parameter and the value
    (dlp.sum() + dent.sum()).backward()
    (tlp.sum() + tent.sum()).backward()
    for k in dps:
        np.testing.assert_allclose(dps[k].grad.numpy(), tps[k].grad.numpy(), rtol=1e-7, atol=1e-10, err_msg=k)
    if tval.requires_grad and tval.grad is not None:
        np.testing.assert_allclose(dval.grad.numpy(), tval.grad.numpy(), rtol=1e-8, atol=1e-10)
    elif tval.requires_grad:  # Uniform: log_prob does not depend on the value's position
        assert dval.grad is None


KL_PAIRS = [
    ("Normal", dict(loc=real(3), scale=pos(3)), dict(loc=real(3), scale=pos(3))),
    ("Bernoulli", dict(probs=np.array([0.2, 0.6])), dict(probs=np.array([0.5, 0.9]))),
    ("Categorical", dict(probs=simplex(2, 5)), dict(logits=real(2, 5))),
    ("Uniform", dict(low=np.array([0.0, 0.0]), high=np.array([1.0, 2.0])),
     dict(low=np.array([-1.0, 0.5]), high=np.array([2.0, 3.0]))),
    ("Gamma", dict(concentration=pos(3), rate=pos(3)), dict(concentration=pos(3), rate=pos(3))),
    ("Beta", dict(concentration1=pos(3), concentration0=pos(3)), dict(concentration1=pos(3), concentration0=pos(3))),
    ("MultivariateNormal", dict(loc=real(2, 3), covariance_matrix=spd(3)), dict(loc=real(3), scale_tril=np.tril(spd(3)))),
]


@pytest.mark.parametrize("case", KL_PAIRS, ids=[c[0] for c in KL_PAIRS])
def test_kl_divergence_and_gradients_match_torch(case):
    name, p_params, q_params = case
    res = {}
    for lib, mod in ((dt, D), (torch, TD)):
        pp = {k: lib.tensor(v, dtype=lib.float64, requires_grad=True) for k, v in p_params.items()}
        qp = {k: lib.tensor(v, dtype=lib.float64, requires_grad=True) for k, v in q_params.items()}
        kl = mod.kl_divergence(getattr(mod, name)(**pp), getattr(mod, name)(**qp))
        kl.sum().backward()
        res[lib] = (kl.detach().numpy(), {k: v.grad.numpy() for k, v in {**{"p" + k: v for k, v in pp.items()},
                                                                         **{"q" + k: v for k, v in qp.items()}}.items()})
    np.testing.assert_allclose(res[dt][0], res[torch][0], rtol=1e-9, atol=1e-12)
    for k in res[torch][1]:
        np.testing.assert_allclose(res[dt][1][k], res[torch][1][k], rtol=1e-7, atol=1e-10, err_msg=k)


def test_kl_uniform_outside_support_is_inf_and_unregistered_pair_raises():
    kl = D.kl_divergence(D.Uniform(0.0, 2.0), D.Uniform(0.0, 1.0))
    assert kl.item() == float("inf")
    assert D.kl_divergence(D.Normal(0.0, 1.0), D.Gamma(1.0, 1.0)).item() == float("inf")
    with pytest.raises(NotImplementedError, match="No KL"):
        D.kl_divergence(D.Gamma(1.0, 1.0), D.Normal(0.0, 1.0))


MOMENT_CASES = [
    (lambda: D.Normal(dt.tensor([1.0, -2.0]), dt.tensor([0.5, 2.0])), (2,)),
    (lambda: D.Uniform(dt.tensor([0.0, 1.0]), dt.tensor([1.0, 5.0])), (2,)),
    (lambda: D.Bernoulli(probs=dt.tensor([0.1, 0.8])), (2,)),
    (lambda: D.Gamma(dt.tensor([0.5, 4.0]), dt.tensor([1.0, 2.0])), (2,)),
    (lambda: D.Beta(dt.tensor([0.7, 5.0]), dt.tensor([2.0, 1.5])), (2,)),
    (lambda: D.MultivariateNormal(dt.tensor([1.0, 0.0]), dt.tensor([[2.0, 0.6], [0.6, 1.0]])), (2,)),
]


@pytest.mark.parametrize("make,event", MOMENT_CASES, ids=["Normal", "Uniform", "Bernoulli", "Gamma", "Beta", "MVN"])
def test_sample_shapes_and_moments(make, event):
    dt.manual_seed(0)
    dist = make()
    assert tuple(dist.sample().shape) == event
    s = dist.sample((40000,))
    assert tuple(s.shape) == (40000,) + event and not s.requires_grad
    x = s.numpy().astype(np.float64)
    mean, var = dist.mean.numpy(), dist.variance.numpy()
    np.testing.assert_allclose(x.mean(0), mean, atol=4 * np.sqrt(var.max() / 40000) + 1e-3)
    np.testing.assert_allclose(x.var(0), var, rtol=0.05, atol=1e-3)
    if isinstance(dist, D.MultivariateNormal):
        np.testing.assert_allclose(np.cov(x.T), dist.covariance_matrix.numpy(), atol=0.06)


def test_categorical_sample_frequencies_and_shapes():
    dt.manual_seed(1)
    probs = dt.tensor([[0.1, 0.2, 0.7], [0.5, 0.25, 0.25]])
    c = D.Categorical(probs=probs)
    s = c.sample((20000,))
    assert tuple(s.shape) == (20000, 2) and s.dtype == dt.int64
    freq = np.stack([np.bincount(s.numpy()[:, i], minlength=3) / 20000 for i in range(2)])
    np.testing.assert_allclose(freq, probs.numpy(), atol=0.015)
    assert tuple(c.sample((3, 4)).shape) == (3, 4, 2)
    assert tuple(c.enumerate_support().shape) == (3, 2)


def _fd_rsample_grad(make, params, seed, eps=1e-6):
    """d sum(rsample) / d param by central differences with the same random draws."""
    grads = {}
    for k, v in params.items():
        g = np.zeros_like(v)
        for i in np.ndindex(v.shape):
            vals = []
            for sgn in (1, -1):
                p = {kk: vv.copy() for kk, vv in params.items()}
                p[k][i] += sgn * eps
                dt.manual_seed(seed)
                vals.append(make(**{kk: dt.tensor(vv, dtype=dt.float64) for kk, vv in p.items()}).rsample((5,)).sum().item())
            g[i] = (vals[0] - vals[1]) / (2 * eps)
        grads[k] = g
    return grads


@pytest.mark.parametrize("make,params", [
    (D.Normal, dict(loc=real(3), scale=pos(3))),
    (D.Uniform, dict(low=np.array([0.0, -1.0]), high=np.array([1.0, 3.0]))),
    (lambda loc, scale_tril: D.MultivariateNormal(loc, scale_tril=scale_tril),
     dict(loc=real(3), scale_tril=np.tril(spd(3)) / 3)),
], ids=["Normal", "Uniform", "MVN"])
def test_rsample_gradients_match_finite_differences(make, params):
    ts = {k: dt.tensor(v, dtype=dt.float64, requires_grad=True) for k, v in params.items()}
    dt.manual_seed(5)
    make(**ts).rsample((5,)).sum().backward()
    fd = _fd_rsample_grad(make, params, seed=5)
    for k in params:
        np.testing.assert_allclose(ts[k].grad.numpy(), fd[k], rtol=1e-6, atol=1e-7, err_msg=k)


def test_gamma_rsample_gradient_is_the_implicit_reparameterisation():
    alpha = dt.tensor([0.4, 1.0, 3.0, 12.0], dtype=dt.float64, requires_grad=True)
    rate = dt.tensor([1.0, 2.0, 0.5, 1.5], dtype=dt.float64, requires_grad=True)
    dt.manual_seed(3)
    x = D.Gamma(alpha, rate).rsample()
    x.sum().backward()
    std = (x * rate).detach().numpy()  # the standard Gamma(alpha, 1) draw
    ref = torch._standard_gamma_grad(torch.tensor(alpha.detach().numpy()), torch.tensor(std)).numpy()
    # PyTorch's dx/dalpha is a series/asymptotic approximation (relative error ~1e-4); ours is the
    # exact implicit derivative of the regularised incomplete gamma function.
    np.testing.assert_allclose(alpha.grad.numpy(), ref / rate.detach().numpy(), rtol=3e-4)
    np.testing.assert_allclose(rate.grad.numpy(), -x.detach().numpy() / rate.detach().numpy(), rtol=1e-12)


def test_gamma_and_beta_rsample_gradients_are_unbiased_for_the_mean():
    dt.manual_seed(4)
    a = dt.tensor([2.0], dtype=dt.float64, requires_grad=True)
    D.Gamma(a, 4.0).rsample((20000,)).mean().backward()
    assert abs(a.grad.item() - 0.25) < 0.01  # d E[x] / d alpha = 1 / rate
    c1 = dt.tensor([2.0], dtype=dt.float64, requires_grad=True)
    c0 = dt.tensor([3.0], dtype=dt.float64, requires_grad=True)
    D.Beta(c1, c0).rsample((20000,)).mean().backward()
    assert abs(c1.grad.item() - 3.0 / 25) < 0.01 and abs(c0.grad.item() + 2.0 / 25) < 0.01  # d(a/(a+b))


def test_sample_has_no_grad_and_rsample_flags():
    loc = dt.zeros(2, requires_grad=True)
    assert not D.Normal(loc, 1.0).sample().requires_grad
    assert D.Normal(loc, 1.0).rsample().requires_grad
    assert D.Normal.has_rsample and D.Gamma.has_rsample and not D.Categorical.has_rsample
    with pytest.raises(NotImplementedError, match="Categorical has no reparameterised sampler"):
        D.Categorical(logits=dt.zeros(3)).rsample()


def _err(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - comparing both libraries' errors
        return type(e).__name__, str(e).replace("disttorch.Size", "torch.Size")
    return None


ERRORS = [
    lambda m, lib: m.Normal(0.0, -1.0),
    lambda m, lib: m.Normal(lib.zeros(3), lib.tensor([1.0, -1.0, 2.0])),
    lambda m, lib: m.Bernoulli(probs=lib.tensor([0.2, 0.3])).log_prob(lib.tensor([0.5, 1.0])),
    lambda m, lib: m.Bernoulli(probs=lib.tensor([0.2, 1.3])),
    lambda m, lib: m.Categorical(probs=lib.tensor([0.2, 0.8]), logits=lib.tensor([0.0, 1.0])),
    lambda m, lib: m.Categorical(),
    lambda m, lib: m.Categorical(probs=lib.tensor([0.2, 0.8])).log_prob(lib.tensor(2)),
    lambda m, lib: m.Uniform(1.0, 0.0),
    lambda m, lib: m.Gamma(lib.tensor([-1.0]), 1.0),
    lambda m, lib: m.Beta(1.0, 0.0),
    lambda m, lib: m.MultivariateNormal(lib.zeros(2)),
    lambda m, lib: m.MultivariateNormal(lib.zeros(2), lib.tensor([[1.0, 2.0], [2.0, 1.0]])),
    lambda m, lib: m.Normal(lib.zeros(3), 1.0).log_prob(lib.zeros(2)),
]


@pytest.mark.parametrize("i", range(len(ERRORS)))
def test_argument_validation_errors_match_torch(i):
    expected = _err(lambda: ERRORS[i](TD, torch))
    assert expected is not None
    assert _err(lambda: ERRORS[i](D, dt)) == expected


def test_validate_args_false_skips_checks():
    assert D.Normal(0.0, -1.0, validate_args=False).scale.item() == -1.0


def test_independent_normal_matches_torch():
    loc, scale, value = real(4, 3), pos(4, 3), real(4, 3)
    res = {}
    for lib, mod in ((dt, D), (torch, TD)):
        lo, s = lib.tensor(loc, requires_grad=True), lib.tensor(scale, requires_grad=True)
        d = mod.Independent(mod.Normal(lo, s), 1)
        q = mod.Independent(mod.Normal(lib.zeros(4, 3, dtype=lib.float64), lib.ones(4, 3, dtype=lib.float64)), 1)
        lp, ent, kl = d.log_prob(lib.tensor(value)), d.entropy(), mod.kl_divergence(d, q)
        (lp.sum() + ent.sum() + kl.sum()).backward()
        res[lib] = (tuple(d.batch_shape), tuple(d.event_shape), lp.detach().numpy(), ent.detach().numpy(),
                    kl.detach().numpy(), lo.grad.numpy(), s.grad.numpy(), tuple(d.rsample((2,)).shape),
                    repr(d).replace("disttorch.Size", "torch.Size"))
    for a, b in zip(res[dt], res[torch]):
        if isinstance(a, np.ndarray):
            np.testing.assert_allclose(a, b, rtol=1e-10)
        else:
            assert a == b
    with pytest.raises(ValueError, match="Expected reinterpreted_batch_ndims <= len"):
        D.Independent(D.Normal(0.0, 1.0), 1)
