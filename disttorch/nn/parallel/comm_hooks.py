"""Communication hooks (``torch.distributed.algorithms.ddp_comm_hooks``).

A hook is ``hook(state, bucket) -> Future`` whose value is the bucket's *averaged* flat gradient.
``state`` is the process group to use (or None for the default group), as in PyTorch's
default hooks. Register with ``DistributedDataParallel.register_comm_hook(state, hook)``.
"""
from __future__ import annotations

import numpy as np

from . import _comm
from ._future import from_work


class default_hooks:  # noqa: N801  (a namespace named as PyTorch's module)
    """Namespace mirroring ``torch.distributed.algorithms.ddp_comm_hooks.default_hooks``."""

    @staticmethod
    def allreduce_hook(process_group, bucket):
        """Averages the bucket in its own dtype: divide by world size, then SUM all-reduce."""
        return _allreduce_in(process_group, bucket, bucket.flat.dtype)

    @staticmethod
    def fp16_compress_hook(process_group, bucket):
        """Casts the bucket to float16, all-reduces it (half the bytes), casts back."""
        return _allreduce_in(process_group, bucket, np.float16)

    @staticmethod
    def bf16_compress_hook(process_group, bucket):
        """Rounds the bucket to bfloat16 and reduces it as 16-bit words (half the bytes).

        NumPy has no bfloat16, so the ranks exchange the rounded 16-bit patterns with an
        all-gather and sum them in float32 locally: the wire carries bfloat16, the sum is exact
        float32 of bfloat16 inputs (PyTorch's sums in bfloat16, so ours is at least as accurate).
        """
        from ...tensor import Tensor
        group = process_group
        world = _comm.world_size(group)
        bits = _to_bf16_bits(bucket.flat.astype(np.float32) / world)
        d = _comm.dist()
        gathered = [Tensor._wrap(np.empty_like(bits)) for _ in range(world)]
        kwargs = {} if group is None else {"group": group}
        work = d.all_gather(gathered, Tensor._wrap(bits), async_op=True, **kwargs)

        def decompress(_):
            if work is not None:
                work.wait()
            total = np.zeros(bits.shape, np.float32)
            for g in gathered:
                total += _from_bf16_bits(np.asarray(g._data, dtype=np.uint16))
            bucket.flat[...] = total
            return bucket.buffer()
        return from_work(None, None).then(decompress)


def _allreduce_in(group, bucket, dtype):
    from ...tensor import Tensor
    world = _comm.world_size(group)
    # Divide before summing (as PyTorch) so fp16 sums of large gradients do not overflow.
    compressed = Tensor._wrap((bucket.flat / world).astype(dtype, copy=False))
    work = _comm.all_reduce_async(compressed, group)

    def decompress(fut):
        fut.wait()
        bucket.flat[...] = compressed._data  # in place: the bucket keeps its own dtype
        return bucket.buffer()
    return from_work(work, compressed).then(decompress)


def _to_bf16_bits(x32):
    """float32 -> bfloat16 bit patterns (uint16), round to nearest even; NaN stays NaN."""
    u = np.ascontiguousarray(x32, dtype=np.float32).view(np.uint32)
    rounding = ((u >> 16) & 1) + np.uint32(0x7FFF)
    out = ((u + rounding) >> 16).astype(np.uint16)
    nan = np.isnan(x32)
    if nan.any():
        out[nan] = 0x7FC0
    return out


def _from_bf16_bits(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


allreduce_hook = default_hooks.allreduce_hook
fp16_compress_hook = default_hooks.fp16_compress_hook
bf16_compress_hook = default_hooks.bf16_compress_hook
