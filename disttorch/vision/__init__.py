"""torchvision's role for disttorch: ``disttorch.vision.transforms``, ``.datasets``, ``.models``
and ``.utils``. Programs written for torchvision can say ``import disttorch.vision as torchvision``."""
from . import datasets, models, transforms, utils

__all__ = ["datasets", "models", "transforms", "utils"]
