"""torch.backends flags and queries, and torch.onnx's clear refusal, against PyTorch's CPU build."""
import pytest

import disttorch as dt


def test_cudnn_flags_are_writable_with_torchs_defaults():
    torch = pytest.importorskip("torch")
    for name in ("enabled", "benchmark", "deterministic"):
        assert getattr(dt.backends.cudnn, name) == getattr(torch.backends.cudnn, name), name
    dt.backends.cudnn.benchmark = True
    try:
        assert dt.backends.cudnn.benchmark is True
        with dt.backends.cudnn.flags(enabled=False, deterministic=True):
            assert not dt.backends.cudnn.enabled and dt.backends.cudnn.deterministic
        assert dt.backends.cudnn.enabled and dt.backends.cudnn.benchmark
    finally:
        dt.backends.cudnn.benchmark = False
    if not dt.cuda.is_available():
        assert dt.backends.cudnn.is_available() is False and dt.backends.cudnn.version() is None


def test_mps_and_others_answer_like_torch_on_linux():
    torch = pytest.importorskip("torch")
    assert dt.backends.mps.is_available() is torch.backends.mps.is_available() is False
    assert dt.backends.mps.is_built() is False
    assert dt.backends.cpu.get_cpu_capability() in ("AVX512", "AVX2", "DEFAULT")
    dt.backends.cuda.matmul.allow_tf32 = True
    assert dt.backends.cuda.matmul.allow_tf32
    dt.backends.cuda.matmul.allow_tf32 = False


def test_onnx_importable_and_export_refuses_clearly(tmp_path):
    import disttorch.onnx
    assert disttorch.onnx.is_in_onnx_export() is False
    with pytest.raises(disttorch.onnx.OnnxExporterError, match="torch.onnx.export is not supported by disttorch"):
        disttorch.onnx.export(dt.nn.Linear(2, 2), dt.ones(1, 2), str(tmp_path / "m.onnx"))
    assert not (tmp_path / "m.onnx").exists()
