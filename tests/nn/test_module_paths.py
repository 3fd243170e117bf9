"""PyTorch's full module paths (torch.nn.modules.<file>.<Class>) import under disttorch with the
same class names, for every class disttorch has."""
import importlib
import inspect

import pytest

from disttorch import nn

PATHS = ["activation", "linear", "conv", "loss", "container", "module", "batchnorm", "normalization", "transformer",
         "rnn", "sparse", "dropout", "pooling", "flatten", "pixelshuffle"]


@pytest.mark.parametrize("path", PATHS)
def test_module_path_exports_torchs_class_names(path):
    pytest.importorskip("torch")
    tmod = importlib.import_module(f"torch.nn.modules.{path}")
    dmod = importlib.import_module(f"disttorch.nn.modules.{path}")
    names = [n for n, v in vars(tmod).items() if inspect.isclass(v) and v.__module__ == tmod.__name__
             and not n.startswith("_") and hasattr(nn, n)]
    for n in names:
        assert getattr(dmod, n) is getattr(nn, n), f"disttorch.nn.modules.{path}.{n}"


def test_names_pytorch_programs_import():
    from disttorch.nn.modules.activation import MultiheadAttention
    from disttorch.nn.modules.batchnorm import BatchNorm2d, _BatchNorm
    from disttorch.nn.modules.linear import NonDynamicallyQuantizableLinear
    assert MultiheadAttention is nn.MultiheadAttention
    assert issubclass(BatchNorm2d, _BatchNorm)
    assert isinstance(nn.MultiheadAttention(4, 2).out_proj, NonDynamicallyQuantizableLinear)
