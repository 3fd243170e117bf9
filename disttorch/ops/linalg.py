"""Linear algebra: matmul family (mm, bmm, mv, dot, addmm), outer, einsum, inverse, det, norms."""
from __future__ import annotations

import numpy as np

from .. import _gemm
from ._base import Op, unbroadcast
from .pointwise import _xp


def _same_dtype(a, b, name):
    if a._data.dtype != b._data.dtype:
        raise RuntimeError(f"expected m1 and m2 to have the same dtype, but got: {a.dtype.name} != {b.dtype.name}"
                           if name in ("mm", "addmm") else
                           f"expected scalar type {_legacy(a)} but found {_legacy(b)}")


def _legacy(t):
    from .._dtype import LEGACY_NAMES
    return LEGACY_NAMES.get(t.dtype.name, t.dtype.name)


class MmBackward0(Op):
    save_inputs = (0, 1)

    def forward(self, a, b):
        return _gemm.matmul(a, b)

    def backward(self, g, ns, a, b):
        n = self.needs_input_grad
        ga = ns.matmul(g, ns.swapaxes(b, -1, -2)) if n[0] else None
        gb = ns.matmul(ns.swapaxes(a, -1, -2), g) if n[1] else None
        return ga, gb


class BmmBackward0(MmBackward0):
    """batched (B, n, m) @ (B, m, p)."""


class MvBackward0(Op):
    save_inputs = (0, 1)

    def forward(self, a, v):
        return a @ v

    def backward(self, g, ns, a, v):
        n = self.needs_input_grad
        ga = ns.expand_dims(g, -1) * v if n[0] else None
        gv = ns.matmul(ns.swapaxes(a, -1, -2), g) if n[1] else None
        return ga, gv


class DotBackward0(Op):
    save_inputs = (0, 1)

    def forward(self, a, b):
        return _xp(a).dot(a, b)

    def backward(self, g, ns, a, b):
        return g * b, g * a


class MatmulBackward0(Op):
    """General broadcast matmul (batched operands of different ranks)."""

    save_inputs = (0, 1)

    def forward(self, a, b):
        return _gemm.matmul(a, b)

    def backward(self, g, ns, a, b):
        a2 = ns.expand_dims(a, 0) if a.ndim == 1 else a
        b2 = ns.expand_dims(b, -1) if b.ndim == 1 else b
        g2 = g
        if a.ndim == 1:
            g2 = ns.expand_dims(g2, -2)
        if b.ndim == 1:
            g2 = ns.expand_dims(g2, -1)
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = ns.matmul(g2, ns.swapaxes(b2, -1, -2))
            ga = unbroadcast(ns, ga, a2.shape)
            ga = ns.reshape(ga, a.shape)
        if self.needs_input_grad[1]:
            gb = ns.matmul(ns.swapaxes(a2, -1, -2), g2)
            gb = unbroadcast(ns, gb, b2.shape)
            gb = ns.reshape(gb, b.shape)
        return ga, gb


def matmul(input, other, *, out=None):
    """``@`` with PyTorch's rules: dot, mv, mm, bmm and broadcast batched products."""
    if input._data.dtype != other._data.dtype:
        from .._dtype import CPP_NAMES
        raise RuntimeError(f"expected m1 and m2 to have the same dtype, but got: {CPP_NAMES[input.dtype.name]} != "
                           f"{CPP_NAMES[other.dtype.name]}")
    if type(input._data) is not type(other._data) or (type(input._data) is not np.ndarray
                                                      and input.device != other.device):
        raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, {input.device} and {other.device}!")
    sa_, sb_ = input._data.shape, other._data.shape
    da, db = len(sa_), len(sb_)
    if da == 0 or db == 0:
        raise RuntimeError(f"both arguments to matmul need to be at least 1D, but they are {da}D and {db}D")
    ka = sa_[-1]
    kb = sb_[-2] if db >= 2 else sb_[0]
    if ka != kb:
        if da == 1 and db == 1:
            raise RuntimeError(f"inconsistent tensor size, expected tensor [{ka}] and src [{kb}] to have the same number of elements, but got {ka} and {kb} elements respectively")
        sa = "x".join(map(str, input.shape if da > 1 else (1, ka)))
        sb = "x".join(map(str, other.shape if db > 1 else (kb, 1)))
        if da >= 2 and db == 1:
            raise RuntimeError(f"size mismatch, got input ({input.shape[-2]}), mat ({sa}), vec ({kb})")
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({sa} and {sb})")
    if da == 1 and db == 1:
        res = DotBackward0.apply(input, other)
    elif da == 2 and db == 2:
        res = MmBackward0.apply(input, other)
    elif da == 2 and db == 1:
        res = MvBackward0.apply(input, other)
    elif da == 3 and db == 3 and sa_[0] == sb_[0]:
        res = BmmBackward0.apply(input, other)
    else:
        res = MatmulBackward0.apply(input, other)
    if out is not None:
        from .creation import _copy_into
        return _copy_into(out, res)
    return res


