"""DDP's ``DISTTORCH_DDP_OVERLAP=auto``: on only with a spare core per rank, on one host and across hosts."""
import os
import types

import pytest

from disttorch.nn.parallel import _comm


def _group(hosts):
    return types.SimpleNamespace(hosts=hosts)


@pytest.fixture
def auto(monkeypatch):
    monkeypatch.delenv("DISTTORCH_DDP_OVERLAP", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)  # 2 cores
    monkeypatch.setattr(_comm, "get_num_threads", lambda: 1)
    return monkeypatch


def test_auto_across_hosts_also_needs_a_spare_core_per_rank(auto):
    # measured on the test rig (quiet): overlap cost 2-10% with 2 ranks per 2-core host at 1 Gbit
    auto.setattr(_comm, "engine", lambda group=None: _group([[0, 1], [2, 3]]))
    auto.setenv("LOCAL_WORLD_SIZE", "2")
    assert _comm.prefers_overlap(4) is False
    auto.setenv("LOCAL_WORLD_SIZE", "1")
    assert _comm.prefers_overlap(4) is True


def test_auto_on_one_host_needs_a_spare_core_per_rank(auto):
    auto.setattr(_comm, "engine", lambda group=None: _group([[0, 1]]))
    auto.setenv("LOCAL_WORLD_SIZE", "2")
    assert _comm.prefers_overlap(2) is False   # 2 ranks x (1 thread + the communication thread) > 2 cores
    auto.setenv("LOCAL_WORLD_SIZE", "1")
    assert _comm.prefers_overlap(2) is True


@pytest.mark.parametrize("value,expected", [("on", True), ("off", False)])
def test_the_variable_wins(auto, value, expected):
    auto.setenv("DISTTORCH_DDP_OVERLAP", value)
    # one host, where auto would choose the other way
    auto.setattr(_comm, "engine", lambda group=None: _group([[0, 1]]))
    auto.setenv("LOCAL_WORLD_SIZE", "2" if expected else "1")
    assert _comm.prefers_overlap(2) is expected
