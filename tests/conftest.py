"""Fixtures shared by more than one test folder."""
import pytest


@pytest.fixture
def world1(monkeypatch):
    """A real one-rank ``zmq`` process group (no launcher variables leak in from the environment),
    destroyed after the test."""
    import disttorch.distributed as dist  # here, not at the top: this conftest is loaded for every test

    for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "DISTTORCH_SECRET"):
        monkeypatch.delenv(k, raising=False)
    dist.init_process_group("zmq", world_size=1, rank=0, timeout=10)
    yield
    dist.destroy_process_group()


@pytest.fixture
def split_parts(monkeypatch):
    """The ``parts`` of every ``_intra_op.run`` call while the test runs (the calls still run)."""
    from disttorch import _intra_op

    calls = []
    real_run = _intra_op.run

    def run(fn, parts):
        calls.append(parts)
        return real_run(fn, parts)

    monkeypatch.setattr(_intra_op, "run", run)
    return calls
