"""``DistributedDataParallel``: averages gradients across ranks, overlapping backward.

How a step goes:
- construction: every rank checks it holds the same model (names, shapes, dtypes) as rank 0,
  then rank 0's parameters and buffers are broadcast so all ranks start equal;
- forward: buffers are re-broadcast from rank 0 (``broadcast_buffers``), the module runs; with
  ``find_unused_parameters`` the output's graph is walked to find parameters it cannot reach;
- backward: each parameter's post-accumulate-grad hook hands its gradient to the reducer
  (``_reducer.py``), which all-reduces full buckets on the communication thread while backward
  goes on, and returns from the last hook once every bucket is reduced (on a host with no core to
  spare for that thread, ``DISTTORCH_DDP_OVERLAP=auto`` reduces all buckets in the last hook);
- the second forward rebuilds the buckets in the order the first backward produced gradients.
"""
from __future__ import annotations

import contextlib
import zlib

import numpy as np

from ...autograd.grad_mode import is_grad_enabled
from ..modules.module import Module
from . import _comm
from ._reducer import Reducer
from .join import Join, Joinable, JoinHook

_MB = 1024 * 1024
_DEFAULT_FIRST_BUCKET_BYTES = 1 * _MB


def _unused_error_text(rank, indices, names):
    return (
        "Expected to have finished reduction in the prior iteration before starting a new one. This error "
        "indicates that your module has parameters that were not used in producing loss. You can enable unused "
        "parameter detection by passing the keyword argument `find_unused_parameters=True` to "
        "`torch.nn.parallel.DistributedDataParallel`, and by \nmaking sure all `forward` function outputs "
        "participate in calculating loss. \nIf you already have done the above, then the distributed data "
        "parallel module wasn't able to locate the output tensors in the return value of your module's "
        "`forward` function. Please include the loss function and the structure of the return value of "
        "`forward` of your module when reporting this issue (e.g. list, dict, iterable).\n"
        f"Parameter indices which did not receive grad for rank {rank}: {' '.join(map(str, indices))}\n"
        f"Parameters which did not receive grad for rank {rank}: {', '.join(names)}")


