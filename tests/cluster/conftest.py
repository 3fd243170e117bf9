"""Fixtures for the tests that run on test hosts made inside this machine (tools/testcluster).

One rig per test module (2 hosts, 1 Gbit links); every test leaves it as it found it, and the
module checks that `down` leaves nothing. Skipped only where namespaces cannot be made.
"""
from __future__ import annotations

import os

import pytest
from _cluster_jobs import Jobs

from tools.testcluster import Cluster, cannot_make_namespaces


@pytest.fixture(scope="module")
def rig():
    reason = cannot_make_namespaces()
    if reason:
        pytest.skip(reason)
    cluster = Cluster.up(2, rate="1gbit", owner_pid=os.getpid())
    try:
        yield cluster
    finally:
        cluster.down()
    assert cluster.leftovers() == [], f"the rig left {cluster.leftovers()}"


@pytest.fixture
def jobs(rig):
    j = Jobs(rig)
    yield j
    j.cleanup()
