"""PyTorch CPU's distribution recipes over a generator's mt19937 stream, as NumPy arrays.

Each function draws from a :class:`disttorch.random.Generator` the words PyTorch's CPU kernels draw,
in the same order, and turns them into values with the same arithmetic, so a seeded program gets
PyTorch's numbers bit for bit:

- uniform float32 (and float16, drawn as float32 and rounded): 24 low bits of one 32-bit draw times 2**-24; float64:
  53 low bits of a 64-bit draw (two 32-bit draws, the first high) times 2**-53; scaled as
  ``x * (to - from) + from`` with one rounding (PyTorch's build contracts it to a fused multiply-add).
- normal, 16 elements or more (contiguous): every element first gets a uniform, then each block of 16
  becomes 8 Box-Muller pairs (``1 - u[j]`` for the radius, ``u[j + 8]`` for the angle); when the size
  is not a multiple of 16, 16 fresh uniforms redo the last 16 elements. float32 goes through the AVX2
  kernel's own log/sin/cos polynomials (reproduced below), float64 through the C library's.
- normal below 16 elements: one float64 Box-Muller draw per element, the second sample cached in the
  generator for the next scalar draw.
- randint: ``draw % range + low`` with a 64-bit draw when the range needs one, else 32-bit.
- randperm: Fisher-Yates from the front with ``random() % (n - i)`` (``random64() % (i + 1)``,
  inside-out, for n beyond 2**32 / 20).
- bernoulli: ``uniform < p`` with a float64 uniform for a scalar p, one of p's dtype for a tensor p.
- exponential: ``-1 / lambda * log1p(-u)`` with a float64 uniform (the C library's log1p).
- geometric: ``ceil(log(u) / log1p(-p))`` with a float64 uniform.
- multinomial without replacement (or one sample): exponential(1) noise q, then the largest w / q.
- multinomial with replacement (more than one sample): per row, the cumulative sum in the weights' dtype
  divided by the total, then per sample a float64 uniform placed by binary search (the first bin
  whose cumulative value is not below it).
"""
from __future__ import annotations

import math

import numpy as np

_F32, _F64 = np.float32, np.float64


# ---- exact float arithmetic ----------------------------------------------------------------------
def _two_product(a, b):
    """(p, e) with p + e == a * b exactly (Dekker's split)."""
    p = a * b
    c = 134217729.0 * a  # 2**27 + 1
    a_hi = c - (c - a)
    a_lo = a - a_hi
    c = 134217729.0 * b
    b_hi = c - (c - b)
    b_lo = b - b_hi
    e = ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo
    return p, e


def fma64(a, b, c):
    """``a * b + c`` for float64 arrays with the product unrounded (a fused multiply-add)."""
    a, b, c = (np.asarray(v, dtype=_F64) for v in (a, b, c))
    with np.errstate(over="ignore", invalid="ignore"):
        p, e = _two_product(a, b)
        s = p + c
        bb = s - p
        t = (p - (s - bb)) + (c - bb)
        out = s + (t + e)
    # infinities and nans make the error terms nan: the plain result is the right one there
    return np.where(np.isfinite(out), out, a * b + c)


def fma32(a, b, c):
    """``a * b + c`` for float32 values with one rounding: the float64 product of two floats is exact."""
    acc = np.multiply(a, b, dtype=_F64)  # the ufunc widens its inputs itself: no float64 copies of a and b
    np.add(acc, c, out=acc, dtype=_F64)
    return acc.astype(_F32)


# ---- uniform -------------------------------------------------------------------------------------
def unit_uniform(gen, n: int, np_dtype) -> np.ndarray:
    """``n`` uniforms on [0, 1), PyTorch's way: float64 from 53 bits, anything narrower from float32's 24."""
    if np_dtype == _F64:
        return (gen.random64(n) & np.uint64((1 << 53) - 1)).astype(_F64) * _F64(2.0 ** -53)
    return (gen.random(n) & np.uint64((1 << 24) - 1)).astype(_F32) * _F32(2.0 ** -24)


