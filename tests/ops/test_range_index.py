"""Indexing with a Python range (read, write, gradient) as PyTorch, and the Tensor.is_* device flags."""
import numpy as np
import pytest

import disttorch as dt

INDICES = [range(2), (range(1, 3), 0), (slice(None), range(0, 4, 2)), range(0), (range(2), range(1, 3))]


@pytest.mark.parametrize("idx", INDICES, ids=str)
def test_range_index_matches_torch(idx):
    torch = pytest.importorskip("torch")
    a = np.arange(12.0).reshape(3, 4)
    x, y = dt.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    dx, ty = x[idx], y[idx]
    np.testing.assert_array_equal(dx.detach().numpy(), ty.detach().numpy())
    dx.sum().backward()
    ty.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), y.grad.numpy())
    x2, y2 = dt.tensor(a), torch.tensor(a)
    x2[idx] = -1.0
    y2[idx] = -1.0
    np.testing.assert_array_equal(x2.numpy(), y2.numpy())


def test_device_flags_match_torch_cpu_tensor():
    torch = pytest.importorskip("torch")
    t, d = torch.zeros(2), dt.zeros(2)
    for name in ("is_cpu", "is_cuda", "is_xpu", "is_mps", "is_meta", "is_xla", "is_ipu", "is_vulkan", "is_maia",
                 "is_mtia", "is_sparse", "is_sparse_csr", "is_quantized", "is_mkldnn", "is_nested"):
        assert getattr(d, name) == getattr(t, name), name
