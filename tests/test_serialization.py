"""disttorch.save / load (PyTorch's zip format by default, disttorch's earlier format still read) and the
safetensors interchange. Files exchanged with PyTorch itself: tests/test_serialization_torch.py."""
from __future__ import annotations

import builtins
import io
import os
import pickle
import pickletools
import struct
import zipfile
from collections import Counter, OrderedDict

import numpy as np
import pytest

import disttorch
from disttorch.serialization import (
    CheckpointError,
    _native,
    _zip_format,
    load,
    load_safetensors,
    safe_globals,
    save,
    save_native,
    save_safetensors,
)

ALL_DTYPES = [disttorch.float16, disttorch.float32, disttorch.float64, disttorch.complex64, disttorch.complex128,
              disttorch.uint8, disttorch.int8, disttorch.int16, disttorch.int32, disttorch.int64, disttorch.bool]


def _sample(dtype, shape=(3, 4), seed=0):
    rng = np.random.default_rng(seed)
    values = rng.standard_normal(shape) * 50
    if dtype.is_complex:
        values = values + 1j * rng.standard_normal(shape)
    if dtype is disttorch.bool:
        values = values > 0
    return disttorch.tensor(values.astype(dtype.np))


def _assert_same_tensor(a, b):
    assert isinstance(b, disttorch.Tensor)
    assert a.dtype == b.dtype and a.shape == b.shape and a.requires_grad == b.requires_grad
    np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())


def test_exported_at_top_level():
    if not hasattr(disttorch, "save"):
        pytest.skip("disttorch/__init__.py does not export save/load yet (the lead adds it)")
    assert disttorch.save is save and disttorch.load is load
    assert disttorch.save_safetensors is save_safetensors and disttorch.load_safetensors is load_safetensors


def test_round_trip_of_nested_containers_of_all_dtypes(tmp_path):
    obj = {
        "tensors": {d.name: _sample(d) for d in ALL_DTYPES},
        "shapes": [disttorch.tensor(3.5), disttorch.zeros(0, 3), _sample(disttorch.float32, (2, 3, 4)).transpose(0, 2)],
        "leaf": disttorch.ones(2, requires_grad=True),
        "ordered": OrderedDict([("b", 1), ("a", [None, True, False])]),
        "numbers": (0, -7, 2 ** 70, 1.5, float("inf"), -float("inf"), 1 + 2j),
        "strings": ["plain", "ünïcode ✓", ""],
        3: "int key", (1, "x"): "tuple key", None: "none key", 2.5: "float key",
        "misc": [b"\x00bytes", {1, 2}, frozenset({3}), Counter("aab"), disttorch.Size([2, 3]), disttorch.int16,
                 disttorch.device("cpu"), np.arange(6).reshape(2, 3), np.float32(0.25)],
    }
    save(obj, tmp_path / "all.pt")
    back = load(tmp_path / "all.pt")
    for name, t in obj["tensors"].items():
        _assert_same_tensor(t, back["tensors"][name])
    for a, b in zip(obj["shapes"], back["shapes"]):
        _assert_same_tensor(a, b)
    _assert_same_tensor(obj["leaf"], back["leaf"])
    assert back["leaf"].is_leaf and back["leaf"].requires_grad
    assert type(back["ordered"]) is OrderedDict and list(back["ordered"]) == ["b", "a"]
    assert back["ordered"] == obj["ordered"]
    assert back["numbers"] == obj["numbers"] and type(back["numbers"]) is tuple
    assert back["strings"] == obj["strings"]
    assert (back[3], back[(1, "x")], back[None], back[2.5]) == ("int key", "tuple key", "none key", "float key")
    misc = back["misc"]
    assert misc[:4] == obj["misc"][:4] and type(misc[3]) is Counter
    assert misc[4] == disttorch.Size([2, 3]) and type(misc[4]) is disttorch.Size
    assert misc[5] is disttorch.int16 and misc[6] == disttorch.device("cpu")
    np.testing.assert_array_equal(misc[7], obj["misc"][7])
    assert type(misc[8]) is np.float32 and misc[8] == 0.25
    # loaded tensors are ordinary writable tensors
    back["tensors"]["float32"].add_(1)


