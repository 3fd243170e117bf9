"""`python -m tools.testcluster up N [--rate R] [--mtu BYTES] | down [ID | --all] | exec ID HOST -- CMD | list`."""
from __future__ import annotations

import argparse
import os
import sys

from . import sweep, system
from .rig import DEFAULT_MTU, Cluster, parse_mtu, parse_rate
from .system import ClusterError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.testcluster",
                                     description="test hosts inside this machine (root only)")
    sub = parser.add_subparsers(dest="action", required=True)
    up = sub.add_parser("up", help="make N test hosts; prints the run id")
    up.add_argument("n", type=int)
    up.add_argument("--rate", default="1gbit", type=_rate,
                    help="each link's bandwidth in both directions (tc tbf), or 'none'")
    up.add_argument("--mtu", default=DEFAULT_MTU, type=_mtu,
                    help=f"MTU of every link and the bridge (default {DEFAULT_MTU}, Ethernet's; 9000: "
                         "jumbo frames)")
    down = sub.add_parser("down", help="remove a rig (by run id), or every rig with --all")
    down.add_argument("run_id", nargs="?")
    down.add_argument("--all", action="store_true")
    run = sub.add_parser("exec", help="run a command on a test host")
    run.add_argument("run_id")
    run.add_argument("host")
    run.add_argument("command", nargs=argparse.REMAINDER)
    sub.add_parser("list", help="the rigs on this machine")
    args = parser.parse_args(argv)
    try:
        return _dispatch(args, parser)
    except (ClusterError, KeyError) as exc:
        print(f"testcluster: {exc}", file=sys.stderr)
        return 1


def _rate(text: str) -> str | None:
    if text.lower() == "none":
        return None
    try:
        return parse_rate(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _mtu(text: str) -> int:
    try:
        return parse_mtu(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _dispatch(args, parser) -> int:
    if args.action == "up":
        rig = Cluster.up(args.n, rate=args.rate, mtu=args.mtu)
        print(f"run id {rig.run_id}: {len(rig.hosts)} hosts on {rig.subnet}, links "
              f"{rig.rate or 'unshaped'}, MTU {rig.mtu}")
        for h in rig.hosts:
            print(f"  {h.name}  {h.address}  (python -m tools.testcluster exec {rig.run_id} "
                  f"{h.name} -- CMD)")
        return 0
    if args.action == "down":
        if args.all == bool(args.run_id):
            parser.error("down: give a run id or --all")
        report = sweep.remove_leftovers(all_runs=True) if args.all \
            else {args.run_id: sweep.remove(args.run_id)}
        for run_id, removed in report.items():
            print(f"removed rig {run_id}: {', '.join(removed) or 'nothing was left'}")
        return 0
    if args.action == "exec":
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            parser.error("exec: no command given")
        rig = Cluster.attach(args.run_id)
        argv = rig.command(args.host, command)
        os.execvp(argv[0], argv)
    if args.action == "list":
        for run_id in sorted(sweep.known_runs()):
            state = "alive" if sweep.owner_alive(run_id) else "stale (owner gone)"
            print(f"{run_id}  {state}  {os.path.join(system.STATE_ROOT, run_id)}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
