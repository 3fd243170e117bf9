"""torch.distributions: probability distributions with sampling, reparameterised sampling,
differentiable ``log_prob`` / ``entropy`` and closed-form ``kl_divergence``, as PyTorch's.

Families: ``Normal``, ``Uniform``, ``Bernoulli``, ``Categorical``, ``Gamma``, ``Beta``,
``MultivariateNormal``, and ``Independent`` over any of them. Arguments and ``log_prob`` values
are validated (``validate_args``, on by default as in PyTorch) with PyTorch's messages.
"""
from . import constraints
from .bernoulli import Bernoulli
from .beta import Beta
from .categorical import Categorical
from .distribution import Distribution
from .gamma import Gamma
from .independent import Independent
from .kl import kl_divergence, register_kl
from .multivariate_normal import MultivariateNormal
from .normal import Normal
from .uniform import Uniform

__all__ = ["Bernoulli", "Beta", "Categorical", "Distribution", "Gamma", "Independent", "MultivariateNormal", "Normal",
           "Uniform",
           "constraints", "kl_divergence", "register_kl"]
