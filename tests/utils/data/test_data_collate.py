"""default_collate / default_convert, checked against PyTorch's where it is installed."""
import collections

import numpy as np
import pytest

import disttorch
from disttorch.utils.data import default_collate, default_convert

Point = collections.namedtuple("Point", "x y")


def test_tensors_are_stacked():
    out = default_collate([disttorch.tensor([1.0, 2.0]), disttorch.tensor([3.0, 4.0])])
    assert isinstance(out, disttorch.Tensor)
    assert out.dtype is disttorch.float32
    assert out.numpy().tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_numbers_strings_arrays():
    assert default_collate([1, 2, 3]).dtype is disttorch.int64
    floats = default_collate([0.5, 1.5])
    assert floats.dtype is disttorch.float64 and floats.numpy().tolist() == [0.5, 1.5]
    assert default_collate([True, False]).dtype is disttorch.bool
    assert default_collate(["a", "b"]) == ["a", "b"]
    arrays = default_collate([np.zeros((2, 2), np.uint8), np.ones((2, 2), np.uint8)])
    assert arrays.dtype is disttorch.uint8 and arrays.shape == (2, 2, 2)
    scalars = default_collate([np.float32(1.5), np.float32(2.5)])
    assert scalars.dtype is disttorch.float32 and scalars.numpy().tolist() == [1.5, 2.5]


def test_nested_structures():
    batch = [{"img": np.full((2,), i, np.float32), "meta": (i, f"s{i}"), "p": Point(i, 2.0 * i)}
             for i in range(3)]
    out = default_collate(batch)
    assert set(out) == {"img", "meta", "p"}
    assert out["img"].numpy().tolist() == [[0, 0], [1, 1], [2, 2]]
    assert isinstance(out["meta"], list)  # tuples come back as lists, as in PyTorch
    assert out["meta"][0].numpy().tolist() == [0, 1, 2] and out["meta"][1] == ("s0", "s1", "s2")  # torch returns the zipped tuple
    assert isinstance(out["p"], Point)
    assert out["p"].y.numpy().tolist() == [0.0, 2.0, 4.0]


def test_errors_name_the_problem():
    with pytest.raises(RuntimeError, match=r"stack expects each tensor to be equal size, but got \[2\] at entry 0 and \[3\] at entry 1"):
        default_collate([disttorch.zeros(2), disttorch.zeros(3)])
    with pytest.raises(RuntimeError, match="each element in list of batch should be of equal size"):
        default_collate([[1, 2], [3]])
    with pytest.raises(TypeError, match="default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found <class 'object'>"):
        default_collate([object(), object()])
    with pytest.raises(TypeError, match="found <U1"):
        default_collate([np.array(["a"]), np.array(["b"])])


def test_mixed_dtypes_promote_like_torch():
    out = default_collate([disttorch.tensor([1], dtype=disttorch.int64), disttorch.tensor([0.5])])
    assert out.dtype is disttorch.float32 and out.numpy().tolist() == [[1.0], [0.5]]


def test_default_convert():
    out = default_convert({"a": np.arange(3), "b": (np.float64(2.0), "x"), "c": 5})
    assert isinstance(out["a"], disttorch.Tensor) and out["a"].numpy().tolist() == [0, 1, 2]
    assert isinstance(out["b"], list) and out["b"][0].dtype is disttorch.float64 and out["b"][1] == "x"
    assert out["c"] == 5
    strings = np.array(["a"])
    assert default_convert(strings) is strings


def _to_plain(obj):
    """Tensors of either library as (dtype name, values), containers recursively."""
    if hasattr(obj, "numpy") and hasattr(obj, "dtype"):
        return str(obj.dtype).split(".")[-1], obj.numpy().tolist()
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj).__name__, [_to_plain(v) for v in obj]
    return obj


def test_same_result_as_torch():
    pytest.importorskip("torch")
    from torch.utils.data import default_collate as torch_collate

    batch = [{"x": np.arange(4, dtype=np.float32).reshape(2, 2) + i, "y": i, "w": 0.5 * i, "name": f"n{i}",
              "pair": (np.int64(i), [i, i + 1]), "flag": i % 2 == 0} for i in range(3)]
    ours = _to_plain(default_collate(batch))
    theirs = _to_plain(torch_collate(batch))
    assert ours == theirs


class _Tagged(dict):
    """A mutable mapping with an attribute of its own (like a BatchEncoding)."""
    tag = None


class _Fixed(collections.abc.Mapping):
    """A read-only mapping whose type cannot be called on a dict: it comes back as a plain dict."""

    def __init__(self, **items):
        self._items = items

    def __getitem__(self, key):
        return self._items[key]

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)


class _Frozen(collections.abc.Sequence):
    """A read-only sequence rebuilt by calling its type on a list."""

    def __init__(self, items):
        self._items = list(items)

    def __getitem__(self, i):
        return self._items[i]

    def __len__(self):
        return len(self._items)


def _plain_typed(obj):
    """Like _to_plain, but keeping each container's type name (what the rebuild rules decide)."""
    if hasattr(obj, "numpy") and hasattr(obj, "dtype"):
        return str(obj.dtype).split(".")[-1], obj.numpy().tolist()
    if isinstance(obj, collections.abc.Mapping):
        return type(obj).__name__, getattr(obj, "tag", None), {k: _plain_typed(obj[k]) for k in obj}
    if isinstance(obj, collections.abc.Sequence) and not isinstance(obj, str):
        return type(obj).__name__, [_plain_typed(v) for v in obj]
    return obj


def test_containers_are_rebuilt_as_torch_rebuilds_them():
    torch_data = pytest.importorskip("torch.utils.data")

    def tagged(i):
        t = _Tagged(v=np.float32(i))
        t.tag = "kept"
        return t

    batch = [{"tagged": tagged(i), "fixed": _Fixed(a=i), "frozen": _Frozen([i, 2 * i]),
              "userlist": collections.UserList([np.int64(i), 1.5])} for i in range(3)]
    ours, theirs = default_collate(batch), torch_data.default_collate(batch)
    assert _plain_typed(ours) == _plain_typed(theirs)
    assert type(ours["tagged"]) is _Tagged and ours["tagged"].tag == "kept"
    assert type(ours["fixed"]) is dict and type(ours["frozen"]) is _Frozen
    sample = batch[0]
    assert _plain_typed(default_convert(sample)) == _plain_typed(torch_data.default_convert(sample))
