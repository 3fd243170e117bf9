"""TCPStore and the rendezvous bookkeeping, in one process (server thread + clients)."""
import json
import os
import threading
import time

import pytest
import zmq

from disttorch.distributed import security
from disttorch.distributed.errors import DistNetworkError, DistTimeoutError, RendezvousError
from disttorch.distributed.rendezvous import RendezvousState, assign_local_ranks
from disttorch.distributed.security import Credentials
from disttorch.distributed.store import PrefixStore, TCPStore

from harness import free_port


@pytest.fixture
def secret(monkeypatch):
    monkeypatch.setenv("DISTTORCH_SECRET", "test-secret-123")
    monkeypatch.delenv("DISTTORCH_CURVE", raising=False)
    return b"test-secret-123"


@pytest.fixture
def master(secret):
    store = TCPStore("127.0.0.1", free_port(), world_size=3, is_master=True, timeout=10)
    yield store
    store.close()


def client_of(master, **kw):
    return TCPStore("127.0.0.1", master.port, timeout=kw.pop("timeout", 10), **kw)


def test_key_value_operations(master):
    c = client_of(master)
    try:
        c.set("a", b"1")
        assert master.get("a") == b"1"
        assert c.add("n", 5) == 5 and master.add("n", -2) == 3
        assert c.check(["a", "n"]) and not c.check(["a", "missing"])
        assert c.compare_set("a", b"1", b"2") == b"2"
        assert c.compare_set("a", b"1", b"3") == b"2"
        assert c.compare_set("fresh", b"", b"v") == b"v"
        assert master.num_keys() == 3
        assert c.delete_key("a") and not c.delete_key("a")
        p = PrefixStore("job", c)
        p.set("x", "y")
        assert master.get("job/x") == b"y" and p.get("x") == b"y"
    finally:
        c.close()


def test_get_and_wait_block_until_the_key_is_set(master):
    c = client_of(master)
    try:
        threading.Timer(0.3, lambda: master.set("late", b"v")).start()
        t0 = time.monotonic()
        assert c.get("late") == b"v"
        assert time.monotonic() - t0 >= 0.25
        threading.Timer(0.2, lambda: master.set("w2", b"")).start()
        c.wait(["late", "w2"], timeout=5)
    finally:
        c.close()


def test_get_times_out_naming_the_key(master):
    c = client_of(master, timeout=0.5)
    try:
        with pytest.raises(DistTimeoutError, match="never-set"):
            c.get("never-set")
        with pytest.raises(DistTimeoutError, match="never-set-either"):
            c.wait(["never-set-either"], timeout=0.3)
        c.set("after", b"ok")  # the client still works after a timeout
        assert c.get("after") == b"ok"
    finally:
        c.close()


def test_port_in_use_names_the_port(master):
    with pytest.raises(DistNetworkError, match=f"MASTER_PORT {master.port}.*already in use"):
        TCPStore("127.0.0.1", master.port, world_size=1, is_master=True, timeout=2)


def test_client_with_the_wrong_secret_gets_nothing(master):
    bad = Credentials(b"not-the-secret")
    c = TCPStore("127.0.0.1", master.port, timeout=1.5, credentials=bad)
    try:
        with pytest.raises(DistTimeoutError, match="rejected this process's credentials"):
            c.set("intruder", b"1")
    finally:
        c.close()
    assert not master.check(["intruder"])
    assert master.add("still-alive", 1) == 1


def test_garbage_and_unauthenticated_frames_do_not_stop_the_server(master, secret):
    ctx = zmq.Context.instance()
    # an authenticated client sending nonsense
    s = ctx.socket(zmq.DEALER)
    s.linger = 0
    Credentials(secret).client(s)
    s.connect(f"tcp://127.0.0.1:{master.port}")
    s.send_multipart([b"1", b"BOGUS", b"x"])
    s.send_multipart([b"2"])
    s.send(b"\x80\x04\x95 pickle-looking junk")
    s.send_multipart([b"3", b"ADD", b"k", b"not-a-number"])
    # a client without any credentials (NULL mechanism)
    n = ctx.socket(zmq.DEALER)
    n.linger = 0
    n.connect(f"tcp://127.0.0.1:{master.port}")
    n.send_multipart([b"1", b"SET", b"owned", b"1"])
    time.sleep(0.5)
    assert not master.check(["owned"])
    assert master.add("k2", 2) == 2
    assert master.server.dropped >= 1
    s.close()
    n.close()


