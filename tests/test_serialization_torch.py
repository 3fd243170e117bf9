"""Checkpoint files exchanged with PyTorch itself: torch.save -> disttorch.load (zip and legacy
formats) and disttorch.save -> torch.load(weights_only=True), plus hostile files."""
from __future__ import annotations

import io
import os
import pickle
import subprocess
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

import disttorch
from disttorch.serialization import (
    CheckpointError,
    add_safe_globals,
    clear_safe_globals,
    get_safe_globals,
    load,
    save,
)

torch = pytest.importorskip("torch")


def _torch_mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))


def _disttorch_mlp():
    disttorch.manual_seed(1)
    return disttorch.nn.Sequential(disttorch.nn.Linear(5, 8), disttorch.nn.ReLU(), disttorch.nn.Linear(8, 3))


X = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_a_pytorch_state_dict_loads_into_a_disttorch_model(tmp_path, zip_format):
    model = _torch_mlp()
    torch.save(model.state_dict(), tmp_path / "sd.pt", _use_new_zipfile_serialization=zip_format)
    state = load(tmp_path / "sd.pt")
    assert type(state) is OrderedDict and list(state) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert state._metadata[""] == {"version": 1}
    ours = _disttorch_mlp()
    ours.load_state_dict(state)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(ours.state_dict()[name].numpy(), value.numpy())
    want = model(torch.tensor(X)).detach().numpy()  # the matmuls' summation order may differ in the last bit
    np.testing.assert_allclose(ours(disttorch.tensor(X)).detach().numpy(), want, rtol=1e-6, atol=1e-7)


def test_a_disttorch_state_dict_loads_into_pytorch_with_weights_only(tmp_path):
    ours = _disttorch_mlp()
    save(ours.state_dict(), tmp_path / "sd.pt")
    state = torch.load(tmp_path / "sd.pt", weights_only=True)
    model = _torch_mlp()
    model.load_state_dict(state)
    for name, value in ours.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[name].numpy(), value.numpy())
    np.testing.assert_allclose(model(torch.tensor(X)).detach().numpy(), ours(disttorch.tensor(X)).detach().numpy(),
                               rtol=1e-6, atol=1e-7)


def test_every_dtype_and_layout_both_ways(tmp_path):
    rng = np.random.default_rng(2)
    base = rng.standard_normal((4, 6)) * 40
    names = ["float16", "float32", "float64", "complex64", "complex128", "uint8", "int8", "int16", "int32", "int64",
             "bool"]
    arrays = {n: (base > 0 if n == "bool" else (base + 1j * base if n.startswith("complex") else base)).astype(n)
              for n in names}
    # PyTorch -> disttorch: transposed and offset views, a view sharing its base's storage, a 0-dim, an empty
    theirs = {n: torch.from_numpy(a.copy()) for n, a in arrays.items()}
    big = torch.arange(24.0).reshape(4, 6)
    theirs.update(t=big.t(), part=big[1:, 2:5], base=big, scalar=torch.tensor(2.5), empty=torch.zeros(0, 3),
                  bf16=torch.tensor([1.5, -2.25, 3.0e38], dtype=torch.bfloat16), leaf=torch.ones(2, requires_grad=True))
    torch.save(theirs, tmp_path / "theirs.pt")
    back = load(tmp_path / "theirs.pt")
    for n, a in arrays.items():
        assert back[n].dtype.name == n
        np.testing.assert_array_equal(back[n].numpy(), a)
    for key in ("t", "part", "base", "scalar", "empty"):
        np.testing.assert_array_equal(back[key].numpy(), theirs[key].numpy())
    assert back["bf16"].dtype == disttorch.float32  # no bfloat16 here: widened exactly
    np.testing.assert_array_equal(back["bf16"].numpy(), theirs["bf16"].float().numpy())
    assert back["leaf"].requires_grad and back["leaf"].is_leaf
    back["base"][1, 3] = -1.0  # views over one storage share memory again
    assert back["t"][3, 1].item() == -1.0 and back["part"][0, 1].item() == -1.0

    # disttorch -> PyTorch
    ours = {n: disttorch.tensor(a) for n, a in arrays.items()}
    mine = disttorch.arange(24.0).reshape(4, 6)
    ours.update(t=mine.t(), part=mine[1:, 2:5], base=mine, scalar=disttorch.tensor(2.5), empty=disttorch.zeros(0, 3),
                param=disttorch.nn.Parameter(disttorch.ones(3)), size=disttorch.Size([2, 3]), dtype=disttorch.int16,
                device=disttorch.device("cpu"), raw=b"\x00\xff", numbers=(1, 2.5, 1 + 2j, 2 ** 70), names={"a", "b"})
    save(ours, tmp_path / "ours.pt")
    got = torch.load(tmp_path / "ours.pt", weights_only=True)
    for n, a in arrays.items():
        assert str(got[n].dtype) == f"torch.{n}"
        np.testing.assert_array_equal(got[n].numpy(), a)
    for key in ("t", "part", "base", "scalar", "empty"):
        np.testing.assert_array_equal(got[key].numpy(), ours[key].numpy())
    assert got["t"].untyped_storage().data_ptr() == got["base"].untyped_storage().data_ptr()
    assert isinstance(got["param"], torch.nn.Parameter) and got["param"].requires_grad
    assert got["size"] == torch.Size([2, 3]) and got["dtype"] is torch.int16 and got["device"] == torch.device("cpu")
    assert got["raw"] == b"\x00\xff" and got["numbers"] == (1, 2.5, 1 + 2j, 2 ** 70) and got["names"] == {"a", "b"}


