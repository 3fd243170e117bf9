"""The Ray engine: a job's ranks as actors of a Ray cluster, placed as Ray Train places DDP workers.

    disttorch-run --ray local|auto|ADDRESS --nproc-per-node N [--nnodes K] script.py args

* A placement group reserves the job's resources before anything starts: one bundle per rank
  (`--cpus-per-rank`, `--gpus-per-rank`), packed; with `--nnodes K`, one bundle per node holding
  that node's N ranks, strictly spread over K nodes. One actor per rank sits in its bundle.
* Ranks are numbered node by node: nodes in the order of their addresses (then Ray node id),
  ranks of a node by local rank. Rank 0's actor names MASTER_ADDR (its node's address, or
  127.0.0.1 when every rank runs on one host) and a port free on its node.
* Each actor starts its rank as a child process through the launcher's bootstrap, exactly as
  `disttorch-run` does on one node (parent-death signal, process group, error file), with
  torchrun's variables and thread limits from the bundle's CPUs. The job secret is an argument
  of the actor's `start` call (a direct call to the actor), never part of runtime_env, an actor's
  constructor or the object store.
* Supervision is `supervise.py`'s: the first non-zero exit or lost actor (or node) stops every
  rank; the report names rank, node and cause; `--max-restarts` restarts the whole group with a
  fresh placement group.

`ray` is imported only here (and `disttorch.ray`), never by the rest of the launcher.
"""
from __future__ import annotations

import os
import secrets
import signal as _signal
import socket
import sys
import time
from dataclasses import dataclass, field

from .. import output
from ..config import THREAD_VARS, worker_env
from . import RankExit

__all__ = ["RayJob", "RayEngine", "run_ray_job", "connect", "MISSING_RAY"]

MISSING_RAY = "the Ray engine needs the 'ray' package: pip install 'disttorch[ray]'"
_LOCAL_OBJECT_STORE = 80 * 1024 * 1024  # Ray's floor is ~75 MiB; the job stores nothing there
_CALL_TIMEOUT = 30.0  # seconds an actor call may take before its rank counts as lost


def _import_ray():
    try:
        import ray
    except ImportError:
        raise RuntimeError(MISSING_RAY) from None
    return ray


@dataclass
class RayJob:
    """What to run and how to place it."""

    argv: list[str]  # the entry point as the launcher's bootstrap takes it (script and args)
    nproc_per_node: int
    nnodes: int | None = None  # None: place ranks wherever they fit (packed)
    cpus_per_rank: float = 1.0
    gpus_per_rank: float = 0.0
    max_restarts: int = 0
    monitor_interval: float = 0.2
    grace_period: float = 10.0
    cwd: str = field(default_factory=os.getcwd)
    env: dict[str, str] = field(default_factory=dict)  # forwarded to every rank
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    echo_output: bool = True

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * (self.nnodes or 1)

    def check(self) -> None:
        if self.nproc_per_node < 1:
            raise ValueError(f"--nproc-per-node: expected >= 1 with --ray, got {self.nproc_per_node}")
        if self.nnodes is not None and self.nnodes < 1:
            raise ValueError(f"--nnodes: expected >= 1, got {self.nnodes}")
        if self.cpus_per_rank <= 0:
            raise ValueError(f"--cpus-per-rank: expected > 0, got {self.cpus_per_rank}")
        if self.gpus_per_rank < 0:
            raise ValueError(f"--gpus-per-rank: expected >= 0, got {self.gpus_per_rank}")


def connect(address: str, *, num_cpus: int | None = None) -> bool:
    """Joins (`auto`, `ray://...`, `HOST:PORT`) or starts (`local`) a Ray cluster; returns True
    when this call started it (the caller then shuts it down). Already connected: no-op."""
    ray = _import_ray()
    if ray.is_initialized():
        return False
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": "WARNING",
             "configure_logging": True}
    if address == "local":
        # A private instance for this job only (Ray itself listens on the node's address; the
        # ranks of a one-host job bind to loopback, see RayEngine.start).
        ray.init(address="local", num_cpus=num_cpus, object_store_memory=_LOCAL_OBJECT_STORE, **quiet)
        return True
    ray.init(address=address, **{k: v for k, v in quiet.items() if k != "include_dashboard"})
    return False


