"""Data parallelism: ``DistributedDataParallel`` plus its communication hooks and ``Join``."""
from .distributed import DistributedDataParallel  # noqa: F401
from .join import Join, Joinable, JoinHook  # noqa: F401
from . import comm_hooks  # noqa: F401
from ._bucket import GradBucket  # noqa: F401

DDP = DistributedDataParallel
