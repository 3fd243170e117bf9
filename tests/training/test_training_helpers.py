"""Seeding, RNG state capture, metrics and checkpoint files: alone, then across two ranks."""
from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

import disttorch as torch
from disttorch.training import MetricsLogger, all_reduce_mean, get_rng_states, rank_seed, seed_everything
from disttorch.training import load_checkpoint, save_checkpoint, set_rng_states


def test_rank_streams_differ_and_repeat():
    assert rank_seed(0, 0) != rank_seed(0, 1)
    assert rank_seed(3, 1) == rank_seed(3, 1)
    seed_everything(5, rank=1)
    a = torch.rand(4).numpy()
    seed_everything(5, rank=1)
    np.testing.assert_array_equal(a, torch.rand(4).numpy())
    seed_everything(5, rank=0)
    assert not np.array_equal(a, torch.rand(4).numpy())


def test_private_generators_roundtrip():
    gens = {"np": np.random.default_rng(1), "legacy": np.random.RandomState(2), "dt": torch.Generator()}
    states = get_rng_states(gens)
    first = (gens["np"].random(3), gens["legacy"].rand(3), torch.rand(3, generator=gens["dt"]).numpy())
    set_rng_states(states, gens)
    again = (gens["np"].random(3), gens["legacy"].rand(3), torch.rand(3, generator=gens["dt"]).numpy())
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_rng_states_roundtrip():
    seed_everything(1)
    states = get_rng_states()
    a = (torch.rand(3).numpy(), np.random.rand(3))
    set_rng_states(states)
    b = (torch.rand(3).numpy(), np.random.rand(3))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_mean_and_metrics_file(tmp_path):
    assert all_reduce_mean({"loss": 2.0, "acc": 0.5}, 10) == {"acc": 0.5, "loss": 2.0}
    log = MetricsLogger(tmp_path / "m.jsonl", rank=0)
    log.log(epoch=0, loss=1.5)
    log.log(epoch=1, loss=1.0)
    rows = [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1] and rows[1]["loss"] == 1.0


def test_checkpoint_roundtrip_atomic(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint({"w": torch.tensor([1.0, 2.0]), "epoch": 3}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left behind
    state = load_checkpoint(path)
    assert state["epoch"] == 3 and state["w"].tolist() == [1.0, 2.0]
    assert load_checkpoint(tmp_path / "missing.pt") is None


def test_helpers_across_two_ranks(tmp_path):
    """all-reduced means, rank-0 progress bar, checkpoint save/load/broadcast and full resume."""
    here = pathlib.Path(__file__).parent
    sys.path.insert(0, str(here.parent / "nn" / "parallel"))
    from _spawn import run_ranks
    results = run_ranks(here / "_helpers_worker.py", 2, [tmp_path], timeout=60, extra_env={"DISTTORCH_PROGRESS": "1"})
    for rank, (code, out) in enumerate(results):
        assert code == 0, f"rank {rank} failed:\n{out[-3000:]}"
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for r, got in enumerate(ranks):
        assert abs(got["mean"] - 5.0 / 3.0) < 1e-12, got
        assert got["bar"] == ("tqdm" if r == 0 else "range"), got
        assert got["exists_after_save"] and got["loaded_writer"] == 0 and got["loaded_w"] == [0.0], got
        assert got["resume_epoch"] == 5 and got["rng_restored"], got
        assert got["weights_restored"] and got["momentum_restored"], got
