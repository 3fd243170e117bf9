"""Linear algebra: matmul family with batching and broadcasting, einsum, inverse, norms."""
from __future__ import annotations

import numpy as np
import pytest

import disttorch
from _optable import Case, table_tests

CASES = [
    Case("matmul_dot", lambda M, a, b: a @ b, [((4,), "any"), ((4,), "any")]),
    Case("matmul_mv", lambda M, a, b: a @ b, [((3, 4), "any"), ((4,), "any")]),
    Case("matmul_vm", lambda M, a, b: M.matmul(a, b), [((4,), "any"), ((4, 2), "any")], grad_fn=False),
    Case("matmul_mm", lambda M, a, b: a @ b, [((3, 4), "any"), ((4, 2), "any")]),
    Case("matmul_bmm", lambda M, a, b: a @ b, [((2, 3, 4), "any"), ((2, 4, 2), "any")], grad_fn=False),
    Case("matmul_batch_mat", lambda M, a, b: a @ b, [((2, 3, 4), "any"), ((4, 2), "any")], grad_fn=False),
    Case("matmul_mat_batch", lambda M, a, b: a @ b, [((3, 4), "any"), ((2, 4, 2), "any")], grad_fn=False),
    Case("matmul_broadcast", lambda M, a, b: a @ b, [((2, 1, 3, 4), "any"), ((3, 4, 2), "any")], grad_fn=False),
    Case("matmul_batch_vec", lambda M, a, b: a @ b, [((2, 3, 4), "any"), ((4,), "any")], grad_fn=False),
    Case("matmul_vec_batch", lambda M, a, b: a @ b, [((4,), "any"), ((2, 4, 3), "any")], grad_fn=False),
    Case("mm", lambda M, a, b: M.mm(a, b), [((3, 4), "any"), ((4, 2), "any")]),
    Case("mm_transposed", lambda M, a, b: M.mm(a.t(), b), [((4, 3), "any"), ((4, 2), "any")]),
    Case("bmm", lambda M, a, b: M.bmm(a, b), [((2, 3, 4), "any"), ((2, 4, 2), "any")]),
    Case("mv", lambda M, a, b: M.mv(a, b), [((3, 4), "any"), ((4,), "any")]),
    Case("dot", lambda M, a, b: M.dot(a, b), [((5,), "any"), ((5,), "any")]),
    Case("outer", lambda M, a, b: M.outer(a, b), [((3,), "any"), ((4,), "any")], grad_fn=False),
    Case("addmm", lambda M, c, a, b: M.addmm(c, a, b), [((2,), "any"), ((3, 4), "any"), ((4, 2), "any")]),
    Case("addmm_beta_alpha", lambda M, c, a, b: M.addmm(c, a, b, beta=0.5, alpha=2.0),
         [((3, 2), "any"), ((3, 4), "any"), ((4, 2), "any")]),
    Case("einsum_mm", lambda M, a, b: M.einsum("ij,jk->ik", a, b), [((3, 4), "any"), ((4, 2), "any")], grad_fn=False),
    Case("einsum_batch", lambda M, a, b: M.einsum("bij,bjk->bik", a, b), [((2, 3, 4), "any"), ((2, 4, 2), "any")],
         grad_fn=False),
    Case("einsum_trace", lambda M, a: M.einsum("ii", a), [((3, 3), "any")], grad_fn=False),
    Case("einsum_diag", lambda M, a: M.einsum("ii->i", a), [((3, 3), "any")], grad_fn=False),
    Case("einsum_sum_out", lambda M, a, b: M.einsum("ij,kj->", a, b), [((3, 4), "any"), ((2, 4), "any")],
         grad_fn=False),
    Case("einsum_outer_implicit", lambda M, a, b: M.einsum("i,j", a, b), [((3,), "any"), ((2,), "any")], grad_fn=False),
    Case("einsum_ellipsis", lambda M, a, b: M.einsum("...ij,...jk->...ik", a, b),
         [((2, 3, 4), "any"), ((2, 4, 2), "any")], grad_fn=False),
    Case("einsum_three", lambda M, a, b, c: M.einsum("ij,jk,kl->il", a, b, c),
         [((2, 3), "any"), ((3, 4), "any"), ((4, 2), "any")], grad_fn=False),
    Case("inv", lambda M, a: M.linalg.inv(a), [((3, 3), "invertible")], rtol=1e-4, atol=1e-5),
    Case("inv_batched", lambda M, a: M.linalg.inv(a), [((2, 3, 3), "invertible")], rtol=1e-4, atol=1e-5),
    Case("det", lambda M, a: M.linalg.det(a), [((3, 3), "invertible")], rtol=1e-4, atol=1e-5),
    Case("linalg_norm_vec", lambda M, a: M.linalg.norm(a), [((5,), "any")]),
    Case("linalg_norm_fro", lambda M, a: M.linalg.norm(a, "fro"), [((3, 4), "any")]),
    Case("linalg_norm_dim", lambda M, a: M.linalg.norm(a, dim=1), [((3, 4), "any")]),
    Case("matrix_norm_1", lambda M, a: M.linalg.matrix_norm(a, 1), [((3, 4), "distinct")], grad_fn=False),
    Case("solve", lambda M, a, b: M.linalg.solve(a, b), [((3, 3), "invertible"), ((3, 2), "any")], rtol=1e-4,
         atol=1e-5, grad_fn=False),
    Case("t", lambda M, a: a.t() * 1, [((3, 4), "any")], grad_fn=False),
    Case("transpose", lambda M, a: M.transpose(a, 0, 2), [((2, 3, 4), "any")]),
]


