"""The collective and rendezvous timeouts and the reporting period are settings: an argument,
else DISTTORCH_TIMEOUT / DISTTORCH_JOIN_TIMEOUT / DISTTORCH_REPORT_PERIOD, else the defaults."""
import datetime

import pytest

import disttorch.distributed as dist
from disttorch.distributed import api
from disttorch.distributed.config import (
    collective_timeout_s,
    join_timeout_s,
    report_period_s,
)
from disttorch.training.setup import setup_distributed

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def single_rank(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK",
                 "DISTTORCH_TIMEOUT", "DISTTORCH_JOIN_TIMEOUT", "DISTTORCH_REPORT_PERIOD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    yield monkeypatch
    if dist.is_initialized():
        dist.destroy_process_group()


def test_defaults_and_environment():
    assert collective_timeout_s({}) == 1800.0  # torch's default_pg_timeout
    assert collective_timeout_s({"DISTTORCH_TIMEOUT": "12.5"}) == 12.5
    assert join_timeout_s(40.0, {}) == 40.0
    assert join_timeout_s(40.0, {"DISTTORCH_JOIN_TIMEOUT": "7"}) == 7.0
    assert report_period_s({}) == 30.0
    assert report_period_s({"DISTTORCH_REPORT_PERIOD": "0.5"}) == 0.5


@pytest.mark.parametrize("value", ["soon", "0", "-3", "inf", "nan"])
def test_bad_values_name_the_variable(value):
    with pytest.raises(ValueError, match=f"DISTTORCH_TIMEOUT={value!r}"):
        collective_timeout_s({"DISTTORCH_TIMEOUT": value})
    with pytest.raises(ValueError, match=f"DISTTORCH_REPORT_PERIOD={value!r}"):
        report_period_s({"DISTTORCH_REPORT_PERIOD": value})


def test_init_process_group_takes_the_environment_unless_given(single_rank):
    single_rank.setenv("DISTTORCH_TIMEOUT", "7")
    single_rank.setenv("DISTTORCH_REPORT_PERIOD", "2")
    dist.init_process_group("zmq")
    assert api._world().timeout == 7.0
    assert api._world().report_period == 2.0
    dist.destroy_process_group()
    dist.init_process_group("zmq", timeout=datetime.timedelta(seconds=11))
    assert api._world().timeout == 11.0


def test_setup_distributed_passes_the_timeout(single_rank):
    single_rank.setenv("DISTTORCH_TIMEOUT", "7")
    assert setup_distributed(timeout=5) == (0, 1)
    assert api._world().timeout == 5.0
    dist.destroy_process_group()
    assert setup_distributed() == (0, 1)
    assert api._world().timeout == 7.0
