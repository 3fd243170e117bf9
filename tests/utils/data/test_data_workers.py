"""Worker processes: ordering, seeding, shared memory, failures, and clean shutdown."""
import faulthandler
import gc
import mmap
import os
import random
import signal
import time

import numpy as np
import psutil
import pytest

import disttorch
from disttorch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset, get_worker_info
from disttorch.utils.data import _shared_memory, _worker


def children():
    """Live child processes, except multiprocessing's resource tracker (spawn starts one per process)."""
    alive = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(p.cmdline()):
                alive.append(p)
        except psutil.NoSuchProcess:
            pass
    return alive


@pytest.fixture(autouse=True)
def no_stray_workers():
    """Every test must leave neither worker processes nor shared-memory segments behind."""
    before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    older = {p.pid for p in children()}  # whatever earlier tests left is not ours to judge
    yield
    gc.collect()

    def new_children():
        return [p for p in children() if p.pid not in older]

    deadline = time.monotonic() + 5
    while new_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert new_children() == []
    if os.path.isdir("/dev/shm"):
        leaked = {n for n in set(os.listdir("/dev/shm")) - before if n.startswith("dt")}
        assert leaked == set()


class Indexed(Dataset):
    def __init__(self, n, shape=(1, 4, 4)):
        self.n, self.shape = n, shape

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return np.full(self.shape, i, np.float32), i


class RandomDraws(Dataset):
    """Each sample reports the worker, and draws from NumPy, Python's random and disttorch."""

    def __len__(self):
        return 8

    def __getitem__(self, i):
        info = get_worker_info()
        return {"worker": -1 if info is None else info.id, "np": float(np.random.rand()),
                "py": random.random(), "dt": float(disttorch.rand(1).item())}


class FailsAt(Dataset):
    def __init__(self, bad):
        self.bad = bad

    def __len__(self):
        return 8

    def __getitem__(self, i):
        if i == self.bad:
            raise ValueError(f"sample {i} is corrupt")
        return i


class KillsItselfAt(Dataset):
    def __init__(self, bad, sig=signal.SIGKILL):
        self.bad, self.sig = bad, sig

    def __len__(self):
        return 8

    def __getitem__(self, i):
        if i == self.bad:
            os.kill(os.getpid(), self.sig)
            time.sleep(10)
        return i


