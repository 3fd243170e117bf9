"""Sequential, ModuleList, ModuleDict, ParameterList and ParameterDict behave like PyTorch's."""
from __future__ import annotations

import re
from collections import OrderedDict

import pytest

import disttorch
import disttorch.nn as dnn
from disttorch.nn import Parameter

from _nn_parity import needs_torch, torch
tnn = torch.nn if torch is not None else None


def _names(m):
    return list(m._modules.keys())


def test_sequential_indexing_slicing_and_editing():
    a, b, c = dnn.Linear(2, 3), dnn.ReLU(), dnn.Linear(3, 1)
    seq = dnn.Sequential(a, b, c)
    assert seq[0] is a and seq[-1] is c and len(seq) == 3
    sub = seq[1:]
    assert isinstance(sub, dnn.Sequential) and list(sub) == [b, c] and _names(sub) == ["1", "2"]
    with pytest.raises(IndexError, match="index 3 is out of range"):
        seq[3]
    seq.append(dnn.Tanh())
    assert _names(seq) == ["0", "1", "2", "3"]
    seq.insert(1, dnn.Sigmoid())
    assert [type(m).__name__ for m in seq] == ["Linear", "Sigmoid", "ReLU", "Linear", "Tanh"]
    del seq[1]
    assert _names(seq) == ["0", "1", "2", "3"] and seq[1] is b
    assert seq.pop(-1).__class__ is dnn.Tanh and len(seq) == 3
    seq[1] = dnn.GELU()
    assert isinstance(seq[1], dnn.GELU)
    seq.extend([dnn.ReLU()])
    assert len(seq) == 4
    out = seq(disttorch.randn(5, 2))
    assert tuple(out.shape) == (5, 1)


@needs_torch
def test_sequential_ordered_dict_names_and_operators():
    seq = dnn.Sequential(OrderedDict([("fc", dnn.Linear(2, 2)), ("act", dnn.ReLU())]))
    assert _names(seq) == ["fc", "act"] and seq.fc is seq[0]
    assert [n for n, _ in seq.named_parameters()] == ["fc.weight", "fc.bias"]
    both = seq + dnn.Sequential(dnn.Tanh())
    assert _names(both) == ["0", "1", "2"]
    assert len(seq * 2) == 4 and len(2 * seq) == 4
    with pytest.raises(ValueError, match="add operator supports only objects of Sequential class"):
        seq + [dnn.ReLU()]
    t = tnn.Sequential(OrderedDict([("fc", tnn.Linear(2, 2)), ("act", tnn.ReLU())]))
    assert repr(seq) == repr(t)


@needs_torch
def test_module_list():
    layers = dnn.ModuleList([dnn.Linear(2, 2) for _ in range(3)])
    assert len(layers) == 3 and isinstance(layers[1:], dnn.ModuleList)
    layers.append(dnn.ReLU())
    layers.extend([dnn.Tanh()])
    layers.insert(0, dnn.Sigmoid())
    assert [type(m).__name__ for m in layers] == ["Sigmoid", "Linear", "Linear", "Linear", "ReLU", "Tanh"]
    del layers[0]
    assert _names(layers) == [str(i) for i in range(5)]
    assert len(list(layers.parameters())) == 6
    layers += [dnn.ReLU()]
    assert len(layers) == 6
    with pytest.raises(IndexError, match="index 10 is out of range"):
        layers[10]
    with pytest.raises(TypeError, match="ModuleList.extend should be called with an iterable, but got Linear"):
        layers.extend(dnn.Linear(1, 1))
    t = tnn.ModuleList([tnn.Linear(2, 2), tnn.Linear(2, 2), tnn.ReLU(), tnn.Linear(2, 2)])
    d = dnn.ModuleList([dnn.Linear(2, 2), dnn.Linear(2, 2), dnn.ReLU(), dnn.Linear(2, 2)])
    assert repr(d) == repr(t)
    assert repr(dnn.ModuleList()) == "ModuleList()"


def test_module_dict():
    md = dnn.ModuleDict({"b": dnn.ReLU(), "a": dnn.Linear(1, 1)})
    assert list(md.keys()) == ["b", "a"] and "a" in md and len(md) == 2
    md["c"] = dnn.Tanh()
    md.update([("d", dnn.Sigmoid())])
    assert list(md) == ["b", "a", "c", "d"]
    assert isinstance(md.pop("b"), dnn.ReLU) and "b" not in md
    assert [n for n, _ in md.named_parameters()] == ["a.weight", "a.bias"]
    with pytest.raises(ValueError, match="ModuleDict update sequence element #0 has length 1; 2 is required"):
        md.update([("x",)])
    md.clear()
    assert len(md) == 0


@needs_torch
def test_parameter_list_and_dict():
    pl = dnn.ParameterList([Parameter(disttorch.ones(2)), disttorch.zeros(3)])
    assert all(isinstance(p, Parameter) for p in pl) and len(pl) == 2
    pl.append(disttorch.ones(1))
    assert [n for n, _ in pl.named_parameters()] == ["0", "1", "2"]
    assert isinstance(pl[1:], dnn.ParameterList) and len(pl[1:]) == 2
    with pytest.raises(RuntimeError, match="ParameterList should not be called."):
        pl(1)
    pd = dnn.ParameterDict({"w": disttorch.ones(2), "b": Parameter(disttorch.zeros(1))})
    assert list(pd.keys()) == ["b", "w"]  # plain dicts are inserted in sorted key order, as PyTorch
    assert isinstance(pd["w"], Parameter) and "w" in pd
    pd["z"] = disttorch.ones(1)
    assert [n for n, _ in pd.named_parameters()] == ["b", "w", "z"]
    assert pd.pop("z").shape == (1,) and len(pd) == 2
    assert pd.get("nope") is None and list((pd | dnn.ParameterDict({"q": disttorch.ones(1)})).keys()) == ["b", "w", "q"]
    with pytest.raises(TypeError, match="Index given to ParameterDict cannot be used as a key"):
        pd[1] = disttorch.ones(1)
    model = dnn.Module()
    model.params = pl
    assert list(model.state_dict()) == ["params.0", "params.1", "params.2"]
    t = tnn.ParameterList([tnn.Parameter(torch.ones(2)), torch.zeros(3)])
    assert re.sub(r"\bdisttorch\.", "torch.", repr(dnn.ParameterList([Parameter(disttorch.ones(2)),
                                                                       disttorch.zeros(3)]))) == repr(t)