def test_derived_secret_through_the_key_file(monkeypatch):
    monkeypatch.delenv("DISTTORCH_SECRET", raising=False)
    port = free_port()
    path = security.key_file("127.0.0.1", port)
    security.write_key_file(path, b"stale-secret-of-an-old-job")  # a client may read this first
    results = {}

    def client():
        c = TCPStore("127.0.0.1", port, timeout=10)
        results["v"] = c.get("k")
        c.close()

    t = threading.Thread(target=client)
    t.start()
    time.sleep(0.3)
    m = TCPStore("127.0.0.1", port, world_size=2, is_master=True, timeout=10)
    m.set("k", b"hello")
    t.join(10)
    assert results.get("v") == b"hello"
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    m.close()


def _reg(rank, world=3, pid=None, host="h"):
    return {"rank": rank, "world_size": world, "host_id": host, "hostname": host, "pid": pid or 1000 + rank,
            "tcp": f"tcp://127.0.0.1:{5000 + rank}", "ipc": None, "local_rank": None, "config": {"x": rank}}


def test_rendezvous_state_happy_path():
    st = RendezvousState(3)
    assert st.join(_reg(2)) == ("wait", None)
    assert st.join(_reg(0)) == ("wait", None)
    assert st.join(_reg(0)) == ("wait", None)  # the same process retrying is fine
    state, table = st.join(_reg(1))
    assert state == "done" and table["world_size"] == 3 and table["config"] == {"x": 0}
    assert [p["rank"] for p in table["peers"]] == [0, 1, 2]
    assert st.join(_reg(1, pid=5))[0] == "error"  # late joiners are refused


@pytest.mark.parametrize("reg,match", [
    (_reg(3), "rank 3 .* out of range for world_size 3 .*0..2"),
    (_reg(-1), "rank -1 .* out of range"),
    (_reg(1, world=4), "world_size=4, but rank 0 has world_size=3"),
    (_reg(0, pid=77), "rank 0 was claimed twice: by pid 1000 on h and by pid 77 on h"),
])
def test_rendezvous_state_errors_name_the_values(reg, match):
    st = RendezvousState(3)
    st.join(_reg(0))
    state, msg = st.join(reg)
    assert state == "error"
    assert __import__("re").search(match, msg), msg
    assert st.join(_reg(2))[0] == "error"  # the whole rendezvous failed


def test_rendezvous_rejects_malformed_registrations():
    st = RendezvousState(2)
    with pytest.raises(ValueError, match="rank"):
        st.parse(json.dumps({"world_size": 2}).encode())
    with pytest.raises(ValueError):
        st.parse(b"\x80\x04garbage")
    with pytest.raises(ValueError, match="exceeds"):
        st.parse(b" " * (1 << 20))


def test_join_through_the_store(master):
    out, errs = {}, {}

    def join(rank, reg):
        c = client_of(master)
        try:
            out[rank] = c.join(reg, 10)
        except Exception as e:  # noqa: BLE001
            errs[rank] = e
        finally:
            c.close()

    threads = [threading.Thread(target=join, args=(r, _reg(r))) for r in (1, 2)]
    for t in threads:
        t.start()
    out[0] = master.join(_reg(0), 10)
    for t in threads:
        t.join(10)
    assert not errs and out[0] == out[1] == out[2]
    assert json.loads(master.get("rdzv/table")) == out[0]


def test_join_failure_reaches_every_waiting_rank(secret):
    m = TCPStore("127.0.0.1", free_port(), world_size=3, is_master=True, timeout=10)
    errs = {}

    def join(reg):
        c = client_of(m)
        try:
            c.join(reg, 10)
        except RendezvousError as e:
            errs[reg["rank"]] = str(e)
        finally:
            c.close()

    t = threading.Thread(target=join, args=(_reg(1),))
    t.start()
    time.sleep(0.2)
    with pytest.raises(RendezvousError, match="out of range"):
        m.join(_reg(7), 10)
    t.join(10)
    assert "rank 7" in errs[1] and "out of range" in errs[1]
    m.close()


def test_join_timeout_names_missing_ranks(master):
    with pytest.raises(DistTimeoutError, match=r"ranks \[1, 2\] of world_size 3 never joined"):
        master.join(_reg(0), 0.5)


def test_local_ranks():
    peers = [{"host_id": h} for h in ["a", "b", "a", "a", "b"]]
    assert assign_local_ranks(peers) == [0, 0, 1, 2, 1]
