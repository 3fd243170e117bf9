"""Merge the per-rank trace files of a job into one Chrome-trace / Perfetto file, and sum it up.

    python -m disttorch_launcher.tracemerge DIR     # what disttorch-run --trace-dir DIR does at the end

Each worker writes `DIR/ranks/rank<R>-attempt<K>.json` (`disttorch/profiler/trace.py`) with
times relative to its own origin (wall-clock ns, `otherData.origin_ns`). Merging shifts every
file onto the earliest origin, so all ranks share one time axis, keeps one `process_name`
("rank R") per rank, and writes `DIR/trace.json`: one track (process) per rank, one row per
thread (main, the communication thread, the simulated NIC), restarted attempts on the same track
later in time. Standard library only, like the rest of the launcher.
"""
from __future__ import annotations

import glob
import json
import os
import statistics
import sys

__all__ = ["merge_files", "merge_dir", "summary_lines", "category_totals"]


def _load(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise ValueError(f"trace file {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("traceEvents"), list):
        raise ValueError(f"trace file {path}: no traceEvents list")
    return data


def merge_files(paths: list[str]) -> dict:
    """One trace from several per-rank files (see the module docstring)."""
    files = [_load(p) for p in paths]
    origins = [int((f.get("otherData") or {}).get("origin_ns", 0)) for f in files]
    origin = min(origins) if origins else 0
    events, named = [], set()
    for data, own in zip(files, origins):
        shift = (own - origin) / 1000
        for ev in data["traceEvents"]:
            if ev.get("ph") == "M" and ev.get("name") in ("process_name", "process_sort_index"):
                key = (ev["name"], ev.get("pid"))
                if key in named:
                    continue
                named.add(key)
            elif "ts" in ev:
                ev = dict(ev, ts=ev["ts"] + shift)
            events.append(ev)
    meta = [f.get("otherData") or {} for f in files]
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"origin_ns": origin, "ranks": sorted({m.get("rank") for m in meta if "rank" in m}),
                          "files": [os.path.basename(p) for p in paths],
                          "dropped_events": sum(int(m.get("dropped_events", 0)) for m in meta)}}


def merge_dir(trace_dir: str) -> tuple[str, dict] | None:
    """Merges `trace_dir/ranks/*.json` into `trace_dir/trace.json`; None when there is nothing."""
    paths = sorted(glob.glob(os.path.join(trace_dir, "ranks", "rank*-attempt*.json")))
    if not paths:
        return None
    merged = merge_files(paths)
    out = os.path.join(trace_dir, "trace.json")
    tmp = f"{out}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(merged, f, separators=(",", ":"))
    os.replace(tmp, out)
    return out, merged


def category_totals(events: list[dict], window: dict | None = None) -> dict[int, dict[str, float]]:
    """Per rank (pid), microseconds per category, counting a span only when no span of its own
    category encloses it on its thread (nested module forwards are not counted twice).
    ``window`` {pid: (start, end)} keeps only the spans that start inside it."""
    by_thread: dict = {}
    for ev in events:
        if ev.get("ph") == "X":
            by_thread.setdefault((ev["pid"], ev["tid"]), []).append(ev)
    totals: dict[int, dict[str, float]] = {}
    for (pid, _), spans in by_thread.items():
        spans.sort(key=lambda e: (e["ts"], -e.get("dur", 0)))
        lo, hi = (window or {}).get(pid, (float("-inf"), float("inf")))
        stack: list[dict] = []
        out = totals.setdefault(pid, {})
        for ev in spans:
            while stack and stack[-1]["ts"] + stack[-1].get("dur", 0) <= ev["ts"]:
                stack.pop()
            cat = ev.get("cat", "")
            if lo < ev["ts"] <= hi and not any(s.get("cat") == cat for s in stack):
                out[cat] = out.get(cat, 0.0) + ev.get("dur", 0)
            stack.append(ev)
    return totals


def summary_lines(merged: dict) -> list[str]:
    """A per-rank table of the steady state: the steps after the first (between the ends of the
    first and the last optimizer step), their mean time, and the time per step spent in
    forward / backward / optimizer / collectives (on any thread). Without optimizer steps:
    totals over the whole run."""
    events = merged["traceEvents"]
    step_ends: dict[int, list[float]] = {}
    for ev in events:
        if ev.get("ph") == "X" and ev.get("cat") == "optimizer":
            step_ends.setdefault(ev["pid"], []).append(ev["ts"] + ev.get("dur", 0))
    for ends in step_ends.values():
        ends.sort()
    windows = {pid: (ends[0], ends[-1]) for pid, ends in step_ends.items() if len(ends) > 1}
    per_step = bool(windows)
    totals = category_totals(events, windows if per_step else None)
    if not totals:
        return []
    unit = "ms per step, steps after the first" if per_step else "ms in total"
    lines = [f"rank  steps  step ms   forward  backward  optimizer      comm   ({unit})"]
    comm_by_rank, step_ms = {}, []
    for pid in sorted(totals):
        t = totals[pid]
        ends = step_ends.get(pid, [])
        gaps = [b - a for a, b in zip(ends, ends[1:])]
        step = statistics.mean(gaps) / 1000 if gaps else float("nan")  # the columns add up to it
        div = 1000 * (len(gaps) if per_step and gaps else 1)
        row = [t.get(c, 0.0) / div for c in ("forward", "backward", "optimizer", "comm")]
        comm_by_rank[pid] = row[3]
        if gaps:
            step_ms.append(step)
        step_text = f"{step:>7.1f}" if gaps else f"{'-':>7}"
        lines.append(f"{pid:>4}  {len(ends):>5}  {step_text}  {row[0]:>8.1f}  {row[1]:>8.1f}  {row[2]:>9.1f}  "
                     f"{row[3]:>8.1f}")
    if per_step and step_ms and len(comm_by_rank) > 1:
        spread = max(comm_by_rank.values()) - min(comm_by_rank.values())
        if spread > 0.2 * statistics.median(step_ms):
            slow = min(comm_by_rank, key=comm_by_rank.get)
            lines.append(f"rank {slow} waits least in collectives: the others wait for it (a straggler)")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m disttorch_launcher.tracemerge TRACE_DIR", file=sys.stderr)
        return 2
    result = merge_dir(args[0])
    if result is None:
        print(f"no trace files in {os.path.join(args[0], 'ranks')}", file=sys.stderr)
        return 1
    print(f"wrote {result[0]}")
    for line in summary_lines(result[1]):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