def test_shared_tensors_keep_identity_and_memory(tmp_path):
    base = disttorch.arange(12, dtype=disttorch.float32).reshape(3, 4)
    view = base[1:, ::2]
    save({"a": base, "again": base, "view": view, "detached": base.detach()}, tmp_path / "s.pt")
    back = load(tmp_path / "s.pt")
    assert back["a"] is back["again"]
    assert back["view"].tolist() == view.tolist()
    back["a"][2, 2] = -1.0  # the view and the detached alias see writes through the base
    assert back["view"][1, 1].item() == -1.0 and back["detached"][2, 2].item() == -1.0


def test_a_lone_small_view_of_a_big_array_is_stored_compactly(tmp_path):
    big = disttorch.zeros(1000, 1000)
    save({"row": big[3]}, tmp_path / "row.pt")
    assert os.path.getsize(tmp_path / "row.pt") < 10_000
    assert load(tmp_path / "row.pt")["row"].shape == disttorch.Size([1000])


def test_file_objects_and_mmap(tmp_path):
    buf = io.BytesIO()
    save({"w": disttorch.ones(3)}, buf)
    buf.seek(0)
    assert load(buf)["w"].tolist() == [1.0, 1.0, 1.0]

    save({"w": disttorch.ones(3)}, tmp_path / "m.pt")
    mapped = load(tmp_path / "m.pt", mmap=True)["w"]
    mapped.mul_(5)  # copy-on-write: the file keeps its values
    assert load(tmp_path / "m.pt")["w"].tolist() == [1.0, 1.0, 1.0]


def test_map_location_forms(tmp_path):
    save([disttorch.ones(2)], tmp_path / "c.pt")
    assert load(tmp_path / "c.pt", map_location="cpu")[0].device == disttorch.device("cpu")
    assert load(tmp_path / "c.pt", map_location={"cuda:0": "cpu"})[0].device.type == "cpu"
    seen = []
    out = load(tmp_path / "c.pt", map_location=lambda t, where: seen.append(where) or t * 2)
    assert seen == ["cpu"] and out[0].tolist() == [2.0, 2.0]


@pytest.mark.parametrize("fmt", ["zip", "native"])
def test_saved_cuda_location_without_cuda_is_a_torch_style_error(tmp_path, fmt):
    path = tmp_path / "g.pt"
    if fmt == "native":
        save_native([disttorch.ones(2)], path)
        _rewrite_header(path, lambda h: h["arrays"][0].update(device="cuda:0"))
    else:
        save([disttorch.ones(2)], path)
        _rewrite_zip_pickle(path, lambda pkl: pkl.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0"))
    if disttorch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="map_location=torch.device\\('cpu'\\)"):
        load(path)
    assert load(path, map_location="cpu")[0].tolist() == [1.0, 1.0]
    seen = []
    load(path, map_location=lambda t, where: seen.append(where))
    assert seen == ["cuda:0"]


def _rewrite_zip_pickle(path, edit):
    """Rewrites a zip checkpoint's data.pkl (as a GPU machine would have written it)."""
    with zipfile.ZipFile(path) as zf:
        records = {info.filename: zf.read(info) for info in zf.infolist()}
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in records.items():
            zf.writestr(name, edit(data) if name.endswith("data.pkl") else data)


def _rewrite_header(path, edit):
    """Edits a checkpoint's JSON header in place (as a GPU machine would have written it)."""
    import json
    raw = path.read_bytes()
    (hlen,) = struct.unpack("<Q", raw[8:16])
    header = json.loads(raw[16:16 + hlen])
    data = raw[_native._align(16 + hlen):]
    edit(header)
    hbytes = json.dumps(header).encode()
    prefix = _native.MAGIC + struct.pack("<Q", len(hbytes)) + hbytes
    path.write_bytes(prefix + b"\0" * (_native._align(len(prefix)) - len(prefix)) + data)


