"""Shape ops: finite-difference gradients, PyTorch parity, views, errors."""
from __future__ import annotations

import numpy as np
import pytest

import disttorch
from _optable import Case, table_tests

S = (2, 3, 4)

CASES = [
    Case("view", lambda M, x: x.view(6, 4), [(S, "any")]),
    Case("view_infer", lambda M, x: x.view(-1), [(S, "any")]),
    Case("reshape", lambda M, x: M.reshape(x, (4, -1)), [(S, "any")]),
    Case("reshape_copy", lambda M, x: x.transpose(0, 1).reshape(-1), [(S, "any")]),
    Case("view_as", lambda M, x, y: x.view_as(y), [((6,), "any"), ((2, 3), "any")], diff=(0,)),
    Case("permute", lambda M, x: x.permute(2, 0, 1), [(S, "any")]),
    Case("permute_fn", lambda M, x: M.permute(x, (1, 2, 0)), [(S, "any")]),
    Case("transpose", lambda M, x: x.transpose(-1, 0), [(S, "any")]),
    Case("swapaxes", lambda M, x: M.swapaxes(x, 0, 1), [(S, "any")]),
    Case("t", lambda M, x: x.t(), [((3, 4), "any")]),
    Case("T", lambda M, x: x.T, [((3, 4), "any")]),
    Case("mT", lambda M, x: x.mT, [(S, "any")]),
    Case("flatten", lambda M, x: x.flatten(), [(S, "any")]),
    Case("flatten_range", lambda M, x: M.flatten(x, 1), [(S, "any")]),
    Case("unflatten", lambda M, x: x.unflatten(1, (3, 2)), [((2, 6), "any")]),
    Case("squeeze", lambda M, x: x.squeeze(), [((2, 1, 3, 1), "any")]),
    Case("squeeze_dim", lambda M, x: M.squeeze(x, 1), [((2, 1, 3, 1), "any")]),
    Case("squeeze_dims", lambda M, x: x.squeeze((1, 3)), [((2, 1, 3, 1), "any")]),
    Case("unsqueeze", lambda M, x: x.unsqueeze(1), [(S, "any")]),
    Case("unsqueeze_neg", lambda M, x: M.unsqueeze(x, -1), [(S, "any")]),
    Case("expand", lambda M, x: x.expand(2, 3, 4), [((3, 1), "any")]),
    Case("expand_minus1", lambda M, x: x.expand(5, -1, 4), [((3, 1), "any")]),
    Case("expand_as", lambda M, x, y: x.expand_as(y), [((1, 4), "any"), ((3, 4), "any")], diff=(0,)),
    Case("broadcast_to", lambda M, x: M.broadcast_to(x, (2, 3, 4)), [((4,), "any")]),
    Case("repeat", lambda M, x: x.repeat(2, 1, 3), [((2, 3), "any")]),
    Case("tile", lambda M, x: M.tile(x, (2,)), [((2, 3), "any")], grad_fn=False),
    Case("cat", lambda M, a, b: M.cat([a, b], 1), [((2, 3), "any"), ((2, 2), "any")]),
    Case("cat_neg", lambda M, a, b, c: M.cat((a, b, c), dim=-1), [((2, 1), "any"), ((2, 2), "any"), ((2, 3), "any")]),
    Case("stack", lambda M, a, b: M.stack([a, b]), [((2, 3), "any"), ((2, 3), "any")]),
    Case("stack_dim", lambda M, a, b: M.stack([a, b], dim=2), [((2, 3), "any"), ((2, 3), "any")]),
    Case("split", lambda M, x: M.split(x, 2, 1)[1], [((2, 5), "any")]),
    Case("split_sizes", lambda M, x: x.split([1, 4], dim=1)[1], [((2, 5), "any")]),
    Case("split_all", lambda M, x: M.cat([p * (i + 1) for i, p in enumerate(x.split(2))]), [((5, 2), "any")],
         grad_fn=False),
    Case("chunk", lambda M, x: x.chunk(3, 1)[2], [((2, 5), "any")]),
    Case("unbind", lambda M, x: M.unbind(x, 1)[1], [((2, 3), "any")]),
    Case("flip", lambda M, x: x.flip(0, 2), [(S, "any")]),
    Case("flip_fn", lambda M, x: M.flip(x, [1]), [(S, "any")]),
    Case("fliplr", lambda M, x: M.fliplr(x), [((2, 3), "any")], grad_fn=False),
    Case("roll", lambda M, x: M.roll(x, 1, 1), [(S, "any")]),
    Case("roll_flat", lambda M, x: x.roll(2), [((2, 3), "any")], grad_fn=False),
    Case("tril", lambda M, x: M.tril(x), [((3, 4), "any")]),
    Case("triu", lambda M, x: x.triu(1), [((3, 4), "any")]),
    Case("tril_neg", lambda M, x: x.tril(-1), [((2, 3, 3), "any")]),
    Case("narrow", lambda M, x: x.narrow(1, 1, 2), [(S, "any")]),
    Case("select", lambda M, x: M.select(x, 2, -1), [(S, "any")]),
    Case("movedim", lambda M, x: M.movedim(x, 0, -1), [(S, "any")], grad_fn=False),
    Case("diagonal", lambda M, x: M.diagonal(x), [((3, 4), "any")]),
    Case("diagonal_offset", lambda M, x: x.diagonal(1, 1, 2), [(S, "any")]),
    Case("diag_vec", lambda M, x: M.diag(x), [((3,), "any")]),
    Case("diag_mat", lambda M, x: M.diag(x, -1), [((3, 3), "any")], grad_fn=False),
    Case("clone", lambda M, x: x.clone(), [(S, "any")]),
    Case("contiguous", lambda M, x: x.t().contiguous(), [((3, 4), "any")]),
    # indexing (reads)
    Case("index_int", lambda M, x: x[1], [(S, "any")]),
    Case("index_neg_int", lambda M, x: x[-1, 0], [(S, "any")], edges=False),
    Case("index_slice", lambda M, x: x[:, 1:], [(S, "any")]),
    Case("index_step", lambda M, x: x[..., ::2], [(S, "any")]),
    Case("index_slice_neg", lambda M, x: x[:, -2:, 1:-1], [(S, "any")], edges=False),
    Case("index_none", lambda M, x: x[None, 0, :, None], [(S, "any")], grad_fn=False),
    Case("index_ellipsis", lambda M, x: x[..., 1], [(S, "any")]),
    Case("index_alias", lambda M, x: x[...], [(S, "any")]),
    Case("index_bool_mask", lambda M, x: x[x > 0.5], [(S, "distinct")]),
    Case("index_bool_rows", lambda M, x: x[M.tensor([True, False, True])], [((3, 4), "any")]),
    Case("index_int_list", lambda M, x: x[[0, 2, 0]], [((3, 4), "any")]),
    Case("index_long_tensor", lambda M, x: x[:, M.tensor([3, 1, 3])], [((3, 4), "any")]),
    Case("index_two_tensors", lambda M, x: x[M.tensor([0, 2]), M.tensor([1, 3])], [((3, 4), "any")]),
    Case("index_tensor_slice_mix", lambda M, x: x[M.tensor([1, 0]), 1:, M.tensor([0, 3])], [(S, "any")], edges=False),
    Case("index_2d_index", lambda M, x: x[M.tensor([[0, 1], [1, 1]])], [((2, 3), "any")]),
    Case("index_int_then_list", lambda M, x: x[1, :, [0, 3, 3]], [(S, "any")], edges=False),
]


