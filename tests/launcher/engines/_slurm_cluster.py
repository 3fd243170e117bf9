"""A real single-node SLURM cluster for tests: generated slurm.conf, slurmctld + slurmd as children.

Everything lives in one temporary directory (configuration, state, spool, logs, pid files) and
talks on two free loopback ports, so it neither needs nor touches /etc/slurm, and several of
these clusters can run side by side. `srun` / `sbatch` reach it through SLURM_CONF. Authentication
is `auth/none`: the daemons listen on loopback only and live for one test module. The node is
this machine under its short host name, with more CPUs than it has (`config_overrides`) so that
`srun -n 4` fits on a 2-core machine, and partitions oversubscribe.
"""
from __future__ import annotations

import getpass
import os
import pathlib
import random
import shutil
import signal
import socket
import subprocess
import time

from _ray_helpers import processes_with_env

DAEMONS = ("slurmctld", "slurmd", "srun", "sbatch", "sinfo", "scancel")


def missing_binaries() -> list[str]:
    return [name for name in DAEMONS if shutil.which(name) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlurmCluster:
    """slurmctld + slurmd for one node; `env()` is what srun/sbatch need to find them."""

    def __init__(self, root: pathlib.Path, cpus: int = 8):
        self.root = pathlib.Path(root)
        self.conf = self.root / "slurm.conf"
        self.node = socket.gethostname().split(".")[0]
        self.cpus = cpus
        self._daemons: list[subprocess.Popen] = []

    def write_config(self) -> None:
        for sub in ("state", "spool"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "plugstack.conf").write_text("")  # not the machine's /etc/slurm plug-ins
        r = self.root
        # A random first job id: jobs derive their master port from it, and clusters of other
        # test sessions on this machine start their own numbering.
        first_job = random.randrange(1000, 9000)
        self.conf.write_text(f"""\
ClusterName=disttorch{os.getpid()}
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser={getpass.getuser()}
SlurmdUser={getpass.getuser()}
AuthType=auth/none
CredType=cred/none
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/slurmctld.log
SlurmdLogFile={r}/slurmd.log
PlugStackConfig={r}/plugstack.conf
FirstJobId={first_job}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} State=UNKNOWN
PartitionName=test Nodes={self.node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
""")

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env["SLURM_CONF"] = str(self.conf)
        return env

    def start(self, timeout: float = 60.0) -> None:
        self.write_config()
        env = self.env()
        for argv, log in ((["slurmctld", "-D", "-i"], "slurmctld.out"),
                          (["slurmd", "-D", "-N", self.node], "slurmd.out")):
            with open(self.root / log, "wb") as out:
                self._daemons.append(subprocess.Popen(argv, env=env, stdout=out,
                                                      stderr=subprocess.STDOUT, cwd=self.root))
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            for proc in self._daemons:
                if proc.poll() is not None:
                    raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}:\n{self.logs()}")
            done = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True,
                                  text=True, check=False)
            state = done.stdout.strip()
            if state == "idle":
                return
            time.sleep(0.3)
        raise RuntimeError(f"SLURM node never became idle (last state {state!r}):\n{self.logs()}")

    def logs(self) -> str:
        parts = []
        for name in ("slurmctld.out", "slurmd.out", "slurmctld.log", "slurmd.log"):
            path = self.root / name
            if path.exists():
                parts.append(f"--- {name}\n" + path.read_text(errors="replace")[-3000:])
        return "\n".join(parts)

    def own_processes(self) -> list[int]:
        """Pids of every process that runs with this cluster's SLURM_CONF (daemons, slurmstepd,
        job tasks): how the tests tell their own processes from other sessions' ones."""
        return processes_with_env(f"SLURM_CONF={self.conf}")

    def stop(self) -> list[int]:
        """Cancels every job, stops the daemons, kills stragglers; returns the pids that had to be
        killed after the daemons were gone (a clean run returns [])."""
        if self._daemons and self._daemons[0].poll() is None:
            subprocess.run(["scancel", "--full", "--user", getpass.getuser()], env=self.env(),
                           capture_output=True, check=False, timeout=30)
        for proc in reversed(self._daemons):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self._daemons:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._daemons.clear()
        stragglers = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            stragglers = self.own_processes()
            if not stragglers:
                break
            time.sleep(0.2)
        for pid in stragglers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return stragglers