def uniform(gen, shape, np_dtype, low=0.0, high=1.0) -> np.ndarray:
    """U(low, high) samples of ``shape``: ``uniform_`` / ``rand``."""
    np_dtype = np.dtype(np_dtype).type
    n = math.prod(shape)
    if np_dtype == _F64:
        x = unit_uniform(gen, n, _F64)
        lo, hi = _F64(low), _F64(high)
        out = x if (lo, hi) == (0.0, 1.0) else fma64(x, hi - lo, lo)
    else:
        # float16 draws exactly float32's values (bounds included), rounded at the end
        x = unit_uniform(gen, n, np_dtype)
        lo, hi = _F32(low), _F32(high)
        out = x if (lo, hi) == (0.0, 1.0) else fma32(x, hi - lo, lo)
    return out.astype(np_dtype, copy=False).reshape(shape)


# ---- normal --------------------------------------------------------------------------------------
_LOG_POLY = (-1.1514610310E-1, 1.1676998740E-1, -1.2420140846E-1, 1.4249322787E-1, -1.6668057665E-1,
             2.0000714765E-1, -2.4999993993E-1, 3.3333331174E-1)


def _log_avx(x):
    """The AVX2 kernel's float32 natural log (Cephes' logf polynomial), with the multiply-adds
    the compiler fuses there fused here too, so results match it bit for bit (x in (0, 1])."""
    bits = x.view(np.uint32)
    e = ((bits >> np.uint32(23)).astype(np.int32) - 0x7F).astype(_F32) + _F32(1)
    m = ((bits & np.uint32(0x807FFFFF)) | np.uint32(0x3F000000)).view(_F32)  # mantissa in [0.5, 1)
    small = m < _F32(0.707106781186547524)
    e = e - small.astype(_F32)
    m = (m - _F32(1)) + np.where(small, m, _F32(0))
    z = m * m
    y = np.full_like(m, _F32(7.0376836292E-2))
    for coeff in _LOG_POLY:
        y = fma32(y, m, _F32(coeff))
    y = fma32(y * m, z, e * _F32(-2.12194440e-4))
    y = fma32(z, _F32(-0.5), y)
    return fma32(e, _F32(0.693359375), m + y)


def _sincos_avx(x):
    """The AVX2 kernel's float32 sin and cos (Cephes' sinf/cosf) for x >= 0, fused as there."""
    j = (x * _F32(1.27323954473516)).astype(np.int32)  # 4 / pi, truncated
    j = (j + 1) & ~1
    y = j.astype(_F32)
    for dp in (-0.78515625, -2.4187564849853515625e-4, -3.77489497744594108e-8):
        x = fma32(y, _F32(dp), x)
    z = x * x
    c = np.full_like(x, _F32(2.443315711809948E-005))
    c = fma32(c, z, _F32(-1.388731625493765E-003))
    c = fma32(c, z, _F32(4.166664568298827E-002))
    c = fma32(c * z, z, -(z * _F32(0.5))) + _F32(1)
    s = np.full_like(x, _F32(-1.9515295891E-4))
    s = fma32(s, z, _F32(8.3321608736E-3))
    s = fma32(s, z, _F32(-1.6666654611E-1))
    s = fma32(s * z, x, x)
    poly_sin = (j & 2) == 0
    sin, cos = np.where(poly_sin, s, c), np.where(poly_sin, c, s)
    return np.where((j & 4) != 0, -sin, sin), np.where((~(j - 2) & 4) != 0, -cos, cos)


_libm_log = np.frompyfunc(math.log, 1, 1)



def _box_muller16(u, mean, std):
    """Blocks of 16 uniforms (rows) to 16 normals each, as PyTorch's vectorised fill."""
    if u.dtype == _F32:
        u1, u2 = _F32(1) - u[:, :8], u[:, 8:]
        radius = np.sqrt(_F32(-2) * _log_avx(u1))
        sin, cos = _sincos_avx(_F32(2 * math.pi) * u2)
        out = np.concatenate([radius * cos, radius * sin], axis=1)
        return fma32(out, _F32(std), _F32(mean))
    u1, u2 = 1.0 - u[:, :8], u[:, 8:]
    # NumPy's own float64 log differs from the C library's in the last bit now and then; PyTorch uses the latter
    radius = np.sqrt(-2.0 * _libm_log(u1).astype(_F64))
    theta = 2.0 * math.pi * u2
    out = np.concatenate([radius * np.cos(theta), radius * np.sin(theta)], axis=1)
    return out if (mean, std) == (0.0, 1.0) else fma64(out, std, mean)


