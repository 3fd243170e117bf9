"""The rig itself: separate hosts (name, /dev/shm, address), real ssh between them, links shaped
to their rate in both directions, and nothing left after `down`, even of a crashed rig."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from _cluster_jobs import REPO

from tools.testcluster import Cluster, cannot_make_namespaces, remove_leftovers, sweep
from tools.testcluster.rig import rate_bits

_THROUGHPUT = textwrap.dedent("""
    import socket, sys, time
    if sys.argv[1] == "serve":
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", 5201)); s.listen(1); print("listening", flush=True)
        c, _ = s.accept(); n = 0
        while True:
            d = c.recv(1 << 20)
            if not d: break
            n += len(d)
        c.sendall(b"k"); print(n, flush=True)
    else:
        s = socket.create_connection((sys.argv[2], 5201)); block = b"x" * (1 << 20)
        t = time.perf_counter()
        for _ in range(int(sys.argv[3])): s.sendall(block)
        s.shutdown(socket.SHUT_WR); s.recv(1)
        print(int(sys.argv[3]) * 8 * 2 ** 20 / (time.perf_counter() - t), flush=True)
""")


def test_hosts_have_their_own_name_shm_and_address_and_reach_each_other_by_ssh(rig):
    marker = f"rig-test-{os.getpid()}"
    one = rig.run("testhost1", ["sh", "-c", f"hostname; touch /dev/shm/{marker}; ls /dev/shm"])
    assert one.returncode == 0 and one.stdout.split() == ["testhost1", marker], one
    # BatchMode with strict host keys: a prompt or an unknown key would fail, not hang
    two = rig.run("testhost1", ["ssh", "testhost2", "hostname; ls /dev/shm; ip -4 -o addr show eth0"])
    assert two.returncode == 0, two.stderr
    lines = two.stdout.splitlines()
    assert lines[0] == "testhost2" and marker not in two.stdout
    assert f"inet {rig.host('testhost2').address}/24" in lines[-1]
    assert not os.path.exists(f"/dev/shm/{marker}")  # the machine's own /dev/shm is untouched
    rig.run("testhost1", ["rm", f"/dev/shm/{marker}"])
    inner = rig.run("testhost2", ["tc", "qdisc", "show", "dev", "eth0"]).stdout
    outer = subprocess.run(["tc", "qdisc", "show", "dev", rig.host("testhost2").root_link],
                           capture_output=True, text=True, check=True).stdout
    assert "tbf" in inner and "rate 1Gbit" in inner, inner
    assert "tbf" in outer and "rate 1Gbit" in outer, outer
    # Ethernet's default MTU unless --mtu says otherwise, on both ends of the link (/sys inside a
    # host still shows the machine's own links: ask ip)
    assert rig.mtu == 1500 and " mtu 1500 " in rig.run("testhost2", ["ip", "-o", "link", "show", "eth0"]).stdout
    with open(f"/sys/class/net/{rig.host('testhost2').root_link}/mtu") as f:
        assert f.read().strip() == "1500"


def test_links_carry_their_rate_in_both_directions(rig, tmp_path):
    script = tmp_path / "throughput.py"
    script.write_text(_THROUGHPUT)
    rate = rate_bits(rig.rate)
    for sender, receiver in (("testhost1", "testhost2"), ("testhost2", "testhost1")):
        server = rig.popen(receiver, [sys.executable, str(script), "serve"], stdout=subprocess.PIPE,
                           text=True)
        try:
            assert server.stdout.readline().strip() == "listening"
            sent = rig.run(sender, [sys.executable, str(script), "send",
                                    rig.host(receiver).address, "48"], timeout=30)
            assert sent.returncode == 0, sent.stderr
            bits_per_s = float(sent.stdout)
        finally:
            server.wait(timeout=10)
        # TCP/IP headers take 4.4 % of a 1500-byte frame, so goodput tops out near 0.956 x rate
        assert 0.85 * rate < bits_per_s < 1.0 * rate, (sender, receiver, bits_per_s)


def test_down_removes_a_crashed_rig_with_everything_in_it():
    reason = cannot_make_namespaces()
    if reason:
        import pytest
        pytest.skip(reason)
    # A process makes a rig for itself, starts a job process on it, and dies by SIGKILL.
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import os, sys, time
        from tools.testcluster import Cluster
        rig = Cluster.up(1, rate="100mbit", owner_pid=os.getpid(), sweep_stale=False)
        rig.popen("testhost1", ["sleep", "600"])
        print(rig.run_id, flush=True)
        time.sleep(600)
    """)], cwd=str(REPO), stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)))
    run_id = child.stdout.readline().strip()
    assert len(run_id) == 4, run_id
    crashed = Cluster.attach(run_id)
    assert crashed.leftovers() and [c for _, c in crashed.processes("testhost1") if "sleep 600" in c]
    child.send_signal(signal.SIGKILL)
    child.wait()
    report = remove_leftovers()  # what `up` and `down --all` do first
    assert run_id in report, report
    assert crashed.leftovers() == []
    assert not [n for n in os.listdir("/sys/class/net") if n.startswith(f"dtc{run_id}")]


def test_command_line_up_list_exec_down_leaves_nothing():
    reason = cannot_make_namespaces()
    if reason:
        import pytest
        pytest.skip(reason)
    cli = [sys.executable, "-m", "tools.testcluster"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    bad = subprocess.run([*cli, "up", "1", "--mtu", "50"], cwd=str(REPO), env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "--mtu: expected an integer from 68 to 65535 bytes" in bad.stderr \
        and "got '50'" in bad.stderr, bad.stderr
    up = subprocess.run([*cli, "up", "1", "--rate", "none", "--mtu", "9000"], cwd=str(REPO), env=env,
                        capture_output=True, text=True, timeout=60, check=False)
    assert up.returncode == 0, up.stderr
    run_id = up.stdout.split()[2].rstrip(":")
    assert "MTU 9000" in up.stdout, up.stdout
    try:
        listed = subprocess.run([*cli, "list"], cwd=str(REPO), env=env, capture_output=True,
                                text=True, timeout=30, check=True).stdout
        assert f"{run_id}  alive" in listed, listed
        name = subprocess.run([*cli, "exec", run_id, "testhost1", "--", "sh", "-c",
                               "hostname; ip -o link show eth0"], cwd=str(REPO),
                              env=env, capture_output=True, text=True, timeout=30, check=True)
        assert name.stdout.split()[0] == "testhost1" and " mtu 9000 " in name.stdout, name.stdout
        assert Cluster.attach(run_id).mtu == 9000
    finally:
        down = subprocess.run([*cli, "down", run_id], cwd=str(REPO), env=env,
                              capture_output=True, text=True, timeout=60, check=False)
    assert down.returncode == 0 and f"removed rig {run_id}" in down.stdout, down
    assert not os.path.exists(f"/run/disttorch-testcluster/{run_id}")
    assert not [n for n in os.listdir("/sys/class/net") if n.startswith(f"dtc{run_id}")]
    assert sweep.holders(run_id) == {}
    missing = subprocess.run([*cli, "exec", run_id, "testhost1", "--", "true"], cwd=str(REPO),
                             env=env, capture_output=True, text=True, timeout=30, check=False)
    assert missing.returncode == 1 and f"no test cluster with run id '{run_id}'" in missing.stderr
