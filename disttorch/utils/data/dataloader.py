"""DataLoader: batches from a dataset, in this process or in worker processes.

With ``num_workers=0`` batches are fetched in the calling process. With ``num_workers > 0`` tasks
(lists of indices) are handed to the workers round-robin, each worker fetches and collates its
batches, and the main process takes them back *in sampler order*, so the batches are identical
to the single-process ones (random transforms aside, which draw from each worker's own seed).
"""
from __future__ import annotations

import collections
import itertools
import math
import os
import warnings

from . import _arrays
from ._fetch import create_fetcher
from ._pool import WorkerPool, resolve_context
from ._worker import ExceptionWrapper, _IterableEnd, _ResumeIteration
from .collate import default_collate, default_convert
from .dataset import IterableDataset
from .sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler


class _InfiniteConstantSampler(Sampler):
    """The index sampler of an IterableDataset: the dataset decides what comes next."""

    def __iter__(self):
        while True:
            yield None


class DataLoader:
    """Iterates over ``dataset`` in batches.

    Args:
        dataset: a map-style ``Dataset`` or an ``IterableDataset``.
        batch_size: samples per batch (default 1); None turns automatic batching off, so each
            sample is only converted with ``default_convert``.
        shuffle: reshuffle every epoch (a ``RandomSampler`` drawing from ``generator``).
        sampler: the order of indices (exclusive with ``shuffle``).
        batch_sampler: yields whole lists of indices (exclusive with batch_size, shuffle, sampler
            and drop_last).
        num_workers: worker processes; 0 loads in the calling process.
        collate_fn: merges a list of samples into a batch (default ``default_collate``).
        pin_memory: accepted for compatibility; there is no pinned host memory here.
        drop_last: drop the last incomplete batch.
        timeout: seconds to wait for a batch from the workers before raising (0 = forever; a dead
            worker is reported at once either way).
        worker_init_fn: called as ``worker_init_fn(worker_id)`` in each worker after seeding.
        multiprocessing_context: 'fork', 'spawn', 'forkserver' or a context; default fork on Linux.
        generator: draws the shuffle order and the workers' base seed (default generator if None).
        prefetch_factor: batches requested ahead per worker (default 2 with workers).
        persistent_workers: keep the workers alive between epochs.
        in_order: return batches in sampler order (default); False returns whichever is ready first.
    """

    __initialized = False

    def __init__(self, dataset, batch_size: int | None = 1, shuffle: bool | None = None, sampler=None,
                 batch_sampler=None, num_workers: int = 0, collate_fn=None, pin_memory: bool = False,
                 drop_last: bool = False, timeout: float = 0, worker_init_fn=None,
                 multiprocessing_context=None, generator=None, *, prefetch_factor: int | None = None,
                 persistent_workers: bool = False, pin_memory_device: str = "", in_order: bool = True):
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers option should be non-negative; use num_workers=0 to disable "
                             f"multiprocessing. (got num_workers={num_workers!r})")
        if timeout < 0:
            raise ValueError(f"timeout option should be non-negative (got timeout={timeout!r})")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("prefetch_factor option could only be specified in multiprocessing."
                             "let num_workers > 0 to enable multiprocessing, otherwise set prefetch_factor to None.")
        if num_workers > 0 and prefetch_factor is None:
            prefetch_factor = 2
        if prefetch_factor is not None and (not isinstance(prefetch_factor, int) or prefetch_factor < 1):
            raise ValueError(f"prefetch_factor option should be a positive integer, but got "
                             f"prefetch_factor={prefetch_factor!r}")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")

        self.dataset = dataset
        self.num_workers = num_workers
        self.prefetch_factor = prefetch_factor
        self.pin_memory = pin_memory
        self.pin_memory_device = pin_memory_device
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        self.in_order = in_order

        if isinstance(dataset, IterableDataset):
            self._dataset_kind_iterable = True
            # An IterableDataset decides its own order; torch rejects the map-style options.
            if isinstance(shuffle, bool) and shuffle:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified shuffle option, "
                                 f"but got shuffle={shuffle}")
            if sampler is not None:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified sampler option, "
                                 f"but got sampler={sampler}")
            if batch_sampler is not None:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified batch_sampler "
                                 f"option, but got batch_sampler={batch_sampler}")
        else:
            self._dataset_kind_iterable = False
            shuffle = bool(shuffle)

        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, shuffle, "
                                 "sampler, and drop_last")
            batch_size = None
            drop_last = False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually exclusive "
                             "with drop_last")

        if sampler is None:
            if self._dataset_kind_iterable:
                sampler = _InfiniteConstantSampler()
            elif shuffle:
                sampler = RandomSampler(dataset, generator=generator)
            else:
                sampler = SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)

        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.generator = generator
        if collate_fn is None:
            collate_fn = default_collate if self._auto_collation else default_convert
        self.collate_fn = collate_fn
        self.persistent_workers = persistent_workers
        self._iterator = None
        self._progress = _PassProgress()  # of the latest pass, for state_dict
        self._resume = None  # a state from load_state_dict, applied by the next pass

        if pin_memory:
            import disttorch._backend as backend

            if not backend.cuda_available():
                warnings.warn("'pin_memory' argument is set as true but no accelerator is found, "
                              "then device pinned memory won't be used.")
        if num_workers > 0:
            _check_worker_number_rationality(num_workers)
        self.__initialized = True

    def __setattr__(self, attr, value):
        if self.__initialized and attr in ("batch_size", "batch_sampler", "sampler", "drop_last",
                                           "dataset", "persistent_workers"):
            raise ValueError(f"{attr} attribute should not be set after {self.__class__.__name__} is initialized")
        super().__setattr__(attr, value)

    @property
    def _auto_collation(self) -> bool:
        return self.batch_sampler is not None

    @property
    def _index_sampler(self):
        # What the iterator walks: lists of indices with automatic batching, single indices without.
        return self.batch_sampler if self._auto_collation else self.sampler

    def _get_iterator(self):
        if self.num_workers == 0:
            return _SingleProcessDataLoaderIter(self)
        return _MultiProcessingDataLoaderIter(self)

    def __iter__(self):
        if self.persistent_workers and self.num_workers > 0:
            if self._iterator is None:
                self._iterator = self._get_iterator()
            else:
                self._iterator._reset(self)
            return self._iterator
        return self._get_iterator()

    def __len__(self) -> int:
        if self._dataset_kind_iterable:
            length = len(self.dataset)  # TypeError if the stream has no length, as in torch
            if self.batch_size is not None:
                length = length // self.batch_size if self.drop_last else math.ceil(length / self.batch_size)
            return length
        if self._resume is not None and not self._resume.get("stateful_sampler"):
            return max(len(self._index_sampler) - self._resume["batches_yielded"], 0)
        return len(self._index_sampler)

    # ---- resuming mid-epoch (torchdata's StatefulDataLoader protocol) --------------------------
    def state_dict(self) -> dict:
        """Where the latest pass stands: batches and samples returned so far (prefetched ones do
        not count), the sampler's own state when it has one, and the pass's worker base seed.

        Save it with the model after a training step; ``load_state_dict`` then makes the next
        pass start with the batch that step had not reached yet."""
        progress = self._progress
        state = {"batches_yielded": progress.batches_before + progress.batches,
                 "samples_yielded": progress.samples_before + progress.samples,
                 "finished": progress.finished, "base_seed": progress.base_seed}
        if _is_stateful(self.sampler):
            state["sampler"] = self.sampler.state_dict(samples_yielded=progress.samples) \
                if _takes_samples_yielded(self.sampler) else self.sampler.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Make the next ``iter(loader)`` continue the saved pass (nothing happens when the saved
        pass had finished). A sampler with ``load_state_dict`` (``DistributedSampler``) restores
        its own position, re-sharding under a different world size; any other sampler is
        replayed and the batches the saved pass had returned are skipped without loading them."""
        for key in ("batches_yielded", "samples_yielded", "finished"):
            if key not in state:
                raise KeyError(f"DataLoader.load_state_dict: the state has no {key!r} (keys: {sorted(state)})")
        if state["finished"]:
            self._resume = None
            return
        stateful = "sampler" in state and _is_stateful(self.sampler)
        if stateful:
            self.sampler.load_state_dict(state["sampler"])
        self._resume = {"batches_yielded": int(state["batches_yielded"]), "samples_yielded": int(state["samples_yielded"]),
                        "base_seed": state.get("base_seed"), "stateful_sampler": stateful}

    def _start_pass(self):
        """The index iterator of a new pass, positioned after a restored state's batches."""
        resume, self._resume = self._resume, None
        self._progress = _PassProgress()
        indices = iter(self._index_sampler)
        if resume is None:
            return indices, None
        if not resume["stateful_sampler"] and not self._dataset_kind_iterable:
            for _ in range(resume["batches_yielded"]):  # replay the sampler; nothing is loaded
                if next(indices, _END) is _END:
                    break
        self._progress.batches_before = resume["batches_yielded"]
        self._progress.samples_before = resume["samples_yielded"]
        return indices, resume


