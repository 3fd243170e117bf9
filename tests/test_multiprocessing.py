"""disttorch.multiprocessing: shared-memory tensors (Hogwild: two processes train one model and the
parent sees both processes' updates), tensors sent through queues, and spawn's semantics (args,
nprocs, join=False, failures naming the process)."""
import os
import signal

import numpy as np
import pytest

import disttorch as dt
import disttorch.multiprocessing as mp
from disttorch import nn

TARGETS = (1.5, -2.0)


def _train_coordinate(rank, model, done_events, steps=60):
    """Rank i fits weight[0, i] to TARGETS[i] with SGD: its gradient touches only that coordinate."""
    opt = dt.optim.SGD(model.parameters(), lr=0.2)
    x = dt.zeros(1, 2)
    x[0, rank] = 1.0
    for _ in range(steps):
        opt.zero_grad()
        loss = ((model(x) - TARGETS[rank]) ** 2).sum()
        loss.backward()
        opt.step()
    done_events[rank].set()
    # Hogwild: the other process's updates must be visible here, in this process's own view.
    other = 1 - rank
    assert done_events[other].wait(60), "the other trainer never finished"
    seen = model.weight.detach().numpy()[0, other]
    if abs(seen - TARGETS[other]) > 1e-4:
        raise AssertionError(f"rank {rank} sees weight[0, {other}] = {seen}, not the other process's {TARGETS[other]}")


def _hogwild_spawn_entry(rank, model, done_events):
    _train_coordinate(rank, model, done_events)


def _check_trained(model):
    np.testing.assert_allclose(model.weight.detach().numpy()[0], TARGETS, atol=1e-4)


def test_share_memory_moves_parameters_and_keeps_values():
    model = nn.Linear(3, 2)
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    assert not model.weight.is_shared()
    assert model.share_memory() is model
    assert model.weight.is_shared() and model.bias.is_shared() and model.weight.requires_grad
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k])


def test_hogwild_fork_processes_update_one_shared_model():
    ctx = mp.get_context("fork")
    model = nn.Linear(2, 1, bias=False)
    with dt.no_grad():
        model.weight.zero_()
    model.share_memory()
    events = [ctx.Event(), ctx.Event()]
    procs = [ctx.Process(target=_train_coordinate, args=(r, model, events)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(90)
    assert [p.exitcode for p in procs] == [0, 0]
    _check_trained(model)  # both children's updates, seen by the parent: one memory, not copies


def test_hogwild_spawn_sends_shared_tensors_by_name():
    model = nn.Linear(2, 1, bias=False)
    with dt.no_grad():
        model.weight.zero_()
    model.share_memory()
    ctx = mp.get_context("spawn")
    mp.spawn(_hogwild_spawn_entry, args=(model, [ctx.Event(), ctx.Event()]), nprocs=2)
    _check_trained(model)


def _put_view(q, parent_done):
    t = dt.arange(10.0)
    t.share_memory_()
    q.put(t[2:6])  # a view: offset and strides must survive
    q.put(t)
    parent_done.wait(60)  # the sender keeps the segment alive until the receiver has mapped it (as PyTorch)


def test_queue_carries_shared_views_both_ways():
    ctx = mp.get_context("fork")
    q, done = ctx.Queue(), ctx.Event()
    p = ctx.Process(target=_put_view, args=(q, done))
    p.start()
    view, full = q.get(timeout=60), q.get(timeout=60)
    np.testing.assert_array_equal(view.numpy(), [2, 3, 4, 5])
    view[0] = 100.0  # written through the view, seen through the whole tensor: same pages
    assert full[2].item() == 100.0
    done.set()
    p.join(30)
    assert p.exitcode == 0


def _record_args(i, path, scale):
    with open(os.path.join(path, f"{i}"), "w") as f:
        f.write(str(i * scale))


def _fail_on_one(i):
    if i == 1:
        raise ValueError("bad shard 7")


def _killed_on_one(i):
    if i == 1:
        os.kill(os.getpid(), signal.SIGKILL)


def _exit_3(i):
    raise SystemExit(3)


def test_spawn_passes_index_and_args(tmp_path):
    assert mp.spawn(_record_args, args=(str(tmp_path), 10), nprocs=3, start_method="fork") is None
    assert sorted((p.name, p.read_text()) for p in tmp_path.iterdir()) == [("0", "0"), ("1", "10"), ("2", "20")]


def test_spawn_join_false_returns_context(tmp_path):
    ctx = mp.spawn(_record_args, args=(str(tmp_path), 1), nprocs=2, join=False, start_method="fork")
    assert isinstance(ctx, mp.ProcessContext) and len(ctx.pids()) == 2
    while not ctx.join():
        pass
    assert len(list(tmp_path.iterdir())) == 2


def test_spawn_reraises_child_exception_naming_the_process():
    with pytest.raises(mp.ProcessRaisedException, match=r"-- Process 1 terminated with the following error:") as e:
        mp.spawn(_fail_on_one, nprocs=2, start_method="fork")
    assert e.value.error_index == 1
    assert "ValueError: bad shard 7" in str(e.value)


def test_spawn_reports_signal_and_exit_code():
    with pytest.raises(mp.ProcessExitedException, match=r"^process 1 terminated with signal SIGKILL$") as e:
        mp.spawn(_killed_on_one, nprocs=2, start_method="fork")
    assert e.value.signal_name == "SIGKILL" and e.value.error_index == 1
    with pytest.raises(mp.ProcessExitedException, match=r"^process 0 terminated with exit code 3$"):
        mp.spawn(_exit_3, nprocs=1, start_method="fork")


def test_spawn_rejects_bad_nprocs():
    with pytest.raises(ValueError, match="nprocs must be at least 1, got 0"):
        mp.spawn(_exit_3, nprocs=0)


def test_sharing_strategy_names():
    assert mp.get_sharing_strategy() in mp.get_all_sharing_strategies()
    with pytest.raises(AssertionError, match="invalid sharing strategy 'bogus'"):
        mp.set_sharing_strategy("bogus")


def test_segments_are_unlinked_when_the_tensors_die():
    import gc
    mine = f"disttorch-mp-{os.getpid()}-"

    def own_segments():
        return {n for n in os.listdir("/dev/shm") if n.startswith(mine)}

    before = own_segments()
    model = nn.Linear(4, 4).share_memory()
    assert len(own_segments() - before) == 2  # weight and bias
    del model
    gc.collect()
    assert own_segments() - before == set()
