"""backend.py: both engines implement the interface api.py uses, and groups resolve through it."""
import pytest

import disttorch.distributed as dist
from disttorch.distributed.api import resolve_group
from disttorch.distributed.backend import CollectiveBackend
from disttorch.distributed.nccl import NcclProcessGroup
from disttorch.distributed.process_group import ProcessGroup


def test_both_engines_implement_every_method_and_impersonate_nothing():
    for engine in (ProcessGroup, NcclProcessGroup):
        assert issubclass(engine, CollectiveBackend)
        assert engine.__abstractmethods__ == frozenset(), engine
        assert "__getattr__" not in vars(engine), engine  # no attribute forwarding to another object
    assert NcclProcessGroup.device_arrays and not ProcessGroup.device_arrays


def test_an_incomplete_engine_cannot_be_created():
    class Half(CollectiveBackend):
        def rank(self):
            return 0

    with pytest.raises(TypeError, match="abstract"):
        Half()


def test_resolve_group_gives_the_world_engine_and_refuses_other_objects(world1):
    world = resolve_group(None)
    assert isinstance(world, ProcessGroup) and resolve_group(dist.group.WORLD) is world
    assert world.host() is world and world.backend == "zmq" and world.timeout == 10
    assert (world.rank(), world.size(), world.global_ranks, world.describe_rank(0)) == (0, 1, [0], "rank 0")
    assert resolve_group(dist.GroupMember.NON_GROUP_MEMBER) is None
    with pytest.raises(TypeError, match="group must be a ProcessGroup from new_group\\(\\), got str"):
        resolve_group("world")
