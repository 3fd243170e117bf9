"""The ssh engine's start / poll / signal / stop against a stand-in for ssh.

The stand-in takes `HOST COMMAND` like ssh, records the host, its argv and the first stdin line
(the job secret) in a file, and runs COMMAND with `sh -c`, stdin still attached, as sshd would.
"""
import os
import signal
import sys
import time

import pytest

from disttorch_launcher.engines.ssh import NodeSpec, SshEngine

FAKE_SSH = """
import json, os, sys
host, command = sys.argv[1], sys.argv[2]
line = b""
while not line.endswith(b"\\n"):
    chunk = os.read(0, 1)
    if not chunk:
        break
    line += chunk
with open(os.path.join(os.environ["CALLS_DIR"], host + ".json"), "w") as f:
    json.dump({"argv": sys.argv[1:], "secret": line.decode().strip(), "pid": os.getpid()}, f)
os.execvp("sh", ["sh", "-c", command])
"""

SECRET = "s3cret-" + "ab" * 16


@pytest.fixture
def fake_ssh(tmp_path, monkeypatch):
    script = tmp_path / "fake_ssh.py"
    script.write_text(FAKE_SSH)
    monkeypatch.setenv("CALLS_DIR", str(tmp_path))
    return [sys.executable, str(script)]


def _nodes(*hosts):
    # Node 0 runs in the driver (local): the engine must leave it alone.
    return [NodeSpec(0, "localhost", 1, True)] + [NodeSpec(i, h, 1, False)
                                                  for i, h in enumerate(hosts, 1)]


def _poll_until(engine, count, timeout=10.0):
    ended, deadline = [], time.monotonic() + timeout
    while len(ended) < count and time.monotonic() < deadline:
        ended += engine.poll()
        time.sleep(0.02)
    return sorted(ended, key=lambda e: e.rank)


def test_start_poll_reports_each_node_once_with_its_status_and_host(fake_ssh, tmp_path):
    engine = SshEngine(_nodes("h1", "h2"), {1: "exit 0", 2: "exit 3"}, ssh_command=fake_ssh,
                       secret=SECRET)
    assert engine.world_size == 2
    engine.start(0)
    ended = _poll_until(engine, 2)
    assert [(e.rank, e.node_rank, e.host, e.returncode, e.failed) for e in ended] == [
        (0, 1, "h1", 0, False), (1, 2, "h2", 3, True)]
    assert ended[0].cause is None
    assert ended[1].cause == "ssh to h2 ended with exit code 3"
    assert ended[1].summary() == ("rank 1 (node 2, host h2, pid %d): exit code 3: ssh to h2 ended "
                                  "with exit code 3" % ended[1].pid)
    assert engine.poll() == []  # reported once
    import json
    for host, command in (("h1", "exit 0"), ("h2", "exit 3")):
        call = json.loads((tmp_path / f"{host}.json").read_text())
        assert call["argv"] == [host, command]  # the secret is on stdin, never in argv
        assert call["secret"] == SECRET
    assert engine.stop(1.0) == []


def test_signal_hangs_up_and_the_node_stops_itself(fake_ssh):
    # The remote launcher treats its stdin's end as the stop order; the stand-in's `cat` does too.
    engine = SshEngine(_nodes("h1"), {1: "cat >/dev/null; exit 7"}, ssh_command=fake_ssh,
                       secret=SECRET)
    engine.start(0)
    time.sleep(0.3)
    assert engine.poll() == []  # still running: stdin is open
    engine.signal(signal.SIGTERM)
    ended = _poll_until(engine, 1)
    assert [(e.node_rank, e.returncode) for e in ended] == [(1, 7)]


def test_stop_terminates_a_node_that_ignores_the_hang_up(fake_ssh, tmp_path):
    engine = SshEngine(_nodes("h1"), {1: "sleep 30"}, ssh_command=fake_ssh, secret=SECRET)
    engine.start(0)
    deadline = time.monotonic() + 10
    while not (tmp_path / "h1.json").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    began = time.monotonic()
    ended = engine.stop(0.2)
    assert time.monotonic() - began < 3.0
    assert [(e.node_rank, e.returncode) for e in ended] == [(1, -signal.SIGTERM)]
    assert ended[0].cause == "ssh to h1 ended with signal SIGTERM (15)"
    import json
    pid = json.loads((tmp_path / "h1.json").read_text())["pid"]  # now the `sh` running sleep
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_restart_starts_fresh_clients(fake_ssh):
    engine = SshEngine(_nodes("h1"), {1: "exit 0"}, ssh_command=fake_ssh, secret=SECRET)
    engine.start(0)
    first = _poll_until(engine, 1)
    engine.start(1)
    second = _poll_until(engine, 1)
    assert [e.returncode for e in first + second] == [0, 0]
    assert first[0].pid != second[0].pid


def test_a_missing_ssh_program_is_a_failed_node(tmp_path):
    engine = SshEngine(_nodes("h1"), {1: "true"}, ssh_command=[str(tmp_path / "no-ssh")],
                       secret=SECRET)
    engine.start(0)
    ended = _poll_until(engine, 1)
    assert ended[0].failed and ended[0].cause.startswith("ssh to h1 ended with exit code ")
    engine.stop(0.5)


def test_bad_construction_names_the_problem():
    with pytest.raises(ValueError, match=r"no command for node rank\(s\) \[2\]"):
        SshEngine(_nodes("h1", "h2"), {1: "true"}, ssh_command=["ssh"], secret=SECRET)
    with pytest.raises(ValueError, match="ssh_command is empty"):
        SshEngine(_nodes("h1"), {1: "true"}, ssh_command=[], secret=SECRET)