# ---- atomic writes ---------------------------------------------------------------------------------
def test_crash_mid_write_leaves_the_previous_checkpoint_and_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    save({"w": disttorch.ones(1000)}, path)
    before = path.read_bytes()
    seen_tmp = []

    def crashing_storage(zf, name, array):
        zf.fp.write(b"\x01" * 100)  # part of the data reaches the temporary file...
        seen_tmp.extend(os.listdir(tmp_path))
        raise OSError("simulated crash: disk full")  # ...then the writer dies

    monkeypatch.setattr(_zip_format, "_write_storage", crashing_storage)
    with pytest.raises(OSError, match="simulated crash"):
        save({"w": disttorch.zeros(1000)}, path)
    assert any(name.startswith(".model.pt.") and name.endswith(".tmp") for name in seen_tmp)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.pt"]
    monkeypatch.undo()
    assert load(path)["w"].tolist() == [1.0] * 1000


def test_interrupt_mid_write_also_cleans_up(tmp_path, monkeypatch):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(_zip_format, "_write_storage", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save([disttorch.ones(2)], tmp_path / "x.pt")
    assert os.listdir(tmp_path) == []


def test_new_files_get_umask_permissions_and_replacements_keep_theirs(tmp_path):
    path = tmp_path / "p.pt"
    save([1], path)
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask
    os.chmod(path, 0o600)
    save([2], path)
    assert os.stat(path).st_mode & 0o777 == 0o600 and load(path) == [2]


def test_missing_directory_is_named(tmp_path):
    with pytest.raises(RuntimeError, match="Parent directory .*nowhere does not exist"):
        save([1], tmp_path / "nowhere" / "x.pt")


# ---- damaged and foreign files -------------------------------------------------------------------------
@pytest.mark.parametrize("keep", [0, 5, 12, 40, "data", "end"])
def test_truncated_file_is_a_clear_error_naming_it(tmp_path, keep):
    path = tmp_path / "t.pt"
    save({"w": disttorch.arange(100, dtype=disttorch.float32)}, path)
    raw = path.read_bytes()
    cut = {"data": len(raw) - 200, "end": len(raw) - 3}.get(keep, keep)
    path.write_bytes(raw[:cut])
    with pytest.raises(CheckpointError, match=r"t\.pt'?: (empty file|.*truncated)"):
        load(path)


def test_truncated_stream_is_reported_too():
    buf = io.BytesIO()
    save({"w": disttorch.arange(100, dtype=disttorch.float32)}, buf)
    short = io.BytesIO(buf.getvalue()[:-150])
    with pytest.raises(CheckpointError, match="truncated"):
        load(short)


@pytest.mark.parametrize("content,what", [
    (b"PK\x03\x04" + b"\0" * 40, "zip archive"),
    (b"\x80\x04\x95" + b"\0" * 20, "pickle"),
    (struct.pack("<Q", 20) + b'{"__metadata__":{}}  ', "safetensors"),
    (b"hello world, not a checkpoint", "not a disttorch checkpoint"),
])
def test_foreign_file_is_identified(tmp_path, content, what):
    path = tmp_path / "foreign.bin"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=f"foreign.bin'?: .*{what}"):
        load(path)


def test_corrupt_header_is_reported(tmp_path):
    path = tmp_path / "c.pt"
    save_native([disttorch.ones(2)], path)
    raw = bytearray(path.read_bytes())
    raw[20] = ord("#")  # breaks the JSON
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="c.pt'?: corrupt checkpoint header"):
        load(path)


@pytest.mark.parametrize("root,message", [
    ({"$dict": [[[1, 2], "list keys are unhashable"]]}, "bad \\$dict value"),
    ({"$dict": [1, 2]}, "not a list of \\[key, value\\] pairs"),
    ({"$evil": "os.system"}, "unknown tag '\\$evil'"),
    ({"$tensor": 99}, "array index 99 out of range"),
    ({"$tuple": 5}, "\\$tuple holds int"),
])
def test_malformed_header_contents_are_reported(tmp_path, root, message):
    path = tmp_path / "m.pt"
    save_native([disttorch.ones(2)], path)
    _rewrite_header(path, lambda h: h.update(root=root))
    with pytest.raises(CheckpointError, match="m.pt'?: corrupt checkpoint: .*" + message):
        load(path)