class _PassProgress:
    """What one pass has returned so far (updated as batches leave the iterator)."""

    def __init__(self):
        self.batches = 0
        self.samples = 0
        self.finished = False
        self.base_seed = None
        self.batches_before = 0  # a resumed pass counts on from the saved one
        self.samples_before = 0

    def returned(self, samples):
        self.batches += 1
        self.samples += samples


_END = object()


def _is_stateful(sampler) -> bool:
    return callable(getattr(sampler, "state_dict", None)) and callable(getattr(sampler, "load_state_dict", None))


def _takes_samples_yielded(sampler) -> bool:
    import inspect
    try:
        return "samples_yielded" in inspect.signature(sampler.state_dict).parameters
    except (TypeError, ValueError):
        return False


def _check_worker_number_rationality(num_workers: int) -> None:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count()
    if cpus and num_workers > cpus:
        warnings.warn(f"This DataLoader will create {num_workers} worker processes in total. Our suggested "
                      f"max number of worker in current system is {cpus}, which is smaller than what this "
                      f"DataLoader is going to create. Please be aware that excessive worker creation might "
                      f"get DataLoader running slow or even freeze, lower the worker number to avoid "
                      f"potential slowness/freeze if necessary.")


class _BaseDataLoaderIter:
    def __init__(self, loader: DataLoader) -> None:
        self._dataset = loader.dataset
        self._is_iterable = loader._dataset_kind_iterable
        self._auto_collation = loader._auto_collation
        self._drop_last = loader.drop_last
        self._index_sampler = loader._index_sampler
        self._num_workers = loader.num_workers
        self._collate_fn = loader.collate_fn
        self._timeout = loader.timeout
        self._sampler_iter, resume = loader._start_pass()
        # Drawn here for every loader, with or without workers, so that both kinds consume the
        # generator identically and give the same shuffle order for the same seed. A resumed
        # pass reuses the saved seed and draws nothing: the restored random streams then go on
        # exactly as in the run that was interrupted.
        if resume is not None and resume["base_seed"] is not None:
            self._base_seed = int(resume["base_seed"])
        else:
            self._base_seed = _arrays.draw_seed(loader.generator)
        self._progress = loader._progress
        self._progress.base_seed = self._base_seed
        # A stream has no indices to replay: its first batches are read and dropped instead.
        self._discard = resume["batches_yielded"] if resume is not None and self._is_iterable else 0
        self._num_yielded = 0

    def __iter__(self):
        return self

    def _reset(self, loader: DataLoader, first_iter: bool = False) -> None:
        if not first_iter:  # __init__ already started the first pass
            self._sampler_iter, resume = loader._start_pass()
            self._progress = loader._progress
            self._progress.base_seed = self._base_seed  # persistent workers keep their seed
            self._discard = resume["batches_yielded"] if resume is not None and self._is_iterable else 0
        self._num_yielded = 0

    def __next__(self):
        try:
            while self._discard:
                self._next_data()
                self._discard -= 1
            data, samples = self._next_data()
        except StopIteration:
            self._progress.finished = True
            raise
        self._num_yielded += 1
        self._progress.returned(samples)
        return data

    def _samples_in(self, index) -> int:
        """How many samples a task's index covers (a batch's list, or one sample)."""
        return len(index) if self._auto_collation and index is not None else 1

    def __len__(self) -> int:
        return len(self._index_sampler)


