"""Run real jobs through `python -m launcher` (disttorch-run) and check none of their processes
outlives the test (every process of a job carries a unique DISTTORCH_TEST_TAG)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # trace_checks

# Variables of the machine running the tests that would change what the jobs do.
_SCRUB_PREFIXES = ("SLURM_", "OMPI_", "PMI_", "PMIX_", "MV2_", "TORCHELASTIC_", "DISTTORCH_")
_SCRUB = {"RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
          "GROUP_RANK", "NODE_RANK", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"}


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str
    elapsed: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def lines(self, prefix: str) -> list[str]:
        """The payloads of output lines starting with ``prefix`` (e.g. '[rank0]: RESULT ')."""
        return [line[len(prefix):] for line in self.output.splitlines() if line.startswith(prefix)]


class Job:
    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.tag = uuid.uuid4().hex
        env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB_PREFIXES) and k not in _SCRUB}
        env["DISTTORCH_TEST_TAG"] = self.tag
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        self.env = env
        self.procs: list[subprocess.Popen] = []

    def script(self, name: str, text: str) -> str:
        path = self.dir / name
        path.write_text(text)
        return str(path)

    def run(self, args: list[str], env: dict | None = None, timeout: float = 60) -> Finished:
        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "launcher", *args], cwd=self.dir,
                                env={**self.env, **(env or {})}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        out, err = proc.communicate(timeout=timeout)
        return Finished(proc.returncode, out, err, time.monotonic() - start)

    def processes(self) -> list[psutil.Process]:
        found = []
        for p in psutil.process_iter():
            try:
                if p.pid != os.getpid() and p.status() != psutil.STATUS_ZOMBIE \
                        and p.environ().get("DISTTORCH_TEST_TAG") == self.tag:
                    found.append(p)
            except psutil.Error:
                continue
        return found

    def leftovers(self, timeout: float = 5.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while (alive := self.processes()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return [f"{p.pid} {' '.join(p.cmdline())}" for p in alive if p.is_running()]

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        for p in self.processes():
            try:
                p.kill()
            except psutil.Error:
                pass


@pytest.fixture
def job(tmp_path):
    j = Job(tmp_path)
    yield j
    j.cleanup()
