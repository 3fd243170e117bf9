"""Beta(concentration1, concentration0): density x^(a-1) (1-x)^(b-1) / B(a, b) on [0, 1]."""
from __future__ import annotations

from .. import _torch_api as _T
from .._size import Size
from . import constraints
from ._special import digamma, lgamma, standard_gamma
from .distribution import Distribution
from .utils import broadcast_all


class Beta(Distribution):
    """``concentration1`` is alpha, ``concentration0`` is beta; ``rsample`` draws X/(X+Y) from two
    Gamma draws, differentiable in both concentrations."""

    arg_constraints = {"concentration1": constraints.positive, "concentration0": constraints.positive}
    support = constraints.unit_interval
    has_rsample = True

    def __init__(self, concentration1, concentration0, validate_args=None):
        self.concentration1, self.concentration0 = broadcast_all(concentration1, concentration0)
        if (self._validate_args if validate_args is None else validate_args):
            _check_concentration(_T.stack([self.concentration1, self.concentration0], -1))
        super().__init__(self.concentration1.shape, validate_args=False)
        if validate_args is not None:
            self._validate_args = validate_args

    @property
    def mean(self):
        return self.concentration1 / (self.concentration1 + self.concentration0)

    @property
    def mode(self):
        return (self.concentration1 - 1) / (self.concentration1 + self.concentration0 - 2)

    @property
    def variance(self):
        total = self.concentration1 + self.concentration0
        return self.concentration1 * self.concentration0 / (total ** 2 * (total + 1))

    def expand(self, batch_shape, _instance=None):
        return Beta(self.concentration1.expand(*batch_shape), self.concentration0.expand(*batch_shape),
                    validate_args=False)

    def rsample(self, sample_shape=Size()):
        shape = self._extended_shape(sample_shape)
        x = standard_gamma(self.concentration1.expand(*shape))
        y = standard_gamma(self.concentration0.expand(*shape))
        tiny = float(_tiny(x))
        return (x / (x + y)).clamp(min=tiny, max=1 - _eps(x))

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        a, b = self.concentration1, self.concentration0
        return (_xlogy(a - 1, value) + _xlogy(b - 1, 1 - value)
                - (lgamma(a) + lgamma(b) - lgamma(a + b)))

    def entropy(self):
        a, b = self.concentration1, self.concentration0
        total = a + b
        return (lgamma(a) + lgamma(b) - lgamma(total) - (a - 1) * digamma(a) - (b - 1) * digamma(b)
                + (total - 2) * digamma(total))


def _check_concentration(concentration):
    """PyTorch builds a Beta on a Dirichlet over (alpha, beta) and reports a bad concentration as the
    Dirichlet's: the same message here."""
    if not bool((concentration > 0).all()):
        raise ValueError(
            f"Expected parameter concentration (Tensor of shape {tuple(concentration.shape)}) of distribution "
            f"Dirichlet(concentration: {concentration.size()}) to satisfy the constraint "
            f"IndependentConstraint(GreaterThan(lower_bound=0.0), 1), but found invalid values:\n{concentration}")


def _xlogy(x, y):
    """x * log(y), 0 where x == 0 (so a boundary value with concentration 1 has finite density)."""
    zero = x == 0
    return _T.where(zero, _T.zeros_like(x), x * _T.where(zero, _T.ones_like(y), y).log())


def _tiny(t):
    import numpy as np
    return np.finfo(t._data.dtype).tiny


def _eps(t):
    import numpy as np
    return float(np.finfo(t._data.dtype).eps) / 2
