"""torch.onnx: importable so that programs which mention it load; exporting is not supported.

disttorch records no graph of a model (it runs NumPy eagerly, with no tracer), so there is nothing to
serialise as ONNX; ``export`` raises a clear error instead of writing a wrong file.
"""
from __future__ import annotations

__all__ = ["OnnxExporterError", "export", "is_in_onnx_export"]


class OnnxExporterError(RuntimeError):
    """Raised by ``export``: disttorch cannot produce ONNX graphs."""


def export(model, args=(), f=None, *unused_args, **unused_kwargs):
    """Always raises OnnxExporterError: disttorch has no tracer to build an ONNX graph from."""
    raise OnnxExporterError(
        f"torch.onnx.export is not supported by disttorch: it runs NumPy eagerly and records no graph of "
        f"{type(model).__name__} to export. Export from PyTorch instead (the state_dict loads there unchanged).")


def is_in_onnx_export() -> bool:
    return False