def test_a_record_with_an_object_dtype_is_refused(tmp_path):
    path = tmp_path / "o.pt"
    save_native([disttorch.ones(2)], path)
    _rewrite_header(path, lambda h: h["arrays"][0].update(dtype="|O"))
    with pytest.raises(CheckpointError, match="dtype '\\|O' is not allowed"):
        load(path)


@pytest.mark.parametrize("cut", [31, 100, 200, -22, -3])  # header name, pickle, data, end record
def test_damaged_zip_records_are_reported(tmp_path, cut):
    path = tmp_path / "z.pt"
    save({"w": disttorch.arange(100, dtype=disttorch.float32)}, path)
    raw = bytearray(path.read_bytes())
    raw[cut] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises((CheckpointError, pickle.UnpicklingError), match=r"z\.pt"):
        load(path)


def test_the_earlier_disttorch_format_still_loads(tmp_path):
    obj = {"w": disttorch.arange(6, dtype=disttorch.float32).reshape(2, 3), "meta": OrderedDict(step=3)}
    save_native(obj, tmp_path / "old.pt")
    back = load(tmp_path / "old.pt")
    _assert_same_tensor(obj["w"], back["w"])
    assert back["meta"] == OrderedDict(step=3)


# ---- pickled objects and weights_only ---------------------------------------------------------------------
class Custom:
    def __init__(self, value):
        self.value = value


