"""PyTorch's module path ``torch.nn.modules.batchnorm``: the batch-norm layers (defined in
normalization.py and syncbatchnorm.py) under the names PyTorch code imports them by."""
from .normalization import BatchNorm1d, BatchNorm2d, BatchNorm3d, _NormBase
from .syncbatchnorm import SyncBatchNorm

_BatchNorm = _NormBase  # PyTorch's base of BatchNorm1d/2d/3d (isinstance checks in user code)

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm"]