test_gradcheck, test_gradgradcheck, test_parity_with_torch = table_tests(CASES)


# ---- forward semantics and errors --------------------------------------------------------------------
from _optable import check_forward_parity, check_same_error  # noqa: E402

A = np.arange(24, dtype=np.float32).reshape(2, 3, 4)

FORWARD = [
    ("split_int", lambda M, x: x.split(2, dim=2) + x.split(1) + M.split(x, 2, 1), A),
    ("split_sizes", lambda M, x: x.split([1, 3], -1) + M.split(x, (2, 0, 1), 1), A),
    ("chunk", lambda M, x: x.chunk(2, 1) + x.chunk(3, -1) + M.chunk(x, 5, 2) + x.chunk(4, 0), A),
    ("tensor_split", lambda M, x: M.tensor_split(x, 3, 2) + x.tensor_split([1, 3], dim=1), A),
    ("unbind", lambda M, x: x.unbind(1) + M.unbind(x), A),
    ("repeat_tile", lambda M, x: (x[0].repeat(2, 1, 2), M.tile(x[0, 0], (2, 2)), x.repeat(1, 1, 1)), A),
    ("stack_cat", lambda M, x: (M.stack([x[0], x[1]], -1), M.cat([x[0], x[1], x[0]], 0), M.cat([x, x], -2),
                                M.hstack([x[0], x[1]]), M.vstack([x[0, 0], x[1, 0]])), A),
    ("cat_empty", lambda M, x: M.cat([x[0], M.tensor([])]), A),
    ("squeeze_unsqueeze", lambda M, x: (x[:1].squeeze(), x[:1, :1].squeeze(1), x.unsqueeze(-1).shape,
                                        M.squeeze(x[None], 0), x[:, :1].squeeze((0, 1)).shape), A),
    ("flatten_unflatten", lambda M, x: (x.flatten(0, 1), x.flatten(-2), M.flatten(x[0, 0, 0]), x.unflatten(-1, (2, -1)),
                                        x.view(-1).unflatten(0, (4, 6))), A),
    ("permute_movedim", lambda M, x: (x.permute(1, 2, 0), x.permute((2, 1, 0)), M.movedim(x, (0, 1), (2, 0)),
                                      x.moveaxis(-1, 0), x.swapdims(0, 2)), A),
    ("flip_roll", lambda M, x: (x.flip(1), M.flip(x, (0, 2)), M.fliplr(x[0]), M.flipud(x[0]), x.roll((1, -2), (0, 2)),
                                M.roll(x, -3)), A),
    ("tril_triu", lambda M, x: (x.tril(), x.triu(-1), M.tril(x[0], 2), M.triu(x[1], 5)), A),
    ("diag_diagonal", lambda M, x: (M.diag(x[0]), M.diag(x[0, 0], 1), x.diagonal(), x.diagonal(1, 1, 2),
                                    M.diagonal(x[0], -1)), A),
    ("narrow_select", lambda M, x: (x.narrow(1, 1, 2), M.narrow(x, -1, 0, 1), x.select(2, 0), M.select(x, 0, -1)), A),
    ("expand", lambda M, x: (x[:, :1].expand(-1, 4, -1), x[0, 0].expand(2, 2, 4), M.broadcast_to(x[0, 0], (3, 4))), A),
    ("broadcast_tensors", lambda M, x: M.broadcast_tensors(x[:, :1], x[0, :, :1]), A),
    ("view_reshape", lambda M, x: (x.view(4, 6), x.reshape(-1, 2), x.view(-1), x.sum().reshape(1),
                                   x.permute(2, 0, 1).reshape(4, 6), x.view_as(M.zeros(6, 4)), x.reshape(24)), A),
    ("view_dtype_size", lambda M, x: (x.shape, x.view(6, 4).shape, x.size(), x.flatten().size(0)), A),
    ("getitem_mixed", lambda M, x: (x[1, ..., 2], x[:, [0, 2]][..., 1], x[[1, 0], :, [3, 2]], x[:, [[0], [2]], [1, 3]],
                                    x[None, ..., None].shape, x[x[..., 0] > 10], x[1, x[1, :, 0] > 15],
                                    x[M.tensor(1)], x[-1, -1, -1], x[::2, 1::2, ::3]), A),
    ("getitem_non_adjacent_advanced", lambda M, x: (x[[0, 1], :, [0, 2]], x[:, 1, [0, 3]], x[[1], 1:, [2]],
                                                    x[1, :, [0, 3]], x[0, [0, 2], 1:], x[1, ..., M.tensor([True, False,
                                                    True, False])], x[None, 1, :, [2]], x[[1, 0], 2, None]), A),
]


