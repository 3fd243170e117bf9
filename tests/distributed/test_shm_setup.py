"""shm_setup.py: a host's ranks agree on shared memory, or all fall back to sockets together.

Each rank is a thread with its own client of one real TCPStore (served here), as the ranks of a
host would be processes with their own clients."""
import glob
import threading
import time

import pytest

from disttorch.distributed import shm_setup
from disttorch.distributed.config import Config
from disttorch.distributed.store import PrefixStore, TCPStore
from disttorch.distributed.transport import shm as shm_mod
from disttorch_launcher.net import free_port

pytestmark = pytest.mark.skipif(not shm_mod.supported(), reason="no POSIX shared memory on this system")

JOB_ID = 0x5EED0001


def _setup_all(n, config=None, prefix="t"):
    master = TCPStore("127.0.0.1", free_port(), world_size=n, is_master=True, timeout=20)
    results, errors = [None] * n, []

    def rank(r):
        try:
            client = TCPStore("127.0.0.1", master.port, timeout=20)
            results[r] = shm_setup.setup_shared_memory(
                group_name="world", group_id=0, job_id=JOB_ID, global_ranks=list(range(n)), rank=r,
                local_members=list(range(n)), store=PrefixStore("job", client), config=config or Config(),
                prefix=prefix, deadline=time.monotonic() + 20)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    threads = [threading.Thread(target=rank, args=(r,), name=f"rank{r}") for r in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    master.close()
    assert not errors, errors
    return results


def _leftovers():
    return glob.glob(f"{shm_mod.SHM_DIR}/dt{JOB_ID:08x}*")


def test_three_ranks_share_one_segment_and_nothing_stays_on_dev_shm():
    comms = _setup_all(3)
    try:
        assert [c.me for c in comms] == [0, 1, 2]
        assert len({c.oversubscribed for c in comms}) == 1
        assert comms[0].oversubscribed == (3 > shm_setup.cores())
        assert _leftovers() == []  # unlinked once everybody mapped it
        comms[0].fingerprints[0, 0, :3] = [7, 8, 9]  # one mapping: rank 2 sees rank 0's write
        assert comms[2].fingerprints[0, 0, :3].tolist() == [7, 8, 9]
    finally:
        for c in comms:
            c.close()


def test_one_rank_failing_to_attach_puts_every_rank_on_sockets(monkeypatch):
    real = shm_mod.ShmSegment

    def segment(name, size=0, create=False):
        if not create and threading.current_thread().name == "rank2":
            raise OSError(24, "Too many open files")
        return real(name, size, create=create) if create else real(name)

    monkeypatch.setattr(shm_mod, "ShmSegment", segment)
    assert _setup_all(3, prefix="attach") == [None, None, None]
    assert _leftovers() == []


def test_the_leader_failing_to_create_puts_every_rank_on_sockets(monkeypatch):
    def segment(name, size=0, create=False):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shm_mod, "ShmSegment", segment)
    assert _setup_all(2, prefix="create") == [None, None]


def test_socket_transports_and_lone_ranks_skip_setup():
    class NoStore:
        def __getattr__(self, name):
            raise AssertionError(f"the store was used ({name})")

    kw = dict(group_name="g", group_id=1, job_id=JOB_ID, global_ranks=[0, 1], rank=0, store=NoStore(),
              prefix="x", deadline=time.monotonic() + 1)
    assert shm_setup.setup_shared_memory(local_members=[0, 1], config=Config(transport="tcp"), **kw) is None
    assert shm_setup.setup_shared_memory(local_members=[0], config=Config(), **kw) is None
