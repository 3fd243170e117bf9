"""disttorch.nn: modules, layers, losses, functional ops and initialisers with PyTorch's API."""
from . import functional, init, utils  # noqa: F401
from .modules import *  # noqa: F401,F403
from .parameter import Buffer, Parameter  # noqa: F401


def __getattr__(name):
    # nn.parallel pulls in disttorch.distributed (ZeroMQ); import it on first use so that
    # `import disttorch` stays light for single-process users.
    if name == "parallel":
        import importlib
        return importlib.import_module(".parallel", __name__)
    raise AttributeError(f"module 'disttorch.nn' has no attribute '{name}'")
