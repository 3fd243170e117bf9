"""The control channel's wire format and handshake, the failure report, and elastic node counts."""
import json
import socket
import threading
import time

import pytest

from disttorch_launcher.control import (MAX_MESSAGE, PROTOCOL, Connection, ControlError, client_handshake, mac,
                              server_handshake)
from disttorch_launcher.report import NodeLoss, WorkerFailure, format_report, read_error_file

pytestmark = pytest.mark.timeout(30)


def _pair():
    a, b = socket.socketpair()
    return Connection(a, "server-side"), Connection(b, "client-side")


def _handshake(server_secret, client_secret):
    server, client = _pair()
    result = {}

    def serve():
        try:
            result["join"] = server_handshake(server, server_secret, run_id="r1")
        except ControlError as exc:
            result["server_error"] = str(exc)

    t = threading.Thread(target=serve)
    t.start()
    try:
        result["welcome"] = client_handshake(client, client_secret, {"node_rank": 1, "nproc": 2})
    except ControlError as exc:
        result["client_error"] = str(exc)
    t.join(5)
    server.close()
    client.close()
    return result


def test_handshake_with_the_shared_secret():
    r = _handshake("s3", "s3")
    assert r["join"]["node_rank"] == 1 and r["join"]["nproc"] == 2
    assert r["welcome"]["run_id"] == "r1"
    assert "secret" not in r["welcome"]  # a node that proved the secret needs no copy
    assert "s3" not in json.dumps(r)  # only MACs travel


def test_handshake_rejects_a_wrong_or_missing_secret():
    r = _handshake("right", "wrong")
    assert "authentication failed" in r["server_error"]
    assert "authentication failed" in r["client_error"]
    assert "wrong MAC" in r["server_error"]


def test_handshake_has_no_open_mode_without_a_secret():
    # Protocol 1 handed the job secret to any joiner when node 0 had none; now both sides
    # refuse to run the channel without a key.
    server, client = _pair()
    with pytest.raises(ValueError, match="DISTTORCH_SECRET"):
        server_handshake(server, None, run_id="r1")
    with pytest.raises(ValueError, match="DISTTORCH_SECRET"):
        client_handshake(client, "", {})
    server.close()
    client.close()


def test_client_detects_a_server_without_the_secret():
    server, client = _pair()

    def impostor():
        server.send({"type": "hello", "proto": PROTOCOL, "nonce": "n"})
        server.recv()
        server.send({"type": "welcome", "mac": mac("guess", "welcome", "x", "n"), "run_id": "r"})

    t = threading.Thread(target=impostor)
    t.start()
    with pytest.raises(ControlError, match="failed to prove it holds DISTTORCH_SECRET"):
        client_handshake(client, "real", {})
    t.join(5)


def test_messages_are_json_lines_and_hostile_input_is_refused():
    a, b = _pair()
    a.send({"type": "ping", "n": 1})
    assert b.recv() == {"type": "ping", "n": 1}
    a.sock.sendall(b"\x80\x04\x95 pickled bytes\n")
    with pytest.raises(ControlError, match="malformed"):
        b.recv()
    a.sock.sendall(b'["no", "type"]\n')
    with pytest.raises(ControlError, match="without a type"):
        b.recv()
    with pytest.raises(ControlError, match="exceeds"):
        a.send({"type": "x", "blob": "y" * MAX_MESSAGE})
    a.close()
    assert b.recv() is None  # orderly close reads as None
    b.close()


def test_oversized_line_is_refused():
    a, b = _pair()
    t = threading.Thread(target=lambda: a.sock.sendall(b"{" + b" " * (MAX_MESSAGE + 10)))
    t.start()
    with pytest.raises(ControlError, match="oversized"):
        b.recv()
    t.join(5)
    a.close()
    b.close()


def test_read_error_file_accepts_torchelastic_format(tmp_path):
    path = tmp_path / "error.json"
    path.write_text(json.dumps({"message": {"message": "RuntimeError: cuda out of memory",
                                            "extraInfo": {"py_callstack": "Traceback ...",
                                                          "timestamp": "1700000000"}}}))
    assert read_error_file(str(path)) == {"exc_type": "RuntimeError",
                                          "message": "cuda out of memory",
                                          "traceback": "Traceback ...",
                                          "timestamp": 1700000000.0}
    path.write_text("{half")
    assert read_error_file(str(path)) is None
    assert read_error_file(str(tmp_path / "missing.json")) is None


def test_report_orders_events_by_time():
    t0 = 1000.0
    late = WorkerFailure(rank=0, local_rank=0, node_rank=0, host="a", pid=10, returncode=1,
                         time=t0 + 2, exc_type="ValueError", message="late")
    early = WorkerFailure(rank=5, local_rank=1, node_rank=2, host="c", pid=11, returncode=-9,
                          time=t0 + 1)
    loss = NodeLoss(node_rank=1, host="b", reason="control connection closed", time=t0 + 3)
    text = format_report(entrypoint="train.py", run_id="rid", restart_count=1, max_restarts=2,
                         started_at=t0, failures=[late, early], losses=[loss],
                         stopped=["rank 1 (SIGTERM)"])
    assert "job failed: train.py (run id rid, restart 1 of 2)" in text
    first = text[text.index("first failure"):text.index("other failures")]
    assert "rank      : 5 (local rank 1 on node 2)" in first
    assert "exit      : signal SIGKILL (9)" in first and "(1.00 s after start)" in first
    others = text[text.index("other failures"):].splitlines()
    assert others[1] == "  rank 0 (host a, pid 10): exit code 1: ValueError: late"
    assert others[2] == "  node 1 (host b) lost: control connection closed"
    assert "stopped by the launcher: rank 1 (SIGTERM)" in text


def test_elastic_node_count_starts_after_the_last_call(job, port_pair):
    script = job.script("w.py", "import os\nprint(os.environ['WORLD_SIZE'], "
                                "os.environ['GROUP_WORLD_SIZE'])\n")
    start = time.monotonic()
    done = job.run(["--nnodes", "1:2", "--rdzv-conf", "last_call_timeout=0.5",
                    "--nproc-per-node", "2", "--master-port", str(port_pair), script],
                   env={"DISTTORCH_SECRET": "x"})
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == ["[rank0]: 2 1", "[rank1]: 2 1"]
    assert 0.5 <= time.monotonic() - start < 8
    assert job.leftovers() == []
