"""``kl_divergence(p, q)``: KL(p || q) from the closed form registered for the pair of types.

``register_kl(TypeP, TypeQ)`` adds a closed form; lookup takes the most specific registered pair
for subclasses, as PyTorch's.
"""
from __future__ import annotations

from .. import _torch_api as _T
from ._special import digamma, lgamma, solve_lower_triangular
from .bernoulli import Bernoulli
from .beta import Beta
from .categorical import Categorical
from .gamma import Gamma
from .independent import Independent, _sum_rightmost
from .multivariate_normal import MultivariateNormal
from .normal import Normal
from .uniform import Uniform

_KL_REGISTRY: dict = {}


def register_kl(type_p, type_q):
    """Decorator registering ``fn(p, q)`` as KL(p || q) for instances of ``type_p`` / ``type_q``."""
    def decorator(fn):
        _KL_REGISTRY[type_p, type_q] = fn
        return fn
    return decorator


def _lookup(type_p, type_q):
    matches = [(tp, tq) for tp, tq in _KL_REGISTRY if issubclass(type_p, tp) and issubclass(type_q, tq)]
    if not matches:
        return None
    best = min(matches, key=lambda m: (type_p.__mro__.index(m[0]), type_q.__mro__.index(m[1])))
    return _KL_REGISTRY[best]


def kl_divergence(p, q):
    """KL(p || q) per batch element; NotImplementedError (as PyTorch) for an unregistered pair."""
    fn = _lookup(type(p), type(q))
    if fn is None:
        raise NotImplementedError(f"No KL(p || q) is implemented for p type {type(p).__name__} and q type "
                                  f"{type(q).__name__}")
    return fn(p, q)


def _inf_like(t):
    return _T.full_like(t, float("inf"))


@register_kl(Normal, Normal)
def _kl_normal_normal(p, q):
    var_ratio = (p.scale / q.scale) ** 2
    t1 = ((p.loc - q.loc) / q.scale) ** 2
    return 0.5 * (var_ratio + t1 - 1 - var_ratio.log())


@register_kl(Bernoulli, Bernoulli)
def _kl_bernoulli_bernoulli(p, q):
    from ..nn import functional as F
    t1 = p.probs * (F.softplus(-q.logits) - F.softplus(-p.logits))
    t1 = _T.where(q.probs == 0, _inf_like(t1), t1)
    t1 = _T.where(p.probs == 0, _T.zeros_like(t1), t1)
    t2 = (1 - p.probs) * (F.softplus(q.logits) - F.softplus(p.logits))
    t2 = _T.where(q.probs == 1, _inf_like(t2), t2)
    t2 = _T.where(p.probs == 1, _T.zeros_like(t2), t2)
    return t1 + t2


@register_kl(Categorical, Categorical)
def _kl_categorical_categorical(p, q):
    t = p.probs * (p.logits - q.logits)
    t = _T.where(q.probs == 0, _inf_like(t), t)
    t = _T.where(p.probs == 0, _T.zeros_like(t), t)
    return t.sum(-1)


@register_kl(Uniform, Uniform)
def _kl_uniform_uniform(p, q):
    result = ((q.high - q.low) / (p.high - p.low)).log()
    outside = (q.low > p.low) | (q.high < p.high)
    return _T.where(outside, _inf_like(result), result)


@register_kl(Beta, Beta)
def _kl_beta_beta(p, q):
    sum_p = p.concentration1 + p.concentration0
    sum_q = q.concentration1 + q.concentration0
    t1 = lgamma(q.concentration1) + lgamma(q.concentration0) + lgamma(sum_p)
    t2 = lgamma(p.concentration1) + lgamma(p.concentration0) + lgamma(sum_q)
    t3 = (p.concentration1 - q.concentration1) * digamma(p.concentration1)
    t4 = (p.concentration0 - q.concentration0) * digamma(p.concentration0)
    t5 = (sum_q - sum_p) * digamma(sum_p)
    return t1 - t2 + t3 + t4 + t5


@register_kl(Gamma, Gamma)
def _kl_gamma_gamma(p, q):
    t1 = q.concentration * (p.rate / q.rate).log()
    t2 = lgamma(q.concentration) - lgamma(p.concentration)
    t3 = (p.concentration - q.concentration) * digamma(p.concentration)
    t4 = (q.rate - p.rate) * (p.concentration / p.rate)
    return t1 + t2 + t3 + t4


@register_kl(MultivariateNormal, MultivariateNormal)
def _kl_mvn_mvn(p, q):
    if tuple(p.event_shape) != tuple(q.event_shape):
        raise ValueError("KL-divergence between two Multivariate Normals with different event shapes cannot be "
                         "computed")
    Lp, Lq = p._unbroadcasted_scale_tril, q._unbroadcasted_scale_tril
    half_logdet_q = Lq.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    half_logdet_p = Lp.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    d = p.event_shape[0]
    # tr(Sq^-1 Sp) = || Lq^-1 Lp ||_F^2 ; Mahalanobis term || Lq^-1 (mu_q - mu_p) ||^2
    trace = (solve_lower_triangular(Lq, Lp) ** 2).sum((-2, -1))
    diff = (q.loc - p.loc).unsqueeze(-1)
    maha = (solve_lower_triangular(Lq, diff) ** 2).sum((-2, -1))
    kl = half_logdet_q - half_logdet_p + 0.5 * (trace + maha - d)
    return kl.expand(*p.batch_shape) if len(p.batch_shape) else kl


@register_kl(Independent, Independent)
def _kl_independent_independent(p, q):
    if p.reinterpreted_batch_ndims != q.reinterpreted_batch_ndims:
        raise NotImplementedError
    return _sum_rightmost(kl_divergence(p.base_dist, q.base_dist), p.reinterpreted_batch_ndims)


@register_kl(Normal, Gamma)
@register_kl(Normal, Beta)
@register_kl(Normal, Uniform)
def _kl_normal_bounded(p, q):
    """A Normal puts mass outside any bounded or half-line support: infinite, as PyTorch."""
    return _inf_like(p.loc)