class Exploit:
    """Unpickling this creates a marker file: proof that code from the checkpoint ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


def test_weights_only_refuses_pickled_objects_with_a_clear_error(tmp_path):
    for writer in (save, save_native):
        writer({"w": disttorch.ones(2), "cfg": Custom(7)}, tmp_path / "obj.pt")
        with pytest.raises(pickle.UnpicklingError,
                           match=r"(?s)Weights only load failed for .*obj\.pt.*weights_only.*Unsupported global: GLOBAL "
                                 r"test_serialization\.Custom was not an allowed global by default"):
            load(tmp_path / "obj.pt")
        back = load(tmp_path / "obj.pt", weights_only=False)
        assert back["cfg"].value == 7 and back["w"].tolist() == [1.0, 1.0]
        with safe_globals([Custom]):  # allow-listed: rebuilt under weights_only
            assert load(tmp_path / "obj.pt")["cfg"].value == 7
        with pytest.raises(pickle.UnpicklingError, match="Custom"):
            load(tmp_path / "obj.pt")  # the allow-list ends with the block


@pytest.mark.parametrize("writer", [save, save_native])
def test_weights_only_never_runs_code_from_the_file(tmp_path, writer):
    marker = tmp_path / "pwned"
    writer({"x": Exploit(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(pickle.UnpicklingError, match="GLOBAL (io|builtins).open was not an allowed global"):
        load(tmp_path / "evil.pt")
    assert not marker.exists()


def test_plain_state_names_only_pytorchs_globals(tmp_path):
    save({"a": [disttorch.ones(2)], "b": {"lr": 0.1, "betas": (0.9, 0.999)}, "p": disttorch.nn.Parameter(
        disttorch.zeros(3)), "d": disttorch.int8}, tmp_path / "plain.pt")
    with zipfile.ZipFile(tmp_path / "plain.pt") as zf:
        pkl = zf.read("archive/data.pkl")
        names = sorted(zf.namelist())
    globals_named = {arg for op, arg, _ in pickletools.genops(pkl) if op.name == "GLOBAL"}
    assert globals_named == {"torch._utils _rebuild_tensor_v2", "torch._utils _rebuild_parameter", "torch FloatStorage",
                             "collections OrderedDict", "torch int8"}
    assert names == ["archive/.data/serialization_id", "archive/.format_version", "archive/.storage_alignment",
                     "archive/byteorder", "archive/data.pkl", "archive/data/0", "archive/data/1", "archive/version"]
    save_native({"b": {"lr": 0.1}}, tmp_path / "native.pt")
    assert b'"pickles":[]' in (tmp_path / "native.pt").read_bytes()


def test_storage_records_are_64_byte_aligned(tmp_path):
    save({"w": disttorch.ones(5), "v": disttorch.zeros(7, dtype=disttorch.float64)}, tmp_path / "a.pt")
    with open(tmp_path / "a.pt", "rb") as fh, zipfile.ZipFile(fh) as zf:
        for info in zf.infolist():
            if "/data/" in info.filename:
                assert _zip_format._data_offset(zf, info) % 64 == 0


def test_unpicklable_unsupported_object_names_its_type(tmp_path):
    with pytest.raises(TypeError, match="cannot store an object of type builtins.function"):
        save({"f": lambda x: x}, tmp_path / "f.pt")
    assert os.listdir(tmp_path) == []


# ---- safetensors interchange with PyTorch -----------------------------------------------------------------
def _mlp_forward(state, x):
    """A 2-layer MLP written with disttorch ops (no nn needed): relu(x W1^T + b1) W2^T + b2."""
    h = (x @ state["0.weight"].t() + state["0.bias"]).relu()
    return h @ state["2.weight"].t() + state["2.bias"]


def test_pytorch_state_dict_loads_into_disttorch_with_the_same_outputs(tmp_path):
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    st.save_file(model.state_dict(), str(tmp_path / "torch.safetensors"), metadata={"from": "torch"})
    state = load_safetensors(tmp_path / "torch.safetensors")
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    want = model(torch.tensor(x)).detach().numpy()
    got = _mlp_forward(state, disttorch.tensor(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    state["0.bias"].add_(1)  # loaded tensors are writable


def test_disttorch_state_dict_loads_into_pytorch_with_the_same_outputs(tmp_path):
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    rng = np.random.default_rng(1)
    state = {"0.weight": disttorch.tensor(rng.standard_normal((8, 5)).astype(np.float32)).t().contiguous().t(),
             "0.bias": disttorch.tensor(rng.standard_normal(8).astype(np.float32)),
             "2.weight": disttorch.tensor(rng.standard_normal((3, 8)).astype(np.float32)),
             "2.bias": disttorch.tensor(rng.standard_normal(3).astype(np.float32))}
    save_safetensors(state, tmp_path / "ours.safetensors", metadata={"epoch": "3"})
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    model.load_state_dict(st.load_file(str(tmp_path / "ours.safetensors")))
    x = rng.standard_normal((4, 5)).astype(np.float32)
    want = model(torch.tensor(x)).detach().numpy()
    np.testing.assert_allclose(_mlp_forward(state, disttorch.tensor(x)).numpy(), want, rtol=1e-5, atol=1e-6)
    from safetensors import safe_open
    with safe_open(str(tmp_path / "ours.safetensors"), framework="np") as f:
        assert f.metadata() == {"epoch": "3"}


def test_safetensors_dtypes_round_trip_and_bf16_widens(tmp_path):
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    state = {d.name: _sample(d) for d in ALL_DTYPES if d is not disttorch.complex128}
    save_safetensors(state, tmp_path / "d.safetensors")
    back = load_safetensors(tmp_path / "d.safetensors")
    for name, t in state.items():
        _assert_same_tensor(t, back[name])
    st.save_file({"h": torch.tensor([1.5, -2.25, 3.0e38], dtype=torch.bfloat16)}, str(tmp_path / "bf.safetensors"))
    h = load_safetensors(tmp_path / "bf.safetensors")["h"]
    assert h.dtype == disttorch.float32
    np.testing.assert_array_equal(h.numpy(), torch.tensor([1.5, -2.25, 3.0e38], dtype=torch.bfloat16).float().numpy())


def test_safetensors_errors(tmp_path, monkeypatch):
    pytest.importorskip("safetensors")
    with pytest.raises(TypeError, match="safetensors holds only tensors, but 'n' is a int"):
        save_safetensors({"n": 3}, tmp_path / "x.safetensors")
    with pytest.raises(TypeError, match="no complex128"):
        save_safetensors({"c": _sample(disttorch.complex128)}, tmp_path / "x.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        load_safetensors(tmp_path / "junk.safetensors")
    assert sorted(os.listdir(tmp_path)) == ["junk.safetensors"]

    real_import = builtins.__import__

    def no_safetensors(name, *args, **kwargs):
        if name.startswith("safetensors"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_safetensors)
    with pytest.raises(ImportError, match="pip install safetensors"):
        save_safetensors({"w": disttorch.ones(2)}, tmp_path / "y.safetensors")