test_gradcheck, test_gradgradcheck, test_parity_with_torch = table_tests(CASES)


# ---- forward semantics and errors ---------------------------------------------------------------------
from _optable import check_forward_parity, check_same_error  # noqa: E402

R = np.random.default_rng(5)
A3 = R.standard_normal((2, 3, 4)).astype(np.float32)

FORWARD = [
    ("matmul_shapes", lambda M, a: (a[0, 0] @ a[1, 0], a[0] @ a[0, 0], a[0, :, 0] @ a[0], a[0] @ a[1].t(),
                                    a @ a[0].t(), a[0] @ a.transpose(1, 2), a @ a.transpose(-1, -2),
                                    a[:, None] @ a.mT[None], M.matmul(a, a[0, 0])), A3),
    ("int_matmul", lambda M, a: (a * 10).long() @ (a * 10).long().mT, A3),
    ("mm_bmm_mv_dot", lambda M, a: (M.mm(a[0], a[1].t()), M.bmm(a, a.mT), M.mv(a[0], a[1, 0]), M.dot(a[0, 0], a[1, 1]),
                                    M.inner(a[0, 0], a[0, 1]), M.outer(a[0, 0], a[1, 1]), M.ger(a[0, 0], a[0, 1])), A3),
    ("addmm_family", lambda M, a: (M.addmm(a[0, 0, :3], a[0], a[1].t()), M.addmm(a[0, :, :3], a[0], a[1].t(), beta=0.5,
                                                                                 alpha=-2),
                                   M.baddbmm(a[:, :, :3], a, a.mT, beta=2), M.addmv(a[0, :, 0], a[0], a[1, 0])), A3),
    ("einsum", lambda M, a: (M.einsum("bij,bkj->bik", a, a), M.einsum("ij->ji", a[0]), M.einsum("bij->", a),
                             M.einsum("i,i->", a[0, 0], a[1, 0]), M.einsum("bii->bi", a[:, :, :3]),
                             M.einsum("...j,...j->...", a, a), M.einsum("ij,jk", a[0], a[1].t()),
                             M.einsum("bij,jk->bik", [a, a[0].t()])), A3),
    ("inv_det_norm", lambda M, a: (M.linalg.inv(a[:, :, :3] + 3 * M.eye(3)), M.linalg.det(a[:, :, :3]),
                                   M.linalg.norm(a), M.linalg.norm(a[0], "fro"), M.linalg.norm(a[0], 1),
                                   M.linalg.norm(a[0], float("inf")), M.linalg.norm(a, dim=-1),
                                   M.linalg.norm(a[0, 0], 3), M.linalg.vector_norm(a, 1, (0, 2)),
                                   M.linalg.matrix_norm(a), M.linalg.solve(a[0, :, :3] + 3 * M.eye(3), a[0])), A3),
]


@pytest.mark.parametrize("name,fn,arr", FORWARD, ids=[f[0] for f in FORWARD])
def test_forward_matches_torch(name, fn, arr):
    torch = pytest.importorskip("torch", reason="PyTorch is the reference for forward values")
    check_forward_parity(fn, torch, arr)


def test_linalg_literals():
    a = disttorch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert (a @ a).tolist() == [[7.0, 10.0], [15.0, 22.0]]
    assert (a @ disttorch.tensor([1.0, 1.0])).tolist() == [3.0, 7.0]
    assert disttorch.dot(disttorch.tensor([1.0, 2.0]), disttorch.tensor([3.0, 4.0])).item() == 11.0
    np.testing.assert_allclose(disttorch.linalg.inv(a).numpy(), [[-2.0, 1.0], [1.5, -0.5]], rtol=1e-6)
    assert disttorch.linalg.det(a).item() == pytest.approx(-2.0)
    assert disttorch.einsum("ii", a).item() == 5.0
    b = disttorch.ones(5, 2, 3) @ disttorch.ones(3, 4)
    assert b.shape == (5, 2, 4) and b.sum().item() == 5 * 2 * 4 * 3
    assert (disttorch.ones(2, 1, 3, 4) @ disttorch.ones(5, 4, 2)).shape == (2, 5, 3, 2)


ERRORS = [
    lambda M: M.ones(2, 3) @ M.ones(4, 5),
    lambda M: M.ones(3) @ M.ones(4),
    lambda M: M.ones(2, 3) @ M.ones(4),
    lambda M: M.ones(2, 2) @ M.ones(2, 2, dtype=M.float64),
    lambda M: M.ones(2, 2) @ M.tensor(1.0),
    lambda M: M.dot(M.ones(2, 2), M.ones(2)),
    lambda M: M.bmm(M.ones(2, 2), M.ones(2, 2)),
    lambda M: M.mm(M.ones(2), M.ones(2, 2)),
    lambda M: M.linalg.inv(M.ones(2, 3)),
]


@pytest.mark.parametrize("fn", ERRORS, ids=[str(i) for i in range(len(ERRORS))])
def test_error_texts_are_torchs(fn):
    torch = pytest.importorskip("torch", reason="PyTorch is the reference for error texts")
    check_same_error(fn, torch)


def test_singular_inverse_raises():
    with pytest.raises(RuntimeError) as e:
        disttorch.linalg.inv(disttorch.zeros(2, 2))
    assert "singular" in str(e.value)
