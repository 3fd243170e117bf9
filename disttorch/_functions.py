"""The torch-level function namespace (``disttorch.add``, ``disttorch.cat``, ...), gathered from
the op families so ``disttorch/__init__.py`` and ``Tensor`` methods draw from one list."""
from .ops.creation import (  # noqa: F401
    arange, as_tensor, asarray, bernoulli, empty, empty_like, eye, from_numpy, full, full_like, linspace,
    logspace, multinomial, normal, ones, ones_like, poisson, rand, rand_like, randint, randint_like, randn,
    randn_like, randperm, tensor, zeros, zeros_like)
from .ops.index import (  # noqa: F401
    argsort, argwhere, bincount, bucketize, gather, index_add, index_fill, index_put, index_select, kthvalue,
    masked_fill, masked_scatter, masked_select, msort, nonzero, scatter, scatter_add, searchsorted, sort,
    take_along_dim, topk, unique)
from .ops.linalg import addmm, addmv, baddbmm, bmm, dot, einsum, ger, inner, matmul, mm, mv, outer  # noqa: F401
from .ops.pointwise import (  # noqa: F401
    abs, absolute, acos, add, allclose, arccos, arcsin, arctan, arctan2, asin, atan, atan2, bitwise_and,
    bitwise_not, bitwise_or, bitwise_xor, ceil, clamp, clamp_max, clamp_min, clip, cos, cosh, div, divide, eq,
    equal, erf, exp, exp2, expm1, fix, floor, floor_divide, fmod, frac, ge, greater, greater_equal, gt, isclose,
    isfinite, isinf, isnan, le, lerp, less, less_equal, log, log1p, log2, log10, logical_and, logical_not,
    logical_or, logical_xor, lt, maximum, minimum, mul, multiply, ne, neg, negative, not_equal, pow,
    reciprocal, relu, remainder, round, rsqrt, rsub, sgn, sigmoid, sign, signbit, sin, sinh, sqrt, square,
    sub, subtract, tan, tanh, true_divide, trunc, where)
from .ops.reduce import (  # noqa: F401
    all, amax, amin, aminmax, any, argmax, argmin, count_nonzero, cumprod, cumsum, log_softmax, logsumexp,
    max, mean, median, min, norm, prod, softmax, std, std_mean, sum, var, var_mean)
from .ops.shape import (  # noqa: F401
    broadcast_shapes, broadcast_tensors, broadcast_to, cat, chunk, clone, concat, concatenate, diag, diagonal,
    expand, flatten, flip, fliplr, flipud, hstack, movedim, moveaxis, narrow, permute, repeat, reshape, roll,
    select, split, squeeze, stack, swapaxes, swapdims, t, tensor_split, tile, transpose, tril, triu, unbind,
    unflatten, unsqueeze, vstack)
