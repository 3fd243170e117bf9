"""``ReduceOp`` and the NumPy kernels that apply it in place.

Reductions always write into the accumulator (``out=acc``) so no temporary is allocated per chunk.
Semantics follow PyTorch: SUM of bool is logical or, PRODUCT of bool is logical and, integer
arithmetic wraps, bitwise ops need integer or bool tensors, MIN / MAX do not order complex numbers.
AVG divides the sum by the number of ranks; for integer tensors it truncates toward zero (exactly,
in integer arithmetic, as ``torch.div(..., rounding_mode="trunc")``).
"""
from __future__ import annotations

import enum

import numpy as np


class ReduceOp(enum.IntEnum):
    """torch.distributed.ReduceOp: ``dist.ReduceOp.SUM`` ... (values as in PyTorch)."""

    SUM = 0
    AVG = 1
    PRODUCT = 2
    MIN = 3
    MAX = 4
    BAND = 5
    BOR = 6
    BXOR = 7

    def __repr__(self):
        return f"<ReduceOp.{self.name}: {self.value}>"

    def __str__(self):
        return f"ReduceOp.{self.name}"


ReduceOp.RedOpType = ReduceOp  # torch spells the enum type ReduceOp.RedOpType


_KERNELS = {
    ReduceOp.SUM: np.add,
    ReduceOp.AVG: np.add,
    ReduceOp.PRODUCT: np.multiply,
    ReduceOp.MIN: np.minimum,
    ReduceOp.MAX: np.maximum,
    ReduceOp.BAND: np.bitwise_and,
    ReduceOp.BOR: np.bitwise_or,
    ReduceOp.BXOR: np.bitwise_xor,
}


def as_reduce_op(op) -> ReduceOp:
    """Accepts a ReduceOp, its int value or its name ("sum", "SUM")."""
    if isinstance(op, ReduceOp):
        return op
    if isinstance(op, str):
        try:
            return ReduceOp[op.upper()]
        except KeyError:
            pass
    else:
        try:
            return ReduceOp(int(op))
        except (TypeError, ValueError):
            pass
    raise ValueError(f"unsupported reduce op {op!r}; expected one of {', '.join(o.name for o in ReduceOp)}")


def check_op_dtype(op: ReduceOp, dtype: np.dtype) -> None:
    """Raises TypeError (naming op and dtype) for combinations PyTorch rejects."""
    kind = dtype.kind
    if op in (ReduceOp.BAND, ReduceOp.BOR, ReduceOp.BXOR) and kind not in "biu":
        raise TypeError(f"ReduceOp.{op.name} needs an integer or bool tensor, got dtype {dtype}")
    if op in (ReduceOp.MIN, ReduceOp.MAX) and kind == "c":
        raise TypeError(f"ReduceOp.{op.name} is not defined for complex tensors (dtype {dtype})")
    if op is ReduceOp.AVG and kind == "b":
        raise TypeError("ReduceOp.AVG is not defined for bool tensors")


def combine(op: ReduceOp, acc: np.ndarray, other: np.ndarray) -> None:
    """acc = acc (op) other, elementwise, in place."""
    _KERNELS[op](acc, other, out=acc)


def combine_into(op: ReduceOp, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """out = a (op) b (out may alias a or b)."""
    _KERNELS[op](a, b, out=out)


def finalize(op: ReduceOp, acc: np.ndarray, count: int) -> None:
    """Turns the reduced sum into the average for AVG (no-op otherwise)."""
    if op is not ReduceOp.AVG or count == 1 or acc.size == 0:
        return
    if acc.dtype.kind in "fc" or acc.dtype.name == "bfloat16":
        np.true_divide(acc, count, out=acc, casting="unsafe")
    elif acc.dtype.kind == "u":
        np.floor_divide(acc, count, out=acc)
    else:  # signed: floor division, then step toward zero where it rounded a negative value down
        q = np.floor_divide(acc, count)
        fix = (acc - q * count != 0) & (acc < 0)
        np.add(q, fix, out=acc, casting="unsafe")