class DistributedDataParallel(Module, Joinable):
    """Data parallelism at the module level (``torch.nn.parallel.DistributedDataParallel``).

    Args:
        module: the model; reachable as ``.module`` (state_dict keys get a ``module.`` prefix).
        broadcast_buffers: broadcast rank 0's buffers (e.g. BatchNorm statistics) every forward.
        process_group: the group to average over (default: the world).
        bucket_cap_mb: bucket size in MiB (default 25); smaller buckets start communication sooner.
        find_unused_parameters: walk the output's graph each forward and treat parameters it does
            not reach as ready (their gradient counts as zero), instead of waiting for them.
        gradient_as_bucket_view: leave ``.grad`` as views of the bucket buffers (saves a copy; a
            ``.grad`` kept across iterations then changes with the bucket, as in PyTorch).
        static_graph: accepted for compatibility; the reducer needs no graph knowledge to be fast
            (buckets launch in index order whatever order gradients arrive in, and are rebuilt
            once, after the first iteration, to follow the order they arrived in).
        device_ids, output_device, dim, check_reduction and the remaining arguments: accepted as
            PyTorch does for CPU modules (they only matter for single-process multi-device use).
    """

    def __init__(self, module, device_ids=None, output_device=None, dim=0, broadcast_buffers=True,
                 process_group=None, bucket_cap_mb=None, find_unused_parameters=False, check_reduction=False,
                 gradient_as_bucket_view=False, static_graph=False, delay_all_reduce_named_params=None,
                 param_to_hook_all_reduce=None, mixed_precision=None, device_mesh=None):
        super().__init__()
        Joinable.__init__(self)
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel expects an nn.Module, got {type(module).__name__}")
        _comm.require_initialized()
        self.module = module
        self.process_group = process_group
        self.dim = dim
        self.device_ids = device_ids
        self.output_device = output_device
        self.broadcast_buffers = bool(broadcast_buffers)
        self.find_unused_parameters = bool(find_unused_parameters)
        self.gradient_as_bucket_view = bool(gradient_as_bucket_view)
        self.static_graph = bool(static_graph)
        self.require_backward_grad_sync = True
        self.require_forward_param_sync = True
        self.bucket_bytes_cap = int((25 if bucket_cap_mb is None else float(bucket_cap_mb)) * _MB)
        if self.bucket_bytes_cap <= 0:
            raise ValueError(f"bucket_cap_mb must be positive, got {bucket_cap_mb}")

        self._rank = _comm.rank(process_group)
        self._world = _comm.world_size(process_group)
        self._root = _comm.global_rank(0, process_group)  # the group's rank 0, named globally
        named = []
        seen = set()
        for name, p in module.named_parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                named.append((name, p))
        if not named:
            raise RuntimeError("DistributedDataParallel is not needed when a module doesn't have any parameter "
                               "that requires a gradient.")
        self._param_names = [n for n, _ in named]
        self._params = [p for _, p in named]
        self._buffers_list = [b for _, b in module.named_buffers() if b is not None]

        overlap, direct = self._verify_same_model()
        self._sync_module_states()

        self.reducer = Reducer(self._params, self._param_names, self.bucket_bytes_cap,
                               min(_DEFAULT_FIRST_BUCKET_BYTES, self.bucket_bytes_cap), process_group,
                               self._rank, self._world, self.gradient_as_bucket_view, overlap)
        if direct and not overlap:
            self.reducer.enable_direct()  # a collective; every rank takes this branch or none does
        # SyncBatchNorm all-reduces inside backward: that collective would wait behind a staged
        # all-reduce which itself waits for the end of backward, so such models reduce bucket by bucket
        from ..modules.syncbatchnorm import SyncBatchNorm
        self.reducer.may_stage = not any(isinstance(m, SyncBatchNorm) for m in module.modules())
        self._expect_hooks = False  # set by a forward whose backward must reduce gradients
        self._hook_handles = [p.register_post_accumulate_grad_hook(self._make_hook(i))
                              for i, p in enumerate(self._params)]

    @property
    def _buckets(self):
        return self.reducer.buckets

    # ---- construction-time checks -------------------------------------------------------------
    def _verify_same_model(self):
        """Compares every parameter's (name, shape, dtype) with rank 0's and names the odd rank;
        returns ``(overlap, direct)``: whether every rank wants overlap on the communication thread,
        and whether every rank can reduce through shared-memory input areas (``_comm.wants_direct``).
        They must agree: each way issues different collectives.

        Ranks exchange a fixed-size fingerprint (count and CRC of the descriptions, plus the two
        wishes); only when models differ are the full descriptions gathered, to say which
        parameter differs where.
        """
        if self._world == 1:
            return True, False
        from ...tensor import Tensor
        mine = [(n, tuple(int(d) for d in p.shape), str(p._data.dtype)) for n, p in zip(self._param_names,
                                                                                       self._params)]
        direct = _comm.wants_direct(self._params, self.gradient_as_bucket_view, self.find_unused_parameters)
        fingerprint = np.array([len(mine), zlib.crc32(repr(mine).encode()), _comm.prefers_overlap(self._world),
                                direct], np.int64)
        gathered = [Tensor._wrap(np.zeros(4, np.int64)) for _ in range(self._world)]
        _comm.dist().all_gather(gathered, Tensor._wrap(fingerprint), **_comm.group_kwargs(self.process_group))
        overlap = all(bool(g._data[2]) for g in gathered)
        direct = all(bool(g._data[3]) for g in gathered)
        if all(np.array_equal(g._data[:2], gathered[0]._data[:2]) for g in gathered):
            return overlap, direct
        everyone = _comm.all_gather_object(mine, self.process_group)
        ref = everyone[0]
        for r, theirs in enumerate(everyone):
            if len(theirs) != len(ref):
                raise RuntimeError(f"DDP expects same model across all ranks, but Rank {r} has {len(theirs)} params, "
                                   f"while rank 0 has inconsistent {len(ref)} params.")
            for i, (a, b) in enumerate(zip(ref, theirs)):
                if a != b:
                    raise RuntimeError(
                        f"DDP expects same model across all ranks, but Rank {r} has parameter {i} '{b[0]}' of "
                        f"shape {b[1]} and dtype {b[2]}, while rank 0 has '{a[0]}' of shape {a[1]} and dtype {a[2]}.")
        return overlap, direct  # same descriptions, different CRC input (cannot happen with equal lists)

    def _sync_module_states(self):
        """Rank 0's parameters and buffers overwrite everyone's: all replicas start equal."""
        if self._world > 1:
            _comm.broadcast_arrays([p._data for p in self._params] + [b._data for b in self._buffers_list],
                                   src=self._root, group=self.process_group)

    # ---- forward and the hooks ------------------------------------------------------------------
    def forward(self, *inputs, **kwargs):
        Join.notify_join_context(self)
        if self.reducer.started and self._world > 1:
            self._raise_unfinished()
        if self._world > 1:
            self.reducer.rebuild_buckets()  # once, after the first iteration (a collective)
        if self.broadcast_buffers and self.require_forward_param_sync and self._world > 1 and self._buffers_list:
            _comm.broadcast_arrays([b._data for b in self._buffers_list], src=self._root, group=self.process_group)
        output = self.module(*inputs, **kwargs)
        self._expect_hooks = is_grad_enabled() and self.require_backward_grad_sync and self._world > 1
        if self._expect_hooks:
            self.reducer.prepare()
            if self.find_unused_parameters:
                self.reducer.find_unused(output)
        else:
            self.reducer.disarm_sinks()  # this backward's gradients stay out of the shared areas
        return output

    def _make_hook(self, index):
        def hook(param):
            if self._expect_hooks:
                grad = param.grad
                self.reducer.mark_ready(index, None if grad is None else grad._data)
                if not self.reducer.started:  # the reducer finished the iteration
                    self._expect_hooks = False
        return hook

    def _raise_unfinished(self):
        missing, names = self.reducer.unfinished()
        self.reducer.reset()
        self._expect_hooks = False
        raise RuntimeError(_unused_error_text(self._rank, missing, names))

    # ---- public API -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def no_sync(self):
        """Skips gradient averaging inside the block; gradients accumulate locally until the next
        backward outside it, which averages the accumulated sum."""
        old = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = old

    def register_comm_hook(self, state, hook):
        """Replaces the bucket all-reduce with ``hook(state, bucket) -> Future`` (see comm_hooks).

        The bucket holds the *sum-ready* local gradients (not divided by the world size): the hook
        averages, as PyTorch's hooks do.
        """
        if self.reducer.comm_hook is not None:
            raise RuntimeError("register_comm_hook or register_builtin_comm_hook can only be called once.")
        if not callable(hook):
            raise TypeError(f"Communication hook must be callable, got {type(hook).__name__}")
        self.reducer.comm_state, self.reducer.comm_hook = state, hook

    def join(self, divide_by_initial_world_size=True, enable=True, throw_on_early_termination=False):
        """``with model.join(): ...`` lets ranks with fewer batches finish early (see ``Join``)."""
        return Join([self], enable, throw_on_early_termination)

    def join_hook(self, **kwargs):
        return _DDPJoinHook(self)

    @property
    def join_device(self):
        from ..._device import device
        return device("cpu")

    @property
    def join_process_group(self):
        return self.process_group

    def _shadow_step(self):
        """What a joined rank does for each step the others still take: same collectives, zeros."""
        reducer = self.reducer
        reducer.rebuild_buckets()  # the active ranks' forward does it at this point too
        if self.broadcast_buffers and self._buffers_list:
            _comm.broadcast_arrays([b._data for b in self._buffers_list], src=self._root, group=self.process_group)
        reducer.prepare()
        if self.find_unused_parameters:
            reducer.locally_used = np.zeros(len(self._params), np.float64)
        saved = [p.grad for p in self._params]
        for i in range(len(self._params)):
            reducer.mark_ready(i, None)
        for p, g in zip(self._params, saved):  # a joined rank keeps its own gradients
            p.grad = g

    def _sync_final_params(self, is_last_joiner):
        """Every rank takes the weights of the highest rank that joined last: it trained longest."""
        from ...tensor import Tensor
        if self._world == 1:
            return
        d = _comm.dist()
        candidate = Tensor._wrap(np.array([float(self._rank) if is_last_joiner else -1.0]))
        _comm.all_reduce(candidate, self.process_group, op=d.ReduceOp.MAX)
        src = _comm.global_rank(int(candidate._data[0]), self.process_group)
        _comm.broadcast_arrays([p._data for p in self._params] + [b._data for b in self._buffers_list],
                               src=src, group=self.process_group)

    def __getstate__(self):
        raise RuntimeError("DistributedDataParallel cannot be pickled; save model.module.state_dict() instead.")


class _DDPJoinHook(JoinHook):
    def __init__(self, ddp):
        self.ddp = ddp

    def main_hook(self):
        self.ddp._shadow_step()

    def post_hook(self, is_last_joiner):
        self.ddp._sync_final_params(is_last_joiner)

