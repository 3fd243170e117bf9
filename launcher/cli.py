"""`disttorch-run` / `python -m launcher`: parse the options, resolve them, start the job.

torchrun's options are accepted with both spellings (`--nproc-per-node` / `--nproc_per_node`).
Resolution order for where this node sits: explicit options, then `--hosts` / `--hostfile`,
then a scheduler that started this launcher (srun / mpirun, one task per node), then defaults.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import threading
from typing import Callable

from . import output, settings, simulate
from .config import (LaunchConfig, export_timeouts, parse_nnodes, parse_nproc, parse_ranks_filter,
                     parse_stream_spec)
from .net import DEFAULT_MASTER_PORT

__all__ = ["build_parser", "config_from_args", "main"]

def _flag(*names: str) -> list[str]:
    """Each dashed option also under torchrun's underscore spelling."""
    out = []
    for name in names:
        out.append(name)
        if name.startswith("--") and "-" in name[2:]:
            out.append("--" + name[2:].replace("-", "_"))
    return out


class _NewSecretAction(argparse.Action):
    """`--new-secret`: print a secret and exit, like --version (no script needed)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        import secrets

        print(secrets.token_hex(32))
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (torchrun's options plus disttorch's)."""
    p = argparse.ArgumentParser(
        prog="disttorch-run", allow_abbrev=False,
        description="Start and supervise the worker processes of a data-parallel job "
                    "(torchrun-compatible).",
        epilog="Workers get RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK/NODE_RANK, "
               "MASTER_ADDR, MASTER_PORT, DISTTORCH_SECRET, TORCHELASTIC_RESTART_COUNT and "
               "DISTTORCH_RESTART_COUNT, and OMP/OPENBLAS/MKL_NUM_THREADS = cores per worker "
               "unless set. Multi-node launchers talk over a control channel on "
               "--control-port (default MASTER_PORT + 1).")
    g = p.add_argument_group("workers")
    g.add_argument(*_flag("--nproc-per-node"), default="1", metavar="N|auto|cpu|gpu",
                   help="workers on this node (default 1)")
    g.add_argument(*_flag("-m", "--module"), dest="module", action="store_true",
                   help="run the entry point as a module, like python -m")
    g.add_argument(*_flag("--no-python"), dest="no_python", action="store_true",
                   help="execute the entry point directly instead of through python")
    g.add_argument("--role", default="default", help="worker role name (ROLE_NAME)")
    g.add_argument("--isolate-gpus", action="store_true",
                   help="give each local rank CUDA_VISIBLE_DEVICES=<its GPU> (default: all GPUs "
                        "visible, DISTTORCH_DEVICE_INDEX names the rank's own)")
    g = p.add_argument_group("nodes")
    g.add_argument("--nnodes", default=None, metavar="N|MIN:MAX", help="number of nodes (1)")
    g.add_argument(*_flag("--node-rank"), type=int, default=None, help="this node's rank (0)")
    g.add_argument(*_flag("--master-addr"), default=None,
                   help="address of node 0 (default 127.0.0.1, or node 0's host)")
    g.add_argument(*_flag("--master-port"), type=int, default=None,
                   help="port of rank 0's rendezvous store (default: a free port on one node, "
                        f"{DEFAULT_MASTER_PORT} on several)")
    g.add_argument(*_flag("--control-port"), type=int, default=None,
                   help="port of node 0's launcher control channel (default MASTER_PORT + 1)")
    g.add_argument(*_flag("--rdzv-endpoint"), default=None, metavar="HOST[:PORT]",
                   help="torchrun's rendezvous endpoint: taken as master address and port")
    g.add_argument(*_flag("--run-id", "--rdzv-id"), dest="run_id", default=None,
                   help="job id the nodes must agree on (default: node 0 picks one)")
    g.add_argument(*_flag("--rdzv-backend"), default=None,
                   help="accepted for torchrun compatibility; the launchers rendezvous over "
                        "their control channel")
    g.add_argument(*_flag("--rdzv-conf"), default="", metavar="KEY=VALUE,...",
                   help="join_timeout / timeout, last_call_timeout (seconds)")
    g.add_argument("--standalone", action="store_true",
                   help="single node with a private rendezvous on a free local port")
    g.add_argument("--hosts", default=None, metavar="H1:N,H2:N",
                   help="start one node per host (the first is node 0) through ssh")
    g.add_argument("--hostfile", default=None,
                   help="DeepSpeed-style hostfile: 'hostname slots=N' per line")
    g.add_argument("--ssh-command", default="ssh",
                   help="command that runs a command on a host, instead of ssh (default ssh)")
    g.add_argument("--scheduler", choices=("auto", "none"), default="auto",
                   help="take node rank / count / master from srun or mpirun (auto)")
    g.add_argument("--join-timeout", type=float, default=None,
                   help="seconds node 0 waits for every node to join (900)")
    g.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="seconds a collective may wait before it fails and every rank's stack "
                        "is shown (sets DISTTORCH_TIMEOUT; default 1800, torch's)")
    g.add_argument("--node-timeout", type=float, default=30.0,
                   help="seconds without news before a node counts as lost (30)")
    g.add_argument("--secret-stdin", action="store_true", help=argparse.SUPPRESS)
    g.add_argument("--new-secret", action=_NewSecretAction,
                   help="print a fresh random job secret and exit: export it as "
                        "DISTTORCH_SECRET on every node of a multi-node job")
    g = p.add_argument_group("engines")
    g.add_argument("--ray", default=None, metavar="local|auto|ADDRESS",
                   help="run the ranks as actors of a Ray cluster ('local' starts a private one "
                        "for the job); needs pip install 'disttorch[ray]'")
    g.add_argument("--cpus-per-rank", type=float, default=1.0,
                   help="CPUs reserved per rank under --ray (1); also its thread count")
    g.add_argument("--gpus-per-rank", type=float, default=0.0,
                   help="GPUs reserved per rank under --ray (0)")
    g.add_argument("--print-k8s-manifest", action="store_true",
                   help="print a Kubeflow PyTorchJob running this command on --nnodes pods, and exit")
    g.add_argument("--image", default=None, help="container image of --print-k8s-manifest")
    g.add_argument("--job-name", default=None, help="name of --print-k8s-manifest's PyTorchJob")
    g = p.add_argument_group("supervision")
    g.add_argument(*_flag("--max-restarts"), type=int, default=0,
                   help="restart the whole group up to N times after a failure (0)")
    g.add_argument(*_flag("--monitor-interval"), type=float, default=0.1,
                   help="seconds between supervision checks (0.1)")
    g.add_argument("--grace-period", type=float, default=10.0,
                   help="seconds between SIGTERM and SIGKILL when stopping workers (10)")
    g.add_argument(*_flag("--start-method"), default=None,
                   help="forkserver (default on Linux; also 'fork'): fork workers from a "
                        "pre-imported template; spawn: start each as a fresh interpreter")
    g = p.add_argument_group("output")
    g.add_argument(*_flag("--log-dir"), default=None,
                   help="write each rank's stdout/stderr/error file under DIR/RUN_ID/attempt_K/rankR")
    g.add_argument(*_flag("-r", "--redirects"), default="0", metavar="0-3|LR:0-3,...",
                   help="send these streams to the log files only (1 out, 2 err, 3 both)")
    g.add_argument(*_flag("-t", "--tee"), default="0", metavar="0-3|LR:0-3,...",
                   help="also copy these streams to the log files")
    g.add_argument(*_flag("--local-ranks-filter"), default=None, metavar="0,1,...",
                   help="only these local ranks' output reaches the console")
    g.add_argument("--dry-run", action="store_true", help="print what would run where and exit")
    simulate.add_arguments(p)
    p.add_argument("training_script", help="script to run (or module with -m, program with "
                                           "--no-python)")
    p.add_argument("training_script_args", nargs=argparse.REMAINDER)
    return p