def mm(input, mat2):
    if input.ndim != 2:
        raise RuntimeError("self must be a matrix")
    if mat2.ndim != 2:
        raise RuntimeError("mat2 must be a matrix")
    return matmul(input, mat2)


def bmm(input, mat2):
    if input.ndim != 3:
        raise RuntimeError("batch1 must be a 3D tensor")
    if mat2.ndim != 3:
        raise RuntimeError("batch2 must be a 3D tensor")
    if input.shape[0] != mat2.shape[0]:
        raise RuntimeError(f"Expected size for first two dimensions of batch2 tensor to be: [{input.shape[0]}, {input.shape[2]}] but got: [{mat2.shape[0]}, {mat2.shape[1]}].")
    return matmul(input, mat2)


def mv(input, vec):
    return matmul(input, vec)


def dot(input, other):
    if input.ndim != 1 or other.ndim != 1:
        raise RuntimeError(f"1D tensors expected, but got {input.ndim}D and {other.ndim}D tensors")
    return matmul(input, other)


inner = dot


class AddmmBackward0(Op):
    """``beta * bias + alpha * (x @ w)``: the fused op behind ``nn.Linear``."""

    save_inputs = (1, 2)

    def forward(self, bias, a, b, beta=1, alpha=1):
        self.bshape = bias.shape
        self.beta, self.alpha = beta, alpha
        out = _gemm.matmul(a, b)
        if alpha != 1:
            out *= alpha
        if beta != 0:
            out += bias if beta == 1 else bias * beta
        return out

    def backward(self, g, ns, a, b):
        n = self.needs_input_grad
        gbias = unbroadcast(ns, g if self.beta == 1 else g * self.beta, self.bshape) if n[0] else None
        ga_scale = g if self.alpha == 1 else g * self.alpha
        ga = ns.matmul(ga_scale, ns.swapaxes(b, -1, -2)) if n[1] else None
        gb = ns.matmul(ns.swapaxes(a, -1, -2), ga_scale) if n[2] else None
        return gbias, ga, gb


def addmm(input, mat1, mat2, *, beta=1, alpha=1):
    if mat1.shape[-1] != mat2.shape[0]:
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({mat1.shape[0]}x{mat1.shape[1]} and {mat2.shape[0]}x{mat2.shape[1]})")
    return AddmmBackward0.apply(input, mat1, mat2, beta=beta, alpha=alpha)


def baddbmm(input, batch1, batch2, *, beta=1, alpha=1):
    return input * beta + bmm(batch1, batch2) * alpha if beta != 1 or alpha != 1 else input + bmm(batch1, batch2)


def addmv(input, mat, vec, *, beta=1, alpha=1):
    return input * beta + mv(mat, vec) * alpha


def outer(input, vec2):
    from .shape import unsqueeze
    return unsqueeze(input, 1) * unsqueeze(vec2, 0)


ger = outer


class EinsumBackward(Op):
    """einsum; each operand's gradient is another einsum of the output gradient and the others."""

    def forward(self, *xs, spec):
        self.spec = spec
        self.save_inputs = tuple(range(len(xs)))  # saved as inputs, so create_graph differentiates them
        return _xp(xs[0]).einsum(spec, *xs, optimize=len(xs) > 2)

    def backward(self, g, ns, *saved):
        ins, out = self.spec.split("->")
        terms = ins.split(",")
        size = {}
        for t, a in zip(terms, saved):
            size.update(zip(t, a.shape))
        grads = []
        for i, term in enumerate(terms):
            if not self.needs_input_grad[i]:
                grads.append(None)
                continue
            others = [t for j, t in enumerate(terms) if j != i]
            consts = [a for j, a in enumerate(saved) if j != i]
            full = "".join(dict.fromkeys(term))
            avail = set(out).union(*others) if others else set(out)
            kept = "".join(c for c in full if c in avail)
            gi = ns.einsum(",".join([out] + others) + "->" + kept, g, *consts)
            missing = "".join(c for c in full if c not in avail)
            if missing:  # letters summed away in forward come back by broadcasting
                for _ in missing:
                    gi = ns.expand_dims(gi, -1)
                gi = ns.broadcast_to(gi, tuple(size[c] for c in kept + missing))
                gi = ns.einsum(kept + missing + "->" + full, gi)
            if len(full) != len(term):
                gi = _onto_diagonals(ns, gi, full, term, size, g)
            grads.append(gi)
        return tuple(grads)


