"""torch.finfo / torch.iinfo report PyTorch 2.x's limits, reprs and errors for every dtype."""
import pytest
import torch

import disttorch

FLOATS = ["float16", "bfloat16", "float32", "float64", "complex64", "complex128"]
INTS = ["uint8", "int8", "int16", "int32", "int64"]


@pytest.mark.parametrize("name", FLOATS)
def test_finfo_matches_pytorch(name):
    ours, ref = disttorch.finfo(getattr(disttorch, name)), torch.finfo(getattr(torch, name))
    for attr in ("bits", "eps", "max", "min", "tiny", "smallest_normal", "resolution", "dtype"):
        assert getattr(ours, attr) == getattr(ref, attr), attr
        assert type(getattr(ours, attr)) is type(getattr(ref, attr)), attr
    assert repr(ours) == repr(ref)


@pytest.mark.parametrize("name", INTS)
def test_iinfo_matches_pytorch(name):
    ours, ref = disttorch.iinfo(getattr(disttorch, name)), torch.iinfo(getattr(torch, name))
    for attr in ("bits", "max", "min", "dtype"):
        assert getattr(ours, attr) == getattr(ref, attr), attr
    assert repr(ours) == repr(ref)


def test_finfo_default_dtype_and_equality():
    assert disttorch.finfo() == disttorch.finfo(disttorch.float32)
    assert disttorch.finfo().eps == torch.finfo().eps
    assert disttorch.finfo(disttorch.float16) != disttorch.finfo(disttorch.bfloat16)


@pytest.mark.parametrize("fn, dtype, message", [
    ("finfo", "int32", "torch.finfo() requires a floating point input type. Use torch.iinfo to handle 'torch.finfo'"),
    ("iinfo", "float32", "torch.iinfo() requires an integer input type. Use torch.finfo to handle 'torch.iinfo'"),
    ("iinfo", "bool", "torch.bool is not supported by torch.iinfo"),
])
def test_wrong_kind_raises_as_pytorch(fn, dtype, message):
    with pytest.raises(TypeError) as ref:
        getattr(torch, fn)(getattr(torch, dtype))
    assert str(ref.value) == message
    with pytest.raises(TypeError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        getattr(disttorch, fn)(getattr(disttorch, dtype))
