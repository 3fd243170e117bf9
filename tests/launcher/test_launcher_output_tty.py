"""Rank 0's tqdm bar under disttorch-run: live on a terminal, absent from pipes and logs.

The launcher runs under a real pseudo-terminal (``pty``); the test reads what the terminal
receives while the job runs.
"""
from __future__ import annotations

import fcntl
import os
import pathlib
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
WORKER = pathlib.Path(__file__).with_name("_progress_worker.py")

pytest.importorskip("tqdm", reason="the progress bar is tqdm's")


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.pop("DISTTORCH_PROGRESS", None)
    env.pop("COLUMNS", None)
    return env


def _run_on_terminal(argv, timeout=60):
    """(bytes the terminal received, [(seconds since start, chunk)], exit code)."""
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))  # 30 rows, 100 columns
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=child, stderr=child, env=_env(), cwd=ROOT)
    os.close(child)
    chunks = []
    try:
        while time.monotonic() - t0 < timeout:
            ready, _, _ = select.select([main], [], [], 0.2)
            if ready:
                try:
                    data = os.read(main, 65536)
                except OSError:  # EIO: the terminal's last writer is gone
                    break
                if not data:
                    break
                chunks.append((time.monotonic() - t0, data))
            elif proc.poll() is not None:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        os.close(main)
    return b"".join(c for _, c in chunks), chunks, proc.returncode


def test_bar_renders_live_on_a_terminal_and_other_ranks_lines_stay_whole():
    argv = [sys.executable, "-m", "disttorch_launcher", "--nproc-per-node", "2", str(WORKER)]
    screen, chunks, code = _run_on_terminal(argv)
    assert code == 0, screen[-3000:]
    # Redraws of rank 0's bar reach the terminal while the job runs, long before it ends.
    done_at = next(t for t, c in chunks if b"bar finished" in c)
    live = [t for t, c in chunks if re.search(rb"\r\[rank0\]: work: +\d+%\|", c)]
    assert len(live) >= 2 and live[0] < done_at - 1.0, screen[-3000:]
    states = re.findall(rb"\[rank0\]: work: +(\d+)%", screen)
    assert len(set(states)) >= 3, screen[-3000:]  # several distinct states, not one line at the end
    assert b"[rank1]: work" not in screen  # only rank 0 draws a bar
    widest = max(len(line.decode()) for line in re.findall(rb"\[rank0\]: work:[^\r\x1b]*", screen))
    assert 60 < widest <= 100, widest  # tqdm was told the terminal's width less the prefix
    # Rank 1's lines are printed whole on their own line (the bar is cleared first, then redrawn).
    # Rank 1's line at step 0 may come before the bar is up; by steps 4 and 8 it is.
    assert re.search(rb"(?:^|\n|\x1b\[2K)\[rank1\]: rank one says 0\r?\n", screen), screen[-3000:]
    for i in (4, 8):
        assert re.search(rb"\x1b\[2K\[rank1\]: rank one says %d\r?\n" % i, screen), screen[-3000:]
    assert re.search(rb"\[rank0\]: bar finished", screen)


def test_pipes_and_logs_get_whole_lines_even_from_a_forced_bar(tmp_path):
    # Forced on (DISTTORCH_PROGRESS=1) into a pipe, as the launcher never does by itself there:
    # the console and the log get the bar's last state once, never a line of glued redraws.
    env = dict(_env(), DISTTORCH_PROGRESS="1")
    argv = [sys.executable, "-m", "disttorch_launcher", "--nproc-per-node", "1", "--log-dir", str(tmp_path), "--tee", "3",
            str(WORKER)]
    proc = subprocess.run(argv, capture_output=True, env=env, cwd=ROOT, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert b"\r" not in proc.stderr and proc.stderr.count(b"[rank0]: work:") <= 1, proc.stderr[-3000:]
    logs = b"".join(p.read_bytes() for p in tmp_path.rglob("*.log"))
    assert b"bar finished" in logs and b"\r" not in logs and logs.count(b"work:") <= 1, logs[-2000:]