def _scalar_normals(gen, n, mean, std) -> np.ndarray:
    """PyTorch's per-element path: float64 Box-Muller pairs, the second sample kept in ``gen``."""
    out = np.empty(n, dtype=_F64)
    for i in range(n):
        cached = gen.next_double_normal
        if cached is not None:
            gen.next_double_normal = None
            z = cached
        else:
            u1, u2 = unit_uniform(gen, 2, _F64)
            r = math.sqrt(-2.0 * math.log1p(-float(u2)))
            theta = 2.0 * math.pi * float(u1)
            gen.next_double_normal = r * math.sin(theta)
            z = r * math.cos(theta)
        out[i] = z
    return fma64(out, float(std), float(mean))


_CHUNK_BLOCKS = 4096  # blocks of 16 normals computed together


def normal(gen, shape, np_dtype, mean=0.0, std=1.0, contiguous=True) -> np.ndarray:
    """N(mean, std**2) samples of ``shape``: ``normal_`` / ``randn``."""
    np_dtype = np.dtype(np_dtype).type
    n = math.prod(shape)
    if n < 16 or not contiguous:
        return _scalar_normals(gen, n, mean, std).astype(np_dtype).reshape(shape)
    work = _F64 if np_dtype == _F64 else _F32
    u = unit_uniform(gen, n, work).astype(work, copy=False)
    if work == _F32:
        mean, std = _F32(mean), _F32(std)
    whole = n // 16 * 16
    out = np.empty(n, dtype=work)
    blocks = u[:whole].reshape(-1, 16)
    for start in range(0, blocks.shape[0], _CHUNK_BLOCKS):  # chunks keep the many temporaries in cache
        part = blocks[start:start + _CHUNK_BLOCKS]
        out[16 * start:16 * (start + part.shape[0])] = _box_muller16(part, mean, std).reshape(-1)
    if whole != n:
        # PyTorch redoes the last 16 elements from 16 fresh uniforms
        tail = unit_uniform(gen, 16, work).astype(work, copy=False)
        out[n - 16:] = _box_muller16(tail.reshape(1, 16), mean, std).reshape(-1)
    return out.astype(np_dtype, copy=False).reshape(shape)


# ---- integers --------------------------------------------------------------------------------------
_WIDE_DRAW_KINDS = (np.int64, np.float64, np.float32)  # dtypes that take a 64-bit draw for a range >= 2**32


def randint(gen, low: int, high: int, shape, np_dtype) -> np.ndarray:
    """Integers uniform on [low, high): ``random_(from, to)`` / ``randint``."""
    n = math.prod(shape)
    span = high - low
    if span >= 1 << 32 and np.dtype(np_dtype).type in _WIDE_DRAW_KINDS:
        draws = gen.random64(n)
    else:
        draws = gen.random(n)
    values = (draws % np.uint64(span)).astype(np.int64) + np.int64(low)
    return values.astype(np_dtype).reshape(shape)


def full_range_random(gen, shape, np_dtype) -> np.ndarray:
    """``random_()`` with no bounds: [0, 2**mantissa] for floats, [0, max] for integers."""
    dt = np.dtype(np_dtype)
    n = math.prod(shape)
    if dt == np.bool_:
        return (gen.random(n) & np.uint64(1)).astype(np.bool_).reshape(shape)
    if dt.kind == "f":
        digits = {2: 11, 4: 24, 8: 53}[dt.itemsize]
        draws = gen.random64(n) if dt.itemsize == 8 else gen.random(n)
        return (draws % np.uint64((1 << digits) + 1)).astype(dt).reshape(shape)
    bound = int(np.iinfo(dt).max) + 1
    draws = gen.random64(n) if dt == np.int64 else gen.random(n)
    return (draws % np.uint64(bound)).astype(dt).reshape(shape)


