"""The job harness of the tests on test hosts (tools/testcluster): run `python -m disttorch_launcher` on a
host and wait for it, and leave the rig as it was found (links up, sshd running, no job process
on any host)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tools.testcluster import Cluster  # noqa: E402 (needs REPO on sys.path)

_SCRUB_PREFIXES = ("SLURM_", "OMPI_", "PMI_", "PMIX_", "TORCHELASTIC_", "DISTTORCH_")
_SCRUB = {"RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
          "GROUP_RANK", "NODE_RANK"}


@dataclass
class Finished:
    returncode: int
    output: str
    elapsed: float

    def lines(self, marker: str) -> list[str]:
        """Payloads of the lines that contain `marker` (after it)."""
        return [line.split(marker, 1)[1] for line in self.output.splitlines() if marker in line]


def job_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(_SCRUB_PREFIXES) and k not in _SCRUB}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", DISTTORCH_PROGRESS="0")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


class Jobs:
    """Starts `python -m disttorch_launcher ...` on a test host and waits for it."""

    def __init__(self, rig: Cluster) -> None:
        self.rig = rig
        self.procs: list[subprocess.Popen] = []

    def start(self, host: str, args: list[str], **env: str) -> subprocess.Popen:
        proc = self.rig.popen(host, [sys.executable, "-m", "disttorch_launcher", *map(str, args)],
                              cwd=str(REPO), env=job_env(**env), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        proc.started = time.monotonic()
        self.procs.append(proc)
        return proc

    def finish(self, proc: subprocess.Popen, timeout: float = 90) -> Finished:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            pytest.fail(f"job did not end within {timeout} s:\n{out[-4000:]}")
        return Finished(proc.returncode, out, time.monotonic() - proc.started)

    def run(self, host: str, args: list[str], timeout: float = 90, **env: str) -> Finished:
        return self.finish(self.start(host, args, **env), timeout)

    def wait_until_idle(self, timeout: float = 20.0) -> dict[str, list]:
        """Waits until no host runs anything but the rig's own processes; returns what is left."""
        deadline = time.monotonic() + timeout
        while True:
            left = {h.name: self.rig.processes(h.name) for h in self.rig.hosts}
            left = {name: procs for name, procs in left.items() if procs}
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.2)

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        for host in self.rig.hosts:  # never hand a busy rig to the next test
            self.rig.set_link(host.name, True)
            self.rig.start_sshd(host.name)
            for pid, _ in self.rig.processes(host.name):
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
