"""The job harness shared by the launcher and simulation tests: run `python -m disttorch_launcher` on
scripts written to tmp_path, and find every process of a job (they all carry a unique
DISTTORCH_TEST_TAG in their environment)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil
REPO = Path(__file__).resolve().parents[2]

# Scheduler variables of the machine running the tests must not leak into the launchers.
_SCRUB_PREFIXES = ("SLURM_", "OMPI_", "PMI_", "PMIX_", "MV2_", "MPI_LOCAL", "TORCHELASTIC_",
                   "DISTTORCH_")
_SCRUB = {"RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
          "GROUP_RANK", "NODE_RANK", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
          "CUDA_VISIBLE_DEVICES"}


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


def free_port_pair() -> int:
    """A port p with p and p + 1 both free on 127.0.0.1 (master and control ports)."""
    for _ in range(100):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair")


class Job:
    """Runs launchers for one test and tracks every process they start."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.tag = uuid.uuid4().hex
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(_SCRUB_PREFIXES) and k not in _SCRUB}
        env["DISTTORCH_TEST_TAG"] = self.tag
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        self.env = env
        self.procs: list[subprocess.Popen] = []

    def script(self, name: str, text: str) -> str:
        path = self.dir / name
        path.write_text(text)
        return str(path)

    def command(self, args: list[str]) -> list[str]:
        return [sys.executable, "-m", "disttorch_launcher", *args]

    def start(self, args: list[str], env: dict | None = None) -> subprocess.Popen:
        proc = subprocess.Popen(self.command(args), cwd=self.dir, env={**self.env, **(env or {})},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        proc.started_at = time.monotonic()
        self.procs.append(proc)
        return proc

    def finish(self, proc: subprocess.Popen, timeout: float = 60) -> Finished:
        out, err = proc.communicate(timeout=timeout)
        return Finished(proc.returncode, out, err, time.monotonic() - proc.started_at)

    def run(self, args: list[str], env: dict | None = None, timeout: float = 60) -> Finished:
        return self.finish(self.start(args, env), timeout)

    def wait_for_files(self, pattern: str, count: int, timeout: float = 15) -> list[Path]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = sorted(self.dir.glob(pattern))
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"expected {count} files {pattern!r} in {self.dir}, found "
                             f"{sorted(p.name for p in self.dir.glob(pattern))}")

    def json_files(self, pattern: str) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted(self.dir.glob(pattern))]

    def processes(self) -> list[psutil.Process]:
        """Every live process (zombies excluded) of this test's jobs."""
        found = []
        for p in psutil.process_iter():
            try:
                if p.pid == os.getpid() or p.status() == psutil.STATUS_ZOMBIE:
                    continue
                if p.environ().get("DISTTORCH_TEST_TAG") == self.tag:
                    found.append(p)
            except psutil.Error:
                continue
        return found

    def leftovers(self, timeout: float = 5.0) -> list[str]:
        """Processes of the job still alive after `timeout` seconds, described."""
        deadline = time.monotonic() + timeout
        while True:
            alive = self.processes()
            if not alive or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        out = []
        for p in alive:
            try:
                out.append(f"{p.pid} {' '.join(p.cmdline())}")
            except psutil.Error:
                pass
        return out

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
