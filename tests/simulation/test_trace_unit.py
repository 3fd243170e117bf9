"""The span recorder and the trace merge, in one process."""
import json
import threading

import pytest

import disttorch as torch
import disttorch.nn as nn
from disttorch import profiler
from disttorch.profiler import trace
from disttorch_launcher.tracemerge import category_totals, merge_dir, merge_files, summary_lines
from trace_checks import check_chrome_trace


@pytest.fixture
def traced(tmp_path, monkeypatch):
    monkeypatch.delenv(trace.ENV_OWNER, raising=False)
    assert not trace.ACTIVE
    assert profiler.enable(str(tmp_path), rank=3)
    try:
        yield tmp_path
    finally:
        profiler.disable()
    assert not trace.ACTIVE


def test_spans_are_free_when_off():
    assert trace.span("x", "y") is trace.span("z", "w")  # one shared no-op object
    with trace.span("x"), profiler.record_function("y"):
        pass
    trace.instant("nothing")


def test_model_backward_and_step_become_nested_spans(traced):
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 1)))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with profiler.record_function("step 0"):
        model(torch.randn(2, 4)).sum().backward()
        opt.step()

    def other():
        with trace.span("elsewhere", "user"):
            pass
    t = threading.Thread(target=other, name="helper")
    t.start()
    t.join()
    path = trace.flush()
    data = json.loads(open(path).read())
    assert path.endswith("ranks/rank3-attempt0.json")
    spans = check_chrome_trace(data, ranks=[3])
    names = [(e["name"], e["cat"]) for e in spans]
    for want in [("Sequential", "forward"), ("Linear", "forward"), ("ReLU", "forward"),
                 ("backward", "backward"), ("SGD.step", "optimizer"), ("step 0", "user"), ("elsewhere", "user")]:
        assert want in names, (want, names)
    # depth limit 3: the inner Sequential's Linears are the third level, still recorded
    assert names.count(("Linear", "forward")) == 3
    threads = {e["args"]["name"] for e in data["traceEvents"] if e["name"] == "thread_name"}
    assert threads == {"main", "helper"}


def test_merge_puts_ranks_on_one_time_axis(tmp_path):
    files = []
    for rank, origin in ((0, 5_000_000), (1, 2_000_000)):
        data = {"traceEvents": [
            {"ph": "M", "name": "process_name", "pid": rank, "tid": 0, "args": {"name": f"rank {rank}"}},
            {"ph": "X", "name": "SGD.step", "cat": "optimizer", "pid": rank, "tid": 0, "ts": 10.0, "dur": 5.0},
            {"ph": "X", "name": "SGD.step", "cat": "optimizer", "pid": rank, "tid": 0, "ts": 110.0, "dur": 5.0},
            {"ph": "X", "name": "SGD.step", "cat": "optimizer", "pid": rank, "tid": 0, "ts": 210.0, "dur": 5.0},
            {"ph": "X", "name": "all_reduce", "cat": "comm", "pid": rank, "tid": 1, "ts": 150.0, "dur": 40.0}],
            "otherData": {"rank": rank, "origin_ns": origin}}
        (tmp_path / "ranks").mkdir(exist_ok=True)
        path = tmp_path / "ranks" / f"rank{rank}-attempt0.json"
        path.write_text(json.dumps(data))
        files.append(str(path))
    merged = merge_files(files)
    ts = {(e["pid"], e["ts"]) for e in merged["traceEvents"] if e["ph"] == "X" and e["cat"] == "comm"}
    assert ts == {(0, 150.0 + 3000.0), (1, 150.0)}  # rank 0 started 3 ms after rank 1
    out, again = merge_dir(str(tmp_path))
    assert json.loads(open(out).read()) == again
    check_chrome_trace(again, ranks=[0, 1])
    totals = category_totals(again["traceEvents"])
    assert totals[0]["comm"] == 40.0 and totals[1]["optimizer"] == 15.0
    lines = summary_lines(again)
    assert lines[1].split()[:3] == ["0", "3", "0.1"]  # 3 steps, 100 us apart
