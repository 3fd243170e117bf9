"""Every op of the op tables, used twice on the same inputs with read-only and writable incoming
gradients (``_optable.check_gradient_aliasing``): the engine's in-place accumulation must never
touch a gradient an op handed back without owning it."""
import pytest

import test_index
import test_linalg
import test_pointwise
import test_reduce
import test_shape
from _optable import check_gradient_aliasing

CASES = [c for m in (test_pointwise, test_reduce, test_shape, test_index, test_linalg) for c in m.CASES]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c}")
def test_op_used_twice_accumulates_like_pytorch(case):
    torch = pytest.importorskip("torch", reason="PyTorch is the reference for parity tests")
    check_gradient_aliasing(case, torch)
