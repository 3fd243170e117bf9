"""MultivariateNormal(loc, covariance_matrix | precision_matrix | scale_tril)."""
from __future__ import annotations

import math

from .. import _torch_api as _T
from .._size import Size
from . import constraints
from ._special import cholesky, solve_lower_triangular
from .distribution import Distribution
from .utils import lazy_property


def _batch_mahalanobis(scale_tril, diff):
    """|| L^-1 diff ||^2 over the last dim, broadcasting L's batch against diff's."""
    sol = solve_lower_triangular(scale_tril, diff.unsqueeze(-1)).squeeze(-1)
    return (sol ** 2).sum(-1)


def _diag(m):
    return m.diagonal(dim1=-2, dim2=-1)


class MultivariateNormal(Distribution):
    """Gaussian over vectors of size D with mean ``loc`` (..., D) and one of ``covariance_matrix``,
    ``precision_matrix`` or ``scale_tril`` (lower Cholesky factor), each (..., D, D)."""

    arg_constraints = {"loc": constraints.real_vector, "covariance_matrix": constraints.positive_definite,
                       "precision_matrix": constraints.positive_definite,
                       "scale_tril": constraints.independent(constraints.real, 2)}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc, covariance_matrix=None, precision_matrix=None, scale_tril=None, validate_args=None):
        if loc.dim() < 1:
            raise ValueError("loc must be at least one-dimensional.")
        if (covariance_matrix is not None) + (scale_tril is not None) + (precision_matrix is not None) != 1:
            raise ValueError("Exactly one of covariance_matrix or precision_matrix or scale_tril may be specified.")
        matrix = next(m for m in (scale_tril, covariance_matrix, precision_matrix) if m is not None)
        if matrix.dim() < 2:
            name = ("scale_tril" if scale_tril is not None else "covariance_matrix" if covariance_matrix is not None
                    else "precision_matrix")
            raise ValueError(f"{name} matrix must be at least two-dimensional, with optional leading batch "
                             "dimensions")
        batch_shape = tuple(_T.broadcast_shapes(tuple(matrix.shape[:-2]), tuple(loc.shape[:-1])))
        d = loc.shape[-1]
        if scale_tril is not None:
            self.scale_tril = scale_tril.expand(*batch_shape, d, d)
        elif covariance_matrix is not None:
            self.covariance_matrix = covariance_matrix.expand(*batch_shape, d, d)
        else:
            self.precision_matrix = precision_matrix.expand(*batch_shape, d, d)
        self.loc = loc.expand(*batch_shape, d)
        super().__init__(Size(batch_shape), Size((d,)), validate_args=validate_args)
        if scale_tril is not None:
            self._unbroadcasted_scale_tril = scale_tril
        elif covariance_matrix is not None:
            self._unbroadcasted_scale_tril = cholesky(covariance_matrix)
        else:
            # Sigma = P^-1, so L = chol(P^-1) (one differentiable inverse, fine for the small D of RL/VAE use).
            self._unbroadcasted_scale_tril = cholesky(_inverse(precision_matrix))

    @lazy_property
    def scale_tril(self):
        d = self._event_shape[0]
        return self._unbroadcasted_scale_tril.expand(*self._batch_shape, d, d)

    @lazy_property
    def covariance_matrix(self):
        L = self._unbroadcasted_scale_tril
        d = self._event_shape[0]
        return (L @ L.transpose(-1, -2)).expand(*self._batch_shape, d, d)

    @lazy_property
    def precision_matrix(self):
        d = self._event_shape[0]
        return _inverse(self.covariance_matrix).expand(*self._batch_shape, d, d)

    @property
    def mean(self):
        return self.loc

    @property
    def mode(self):
        return self.loc

    @property
    def variance(self):
        d = self._event_shape[0]
        return (self._unbroadcasted_scale_tril ** 2).sum(-1).expand(*self._batch_shape, d)

    def expand(self, batch_shape, _instance=None):
        d = self._event_shape[0]
        return MultivariateNormal(self.loc.expand(*batch_shape, d),
                                  scale_tril=self._unbroadcasted_scale_tril.expand(*batch_shape, d, d),
                                  validate_args=False)

    def rsample(self, sample_shape=Size()):
        shape = self._extended_shape(sample_shape)
        eps = _T.randn(*shape, dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + (self._unbroadcasted_scale_tril @ eps.unsqueeze(-1)).squeeze(-1)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        diff = value - self.loc
        M = _batch_mahalanobis(self._unbroadcasted_scale_tril, diff)
        half_log_det = _diag(self._unbroadcasted_scale_tril).log().sum(-1)
        return -0.5 * (self._event_shape[0] * math.log(2 * math.pi) + M) - half_log_det

    def entropy(self):
        half_log_det = _diag(self._unbroadcasted_scale_tril).log().sum(-1)
        H = 0.5 * self._event_shape[0] * (1.0 + math.log(2 * math.pi)) + half_log_det
        return H.expand(*self._batch_shape) if len(self._batch_shape) else H


def _inverse(m):
    from .. import linalg
    return linalg.inv(m)
