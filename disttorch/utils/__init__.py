"""torch.utils's role: ``disttorch.utils.data`` holds the datasets, samplers and the DataLoader.

``data`` is imported on first use rather than here, so ``import disttorch`` stays cheap and the
tensor core may import ``disttorch.utils`` without pulling in multiprocessing.
"""
import importlib

__all__ = ["data", "tensorboard"]


def __getattr__(name):
    if name in ("data", "tensorboard"):
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'disttorch.utils' has no attribute {name!r}")