def test_pytorch_optimizer_state_loads(tmp_path):
    model = _torch_mlp()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.tensor(X)).sum().backward()
    opt.step()
    torch.save({"model": model.state_dict(), "optim": opt.state_dict(), "epoch": 3}, tmp_path / "ckpt.pt")
    ckpt = load(tmp_path / "ckpt.pt")
    assert ckpt["epoch"] == 3 and ckpt["optim"]["param_groups"][0]["lr"] == 0.01
    np.testing.assert_array_equal(ckpt["optim"]["state"][0]["exp_avg"].numpy(), opt.state[model[0].weight]["exp_avg"])


def test_map_location_and_mmap_on_pytorch_files(tmp_path):
    torch.save({"w": torch.ones(3)}, tmp_path / "w.pt")
    seen = []
    out = load(tmp_path / "w.pt", map_location=lambda t, where: seen.append(where) or t * 2)
    assert seen == ["cpu"] and out["w"].tolist() == [2.0, 2.0, 2.0]
    mapped = load(tmp_path / "w.pt", mmap=True)["w"]
    mapped.add_(1)  # copy-on-write: the file keeps its values
    assert torch.load(tmp_path / "w.pt")["w"].tolist() == [1.0, 1.0, 1.0]
    torch.save({"w": torch.ones(3)}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    assert load(tmp_path / "old.pt", map_location=lambda t, where: t * 3)["w"].tolist() == [3.0, 3.0, 3.0]


def test_streams_without_seek_load_too():
    buf = io.BytesIO()
    torch.save([torch.arange(4)], buf)

    class Pipe(io.RawIOBase):
        def __init__(self, data):
            self.data = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, b):
            return self.data.readinto(b)

    assert load(io.BufferedReader(Pipe(buf.getvalue())))[0].tolist() == [0, 1, 2, 3]


# ---- hostile files ---------------------------------------------------------------------------------------
class RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class SpawnsAProcess:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (subprocess.call, (["touch", self.marker],))


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_a_hostile_pickle_from_pytorch_is_refused_naming_the_global(tmp_path, zip_format):
    marker = tmp_path / "pwned"
    torch.save({"w": torch.ones(2), "x": RunsACommand(str(marker))}, tmp_path / "evil.pt",
               _use_new_zipfile_serialization=zip_format)
    with pytest.raises(pickle.UnpicklingError, match="unsupported GLOBAL posix.system whose module posix is blocked"):
        load(tmp_path / "evil.pt")
    torch.save({"x": SpawnsAProcess(str(marker))}, tmp_path / "evil2.pt", _use_new_zipfile_serialization=zip_format)
    with pytest.raises(pickle.UnpicklingError, match="subprocess.call whose module subprocess is blocked"):
        load(tmp_path / "evil2.pt")
    assert not marker.exists()


def _zip_with_pickle(path, pkl, records=None):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pkl)
        for name, data in (records or {}).items():
            zf.writestr(f"archive/data/{name}", data)


