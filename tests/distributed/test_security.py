"""Strangers cannot join: no secret, wrong secret, garbage, pickles, oversize and foreign messages.

The job runs over sockets (``DISTTORCH_TRANSPORT=tcp``) so every message really goes through the
data sockets being attacked; the ranks check 30 all-reduces and an object collective afterwards.
"""
import json
import os
import pickle
import threading
import time

import pytest
import zmq

import harness
import workers
from disttorch.distributed import wire
from disttorch.distributed.security import Credentials
from disttorch.distributed.wire import Kind, Op

SECRET = "s3cret-for-the-security-test"


class Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/disttorch-pwned",))


def _attack(tmpdir: str, report: dict) -> None:
    ctx = zmq.Context()
    socks = []
    try:
        _attack_with(ctx, socks, tmpdir, report)
    finally:
        open(os.path.join(tmpdir, "attacked"), "w").close()
        ctx.destroy(0)


def _attack_with(ctx, socks, tmpdir: str, report: dict) -> None:
    path = os.path.join(tmpdir, "table.json")
    deadline = time.monotonic() + 60
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    table = json.load(open(path))

    def push(endpoint, creds=None, plain=None):
        s = _NonBlocking(ctx.socket(zmq.PUSH))
        s.linger = 0
        s.sndhwm = 0
        if creds is not None:
            creds.client(s)
        if plain is not None:
            s.plain_username, s.plain_password = plain
        s.connect(endpoint)
        socks.append(s)
        return s

    job, pickled = table["job_id"], pickle.dumps(Evil())
    good = Credentials(SECRET.encode())
    n_insider = 0
    for peer in table["peers"]:
        ep = peer["tcp"]
        # strangers: no mechanism at all, a wrong secret, and PLAIN with a guessed password
        for s in (push(ep), push(ep, Credentials(b"guess")), push(ep, plain=(b"disttorch", b"password"))):
            s.send(pickled)
            s.send_multipart([wire.pack(Kind.DATA, 8, job, 0, 1, 2, Op.ALL_REDUCE, 0, 1, -1, 0, 0, 0, 4, 16, (4,)),
                              b"\0" * 16])
        # an insider (has the secret) that sends garbage of every kind
        s = push(ep, good)
        hdr = lambda **kw: wire.pack(*wire.Header(**{**dict(  # noqa: E731
            kind=Kind.DATA, dtype=8, job_id=job, group=0, src=1, seq=10 ** 6, op=Op.ALL_REDUCE, rop=0, phase=1,
            root=-1, step=0, tag=0, offset=0, numel=4, nbytes=16, shape=(4,)), **kw}))
        frames = [
            [pickled],                                   # a pickle where a header belongs
            [pickled, pickled],
            [b"\x00" * 7],                               # truncated header
            [os.urandom(200), b"x"],                     # random bytes
            [hdr(job_id=job ^ 1), b"\0" * 16],           # another job
            [hdr(group=99), b"\0" * 16],                 # another group
            [hdr(src=77), b"\0" * 16],                   # a rank that does not exist
            [hdr(nbytes=1 << 40), b"\0" * 16],           # claims a huge payload
            [hdr(nbytes=16), b"\0" * 3],                 # payload shorter than announced
            [hdr(), b"\0" * 16, b"extra"],               # an extra frame
            [hdr()],                                     # no payload frame
        ]
        for f in frames:
            s.send_multipart(f)
        n_insider += len(frames)
        s.send(b"\0" * (4 << 20))                        # over MAXMSGSIZE: libzmq drops the connection
    # the store, too
    st = _NonBlocking(ctx.socket(zmq.DEALER))
    st.linger = 0
    st.connect(f"tcp://127.0.0.1:{table['store_port']}")
    st.send_multipart([b"1", b"SET", b"owned", pickled])
    socks.append(st)
    time.sleep(1.0)
    report["insider_frames"] = n_insider


class _NonBlocking:
    """A socket whose sends never block the attacker (a PUSH without a live peer would)."""

    def __init__(self, sock):
        self.__dict__["_s"] = sock

    def __getattr__(self, name):
        return getattr(self._s, name)

    def __setattr__(self, name, value):
        setattr(self._s, name, value)

    def send(self, data, flags=0):
        try:
            self._s.send(data, flags | zmq.NOBLOCK)
        except zmq.Again:
            pass

    def send_multipart(self, frames):
        try:
            self._s.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            pass


@pytest.mark.timeout(120)
def test_strangers_and_garbage_are_rejected_and_results_unchanged(tmp_path):
    if os.path.exists("/tmp/disttorch-pwned"):
        os.unlink("/tmp/disttorch-pwned")
    report: dict = {}
    attacker = threading.Thread(target=_attack, args=(str(tmp_path), report), daemon=True)
    attacker.start()
    env = {"DISTTORCH_TRANSPORT": "tcp", "DISTTORCH_SECRET": SECRET}
    res = harness.run(workers.under_attack, 3, str(tmp_path), env=env, timeout=60, job_timeout=110)
    attacker.join(30)
    assert not os.path.exists("/tmp/disttorch-pwned"), "a received pickle was executed"
    for rank, r in enumerate(res):
        assert r["bad"] == 0 and r["objects_ok"], (rank, r)
        # the two PLAIN strangers reach the ZAP handler; the NULL one fails the mechanism check before
        assert r["rejected"] >= 2, f"rank {rank}: the strangers' handshakes were not refused ({r})"
        assert r["dropped"] >= 8, f"rank {rank}: garbage from the insider was not dropped ({r})"


@pytest.mark.parametrize("master_addr,setting,expected", [
    ("127.0.0.1", None, False), ("localhost", None, False),  # one host: PLAIN
    ("198.18.0.1", None, True),  # may span hosts: CURVE by default
    ("198.18.0.1", "0", False),  # the opt-out for trusted fabrics
    ("127.0.0.1", "1", True),
])
def test_curve_is_the_default_for_jobs_that_may_span_hosts(monkeypatch, master_addr, setting, expected):
    from disttorch.distributed._runtime import curve_wanted, job_credentials

    if setting is None:
        monkeypatch.delenv("DISTTORCH_CURVE", raising=False)
    else:
        monkeypatch.setenv("DISTTORCH_CURVE", setting)
    assert curve_wanted(master_addr) is expected
    monkeypatch.setenv("DISTTORCH_SECRET", "s")
    creds, _ = job_credentials(master_addr, 29500, True, 1.0)
    assert creds.curve is expected
    sock = zmq.Context.instance().socket(zmq.PULL)
    try:
        creds.server(sock)
        assert sock.mechanism == (zmq.CURVE if expected else zmq.PLAIN)
    finally:
        sock.close(0)


def test_a_bad_curve_setting_names_the_variable(monkeypatch):
    from disttorch.distributed._runtime import curve_wanted

    monkeypatch.setenv("DISTTORCH_CURVE", "maybe")
    with pytest.raises(ValueError, match="DISTTORCH_CURVE='maybe'"):
        curve_wanted("198.18.0.1")
