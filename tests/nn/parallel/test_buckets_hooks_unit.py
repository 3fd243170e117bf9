"""Pure pieces of DDP that need no process group: bucket assignment, bfloat16 rounding, futures."""
from __future__ import annotations

import numpy as np

from disttorch.nn.parallel._bucket import assign_buckets
from disttorch.nn.parallel._future import Future, completed
from disttorch.tensor import Tensor


def _params(*sizes, dtype=np.float32):
    return [Tensor._wrap(np.zeros(n, dtype)) for n in sizes]


def test_buckets_reverse_order_and_cap():
    params = _params(10, 10, 10, 10)  # 40 bytes each
    assert assign_buckets(params, cap_bytes=80) == [[3, 2], [1, 0]]
    assert assign_buckets(params, cap_bytes=10 ** 6) == [[3, 2, 1, 0]]
    assert assign_buckets(params, cap_bytes=80, first_cap_bytes=40) == [[3], [2, 1], [0]]


def test_large_param_closes_its_bucket_and_dtypes_split():
    # PyTorch's rule: a parameter joins the open bucket, which closes once it reaches the cap.
    params = _params(1, 1000, 1) + _params(1, dtype=np.float64)
    assert assign_buckets(params, cap_bytes=100) == [[2, 1], [3], [0]]
    # The MLP of benchmarks/ddp.py with a 1 MiB first bucket: [fc3, fc2] then [fc1], as PyTorch.
    mlp = _params(512 * 784, 512, 512 * 512, 512, 10 * 512, 10)
    assert assign_buckets(mlp, 25 * 2 ** 20, 2 ** 20) == [[5, 4, 3, 2], [1, 0]]


def test_bf16_rounding_matches_torch_semantics():
    from disttorch.nn.parallel.comm_hooks import _from_bf16_bits, _to_bf16_bits
    x = np.array([1.0, 1.00390625, 1.01171875, -3.5, 1e-3, np.inf], np.float32)
    back = _from_bf16_bits(_to_bf16_bits(x))
    # 1 + 2^-8 is a tie -> rounds to even (1.0); 1 + 3*2^-8 ties up to 1 + 2^-6.
    np.testing.assert_array_equal(back[:4], np.array([1.0, 1.0, 1.015625, -3.5], np.float32))
    assert abs(back[4] - 1e-3) / 1e-3 < 2 ** -8 and np.isinf(back[5])
    assert np.isnan(_from_bf16_bits(_to_bf16_bits(np.array([np.nan], np.float32))))[0]


def test_future_then_runs_lazily_once():
    calls = []
    fut = Future(lambda: calls.append("wait") or 3)
    chained = fut.then(lambda f: f.value() * 2)
    assert calls == []
    assert chained.wait() == 6 and fut.wait() == 3 and calls == ["wait"]
    assert completed(5).value() == 5


def test_bucket_buffers_are_consecutive_slices_of_one_array_per_dtype():
    from disttorch.nn.parallel._bucket import GradBucket, allocate_buffers
    params = _params(3, 5, 2) + _params(4, dtype=np.float64)
    groups = assign_buckets(params, cap_bytes=16)
    slices, arenas = allocate_buffers(params, groups)
    assert groups == [[3], [2, 1], [0]]
    assert {k.name: v.size for k, v in arenas.items()} == {"float64": 4, "float32": 10}
    f32 = arenas[np.dtype(np.float32)]
    assert np.shares_memory(slices[1], f32) and np.shares_memory(slices[2], f32)
    assert slices[1].size == 7 and slices[2].size == 3 and slices[0].dtype == np.float64
    bucket = GradBucket(1, [params[j] for j in groups[1]], groups[1], slices[1], False)
    bucket.views[1][...] = 7.0  # parameter 1's gradient lands in the shared array, after parameter 2's
    np.testing.assert_array_equal(f32[:7], [0, 0, 7, 7, 7, 7, 7])
    assert [g.shape for g in bucket.gradients()] == [(2,), (5,)]
