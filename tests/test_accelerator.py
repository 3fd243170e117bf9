"""torch.accelerator on this machine against PyTorch's CPU build: "no accelerator" answers; with
CuPy and a GPU, the GPU."""
import pytest

import disttorch as dt


def test_cpu_only_answers_match_torch_cpu_build():
    if dt.cuda.is_available():
        assert dt.accelerator.is_available() and dt.accelerator.current_accelerator() == dt.device("cuda")
        assert dt.accelerator.device_count() == dt.cuda.device_count()
        return
    torch = pytest.importorskip("torch")
    if torch.accelerator.is_available():
        pytest.skip("the reference PyTorch sees an accelerator")
    assert dt.accelerator.is_available() is False
    assert dt.accelerator.current_accelerator() is None
    assert dt.accelerator.device_count() == 0
    for call in ("current_device_index()", "set_device_index(0)", "synchronize()", "memory_allocated()",
                 "empty_cache()", "device_index(0).__enter__()"):
        with pytest.raises(RuntimeError) as expected:
            eval("torch.accelerator." + call)
        with pytest.raises(RuntimeError) as got:
            eval("dt.accelerator." + call)
        assert str(got.value) == str(expected.value) == "Cannot access accelerator device when none is available."
    with dt.accelerator.device_index(None):  # None: a no-op, also without an accelerator
        pass


def test_typical_device_selection_idiom():
    acc = dt.accelerator.current_accelerator()
    device = acc if acc is not None else dt.device("cpu")
    assert dt.ones(2, device=device).device == device
