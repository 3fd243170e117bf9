"""Checkpointer: run ids, per-tensor checksums and mid-epoch resume, in one process."""
from __future__ import annotations

import numpy as np
import pytest

import disttorch as torch
import disttorch.nn as nn
import disttorch.nn.functional as F
from disttorch.training import (
    Checkpointer,
    ChecksumError,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
)
from disttorch.utils.data import DataLoader, DistributedSampler, TensorDataset


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 16)
        self.drop = nn.Dropout(0.25)  # draws from the global stream: a resumed run must draw the same
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc2(self.drop(F.relu(self.fc1(x))))


def _data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((45, 6)).astype(np.float32)
    return TensorDataset(torch.from_numpy(x), torch.from_numpy((x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)))


def _job(path, run_id, epochs=3, stop_at=None, every=2, resume=False):
    """A small training job; ``stop_at=(epoch, step)`` abandons it there (as a crash would)."""
    seed_everything(1)
    model = _Net()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.StepLR(opt, 2, 0.5)
    sampler = DistributedSampler(_data(), num_replicas=1, rank=0, seed=4)
    loader = DataLoader(_data(), batch_size=4, sampler=sampler)
    seed_everything(1, 0)
    ckpt = Checkpointer(path, model, opt, sched, loader=loader, run_id=run_id)
    start = ckpt.resume(require_same_run=True)[0] if resume else 0
    for epoch in range(start, epochs):
        sampler.set_epoch(epoch)
        for step, (x, y) in enumerate(loader, start=ckpt.start_step if epoch == start else 0):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
            if (step + 1) % every == 0:
                ckpt.save(epoch, step=step + 1)
            if (epoch, step) == stop_at:
                return None, ckpt
        sched.step()
        ckpt.save(epoch)
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}, ckpt


def test_mid_epoch_resume_ends_with_the_weights_of_an_unbroken_run(tmp_path):
    unbroken, _ = _job(tmp_path / "a.pt", "run-a")
    _job(tmp_path / "b.pt", "run-b", stop_at=(1, 6))  # last save: after step 6 of epoch 1
    resumed, ckpt = _job(tmp_path / "b.pt", "run-b", resume=True)
    assert ckpt.start_step == 6 and ckpt.resumed_from == "run-b"
    for key, value in unbroken.items():
        np.testing.assert_array_equal(resumed[key], value, err_msg=key)


def test_epoch_resume_replays_nothing_and_a_restart_skips_another_runs_checkpoint(tmp_path, capsys):
    path = tmp_path / "c.pt"
    finished, _ = _job(path, "old-run")
    # A new run at the same path crashes before its first checkpoint; its restart must not pick up
    # the finished old run's file (it would report the old run's weights as its own).
    seed_everything(1)
    fresh = _Net()
    ckpt = Checkpointer(path, fresh, run_id="new-run")
    assert ckpt.resume(require_same_run=True) == (0, {}) and ckpt.resumed_from is None
    assert "belongs to run 'old-run', not to this run 'new-run'" in capsys.readouterr().out
    assert not np.array_equal(fresh.fc1.weight.detach().numpy(), finished["fc1.weight"])
    # Asked for explicitly, the old run's checkpoint loads.
    assert ckpt.resume() == (3, {}) and ckpt.resumed_from == "old-run"
    np.testing.assert_array_equal(fresh.fc1.weight.detach().numpy(), finished["fc1.weight"])


def test_run_id_comes_from_the_launchers_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTTORCH_RUN_ID", "abc123")
    model = nn.Linear(2, 2)
    Checkpointer(tmp_path / "r.pt", model).save(0)
    assert load_checkpoint(tmp_path / "r.pt")["run_id"] == "abc123"
    assert Checkpointer(tmp_path / "r.pt", model).resume(require_same_run=True)[0] == 1
    monkeypatch.setenv("DISTTORCH_RUN_ID", "other")
    assert Checkpointer(tmp_path / "r.pt", model).resume(require_same_run=True)[0] == 0


def _flip_inside(path, array):
    """Flips one byte in the middle of ``array``'s bytes inside the file at ``path``."""
    raw = bytearray(path.read_bytes())
    needle = np.ascontiguousarray(array).tobytes()
    at = raw.find(needle)
    assert at >= 0 and raw.find(needle, at + 1) < 0, "the tensor's bytes must occur once in the file"
    raw[at + len(needle) // 2] ^= 0x10
    path.write_bytes(bytes(raw))


def test_a_flipped_byte_names_the_tensor(tmp_path):
    seed_everything(2)
    model, other = _Net(), nn.Linear(3, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(2, 6)).sum().backward()
    opt.step()
    path = tmp_path / "k.pt"
    Checkpointer(path, model, opt).save(0)
    assert Checkpointer(path, _Net()).resume()[0] == 1  # intact: loads
    _flip_inside(path, model.fc1.weight.detach().numpy())
    with pytest.raises(ChecksumError, match=r"tensor 'model\.fc1\.weight' fails its crc32 check"):
        Checkpointer(path, _Net()).resume()
    Checkpointer(path, model, opt).save(0)
    _flip_inside(path, opt.state_dict()["state"][2]["momentum_buffer"].numpy())
    with pytest.raises(ChecksumError, match=r"tensor 'optimizer\.state\.2\.momentum_buffer'"):
        load_checkpoint(path)
    save_checkpoint({"w": other.weight.detach()}, path)
    _flip_inside(path, other.weight.detach().numpy())
    with pytest.raises(ChecksumError, match=r"tensor 'w' fails"):
        load_checkpoint(path)


def test_a_step_checkpoint_needs_the_loader_to_resume(tmp_path):
    _job(tmp_path / "s.pt", "r", stop_at=(0, 1))
    with pytest.raises(ValueError, match=r"saved at step 2 of epoch 0; pass the DataLoader"):
        Checkpointer(tmp_path / "s.pt", _Net()).resume()


def test_a_tensor_changed_behind_the_formats_back_fails_its_stored_crc32(tmp_path):
    # Rewritten by a tool that keeps the file well-formed (its own CRCs recomputed): only the
    # checkpoint's per-tensor crc32 can tell.
    model = _Net()
    path = tmp_path / "t.pt"
    Checkpointer(path, model).save(0)
    state = torch.load(path, weights_only=True)
    state["model"]["fc2.bias"][1] += 1.0
    torch.save(state, path)
    with pytest.raises(ChecksumError, match=r"tensor 'model\.fc2\.bias' fails its crc32 check \(stored 0x"):
        Checkpointer(path, _Net()).resume()