class Slow(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        time.sleep(0.6)
        return i


class Pids(Dataset):
    def __len__(self):
        return 6

    def __getitem__(self, i):
        return os.getpid()


class Stream(IterableDataset):
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        info = get_worker_info()
        return iter(range(info.id, self.n, info.num_workers))


def test_batches_arrive_in_sampler_order_even_when_workers_race():
    class Jittery(Indexed):
        def __getitem__(self, i):
            time.sleep(0.002 * ((i * 7) % 5))  # uneven work per batch
            return super().__getitem__(i)

    labels = [y.numpy().tolist() for _, y in DataLoader(Jittery(30), batch_size=3, num_workers=2)]
    assert labels == [[i, i + 1, i + 2] for i in range(0, 30, 3)]


def test_out_of_order_mode_returns_every_batch():
    labels = [tuple(y.numpy().tolist()) for _, y in DataLoader(Indexed(20), batch_size=4, num_workers=2, in_order=False)]
    assert sorted(labels) == [tuple(range(i, i + 4)) for i in range(0, 20, 4)]


def test_workers_get_distinct_reproducible_seeds():
    def run():
        disttorch.manual_seed(2024)
        loader = DataLoader(RandomDraws(), batch_size=2, num_workers=2)
        return [b for b in loader]

    first, second = run(), run()
    by_worker = {}
    for batch in first:
        worker = int(batch["worker"].numpy()[0])
        by_worker.setdefault(worker, []).append(batch)
    assert set(by_worker) == {0, 1}
    for key in ("np", "py", "dt"):
        w0 = by_worker[0][0][key].numpy().tolist()
        w1 = by_worker[1][0][key].numpy().tolist()
        assert w0 != w1, f"workers drew the same {key} numbers"  # the classic pitfall avoided
        assert [b[key].numpy().tolist() for b in first] == [b[key].numpy().tolist() for b in second]
    # A new epoch draws a new base seed, hence new numbers.
    disttorch.manual_seed(2024)
    loader = DataLoader(RandomDraws(), batch_size=2, num_workers=2)
    epoch1 = [b["np"].numpy().tolist() for b in loader]
    epoch2 = [b["np"].numpy().tolist() for b in loader]
    assert epoch1 != epoch2


def test_worker_info_and_init_fn():
    class Info(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            info = get_worker_info()
            return info.id, info.num_workers, info.seed - info.id, os.environ.get("DT_TEST_INIT")

    def init(worker_id):
        os.environ["DT_TEST_INIT"] = f"init{worker_id}"

    out = list(DataLoader(Info(), batch_size=None, num_workers=2, worker_init_fn=init))
    assert [(w, n, tag) for w, n, _, tag in out] == [(0, 2, "init0"), (1, 2, "init1"), (0, 2, "init0"), (1, 2, "init1")]
    assert len({base for _, _, base, _ in out}) == 1  # seed = base_seed + worker id
    assert get_worker_info() is None


def test_large_batches_travel_through_shared_memory():
    shape = (3, 64, 64)  # 48 KiB per sample, 384 KiB per batch: above the sharing threshold
    loader = DataLoader(Indexed(16, shape), batch_size=8, num_workers=2)
    got = list(loader)
    assert [y.numpy().tolist() for _, y in got] == [list(range(8)), list(range(8, 16))]
    images = got[1][0].numpy()
    assert images.shape == (8,) + shape and images[3, 2, 10, 10] == 11.0
    owner = images.base
    while isinstance(owner, (np.ndarray, memoryview)):
        owner = owner.obj if isinstance(owner, memoryview) else owner.base
    assert isinstance(owner, mmap.mmap)  # the batch's memory is the worker's segment, not a copy
    images[0, 0, 0, 0] = -1.0  # and it is writable


def test_shared_memory_slots_are_zero_copy_and_recycled():
    allocator = _shared_memory.SegmentAllocator(_shared_memory.new_prefix())
    receiver = _shared_memory.SegmentReceiver()
    try:
        names = []
        for value in (7.0, 8.0):
            _shared_memory._allocator = allocator
            try:
                array = _shared_memory.empty((256, 256), np.float32)  # what collate does in a worker
            finally:
                _shared_memory._allocator = None
            array[:] = value
            message = _shared_memory.dumps({"big": disttorch.from_numpy(array), "small": np.arange(5)}, allocator)
            del array
            assert len(message) < 2048  # only names and small data went through the pipe
            out = receiver.loads(message, worker_id=0)
            assert out["big"].numpy().sum() == value * 256 * 256 and out["small"].tolist() == [0, 1, 2, 3, 4]
            del out
            gc.collect()
            released = receiver.take_released()
            assert list(released) == [0] and len(released[0]) == 1
            names += released[0]
            allocator.release(released[0])
        assert names[0] == names[1]  # the second batch reused the first one's slot
    finally:
        allocator.unlink_all()
        receiver.close()


def test_exception_in_worker_names_worker_and_carries_traceback():
    loader = DataLoader(FailsAt(5), batch_size=2, num_workers=2)
    it = iter(loader)
    assert next(it).numpy().tolist() == [0, 1]
    assert next(it).numpy().tolist() == [2, 3]
    with pytest.raises(ValueError) as excinfo:
        next(it)
    text = str(excinfo.value)
    assert "Caught ValueError in DataLoader worker process 0" in text
    assert "sample 5 is corrupt" in text and "__getitem__" in text and "Traceback" in text
    assert next(it).numpy().tolist() == [6, 7]  # the loader goes on, as torch's does
    del it


def test_exception_in_worker_init_fn_is_reported():
    def init(worker_id):
        raise RuntimeError(f"cannot open the database in worker {worker_id}")

    with pytest.raises(RuntimeError, match="cannot open the database in worker 0"):
        list(DataLoader(Indexed(4), batch_size=1, num_workers=1, worker_init_fn=init))


def test_killed_worker_gives_a_clear_error_not_a_hang():
    start = time.monotonic()
    loader = DataLoader(KillsItselfAt(4), batch_size=2, num_workers=2)
    with pytest.raises(RuntimeError, match=r"DataLoader worker \(pid\(s\) \d+\) exited unexpectedly: "
                                           r"worker 0 \(pid \d+\) is killed by signal: Killed \(SIGKILL\)"):
        list(loader)
    assert time.monotonic() - start < 5


def test_segfaulting_worker_is_reported_with_its_signal():
    # faulthandler (enabled by pytest) would print the worker's stack on SIGSEGV; keep the log quiet.
    loader = DataLoader(KillsItselfAt(1, signal.SIGSEGV), batch_size=1, num_workers=2,
                        worker_init_fn=lambda worker_id: faulthandler.disable())
    with pytest.raises(RuntimeError, match=r"worker 1 \(pid \d+\) is killed by signal: Segmentation fault \(SIGSEGV\)"):
        list(loader)


def test_timeout():
    loader = DataLoader(Slow(), batch_size=1, num_workers=1, timeout=0.2)
    with pytest.raises(RuntimeError, match="DataLoader timed out after 0.2 seconds"):
        next(iter(loader))


def test_abandoned_iterator_stops_its_workers():
    it = iter(DataLoader(Indexed(100), batch_size=2, num_workers=2))
    next(it)
    assert len([p for p in children() if p.ppid() == os.getpid()]) >= 2
    del it  # the no_stray_workers fixture checks that they are gone


def test_persistent_workers_are_reused_across_epochs():
    loader = DataLoader(Pids(), batch_size=None, num_workers=2, persistent_workers=True)
    epoch1 = list(loader)
    partial = iter(loader)
    next(partial)  # abandon the second epoch after one batch...
    epoch3 = list(loader)  # ...the third still starts from the beginning
    assert len(epoch1) == len(epoch3) == 6
    assert len(set(epoch1)) == 2 and set(epoch1) == set(epoch3)
    del loader, partial


def test_iterable_dataset_sharded_across_workers():
    out = [b.numpy().tolist() for b in DataLoader(Stream(11), batch_size=2, num_workers=2)]
    # Worker 0 streams 0,2,4,..., worker 1 streams 1,3,5,...; their batches alternate.
    assert out == [[0, 2], [1, 3], [4, 6], [5, 7], [8, 10], [9]]
    flat = sorted(v for b in out for v in b)
    assert flat == list(range(11))


def test_unpicklable_batch_is_reported():
    loader = DataLoader(Indexed(2), batch_size=2, num_workers=1, collate_fn=lambda items: (lambda: items))
    with pytest.raises(Exception, match="while pickling its batch"):
        next(iter(loader))


def test_spawn_context():
    x = disttorch.tensor(np.arange(10, dtype=np.float32))
    loader = DataLoader(TensorDataset(x), batch_size=4, num_workers=1, multiprocessing_context="spawn")
    assert [b[0].numpy().tolist() for b in loader] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def _worker_signalled_during_cleanup(*loop_args):
    """A worker whose clean-up is hit by SIGTERM between its two steps (the parent-death signal
    arrives while the loop is already sweeping, after a broken pipe or the parent-pid check)."""
    from disttorch.utils.data import _worker

    real = _shared_memory.SegmentAllocator.unlink_all

    def unlink_all_then_sigterm(self):
        real(self)
        os.kill(os.getpid(), signal.SIGTERM)
    _shared_memory.SegmentAllocator.unlink_all = unlink_all_then_sigterm
    _worker._worker_loop(*loop_args)


def test_a_sigterm_during_the_workers_cleanup_does_not_leak_its_segments():
    import multiprocessing

    from disttorch.utils.data._shared_memory import _posixshmem

    if _posixshmem is None:
        pytest.skip("no POSIX shared memory")
    ctx = multiprocessing.get_context("fork")
    prefix = _shared_memory.new_prefix()
    leftover = f"/{prefix}w0_99"  # a slot sent to the main process, which died before mapping it
    os.close(_posixshmem.shm_open(leftover, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
    try:
        index_queue = ctx.Queue()
        reader, writer = ctx.Pipe(duplex=False)
        index_queue.put((0, 0, []))
        worker = ctx.Process(target=_worker_signalled_during_cleanup,
                             args=(False, [np.arange(3)], index_queue, writer, False, lambda x: x, False, 0,
                                   None, 0, 1, prefix, os.getpid(), [reader.fileno()], False))
        reader.close()  # the worker's batch then meets a broken pipe, as after the main's death
        worker.start()
        writer.close()
        worker.join(60)
        assert worker.exitcode == -signal.SIGTERM  # it still ends as killed by the signal
        assert not any(n.startswith(prefix) for n in os.listdir("/dev/shm"))  # nothing leaked
    finally:
        _shared_memory.unlink_prefix(prefix)


def _worker_signalled_twice(*loop_args):
    """A worker hit by a second SIGTERM as its clean-up starts, before the clean-up could switch
    the unwinding handler off (the second parent-death signal of a killed multi-threaded parent)."""
    from disttorch.utils.data import _worker

    real_signal = signal.signal

    def signal_after_another_sigterm(signum, handler):
        if handler is _worker._note_sigterm:
            signal.raise_signal(signal.SIGTERM)  # its Python handler runs before this returns
        return real_signal(signum, handler)
    signal.signal = signal_after_another_sigterm
    _worker._worker_loop(*loop_args)


@pytest.mark.parametrize("target", ["loop", "signalled twice"])
def test_a_worker_ended_by_sigterm_sweeps_its_segments_while_its_parent_pid_lives_on(target):
    # PR_SET_PDEATHSIG fires when the forking *thread* exits. A killed main process's threads exit
    # one by one, and the kernel hands its children to a thread still exiting (same pid) and sends
    # the signal then: the worker's parent pid has not changed, yet nobody will unlink what it made.
    import multiprocessing

    from disttorch.utils.data._shared_memory import _posixshmem

    if _posixshmem is None:
        pytest.skip("no POSIX shared memory")
    ctx = multiprocessing.get_context("fork")
    prefix = _shared_memory.new_prefix()
    leftover = f"/{prefix}w0_7"  # a slot the worker no longer tracks (its creation was cut short)
    os.close(_posixshmem.shm_open(leftover, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
    try:
        index_queue = ctx.Queue()
        reader, writer = ctx.Pipe(duplex=False)
        worker = ctx.Process(target=_worker._worker_loop if target == "loop" else _worker_signalled_twice,
                             args=(False, [np.arange(3)], index_queue, writer, False, lambda x: x, False, 0,
                                   None, 0, 1, prefix, os.getpid(), [], False))
        worker.start()
        writer.close()
        index_queue.put((0, [0], []))
        assert reader.poll(30)  # the worker is in its loop (it answered a task)
        worker.terminate()  # SIGTERM, its parent (this process) alive
        worker.join(30)
        assert worker.exitcode == -signal.SIGTERM
        assert not any(n.startswith(prefix) for n in os.listdir("/dev/shm"))
        reader.close()
    finally:
        _shared_memory.unlink_prefix(prefix)


def test_workers_die_with_a_killed_main_process(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "main.py"
    script.write_text(
        "import os, sys, time, numpy as np, psutil\n"
        "from disttorch.utils.data import DataLoader, Dataset\n"
        "class Big(Dataset):\n"
        "    def __len__(self): return 10 ** 6\n"
        "    def __getitem__(self, i): return np.zeros((3, 64, 64), np.float32)\n"
        "it = iter(DataLoader(Big(), batch_size=16, num_workers=2))\n"
        "next(it)\n"
        "print(' '.join(str(p.pid) for p in psutil.Process().children()), flush=True)\n"
        "time.sleep(60)\n")
    main = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        worker_pids = [int(p) for p in main.stdout.readline().split()]
        assert len(worker_pids) == 2
        main.kill()
        main.wait()
        # The kernel's parent-death signal starts each worker's exit at once (tens of ms); the
        # bounds only catch a worker that does not die at all. They are wide because this 2-core
        # machine sometimes runs a 128-worker benchmark beside the tests (load average ~300),
        # where a woken process can wait seconds for a core; 5 s was missed once there.
        deadline = time.monotonic() + 20
        def alive(pid):
            try:
                return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return False
        while any(alive(p) for p in worker_pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(p) for p in worker_pids)
        prefix = f"dt{main.pid:x}_"
        deadline = time.monotonic() + 10
        while any(n.startswith(prefix) for n in os.listdir("/dev/shm")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(n.startswith(prefix) for n in os.listdir("/dev/shm"))
    finally:
        if main.poll() is None:
            main.kill()
            main.wait()