def _apply_swaps(perm, targets):
    """Runs ``perm[i], perm[targets[i]] = perm[targets[i]], perm[i]`` for i = 0, 1, ... in order, a run
    of steps at a time: steps whose positions no earlier step of the run touches commute, so a run
    without such a conflict is two fancy-indexing assignments. A run ends before the first step m whose
    position m is an earlier step's target or whose target repeats one (targets never point backwards)."""
    steps = targets.size
    i = 0
    while i < steps:
        width = min(steps - i, max(1, int(math.sqrt(steps - i)) // 2))
        idx = np.arange(i, i + width)
        tgt = targets[i:i + width]
        end = i + width
        ahead = (tgt > idx) & (tgt < end)  # an earlier step's target is a later step's own position
        if ahead.any():
            end = min(end, int(tgt[ahead].min()))
        order = np.argsort(tgt, kind="stable")
        repeats = order[1:][tgt[order[1:]] == tgt[order[:-1]]]  # later occurrences of a repeated target
        if repeats.size:
            end = min(end, i + int(repeats.min()))
        end = max(end, i + 1)
        sel, dst = idx[:end - i], tgt[:end - i]
        moved = perm[sel].copy()
        perm[sel] = perm[dst]
        perm[dst] = moved
        i = end


def randperm(gen, n: int, np_dtype) -> np.ndarray:
    """A random permutation of range(n), PyTorch's CPU algorithm."""
    if n < 0xFFFFFFFF // 20:
        perm = np.arange(n, dtype=np.int64)
        if n > 1:
            # step i swaps positions i and i + (random() % (n - i)); the draws do not depend on the swaps
            targets = (gen.random(n - 1) % np.arange(n, 1, -1, dtype=np.uint64)).astype(np.int64)
            targets += np.arange(n - 1, dtype=np.int64)
            _apply_swaps(perm, targets)
        return perm.astype(np_dtype)
    perm = np.empty(n, dtype=np.int64)
    picks = gen.random64(n) % np.arange(1, n + 1, dtype=np.uint64)
    for i in range(n):  # inside-out Fisher-Yates (beyond any size a test can allocate quickly)
        z = int(picks[i])
        perm[i] = perm[z]
        perm[z] = i
    return perm.astype(np_dtype)


# ---- bernoulli ----------------------------------------------------------------------------------
def bernoulli_scalar(gen, shape, p: float) -> np.ndarray:
    """Booleans true with probability ``p`` (``bernoulli_(p)`` with a number, dropout's mask)."""
    return (unit_uniform(gen, math.prod(shape), _F64) < p).reshape(shape)


def bernoulli_tensor(gen, probs: np.ndarray) -> np.ndarray:
    """Booleans true with the probabilities in ``probs`` (elementwise); the uniform is of p's dtype."""
    work = _F64 if probs.dtype == _F64 else _F32
    u = unit_uniform(gen, probs.size, work).reshape(probs.shape)
    return u < probs.astype(work, copy=False)


# ---- multinomial ----------------------------------------------------------------------------------
def multinomial_with_replacement(gen, rows: np.ndarray, num_samples: int) -> np.ndarray:
    """(rows, num_samples) category indices drawn with replacement from non-negative weight rows."""
    work = _F64 if rows.dtype == _F64 else _F32
    out = np.empty((rows.shape[0], num_samples), dtype=np.int64)
    for i, weights in enumerate(rows.astype(work, copy=False)):
        cumulative = np.add.accumulate(weights)  # sequential, in the weights' dtype
        cumulative = cumulative / cumulative[-1]
        out[i] = np.searchsorted(cumulative, unit_uniform(gen, num_samples, _F64), side="left")
    return np.minimum(out, rows.shape[1] - 1)


# ---- exponential -----------------------------------------------------------------------------------
_libm_log1p = np.frompyfunc(math.log1p, 1, 1)


def exponential(gen, shape, np_dtype, lambd=1.0) -> np.ndarray:
    """Exp(lambd) samples of ``shape``: ``exponential_``."""
    u = unit_uniform(gen, math.prod(shape), _F64)
    values = (-1.0 / lambd) * _libm_log1p(-u).astype(_F64)
    return values.astype(np_dtype).reshape(shape)


def geometric(gen, shape, np_dtype, p: float) -> np.ndarray:
    """Geometric(p) samples of ``shape`` (trials up to the first success): ``geometric_``."""
    u = unit_uniform(gen, math.prod(shape), _F64)
    with np.errstate(divide="ignore"):
        values = np.ceil(_libm_log(u).astype(_F64) / math.log1p(-p))
    return values.astype(np_dtype).reshape(shape)


def multinomial_without_replacement(gen, rows: np.ndarray, num_samples: int) -> np.ndarray:
    """(rows, num_samples) distinct category indices: the top ``num_samples`` of ``w / q`` per row with
    q ~ Exp(1) drawn for every weight (the exponential race PyTorch runs)."""
    work = rows.dtype if rows.dtype in (np.float16, _F32, _F64) else _F32
    weights = rows.astype(work, copy=False)
    with np.errstate(divide="ignore", invalid="ignore"):
        keys = weights / exponential(gen, weights.shape, work)
    if num_samples == 1:
        return np.argmax(keys, axis=1)[:, None]
    return np.argsort(-keys, axis=1, kind="stable")[:, :num_samples]