def _rdzv_conf(text: str) -> dict[str, float]:
    conf: dict[str, float] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = item.partition("=")
        try:
            conf[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--rdzv-conf: expected KEY=SECONDS, got {item!r}") from None
        if not sep:
            raise ValueError(f"--rdzv-conf: expected KEY=SECONDS, got {item!r}")
    unknown = set(conf) - {"timeout", "join_timeout", "last_call_timeout", "read_timeout"}
    if unknown:
        raise ValueError(f"--rdzv-conf: unknown key(s) {', '.join(sorted(unknown))}")
    return conf


def _check_port(value: int | None, option: str) -> None:
    if value is not None and not 1 <= value <= 65535:
        raise ValueError(f"{option}: expected a port in 1..65535, got {value}")


def config_from_args(args: argparse.Namespace, env) -> tuple[LaunchConfig, bool]:
    """A LaunchConfig from parsed options and the environment; also whether the master
    address was given (as opposed to defaulted). Raises ValueError naming the bad value."""
    from .schedulers import launcher_placement

    if args.max_restarts < 0:
        raise ValueError(f"--max-restarts: expected >= 0, got {args.max_restarts}")
    if args.start_method is not None and args.start_method not in ("forkserver", "fork", "spawn"):
        raise ValueError(f"--start-method: expected forkserver, fork or spawn, got "
                         f"{args.start_method!r}")
    if args.monitor_interval <= 0:
        raise ValueError(f"--monitor-interval: expected > 0 seconds, got {args.monitor_interval}")
    if args.grace_period < 0:
        raise ValueError(f"--grace-period: expected >= 0 seconds, got {args.grace_period}")
    if args.node_timeout <= 0:
        raise ValueError(f"--node-timeout: expected > 0 seconds, got {args.node_timeout}")
    _check_port(args.master_port, "--master-port")
    _check_port(args.control_port, "--control-port")
    if args.module and args.no_python:
        raise ValueError("--module and --no-python exclude each other")

    conf = _rdzv_conf(args.rdzv_conf)
    master_addr, master_port = args.master_addr, args.master_port
    if args.rdzv_endpoint:
        host, sep, port = args.rdzv_endpoint.rpartition(":")
        if not sep or not port.isdigit():
            host, port = args.rdzv_endpoint, ""
        master_addr = master_addr or host
        if port and master_port is None:
            master_port = int(port)
            _check_port(master_port, "--rdzv-endpoint")

    hosts = None
    if args.hosts and args.hostfile:
        raise ValueError("--hosts and --hostfile exclude each other")
    if args.hosts or args.hostfile:
        from .remote import parse_hostfile, parse_hosts  # only multi-host jobs pay for ssh code

        hosts = parse_hosts(args.hosts) if args.hosts else parse_hostfile(args.hostfile)

    min_nodes, max_nodes = parse_nnodes(args.nnodes) if args.nnodes else (1, 1)
    node_rank = args.node_rank
    run_id = args.run_id
    scheduler = None
    if hosts is not None:
        if args.nnodes and (min_nodes, max_nodes) != (len(hosts), len(hosts)):
            raise ValueError(f"--nnodes {args.nnodes} differs from the {len(hosts)} hosts given")
        if node_rank not in (None, 0):
            raise ValueError("--node-rank makes no sense with --hosts/--hostfile (this machine "
                             "starts every node)")
        min_nodes = max_nodes = len(hosts)
    elif args.scheduler == "auto" and node_rank is None and not args.standalone:
        placement = launcher_placement(env)
        if placement is not None:
            if args.nnodes and (min_nodes, max_nodes) != (placement.nnodes, placement.nnodes):
                raise ValueError(f"--nnodes {args.nnodes} differs from the {placement.nnodes} "
                                 f"nodes {placement.scheduler} started")
            min_nodes = max_nodes = placement.nnodes
            node_rank = placement.node_rank
            scheduler = placement.scheduler
            if placement.nnodes > 1:
                master_addr = master_addr or env.get("MASTER_ADDR") or placement.master_addr
                if master_addr is None:
                    raise ValueError(f"under {placement.scheduler} with {placement.nnodes} "
                                     f"nodes, pass --master-addr (the host of node 0)")
                if master_port is None and placement.master_port is not None:
                    master_port = placement.master_port
            run_id = run_id or placement.run_id
    node_rank = node_rank or 0
    if args.standalone:
        if max_nodes != 1 or hosts is not None:
            raise ValueError("--standalone runs one node; drop --nnodes/--hosts or --standalone")
        master_addr = "127.0.0.1"
        master_port = None
    if not 0 <= node_rank < max_nodes:
        raise ValueError(f"--node-rank: expected 0..{max_nodes - 1} for {max_nodes} node"
                         f"{'s' if max_nodes > 1 else ''}, got {node_rank}")
    if max_nodes > 1 and hosts is None and master_port is None:
        master_port = DEFAULT_MASTER_PORT

    secret = settings.get("DISTTORCH_SECRET", env)
    cfg = LaunchConfig(
        entrypoint=args.training_script,
        entrypoint_args=list(args.training_script_args),
        run_module=args.module,
        no_python=args.no_python,
        nproc_per_node=parse_nproc(args.nproc_per_node, env),
        min_nodes=min_nodes,
        max_nodes=max_nodes,
        node_rank=node_rank,
        master_addr=master_addr or "127.0.0.1",
        master_port=master_port,
        control_port=args.control_port,
        max_restarts=args.max_restarts,
        monitor_interval=args.monitor_interval,
        grace_period=args.grace_period,
        run_id=run_id,
        log_dir=args.log_dir,
        redirects=parse_stream_spec(args.redirects, "--redirects"),
        tee=parse_stream_spec(args.tee, "--tee"),
        local_ranks_filter=(parse_ranks_filter(args.local_ranks_filter)
                            if args.local_ranks_filter else None),
        role=args.role,
        hosts=hosts,
        ssh_command=shlex.split(args.ssh_command) or ["ssh"],
        dry_run=args.dry_run,
        join_timeout=args.join_timeout if args.join_timeout is not None else conf.get(
            "join_timeout", conf.get("timeout", 900.0)),
        last_call=conf.get("last_call_timeout", 5.0),
        node_timeout=args.node_timeout,
        isolate_gpus=args.isolate_gpus,
        start_method=args.start_method,
        secret=secret,
        secret_from_stdin=args.secret_stdin,
        scheduler=scheduler,
    )
    cfg.simulation = simulate.from_args(args, _world_size(cfg))
    if cfg.join_timeout <= 0:
        raise ValueError(f"--join-timeout: expected > 0 seconds, got {cfg.join_timeout}")
    if args.timeout is not None and not args.timeout > 0:
        raise ValueError(f"--timeout: expected > 0 seconds, got {args.timeout}")
    cfg.collective_timeout = args.timeout
    cfg.worker_join_timeout = args.join_timeout
    return cfg, master_addr is not None


def _world_size(cfg: LaunchConfig) -> int | None:
    """The job's worker count when it is fixed (to check fault ranks), else None."""
    if cfg.hosts is not None:
        return sum(n or cfg.nproc_per_node for _, n in cfg.hosts)
    return cfg.nproc_per_node * cfg.max_nodes if not cfg.elastic else None


def _read_secret_from_stdin() -> str:
    """The first stdin line is the job secret (sent by the ssh driver, see remote.py).

    Read with os.read, byte by byte up to the newline: a buffered reader would swallow input
    past the line, and a daemon thread blocked inside one aborts interpreter shutdown.
    """
    data = b""
    while not data.endswith(b"\n") and len(data) < 4096:
        chunk = os.read(0, 1)
        if not chunk:
            break
        data += chunk
    secret = data.strip().decode("ascii", "replace")
    if not secret:
        raise ValueError("--secret-stdin: no secret on stdin")
    return secret


def _watch_stdin(event: threading.Event) -> None:
    # The driver keeps our stdin open for as long as it runs; its end means it is gone.
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    event.set()


def main(argv: list[str] | None = None) -> int:
    """Entry point of `disttorch-run`; returns the exit status."""
    parser = build_parser()
    from .engines.k8s import apply_pet_defaults  # torchrun's PET_* defaults (Kubeflow pods)

    try:
        apply_pet_defaults(parser, os.environ)
    except ValueError as exc:
        parser.error(str(exc))
    args = parser.parse_args(argv)
    try:
        cfg, master_given = config_from_args(args, os.environ)
    except ValueError as exc:
        parser.error(str(exc))
    export_timeouts(cfg, os.environ)
    external_stop: Callable[[], str | None] | None = None
    if cfg.secret_from_stdin:
        try:
            cfg.secret = _read_secret_from_stdin()
        except ValueError as exc:
            parser.error(str(exc))
        hung_up = threading.Event()
        threading.Thread(target=_watch_stdin, args=(hung_up,), daemon=True,
                         name="disttorch-stdin-watch").start()

        def driver_gone() -> str | None:
            return "the driver's connection (ssh stdin) closed" if hung_up.is_set() else None

        external_stop = driver_gone

    if args.print_k8s_manifest:
        from .engines.k8s import print_manifest

        try:
            output.print_text(print_manifest(cfg, args, default_port=DEFAULT_MASTER_PORT).rstrip("\n"))
        except ValueError as exc:
            parser.error(str(exc))
        return 0
    if args.ray:
        from .engines.ray import run_cli

        return run_cli(cfg, address=args.ray, cpus_per_rank=args.cpus_per_rank,
                       gpus_per_rank=args.gpus_per_rank)
    if cfg.hosts is not None:
        from .remote import run_hosts

        return run_hosts(cfg, master_given=master_given)
    if cfg.dry_run:
        from .dryrun import describe_node

        port = cfg.master_port or ("<free port>" if not cfg.multi_node else DEFAULT_MASTER_PORT)
        output.print_text(describe_node(cfg, run_id=cfg.run_id or "<random>", master_port=port))
        return 0
    if not (cfg.run_module or cfg.no_python) and not os.path.exists(cfg.entrypoint):
        output.say(f"script {cfg.entrypoint!r} not found (cwd {os.getcwd()})")
        return 2
    if cfg.multi_node:
        from .multinode import run_node

        return run_node(cfg, secret=cfg.secret, run_id=cfg.run_id, external_stop=external_stop)
    import secrets

    from .local import run_single_node

    return run_single_node(cfg, secret=cfg.secret or secrets.token_hex(32),
                           run_id=cfg.run_id or secrets.token_hex(4))


if __name__ == "__main__":
    sys.exit(main())
