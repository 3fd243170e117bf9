"""torch.meshgrid: values, gradients, warning and errors against PyTorch."""
import warnings

import numpy as np
import pytest
import torch

import disttorch


def _pair(*values):
    ours = [disttorch.tensor(v, dtype=disttorch.float64, requires_grad=True) for v in values]
    ref = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in values]
    return ours, ref


@pytest.mark.parametrize("indexing", ["ij", "xy"])
@pytest.mark.parametrize("values", [([1.0, 2.0, 3.0], [4.0, 5.0]), ([1.0, 2.0], 7.0, [3.0, 4.0, 5.0, 6.0]),
                                    ([0.5, 1.5],)])
def test_values_and_gradients_match_pytorch(values, indexing):
    ours, ref = _pair(*values)
    grids = disttorch.meshgrid(*ours, indexing=indexing)
    ref_grids = torch.meshgrid(*ref, indexing=indexing)
    assert len(grids) == len(ref_grids)
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal(tuple(g.shape)) for g in ref_grids]
    for g, r in zip(grids, ref_grids):
        assert tuple(g.shape) == tuple(r.shape)
        np.testing.assert_array_equal(g.detach().numpy(), r.detach().numpy())
    sum(disttorch.sum(g * disttorch.tensor(w)) for g, w in zip(grids, weights)).backward()
    sum(torch.sum(r * torch.tensor(w)) for r, w in zip(ref_grids, weights)).backward()
    for o, r in zip(ours, ref):
        np.testing.assert_allclose(o.grad.numpy(), r.grad.numpy(), rtol=1e-12)


def test_list_argument_and_missing_indexing_warns_like_pytorch():
    a, b = disttorch.arange(3.0), disttorch.arange(2.0)
    with pytest.warns(UserWarning, match="torch.meshgrid: in an upcoming release, it will be required to pass the "
                                         "indexing argument."):
        grids = disttorch.meshgrid([a, b])
    assert tuple(grids[0].shape) == (3, 2)  # "ij" by default
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        disttorch.meshgrid(a, b, indexing="xy")


@pytest.mark.parametrize("args, kwargs, message", [
    (lambda m: (m.arange(3.0), m.arange(2.0)), {"indexing": "foo"},
     'torch.meshgrid: indexing must be one of "xy" or "ij", but received: foo'),
    (lambda m: (m.zeros(3, 1), m.arange(2.0)), {"indexing": "ij"},
     "torch.meshgrid: Expected 0D or 1D tensor in the tensor list but got:"),
    (lambda m: (m.arange(3.0), m.arange(2)), {"indexing": "ij"}, "meshgrid expects all tensors to have the same dtype"),
    (lambda m: (), {"indexing": "ij"}, "meshgrid expects a non-empty TensorList"),
])
def test_errors_match_pytorch(args, kwargs, message):
    with pytest.raises(RuntimeError) as ref:
        torch.meshgrid(*args(torch), **kwargs)
    assert str(ref.value).startswith(message)
    with pytest.raises(RuntimeError) as ours:
        disttorch.meshgrid(*args(disttorch), **kwargs)
    assert str(ours.value).startswith(message)