@pytest.mark.parametrize("name,fn,arr", FORWARD, ids=[f[0] for f in FORWARD])
def test_forward_matches_torch(name, fn, arr):
    torch = pytest.importorskip("torch", reason="PyTorch is the reference for forward values")
    check_forward_parity(fn, torch, arr)


def test_shape_literals():
    x = disttorch.arange(6).view(2, 3)
    assert [p.tolist() for p in x.split(2, 1)] == [[[0, 1], [3, 4]], [[2], [5]]]
    assert [p.shape for p in disttorch.arange(5).chunk(3)] == [(2,), (2,), (1,)]
    assert disttorch.cat([x, x], 1).tolist() == [[0, 1, 2, 0, 1, 2], [3, 4, 5, 3, 4, 5]]
    assert disttorch.stack([x, x], 1).shape == (2, 2, 3)
    assert x.repeat(2, 1).tolist() == [[0, 1, 2], [3, 4, 5], [0, 1, 2], [3, 4, 5]]
    assert x.flip(1).tolist() == [[2, 1, 0], [5, 4, 3]]
    assert x.t().reshape(-1).tolist() == [0, 3, 1, 4, 2, 5]
    assert x.permute(1, 0).contiguous().view(-1).tolist() == [0, 3, 1, 4, 2, 5]
    assert x.unsqueeze(0).expand(3, 2, 3).sum().item() == 45
    assert disttorch.tril(disttorch.ones(3, 3)).sum().item() == 6
    assert x[:, [2, 0]].tolist() == [[2, 0], [5, 3]] and x[x > 3].tolist() == [4, 5]