class _RankActor:
    """One rank's home on a Ray node: starts, watches and stops the rank's process."""

    def __init__(self) -> None:
        self._proc = None
        self._lines: list[bytes] = []
        self._tail: list[str] = []
        self._scratch = None  # the folder of the rank's error file, removed once the rank ended

    def where(self) -> dict:
        import ray
        return {"ip": ray.util.get_node_ip_address(), "host": socket.gethostname(),
                "node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid(),
                "gpus": [str(g) for g in ray.get_gpu_ids()]}

    def free_port(self) -> int:
        with socket.socket() as s:
            s.bind(("", 0))
            return s.getsockname()[1]

    def start(self, argv: list[str], env: dict[str, str], secret: str, cwd: str) -> int:
        import subprocess
        import tempfile
        import threading

        env = {**os.environ, **env, "DISTTORCH_SECRET": secret,
               # the bootstrap stops the rank when this actor's process is gone
               "DISTTORCH_LAUNCHER_PID": str(os.getpid())}
        scratch = self._scratch = tempfile.mkdtemp(prefix="disttorch-ray-")
        env["DISTTORCH_ERROR_FILE"] = env["TORCHELASTIC_ERROR_FILE"] = os.path.join(scratch, "error.json")
        from disttorch_launcher.local import BOOTSTRAP
        self._proc = subprocess.Popen([sys.executable, BOOTSTRAP, *argv], env=env,
                                      cwd=cwd if os.path.isdir(cwd) else None,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        self._error_file = env["DISTTORCH_ERROR_FILE"]
        threading.Thread(target=self._read, daemon=True).start()
        return self._proc.pid

    def _read(self) -> None:
        for line in iter(self._proc.stdout.readline, b""):
            self._lines.append(line)
            self._tail = (self._tail + [line.decode("utf-8", "replace").rstrip("\n")])[-20:]

    def poll(self) -> tuple[int | None, list[bytes], list[str], str | None]:
        """(exit status or None, new output lines, output tail, recorded exception)."""
        code = self._proc.poll() if self._proc is not None else None
        if code is not None:
            time.sleep(0.05)  # let the reader take the last lines
        lines, self._lines = self._lines, []
        exc = None
        if code not in (None, 0):
            from disttorch_launcher.report import read_error_file
            record = read_error_file(self._error_file)
            if record:
                exc = f"{record.get('exc_type')}: {record.get('message')}"
        if code is not None:
            self._discard_scratch()
        return code, lines, list(self._tail), exc

    def _discard_scratch(self) -> None:
        if self._scratch is not None:
            import shutil
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def signal(self, sig: int) -> None:
        if self._proc is not None and self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, grace: float) -> int | None:
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self.signal(_signal.SIGTERM)
            try:
                self._proc.wait(grace)
            except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired
                pass
        try:
            os.killpg(self._proc.pid, _signal.SIGKILL)  # and whatever the rank left behind
        except (ProcessLookupError, PermissionError):
            pass
        code = self._proc.wait()
        self._discard_scratch()
        return code


@dataclass
class _Placed:
    actor: object
    rank: int
    local_rank: int
    node_rank: int
    host: str
    pid: int
    done: bool = False


