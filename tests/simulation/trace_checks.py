"""What every trace file must satisfy: valid Chrome-trace JSON, one named track per rank, complete
events with non-negative durations, and spans on one thread that nest (never partly overlap)."""
import json
import math

EPS_US = 0.01  # times are ns / 1000 in float: allow rounding in the last digits


def check_chrome_trace(data, ranks):
    """Asserts the properties above; returns the complete ("X") events."""
    data = json.loads(json.dumps(data))  # strictly JSON (no NaN, no non-string keys)
    events = data["traceEvents"]
    assert isinstance(events, list) and events
    names = {}
    for ev in events:
        assert ev["ph"] in ("X", "M", "i"), ev
        if ev["ph"] == "M" and ev["name"] == "process_name":
            assert ev["pid"] not in names, f"two process_name events for pid {ev['pid']}"
            names[ev["pid"]] = ev["args"]["name"]
    assert names == {r: f"rank {r}" for r in ranks}, names
    spans = [e for e in events if e["ph"] == "X"]
    assert {e["pid"] for e in spans} == set(ranks)
    by_thread = {}
    for e in spans:
        assert isinstance(e["name"], str) and e["cat"], e
        assert math.isfinite(e["ts"]) and e["dur"] >= 0, e
        by_thread.setdefault((e["pid"], e["tid"]), []).append(e)
    for key, group in by_thread.items():
        group.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack = []
        for e in group:
            while stack and stack[-1]["ts"] + stack[-1]["dur"] <= e["ts"] + EPS_US:
                stack.pop()
            if stack:
                parent = stack[-1]
                assert e["ts"] + e["dur"] <= parent["ts"] + parent["dur"] + EPS_US, \
                    f"on {key}: {e['name']} {e['ts']}+{e['dur']} overlaps {parent['name']} " \
                    f"{parent['ts']}+{parent['dur']}"
            stack.append(e)
    return spans


def parent_of(spans, child):
    """The innermost span on the child's thread that encloses it (None at top level)."""
    best = None
    for e in spans:
        if e is child or (e["pid"], e["tid"]) != (child["pid"], child["tid"]):
            continue
        if e["ts"] - EPS_US <= child["ts"] and child["ts"] + child["dur"] <= e["ts"] + e["dur"] + EPS_US:
            if e["dur"] >= child["dur"] and (best is None or e["dur"] < best["dur"]):
                best = e
    return best
