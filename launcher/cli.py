"""`disttorch-run` / `python -m disttorch_launcher`: parse the options and dispatch to the mode that runs
the job.

torchrun's options are accepted with both spellings (`--nproc-per-node` / `--nproc_per_node`).
Turning the options into a `LaunchConfig` (where this node sits: explicit options, then
`--hosts` / `--hostfile`, then a scheduler that started this launcher, then defaults) is
`config.config_from_args`; running each mode is its module's job (see `_MODES`).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

from . import output, simulate
from .config import LaunchConfig, config_from_args, export_timeouts
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


class _UsageError(Exception):
    """A mode found the options inconsistent: reported like a parse error (exit status 2)."""


def _print_manifest(cfg: LaunchConfig, args, master_given: bool, external_stop) -> int:
    from .engines.k8s import print_manifest

    try:
        text = print_manifest(cfg, args, default_port=DEFAULT_MASTER_PORT)
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    output.print_text(text.rstrip("\n"))
    return 0


def _run_ray(cfg: LaunchConfig, args, master_given: bool, external_stop) -> int:
    from .engines.ray import run_cli

    return run_cli(cfg, address=args.ray, cpus_per_rank=args.cpus_per_rank,
                   gpus_per_rank=args.gpus_per_rank)


def _run_hosts(cfg: LaunchConfig, args, master_given: bool, external_stop) -> int:
    from .engines.ssh import run_hosts

    return run_hosts(cfg, master_given=master_given)


def _dry_run(cfg: LaunchConfig, args, master_given: bool, external_stop) -> int:
    from .dryrun import describe_node

    port = cfg.master_port or ("<free port>" if not cfg.multi_node else DEFAULT_MASTER_PORT)
    output.print_text(describe_node(cfg, run_id=cfg.run_id or "<random>", master_port=port))
    return 0


def _run_node(cfg: LaunchConfig, args, master_given: bool, external_stop) -> int:
    from .multinode import run_node

    return run_node(cfg, secret=cfg.secret, run_id=cfg.run_id, external_stop=external_stop)


def _run_single_node(cfg: LaunchConfig, args, master_given: bool, external_stop) -> int:
    import secrets

    from .local import run_single_node

    return run_single_node(cfg, secret=cfg.secret or secrets.token_hex(32),
                           run_id=cfg.run_id or secrets.token_hex(4))


# The dispatch table: the first mode whose test holds runs the job. Each runner takes
# (cfg, args, master_given, external_stop) and returns the exit status; `needs_script` modes
# start the entry point here, so it must exist (exit status 2 otherwise, like python).
_MODES: list[tuple[str, Callable[[LaunchConfig, argparse.Namespace], bool], bool, Callable[..., int]]] = [
    ("k8s manifest", lambda cfg, args: args.print_k8s_manifest, False, _print_manifest),
    ("ray", lambda cfg, args: bool(args.ray), False, _run_ray),
    ("ssh hosts", lambda cfg, args: cfg.hosts is not None, False, _run_hosts),
    ("dry run", lambda cfg, args: cfg.dry_run, False, _dry_run),
    ("multi-node", lambda cfg, args: cfg.multi_node, True, _run_node),
    ("single node", lambda cfg, args: True, True, _run_single_node),
]


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
    if cfg.secret_from_stdin:  # a node started by the ssh engine: the secret is stdin's first line
        from .multinode import read_secret_from_stdin, stop_when_stdin_closes

        try:
            cfg.secret = read_secret_from_stdin()
        except ValueError as exc:
            parser.error(str(exc))
        external_stop = stop_when_stdin_closes()

    _, _, needs_script, run = next(mode for mode in _MODES if mode[1](cfg, args))
    if needs_script and not (cfg.run_module or cfg.no_python) and not os.path.exists(cfg.entrypoint):
        output.say(f"script {cfg.entrypoint!r} not found (cwd {os.getcwd()})")
        return 2
    try:
        return run(cfg, args, master_given, external_stop)
    except _UsageError as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    sys.exit(main())