ERRORS = [
    lambda M: M.ones(2, 3).view(4),
    lambda M: M.ones(2, 3).t().view(6),
    lambda M: M.ones(2, 3).reshape(4, -1),
    lambda M: M.ones(2, 3).view(-1, -1),
    lambda M: M.cat([M.ones(2, 3), M.ones(3, 2)]),
    lambda M: M.cat([M.ones(2, 3), M.ones(2)]),
    lambda M: M.cat([]),
    lambda M: M.stack([M.ones(2, 3), M.ones(3, 2)]),
    lambda M: M.ones(2, 3).expand(3, 3),
    lambda M: M.ones(2, 3).expand(3),
    lambda M: M.ones(2, 3).permute(0, 0),
    lambda M: M.ones(2, 3).permute(0),
    lambda M: M.ones(2, 3).squeeze(3),
    lambda M: M.ones(2, 3, 4).flatten(2, 1),
    lambda M: M.ones(3).chunk(0),
    lambda M: M.ones(3).split([1, 1]),
    lambda M: M.ones(3).narrow(0, 2, 2),
    lambda M: M.ones(2, 6).unflatten(1, (4, 2)),
    lambda M: M.tril(M.ones(3)),
    lambda M: M.ones(2, 3).repeat(2),
    lambda M: M.ones(2, 3).select(1, 3),
    lambda M: M.ones(2, 3, 4).t(),
    lambda M: M.ones(2, 3)[2],
    lambda M: M.ones(2, 3)[0, 0, 0],
    lambda M: M.ones(2, 3)[:, -4],
    lambda M: M.ones(3)[M.tensor([True, False])],
    lambda M: M.ones(2, 3)[M.ones(2, 2, dtype=M.bool)],
    lambda M: M.ones(2, 3)[M.tensor([5])],
    lambda M: M.ones(3)[M.tensor([0.0])],
]


@pytest.mark.parametrize("fn", ERRORS, ids=[str(i) for i in range(len(ERRORS))])
def test_error_texts_are_torchs(fn):
    torch = pytest.importorskip("torch", reason="PyTorch is the reference for error texts")
    check_same_error(fn, torch)


def test_error_literals():
    with pytest.raises(RuntimeError) as e:
        disttorch.ones(2, 3).view(4)
    assert str(e.value) == "shape '[4]' is invalid for input of size 6"
    with pytest.raises(RuntimeError) as e:
        disttorch.ones(2, 3).t().view(6)
    assert str(e.value).startswith("view size is not compatible with input tensor's size and stride")
    with pytest.raises(RuntimeError) as e:
        disttorch.cat([disttorch.ones(2, 3), disttorch.ones(3, 2)])
    assert str(e.value) == ("Sizes of tensors must match except in dimension 0. Expected size 3 but got size 2 for "
                            "tensor number 1 in the list.")
    with pytest.raises(RuntimeError) as e:
        disttorch.ones(2, 3).expand(3, 3)
    assert str(e.value) == ("The expanded size of the tensor (3) must match the existing size (2) at non-singleton "
                            "dimension 0.  Target sizes: [3, 3].  Tensor sizes: [2, 3]")
    with pytest.raises(IndexError) as e:
        disttorch.ones(2, 3)[2]
    assert str(e.value) == "index 2 is out of bounds for dimension 0 with size 2"
