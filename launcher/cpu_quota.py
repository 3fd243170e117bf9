"""How many CPUs this process may really use: the affinity mask and the cgroup CPU quota.

A Kubernetes pod with `limits: cpu: 4` on a 64-core node sees all 64 cores in its affinity
mask; only the CFS quota says 4 (cgroup v2 `cpu.max` = "400000 100000", v1
`cpu.cfs_quota_us` / `cpu.cfs_period_us`). Sizing thread pools to 64 would have the kernel
throttle the pod every period. The quota of every ancestor cgroup applies, so the smallest on
the path from this process's cgroup up to the root wins. Stdlib only; `root` lets tests point
at a fabricated /proc and /sys tree.
"""
from __future__ import annotations

import math
import os

__all__ = ["cgroup_cpu_limit", "usable_cpus"]


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _cgroup_paths(root: str) -> tuple[str | None, dict[str, str]]:
    """(cgroup v2 path or None, {v1 controller: path}) of this process, from /proc/self/cgroup."""
    text = _read(os.path.join(root, "proc/self/cgroup")) or ""
    v2, v1 = None, {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            v2 = path
        for name in controllers.split(","):
            v1[name] = path
    return v2, v1


def _ancestors(base: str, path: str) -> list[str]:
    """`base/path`, then each parent directory up to `base` itself."""
    dirs = []
    rel = path.strip("/")
    while True:
        dirs.append(os.path.join(base, rel) if rel else base)
        if not rel:
            return dirs
        rel = os.path.dirname(rel)


def _v2_limit(root: str, path: str) -> float | None:
    best = None
    for d in _ancestors(os.path.join(root, "sys/fs/cgroup"), path):
        text = _read(os.path.join(d, "cpu.max"))
        if not text:
            continue
        quota, _, period = text.partition(" ")
        if quota == "max":
            continue
        try:
            cpus = int(quota) / int(period or "100000")
        except ValueError:
            continue
        best = cpus if best is None else min(best, cpus)
    return best


def _v1_limit(root: str, path: str) -> float | None:
    best = None
    for mount in ("cpu,cpuacct", "cpu", "cpuacct,cpu"):
        base = os.path.join(root, "sys/fs/cgroup", mount)
        if not os.path.isdir(base):
            continue
        for d in _ancestors(base, path):
            quota = _read(os.path.join(d, "cpu.cfs_quota_us"))
            period = _read(os.path.join(d, "cpu.cfs_period_us"))
            try:
                q, p = int(quota), int(period)
            except (TypeError, ValueError):
                continue
            if q > 0 and p > 0:
                best = q / p if best is None else min(best, q / p)
        break
    return best


def cgroup_cpu_limit(root: str = "/") -> float | None:
    """CPUs allowed by the cgroup CPU quota (e.g. 2.5), or None when there is no quota."""
    v2, v1 = _cgroup_paths(root)
    limits = []
    if v2 is not None:
        limits.append(_v2_limit(root, v2))
    if "cpu" in v1:
        limits.append(_v1_limit(root, v1["cpu"]))
    limits = [x for x in limits if x is not None]
    return min(limits) if limits else None


def usable_cpus(root: str = "/", affinity: int | None = None) -> int:
    """min(CPUs in the affinity mask, the cgroup quota rounded up), at least 1."""
    if affinity is None:
        try:
            affinity = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            affinity = os.cpu_count() or 1
    limit = cgroup_cpu_limit(root)
    if limit is not None:
        affinity = min(affinity, max(1, math.ceil(limit)))
    return max(1, affinity)