def _onto_diagonals(ns, gi, full, term, size, like):
    """Spreads ``gi`` (indexed by the distinct letters ``full``) onto the diagonals ``term`` repeats."""
    letters, specs, deltas = list(term), [full], []
    fresh = (c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in term)
    for pos, c in enumerate(term):
        if term.index(c) != pos:
            new = next(fresh)
            letters[pos] = new
            specs.append(c + new)
            deltas.append(ns.const(np.eye(size[c], dtype=like.dtype if not ns.graph else like._data.dtype), like))
    return ns.einsum(",".join(specs) + "->" + "".join(letters), gi, *deltas)


def einsum(equation, *operands):
    """Einstein summation over tensors; supports ``->`` output specs and implicit output."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    eq = equation.replace(" ", "")
    if "->" not in eq:
        ins = eq.split(",")
        letters = "".join(ins)
        out = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
        eq = eq + "->" + out
    if "..." in eq:
        # expand ellipsis into explicit letters
        ins, out = eq.split("->")
        terms = ins.split(",")
        free = [c for c in "ZYXWVUTSRQPONMLKJIHGFEDCBA" if c not in eq]
        nell = max(op.ndim - (len(t) - 3) for t, op in zip(terms, operands) if "..." in t)
        ell = "".join(free[:nell])
        terms = [t.replace("...", ell[nell - (op.ndim - (len(t) - 3)):]) if "..." in t else t for t, op in zip(terms, operands)]
        out = out.replace("...", ell)
        eq = ",".join(terms) + "->" + out
    from .._dtype import result_dtype
    from .pointwise import cast
    dt = result_dtype(operands)
    ops = [cast(o, dt) for o in operands]
    return EinsumBackward.apply(*ops, spec=eq)


class LinalgInvExBackward0(Op):
    saves_output = True

    def forward(self, a):
        xp = _xp(a)
        try:
            return xp.linalg.inv(a)
        except np.linalg.LinAlgError:
            raise RuntimeError("linalg.inv: The diagonal element 1 is zero, the inversion could not be completed because the input matrix is singular.") from None

    def backward(self, g, ns):
        inv = ns.out(self)
        it = ns.swapaxes(inv, -1, -2)
        return (-ns.matmul(ns.matmul(it, g), it),)


def inv(A):
    if A.ndim < 2 or A.shape[-1] != A.shape[-2]:
        raise RuntimeError(f"linalg.inv: A must be batches of square matrices, but they are {A.shape[-2] if A.ndim >= 2 else 1} by {A.shape[-1]} matrices")
    return LinalgInvExBackward0.apply(A)


class LinalgDetBackward0(Op):
    save_inputs = (0,)
    saves_output = True

    def forward(self, a):
        return _xp(a).linalg.det(a)

    def backward(self, g, ns, a):
        det = ns.out(self)
        inv_t = ns.swapaxes(ns.inv(a), -1, -2)
        return (ns.expand_dims(ns.expand_dims(g * det, -1), -1) * inv_t,)


def det(A):
    return LinalgDetBackward0.apply(A)


def solve(A, B):
    return matmul(inv(A), B)


def matrix_norm(A, ord="fro", dim=(-2, -1), keepdim=False):
    from .reduce import vector_norm, amax, sum as _sum
    if ord == "fro":
        return vector_norm(A, 2, dim, keepdim)
    if ord in (1, -1, float("inf"), -float("inf")):
        col = ord in (1, -1)
        s = _sum(A.abs(), dim[0] if col else dim[1], keepdim=True)
        from .reduce import amin
        r = (amax if ord > 0 else amin)(s, dim[1] if col else dim[0], keepdim=True)
        return r if keepdim else r.squeeze((dim[0], dim[1]))
    raise RuntimeError(f"linalg.matrix_norm: Order {ord} not supported.")


def linalg_norm(A, ord=None, dim=None, keepdim=False, *, dtype=None):
    """``torch.linalg.norm``: vector 2-norm by default; matrix norms for 2 dims with a string ord."""
    from .reduce import vector_norm
    if isinstance(ord, str) or (ord is not None and dim is not None and not isinstance(dim, int) and len(dim) == 2) or (ord is not None and dim is None and A.ndim == 2):
        return matrix_norm(A, ord if ord is not None else "fro", dim if dim is not None else (-2, -1), keepdim)
    return vector_norm(A, 2 if ord is None else ord, dim, keepdim, dtype=dtype)
