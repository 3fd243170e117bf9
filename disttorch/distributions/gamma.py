"""Gamma(concentration, rate): density rate^a x^(a-1) e^(-rate x) / Gamma(a) on x > 0."""
from __future__ import annotations

from .._size import Size
from . import constraints
from ._special import digamma, lgamma, standard_gamma
from .distribution import Distribution
from .utils import broadcast_all


class Gamma(Distribution):
    """Shape ``concentration`` (alpha) and inverse scale ``rate`` (beta); ``rsample`` is
    differentiable in both (implicit reparameterisation for alpha)."""

    arg_constraints = {"concentration": constraints.positive, "rate": constraints.positive}
    support = constraints.positive
    has_rsample = True

    def __init__(self, concentration, rate, validate_args=None):
        self.concentration, self.rate = broadcast_all(concentration, rate)
        super().__init__(self.concentration.shape, validate_args=validate_args)

    @property
    def mean(self):
        return self.concentration / self.rate

    @property
    def mode(self):
        return ((self.concentration - 1) / self.rate).clamp(min=0)

    @property
    def variance(self):
        return self.concentration / self.rate ** 2

    def expand(self, batch_shape, _instance=None):
        return Gamma(self.concentration.expand(*batch_shape), self.rate.expand(*batch_shape), validate_args=False)

    def rsample(self, sample_shape=Size()):
        shape = self._extended_shape(sample_shape)
        return standard_gamma(self.concentration.expand(*shape)) / self.rate.expand(*shape)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        a, b = self.concentration, self.rate
        return a * b.log() + (a - 1) * value.log() - b * value - lgamma(a)

    def entropy(self):
        a = self.concentration
        return a - self.rate.log() + lgamma(a) + (1.0 - a) * digamma(a)
