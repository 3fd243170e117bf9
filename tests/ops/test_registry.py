"""The op table (disttorch/ops/registry.py) is the one place ops are declared: every face it
promises exists, is the declared function, and the editor stub matches the live Tensor class."""
import numpy as np
import pytest

import disttorch as torch
import disttorch.nn.functional as F
from disttorch.ops import registry, stubgen


def test_every_row_resolves_and_no_name_is_declared_twice():
    table = registry.by_name()  # raises on a duplicate
    assert len(table) == sum(1 + len(d.aliases) for d in registry.OPS)
    for decl in registry.OPS:
        assert callable(registry.resolve(decl)), decl
        assert decl.inplace is None or decl.inplace.partition(":")[0] in registry.INPLACE_KINDS, decl


def test_function_and_alias_faces_are_the_declared_function():
    for decl in registry.OPS:
        fn = registry.resolve(decl)
        for name in (decl.name, *decl.aliases):
            if decl.function:
                assert getattr(torch, name) is fn, name
            else:
                assert name not in torch._torch_api.__all__, name
            if decl.functional:
                assert getattr(F, name) is fn, name


def test_method_and_inplace_faces_exist_for_every_name():
    for decl in registry.OPS:
        for name in (decl.name, *decl.aliases):
            assert hasattr(torch.Tensor, name) == bool(decl.method), name
            if decl.inplace:
                assert hasattr(torch.Tensor, name + "_"), name
        if decl.method is True:
            assert getattr(torch.Tensor, decl.name) is registry.resolve(decl), decl.name
        if decl.inplace:
            inplace = getattr(torch.Tensor, decl.name + "_")
            assert all(getattr(torch.Tensor, a + "_") is inplace for a in decl.aliases), decl.name


@pytest.mark.parametrize("name", ["arctan2", "fix"])
def test_alias_methods_compute_what_their_op_computes(name):
    # Two method faces the table adds that the hand-written list lacked (PyTorch has both).
    a = torch.tensor([[1.5, -2.25], [0.5, 3.0]])
    b = torch.tensor([[2.0, 1.0], [-1.0, 0.5]])
    if name == "arctan2":
        np.testing.assert_allclose(a.arctan2(b).numpy(), np.arctan2(a.numpy(), b.numpy()), rtol=1e-6)
    else:
        np.testing.assert_array_equal(a.fix().numpy(), np.trunc(a.numpy()))


def test_unknown_inplace_kind_is_refused_by_name():
    from disttorch import _tensor_methods
    bad = registry.OpDecl("exp", "pointwise", inplace="fused")
    with pytest.raises(RuntimeError, match="op 'exp': unknown in-place kind 'fused'"):
        _tensor_methods._inplace_variant(bad, torch.exp)


def test_tensor_stub_is_in_sync():
    assert stubgen.STUB_PATH.read_text() == stubgen.render(), (
        "disttorch/tensor.pyi is stale: run `python -m disttorch.ops.stubgen` and commit the result")


def test_backward_namespaces_offer_the_same_names():
    # A backward formula runs on ArrayNamespace (raw arrays) and, under create_graph=True, on
    # TensorNamespace: a name only one of them has breaks double backward.
    import pathlib
    import re

    import numpy as np

    from disttorch.ops._base import ArrayNamespace, array_namespace
    from disttorch.ops._tensor_ns import TENSOR_NS
    array_ns = array_namespace(np.zeros(1))
    assert "erf_like_unused" not in ArrayNamespace._NAMES
    for name in ArrayNamespace._NAMES:
        assert hasattr(TENSOR_NS, name), name
    ops_dir = pathlib.Path(registry.__file__).parent
    used = set()
    for path in ops_dir.glob("*.py"):
        used |= set(re.findall(r"\bns\.([a-z_0-9]+)\(", path.read_text()))
    assert len(used) > 30
    graph_only = {"erf"}  # ops/nn.py calls ns.erf only under ``if ns.graph`` (arrays take scipy's)
    for name in sorted(used):
        assert name in graph_only or hasattr(array_ns, name), f"ns.{name} is used by a backward but ArrayNamespace lacks it"
        assert hasattr(TENSOR_NS, name), f"ns.{name} is used by a backward but TensorNamespace lacks it"