class RayEngine:
    """The Engine interface over Ray actors (see disttorch_launcher.engines)."""

    def __init__(self, job: RayJob) -> None:
        job.check()
        self.job = job
        self.world_size = job.world_size
        self._ray = _import_ray()
        self._secret = secrets.token_hex(32)
        self._group = None
        self._ranks: list[_Placed] = []

    # -- Engine ---------------------------------------------------------------------------------
    def start(self, attempt: int) -> None:
        ray = self._ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        self.release()  # the previous attempt's actors and reservation, if any
        job = self.job
        alive = sum(1 for n in ray.nodes() if n.get("Alive"))
        if job.nnodes and job.nnodes > alive:
            # STRICT_SPREAD over more nodes than exist would wait for ever: say so at once.
            raise RuntimeError(f"--nnodes {job.nnodes}: the Ray cluster has {alive} alive node"
                               f"{'s' if alive != 1 else ''}")
        per_rank = {"CPU": job.cpus_per_rank, **({"GPU": job.gpus_per_rank} if job.gpus_per_rank else {})}
        if job.nnodes:
            bundles = [{k: v * job.nproc_per_node for k, v in per_rank.items()}] * job.nnodes
            strategy = "STRICT_SPREAD" if job.nnodes > 1 else "PACK"
        else:
            bundles, strategy = [dict(per_rank)] * self.world_size, "PACK"
        self._group = placement_group(bundles, strategy=strategy, name=f"disttorch-{job.run_id}-{attempt}")
        try:
            ray.get(self._group.ready(), timeout=120)
        except ray.exceptions.GetTimeoutError:
            raise RuntimeError(f"Ray could not reserve {len(bundles)} bundle(s) of {bundles[0]} "
                               f"({strategy}) within 120 s: {ray.cluster_resources()} in the cluster") from None
        actor_cls = ray.remote(_RankActor)
        actors = []
        for i in range(self.world_size):
            bundle = i // job.nproc_per_node if job.nnodes else i
            actors.append(actor_cls.options(
                num_cpus=job.cpus_per_rank, num_gpus=job.gpus_per_rank, max_restarts=0,
                name=f"disttorch-{job.run_id}-{attempt}-{i}",
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    placement_group=self._group, placement_group_bundle_index=bundle)).remote())
        wheres = ray.get([a.where.remote() for a in actors], timeout=120)
        # A node's address as the cluster knows it (a private instance's is loopback), not the
        # address the actor's process would guess from its routes.
        addresses = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")}
        for w in wheres:
            w["ip"] = addresses.get(w["node_id"], w["ip"])
        # Node rank by node address (then Ray's node id, for nodes sharing an address), local
        # rank within a node by actor order: rank = node's first rank + local rank.
        nodes = sorted({(w["ip"], w["node_id"]) for w in wheres})
        order = sorted(range(len(actors)), key=lambda i: (nodes.index((wheres[i]["ip"], wheres[i]["node_id"])), i))
        per_node: dict[int, int] = {}
        self._ranks = []
        for rank, i in enumerate(order):
            node_rank = nodes.index((wheres[i]["ip"], wheres[i]["node_id"]))
            local_rank = per_node.get(node_rank, 0)
            per_node[node_rank] = local_rank + 1
            self._ranks.append(_Placed(actors[i], rank, local_rank, node_rank,
                                       f"{wheres[i]['host']}/{wheres[i]['ip']}", 0))
        rank0 = self._ranks[0]
        # Every rank on one host (a local instance, or a cluster's nodes sharing a machine): the
        # job does not span hosts, so it talks, and binds, on loopback only.
        master_addr = wheres[order[0]]["ip"] if len({w["ip"] for w in wheres}) > 1 else "127.0.0.1"
        master_port = ray.get(rank0.actor.free_port.remote(), timeout=_CALL_TIMEOUT)
        threads = max(1, int(job.cpus_per_rank))
        pids = []
        for placed in self._ranks:
            env = worker_env(
                job.env, rank=placed.rank, local_rank=placed.local_rank, world_size=self.world_size,
                local_world_size=per_node[placed.node_rank], node_rank=placed.node_rank,
                nnodes=len(nodes), master_addr=master_addr, master_port=master_port,
                secret="", run_id=job.run_id, restart_count=attempt, max_restarts=job.max_restarts,
                role="default", error_file="", launcher_pid=0, grace_period=job.grace_period,
                threads={var: job.env.get(var) or str(threads) for var in THREAD_VARS}, gpus=[])
            env.pop("DISTTORCH_SECRET")  # given to the actor's start call only, below
            if job.gpus_per_rank:
                env["DISTTORCH_DEVICE_INDEX"] = "0"  # Ray sets the actor's CUDA_VISIBLE_DEVICES
            pids.append(placed.actor.start.remote(job.argv, env, self._secret, job.cwd))
        for placed, pid in zip(self._ranks, ray.get(pids, timeout=_CALL_TIMEOUT)):
            placed.pid = pid

    def poll(self) -> list[RankExit]:
        ray = self._ray
        running = [p for p in self._ranks if not p.done]
        refs = [p.actor.poll.remote() for p in running]
        ended = []
        for placed, ref in zip(running, refs):
            try:
                code, lines, tail, exc = ray.get(ref, timeout=_CALL_TIMEOUT)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as err:
                placed.done = True
                ended.append(self._exit(placed, None, _lost_cause(err)))
                continue
            if self.job.echo_output:
                prefix = f"[rank{placed.rank}]: ".encode()
                for line in lines:
                    output.write_line("stdout", prefix + line)
            if code is not None:
                placed.done = True
                ended.append(self._exit(placed, code, exc, tail))
        return ended

    def signal(self, sig: int) -> None:
        for placed in self._ranks:
            if not placed.done:
                placed.actor.signal.remote(sig)

    def stop(self, grace: float) -> list[RankExit]:
        ray = self._ray
        refs = [(p, p.actor.stop.remote(grace)) for p in self._ranks if not p.done]
        ended = []
        for placed, ref in refs:
            try:
                code = ray.get(ref, timeout=grace + _CALL_TIMEOUT)
                ended.append(self._exit(placed, code, "stopped"))
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as err:
                ended.append(self._exit(placed, None, _lost_cause(err)))
            placed.done = True
        self.release()
        return ended

    # -- cleanup --------------------------------------------------------------------------------
    def release(self) -> None:
        """Kills this attempt's actors and frees its placement group."""
        ray = self._ray
        for placed in self._ranks:
            try:
                ray.kill(placed.actor)
            except Exception:  # noqa: BLE001 - already dead
                pass
        self._ranks = []
        if self._group is not None:
            from ray.util.placement_group import remove_placement_group
            try:
                remove_placement_group(self._group)
            except Exception:  # noqa: BLE001 - the cluster may be going away
                pass
            self._group = None

    def _exit(self, placed: _Placed, code: int | None, cause: str | None,
              tail: list[str] | None = None) -> RankExit:
        return RankExit(placed.rank, placed.local_rank, placed.node_rank, placed.host, placed.pid,
                        code, time.time(), cause, tail if code not in (None, 0) else None)


