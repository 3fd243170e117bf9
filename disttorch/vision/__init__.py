"""torchvision's role for disttorch: ``disttorch.vision.transforms`` and ``disttorch.vision.datasets``."""
from . import datasets, transforms

__all__ = ["datasets", "transforms"]
