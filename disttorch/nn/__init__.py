"""disttorch.nn: modules, layers, losses, functional ops and initialisers with PyTorch's API."""
from . import functional, init, utils  # noqa: F401
from .modules import *  # noqa: F401,F403
from .parameter import Buffer, Parameter  # noqa: F401