def _lost_cause(err: Exception) -> str:
    text = str(err).strip().splitlines()
    name = type(err).__name__
    detail = next((line.strip() for line in text if "died" in line or "node" in line.lower()), "")
    return f"its Ray actor was lost ({name}{': ' + detail[:200] if detail else ''})"


def run_ray_job(job: RayJob, *, address: str = "local", signals=None) -> "JobOutcome":  # noqa: F821
    """Runs `job` on the Ray cluster at `address`; returns the supervise outcome (statuses)."""
    from .supervise import supervise

    ray = _import_ray()
    owned = connect(address, num_cpus=max(2, int(job.world_size * job.cpus_per_rank + 0.999))
                    if address == "local" else None)
    engine = None
    try:
        engine = RayEngine(job)
        return supervise(engine, max_restarts=job.max_restarts, monitor_interval=job.monitor_interval,
                         grace=job.grace_period, signals=signals, entrypoint=" ".join(job.argv[:1]))
    finally:
        if engine is not None:
            engine.release()
        if owned:
            ray.shutdown()


def bootstrap_argv(entrypoint: str, args: list[str], *, module: bool = False,
                   no_python: bool = False) -> list[str]:
    """The bootstrap's arguments for a script (made absolute: actors start elsewhere), a module
    (`-m`) or a program (`--exec`)."""
    if no_python:
        return ["--exec", entrypoint, *args]
    if module:
        return ["-m", entrypoint, *args]
    return [os.path.abspath(entrypoint), *args]


def run_cli(cfg, *, address: str, cpus_per_rank: float, gpus_per_rank: float) -> int:
    """`disttorch-run --ray ADDRESS ...`: ends the process with the launcher's exit status
    (os._exit, see below), so call it only as the command's last step."""
    from ..remote import _forwarded_env
    from ..signals import SignalState

    job = RayJob(argv=bootstrap_argv(cfg.entrypoint, cfg.entrypoint_args, module=cfg.run_module,
                                     no_python=cfg.no_python),
                 nproc_per_node=cfg.nproc_per_node,
                 nnodes=cfg.max_nodes if cfg.max_nodes > 1 else None,
                 cpus_per_rank=cpus_per_rank, gpus_per_rank=gpus_per_rank,
                 max_restarts=cfg.max_restarts, monitor_interval=max(cfg.monitor_interval, 0.2),
                 grace_period=cfg.grace_period, env=_forwarded_env(dict(os.environ)),
                 run_id=cfg.run_id or secrets.token_hex(4))
    try:
        job.check()
    except ValueError as exc:
        output.say(str(exc))
        return 2
    signals = SignalState().install()
    try:
        code = run_ray_job(job, address=address, signals=signals).exit_code
    except ConnectionError as exc:  # --ray auto / ADDRESS with no cluster there
        output.say(f"--ray {address}: {exc}")
        code = 1
    except RuntimeError as exc:
        output.say(str(exc))
        code = 1
    finally:
        signals.restore()
    # Ray's native threads can crash the interpreter's finalization after ray.shutdown() (a
    # SIGSEGV at exit would replace the job's status): the job is over and reported, so the
    # launcher leaves without finalizing.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
