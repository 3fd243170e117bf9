"""torchvision.transforms for disttorch: image transforms for tensors, NumPy arrays and PIL images."""
from . import functional  # noqa: F401  (transforms.functional, as torchvision)
from .functional import InterpolationMode  # noqa: F401
from .transforms import *  # noqa: F401,F403
from .transforms import __all__  # noqa: F401