class _SingleProcessDataLoaderIter(_BaseDataLoaderIter):
    def __init__(self, loader: DataLoader) -> None:
        super().__init__(loader)
        self._fetcher = create_fetcher(self._is_iterable, self._dataset, self._auto_collation,
                                       self._collate_fn, self._drop_last)

    def _next_data(self):
        index = next(self._sampler_iter)  # StopIteration ends the epoch
        return self._fetcher.fetch(index), self._samples_in(index)


class _MultiProcessingDataLoaderIter(_BaseDataLoaderIter):
    """Keeps ``prefetch_factor * num_workers`` tasks in flight and returns results in order."""

    def __init__(self, loader: DataLoader) -> None:
        super().__init__(loader)
        self._prefetch_factor = loader.prefetch_factor
        self._persistent_workers = loader.persistent_workers
        self._in_order = loader.in_order
        self._pool = None
        self._pool = WorkerPool(
            num_workers=self._num_workers, context=resolve_context(loader.multiprocessing_context),
            is_iterable=self._is_iterable, dataset=self._dataset, auto_collation=self._auto_collation,
            collate_fn=self._collate_fn, drop_last=self._drop_last, base_seed=self._base_seed,
            worker_init_fn=loader.worker_init_fn)
        self._worker_cycle = itertools.cycle(range(self._num_workers))
        self._epoch = 0
        self._reset(loader, first_iter=True)

    def _reset(self, loader: DataLoader, first_iter: bool = False) -> None:
        super()._reset(loader, first_iter)
        self._send_idx = 0  # next task number to hand out
        self._rcvd_idx = 0  # next task number to return (in-order mode)
        self._task_worker = {}  # task number -> worker, for tasks not yet returned
        self._task_samples = {}  # task number -> samples in it, for the loader's state_dict
        self._outstanding = [collections.deque() for _ in range(self._num_workers)]
        self._active = [True] * self._num_workers  # False once a worker's IterableDataset ran dry
        if not first_iter:
            # Persistent workers: start a new epoch, discarding answers to the previous epoch's
            # unfinished tasks, which arrive before each worker's acknowledgement.
            self._epoch += 1
            self._pool.send_releases()
            for worker_id in range(self._num_workers):
                self._pool.put(worker_id, _ResumeIteration(self._epoch))
            for worker_id in range(self._num_workers):
                while True:
                    _, data = self._pool.recv(worker_id, self._timeout)
                    if isinstance(data, _ResumeIteration) and data.epoch == self._epoch:
                        break
        for _ in range(self._prefetch_factor * self._num_workers):
            self._try_put_index()

    def _try_put_index(self) -> None:
        try:
            index = next(self._sampler_iter)
        except StopIteration:
            return
        for _ in range(self._num_workers):
            worker_id = next(self._worker_cycle)
            if self._active[worker_id]:
                break
        else:
            return  # every worker's stream has ended
        self._pool.put_task(worker_id, self._send_idx, index)
        self._task_worker[self._send_idx] = worker_id
        self._task_samples[self._send_idx] = self._samples_in(index)
        self._outstanding[worker_id].append(self._send_idx)
        self._send_idx += 1

    def _next_task_worker(self):
        """The worker whose answer comes next, or None when the epoch is over."""
        if self._in_order:
            while self._rcvd_idx < self._send_idx:
                worker_id = self._task_worker.get(self._rcvd_idx)
                if worker_id is not None:
                    return worker_id
                self._rcvd_idx += 1  # a task held by an exhausted worker: never answered
            return None
        waiting = [w for w in range(self._num_workers) if self._active[w] and self._outstanding[w]]
        if not waiting:
            return None
        return self._pool.wait_any(waiting, self._timeout)

    def _next_data(self):
        if self._pool is None:
            raise StopIteration
        while True:
            worker_id = self._next_task_worker()
            if worker_id is None:
                if not self._persistent_workers:
                    self._shutdown_workers()
                raise StopIteration
            task_idx, data = self._pool.recv(worker_id, self._timeout)
            expected = self._outstanding[worker_id].popleft()
            if task_idx != expected:
                raise RuntimeError(f"DataLoader worker {worker_id} answered task {task_idx}, "
                                   f"expected task {expected}")
            del self._task_worker[task_idx]
            samples = self._task_samples.pop(task_idx, 1)
            if self._in_order:
                self._rcvd_idx += 1
            if isinstance(data, _IterableEnd):
                # This worker ignores the tasks it still holds; stop routing tasks to it.
                self._active[worker_id] = False
                for pending in self._outstanding[worker_id]:
                    del self._task_worker[pending]
                self._outstanding[worker_id].clear()
                self._try_put_index()
                continue
            self._try_put_index()
            if isinstance(data, ExceptionWrapper):
                data.reraise()
            return data, samples

    def _shutdown_workers(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()

    def __del__(self):
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown()
