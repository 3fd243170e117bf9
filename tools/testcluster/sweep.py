"""Removing a rig, or what a crashed rig left behind, by its run id.

Everything a rig makes carries its run id: link names start with ``dtc<id>``, each namespace
holder process has ``DISTTORCH_TESTCLUSTER=<id>`` in its environment, and its files live in
``/run/disttorch-testcluster/<id>``. Removal therefore needs no state from the process that made
the rig: it finds the holders, kills every process inside their network namespaces (sshd, workers,
shells), deletes the links and the bridge, and removes the directory.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import time

from . import system

LINK_PREFIX = "dtc"


def link_prefix(run_id: str) -> str:
    return f"{LINK_PREFIX}{run_id}"


def holders(run_id: str | None = None) -> dict[int, str]:
    """{holder pid: run id} of the namespace holders of `run_id` (None: of every rig)."""
    found = {}
    for pid in system.all_pids():
        marker = system.environ_marker(pid)
        if marker and (run_id is None or marker == run_id):
            found[pid] = marker
    # nsenter'd commands inherit the caller's environment, never the marker, unless the caller
    # had it; keep only the processes that own a namespace of their own (the holders).
    own = system.net_namespace(os.getpid())
    return {pid: rid for pid, rid in found.items() if system.net_namespace(pid) not in (None, own)}


def processes_in(netns: str) -> list[int]:
    """Live processes (not zombies) in the network namespace `netns`."""
    return [pid for pid in system.all_pids()
            if system.net_namespace(pid) == netns and not system.is_zombie(pid)]


def remove(run_id: str) -> list[str]:
    """Remove everything of rig `run_id`; returns what was removed (for the report)."""
    removed = []
    spaces = {}
    for pid in holders(run_id):
        ns = system.net_namespace(pid)
        if ns:
            spaces[ns] = pid
    for ns, holder in spaces.items():
        victims = processes_in(ns)
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        removed.append(f"{len(victims)} process(es) of the host held by pid {holder}")
    deadline = time.monotonic() + 10.0
    for ns in spaces:
        while processes_in(ns) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = processes_in(ns)
        if left:
            raise system.ClusterError(f"processes {left} survive SIGKILL in namespace {ns}")
    prefix = link_prefix(run_id)
    # veth pairs die with their namespace; the bridge and any root-side end left are deleted here
    for name in system.link_names():
        if name.startswith(prefix):
            system.run(["ip", "link", "del", name], check=False)
            removed.append(f"link {name}")
    state_dir = os.path.join(system.STATE_ROOT, run_id)
    if os.path.isdir(state_dir):
        shutil.rmtree(state_dir, ignore_errors=True)
        removed.append(f"directory {state_dir}")
    return removed


def known_runs() -> set[str]:
    """Run ids with anything left: a state directory, a holder or a link."""
    runs = set()
    if os.path.isdir(system.STATE_ROOT):
        runs.update(d for d in os.listdir(system.STATE_ROOT)
                    if os.path.isdir(os.path.join(system.STATE_ROOT, d)))
    runs.update(holders().values())
    for name in system.link_names():
        if name.startswith(LINK_PREFIX) and len(name) > len(LINK_PREFIX) + 4:
            runs.add(name[len(LINK_PREFIX):len(LINK_PREFIX) + 4])
    return runs


def owner_alive(run_id: str) -> bool:
    """Whether the process that made rig `run_id` for itself still runs (True if none did)."""
    try:
        with open(os.path.join(system.STATE_ROOT, run_id, "state.json")) as f:
            owner = json.load(f).get("owner_pid")
    except (OSError, ValueError):
        return False  # no readable state: a crash between making and recording
    if owner is None:
        return True  # made by `up` from the command line: it lives until `down`
    try:
        os.kill(owner, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(*, all_runs: bool = False) -> dict[str, list[str]]:
    """Remove the rigs whose owner process died (all rigs with `all_runs`)."""
    report = {}
    for run_id in sorted(known_runs()):
        if all_runs or not owner_alive(run_id):
            report[run_id] = remove(run_id)
    return report
