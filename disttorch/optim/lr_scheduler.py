"""Learning-rate schedulers (``torch.optim.lr_scheduler``): PyTorch's formulas, ``last_epoch``
and ``initial_lr`` semantics and state-dict layout. The base class lives in ``_lr_base``; the
schedules are grouped by family in ``_lr_decay``, ``_lr_cyclic``, ``_lr_plateau`` and
``_lr_compose``."""
from ._lr_base import EPOCH_DEPRECATION_WARNING, LRScheduler, _LRScheduler  # noqa: F401
from ._lr_compose import ChainedScheduler, SequentialLR  # noqa: F401
from ._lr_cyclic import CosineAnnealingWarmRestarts, CyclicLR, OneCycleLR  # noqa: F401
from ._lr_decay import (  # noqa: F401
    ConstantLR, CosineAnnealingLR, ExponentialLR, LambdaLR, LinearLR, MultiplicativeLR, MultiStepLR, PolynomialLR,
    StepLR)
from ._lr_plateau import ReduceLROnPlateau  # noqa: F401
from .optimizer import Optimizer  # noqa: F401

__all__ = ["LambdaLR", "MultiplicativeLR", "StepLR", "MultiStepLR", "ConstantLR", "LinearLR", "ExponentialLR",
           "SequentialLR", "CosineAnnealingLR", "ChainedScheduler", "ReduceLROnPlateau", "CyclicLR",
           "CosineAnnealingWarmRestarts", "OneCycleLR", "PolynomialLR", "LRScheduler"]
