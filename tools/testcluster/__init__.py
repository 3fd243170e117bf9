"""A cluster of test hosts inside one Linux machine (root only).

Each test host is a network namespace on one bridge (its own address and link, shaped with
``tc ... tbf``), a UTS namespace (its own hostname) and a mount namespace (its own ``/dev/shm``,
``/etc/hosts`` and ssh client configuration), with an OpenSSH server of its own. Nothing on one
host can reach another except through the network.

    python -m tools.testcluster up 3 --rate 1gbit     # prints the run id and the hosts
    python -m tools.testcluster exec ID testhost1 -- hostname
    python -m tools.testcluster down ID                # or: down --all

From Python (the tests)::

    with Cluster.up(2, rate="1gbit") as rig:
        rig.run("testhost1", ["ssh", "testhost2", "hostname"])
"""
from .rig import Cluster, ClusterError, Host, cannot_make_namespaces
from .sweep import remove_leftovers

__all__ = ["Cluster", "ClusterError", "Host", "cannot_make_namespaces", "remove_leftovers"]
