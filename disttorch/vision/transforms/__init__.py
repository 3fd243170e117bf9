"""torchvision.transforms for disttorch: image transforms for tensors, NumPy arrays and PIL images."""
from . import functional
from .functional import InterpolationMode
from .transforms import *  # noqa: F401,F403
from .transforms import __all__  # noqa: F401
