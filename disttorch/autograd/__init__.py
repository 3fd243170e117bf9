"""disttorch.autograd: the engine (``backward``, ``grad``), grad modes, custom Functions,
``functional.jacobian`` and ``gradcheck``."""
from . import functional  # noqa: F401
from .engine import backward, grad  # noqa: F401
from .function import Function, FunctionCtx  # noqa: F401
from .gradcheck import GradcheckError, gradcheck, gradgradcheck  # noqa: F401
from .grad_mode import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled  # noqa: F401
from .node import Node  # noqa: F401


class _Anomaly:
    enabled = False


def set_detect_anomaly(mode: bool, check_nan: bool = True):
    """Accepted for compatibility; disttorch's errors already name the failing op."""
    _Anomaly.enabled = bool(mode)


def is_anomaly_enabled() -> bool:
    return _Anomaly.enabled


class detect_anomaly:
    def __init__(self, check_nan=True):
        self.prev = _Anomaly.enabled

    def __enter__(self):
        _Anomaly.enabled = True

    def __exit__(self, *exc):
        _Anomaly.enabled = self.prev
        return False
