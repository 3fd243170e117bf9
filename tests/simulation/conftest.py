"""Run real jobs through `python -m disttorch_launcher` (disttorch-run) with the launcher tests' job
harness, and check none of their processes outlives the test."""
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for path in (HERE, HERE.parent / "launcher"):  # trace_checks, and the shared _launcher_jobs
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from _launcher_jobs import Job  # noqa: E402


@pytest.fixture
def job(tmp_path):
    j = Job(tmp_path)
    yield j
    j.cleanup()
