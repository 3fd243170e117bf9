"""_runtime's limits for many ranks per host: ZeroMQ's socket cap, RLIMIT_NOFILE, and the error
that names them; the shared-memory doorbell with descriptors numbered past select()'s 1024."""
import logging
import os
import resource

import pytest
import zmq

from disttorch.distributed import _runtime
from disttorch.distributed.errors import DistNetworkError
from disttorch.distributed.security import Credentials
from disttorch.distributed.transport import shm as shm_mod
from disttorch.distributed.transport.zmq import ZmqTransport


def _room_for(n_fds: int) -> bool:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft == resource.RLIM_INFINITY or soft >= n_fds + len(os.listdir("/proc/self/fd")) + 64


def test_socket_and_descriptor_needs_grow_with_the_world():
    assert _runtime.sockets_needed(1) == 1023  # libzmq's default stays the floor
    assert _runtime.sockets_needed(128) == 3 * 3 * 128 + 64
    assert _runtime.fds_needed(128) == 7 * 3 * 128 + 128


def test_a_context_for_a_large_world_holds_more_sockets_than_libzmqs_default(monkeypatch):
    if not _room_for(1100):
        pytest.skip("RLIMIT_NOFILE is too low for 1100 sockets (each has an eventfd)")
    monkeypatch.setenv("WORLD_SIZE", "400")
    ctx = _runtime.new_context()
    try:
        assert ctx.get(zmq.MAX_SOCKETS) == 3 * 3 * 400 + 64
        socks = [ctx.socket(zmq.PAIR) for _ in range(1100)]  # libzmq's default 1023 refuses these
        for s in socks:
            s.close(0)
    finally:
        ctx.term()


class _FakeLimits:
    def __init__(self, soft, hard):
        self.limits = (soft, hard)

    def getrlimit(self, which):
        return self.limits

    def setrlimit(self, which, limits):
        assert limits[0] <= limits[1] or limits[1] == resource.RLIM_INFINITY
        self.limits = limits


def test_the_soft_descriptor_limit_is_raised_to_what_the_world_needs(monkeypatch):
    fake = _FakeLimits(1024, 65536)
    monkeypatch.setattr(resource, "getrlimit", fake.getrlimit)
    monkeypatch.setattr(resource, "setrlimit", fake.setrlimit)
    _runtime.ensure_fd_limit(128)
    assert fake.limits == (_runtime.fds_needed(128), 65536)  # 2816
    _runtime.ensure_fd_limit(8)  # never lowered
    assert fake.limits == (2816, 65536)


def test_a_hard_limit_too_low_is_named_in_a_warning(monkeypatch, caplog):
    fake = _FakeLimits(256, 1000)
    monkeypatch.setattr(resource, "getrlimit", fake.getrlimit)
    monkeypatch.setattr(resource, "setrlimit", fake.setrlimit)
    with caplog.at_level(logging.WARNING, logger="disttorch.distributed"):
        _runtime.ensure_fd_limit(128)
    assert fake.limits == (1000, 1000)
    assert ("a rank of this 128-rank job may need 2816 file descriptors, but RLIMIT_NOFILE allows 1000 "
            "(hard limit 1000)") in caplog.text


def test_running_out_of_sockets_names_the_limits():
    ctx = zmq.Context()
    ctx.set(zmq.MAX_SOCKETS, 40)
    t = ZmqTransport(ctx, Credentials(b"k" * 32, False), 0, 50, job_id=1, group_id=0, bind_host="127.0.0.1",
                     ipc_dir=None, max_payload=1 << 20)
    try:
        with pytest.raises(DistNetworkError) as e:
            t.connect({g: f"tcp://127.0.0.1:{1000 + g}" for g in range(1, 50)})
        assert str(e.value).startswith("rank 0 ran out of sockets connecting to 49 peers (Too many open files)")
        assert "file descriptors open; RLIMIT_NOFILE soft" in str(e.value)
    finally:
        t.close()
        ctx.term()


def test_a_doorbell_numbered_past_1024_still_wakes():
    if not _room_for(1100):
        pytest.skip("RLIMIT_NOFILE is too low to open 1100 descriptors")
    filler = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    path = os.path.join(_runtime.security.runtime_dir(), f"test-bell-{os.getpid()}")
    try:
        bell = shm_mod.Doorbell(path)
        try:
            assert bell.fd >= 1024
            bell.open_peers({1: path})
            bell.ring(1)
            bell.wait(5.0)  # select() raised ValueError for this descriptor
            with pytest.raises(BlockingIOError):
                os.read(bell.fd, 1)  # the wake-up was consumed
        finally:
            bell.close()
    finally:
        for fd in filler:
            os.close(fd)