def test_handcrafted_hostile_pickles_are_refused(tmp_path):
    attacks = {
        b"\x80\x02cbuiltins\neval\nX\x1f\x00\x00\x00__import__('os').system('true')\x85R.":
            "GLOBAL builtins.eval was not an allowed global",
        b"\x80\x02cbuiltins\ngetattr\n.": "GLOBAL builtins.getattr was not an allowed global",
        b"\x80\x02c__builtin__\neval\n.": "GLOBAL builtins.eval was not an allowed global",  # Python 2 spelling
        b"\x80\x04\x8c\x02os\x8c\x06system\x93.": "GLOBAL os.system whose module os is blocked",  # protocol 4
        b"\x80\x02ctorch\nSize\n)R}X\x04\x00\x00\x00evilK\x01sb.": "BUILD .* of type disttorch._size.Size",
    }
    for pkl, message in attacks.items():
        _zip_with_pickle(tmp_path / "h.pt", pkl)
        with pytest.raises(pickle.UnpicklingError, match=message):
            load(tmp_path / "h.pt")


def test_a_view_outside_its_storage_is_refused(tmp_path):
    # a FloatStorage of 2 elements with a tensor claiming 1000: must not read past the record
    pkl = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\n"
           b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x02tQK\x00M\xe8\x03\x85K\x01\x85\x89ccollections\n"
           b"OrderedDict\n)RtR.")
    _zip_with_pickle(tmp_path / "oob.pt", pkl, {"0": np.ones(2, np.float32).tobytes()})
    with pytest.raises(pickle.UnpicklingError, match="outside its storage of 2 elements"):
        load(tmp_path / "oob.pt")
    _zip_with_pickle(tmp_path / "short.pt", pkl.replace(b"M\xe8\x03", b"K\x02"), {"0": b"\x00" * 5})
    with pytest.raises(CheckpointError, match="storage of 2 float32 elements holds 5 bytes"):
        load(tmp_path / "short.pt")


# ---- whole modules and the allow-list ----------------------------------------------------------------------
def test_whole_modules_need_weights_only_false(tmp_path):
    model = disttorch.nn.Sequential(disttorch.nn.Conv2d(1, 2, 3), disttorch.nn.BatchNorm2d(2), disttorch.nn.Flatten(),
                                    disttorch.nn.Linear(32, 3))
    save(model, tmp_path / "model.pt")
    with pytest.raises(pickle.UnpicklingError,
                       match="GLOBAL disttorch.nn.modules.container.Sequential was not an allowed global"):
        load(tmp_path / "model.pt")
    again = load(tmp_path / "model.pt", weights_only=False)
    x = disttorch.randn(2, 1, 6, 6)
    model.eval()
    again.eval()
    np.testing.assert_array_equal(again(x).detach().numpy(), model(x).detach().numpy())
    again.train()
    again(x).sum().backward()  # a working module: parameters are leaves that take gradients
    assert again[3].weight.grad.shape == (3, 32)


def test_add_safe_globals_allows_a_class(tmp_path):
    save({"cfg": OrderedDict(a=1), "step": disttorch.nn.ReLU()}, tmp_path / "c.pt")
    with pytest.raises(pickle.UnpicklingError, match="activation.ReLU"):
        load(tmp_path / "c.pt")
    try:
        add_safe_globals([disttorch.nn.ReLU])
        assert disttorch.nn.ReLU in get_safe_globals()
        assert isinstance(load(tmp_path / "c.pt")["step"], disttorch.nn.ReLU)
    finally:
        clear_safe_globals()
    assert get_safe_globals() == []
    with pytest.raises(TypeError, match="callables or \\(callable, 'module.name'\\) pairs"):
        add_safe_globals([(disttorch.nn.ReLU, 3)])


def test_a_pytorch_whole_module_loads_as_the_disttorch_module(tmp_path):
    model = _torch_mlp()
    torch.save(model, tmp_path / "whole.pt")
    with pytest.raises(pickle.UnpicklingError, match="GLOBAL torch.nn.modules.container.Sequential"):
        load(tmp_path / "whole.pt")
    ours = load(tmp_path / "whole.pt", weights_only=False)  # torch.nn.X is rebuilt as disttorch.nn.X
    assert type(ours) is disttorch.nn.Sequential and type(ours[0]) is disttorch.nn.Linear
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(ours.state_dict()[name].numpy(), value.numpy())
    np.testing.assert_allclose(ours(disttorch.tensor(X)).detach().numpy(), model(torch.tensor(X)).detach().numpy(),
                               rtol=1e-6, atol=1e-7)
    ours(disttorch.tensor(X)).sum().backward()
    assert ours[2].bias.grad.shape == (3,)
