"""Fixtures for the launcher tests; the job harness itself is in _launcher_jobs.py (shared with
tests/simulation)."""
import pytest

from _launcher_jobs import Job, free_port_pair


@pytest.fixture
def job(tmp_path):
    j = Job(tmp_path)
    yield j
    j.cleanup()


@pytest.fixture
def port_pair():
    return free_port_pair()
