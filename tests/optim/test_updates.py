"""optim/_updates.py: a step's parameter updates as one split over the intra-op threads; results
bit-identical to one thread, pieces cut where the update code is the same as on the whole."""
import numpy as np
import pytest

import disttorch
from disttorch import _intra_op
from disttorch.optim import _updates

# the MLP benchmark's parameters: none reaches _intra_op.MIN_ELEMENTS alone, all together do
SHAPES = [(512, 784), (512,), (512, 512), (512,), (10, 512), (10,)]
assert all(int(np.prod(s)) < _intra_op.MIN_ELEMENTS for s in SHAPES)
assert sum(int(np.prod(s)) for s in SHAPES) >= _intra_op.MIN_ELEMENTS

OPTIMIZERS = {
    "SGD momentum": lambda p: disttorch.optim.SGD(p, lr=0.05, momentum=0.9),
    "SGD nesterov wd maximize": lambda p: disttorch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True,
                                                              weight_decay=1e-2, maximize=True),
    "SGD plain": lambda p: disttorch.optim.SGD(p, lr=0.05),
    "Adam": lambda p: disttorch.optim.Adam(p, lr=1e-2),
    "AdamW amsgrad": lambda p: disttorch.optim.AdamW(p, lr=1e-2, amsgrad=True),
}


@pytest.fixture
def threads():
    old = disttorch.get_num_threads()
    yield disttorch.set_num_threads
    disttorch.set_num_threads(old)


def _train(make, steps=3):
    rng = np.random.default_rng(0)
    params = [disttorch.from_numpy(rng.standard_normal(s).astype(np.float32)).requires_grad_() for s in SHAPES]
    opt = make(params)
    for _ in range(steps):
        for p in params:
            p.grad = disttorch.from_numpy(rng.standard_normal(tuple(p.shape)).astype(np.float32))
        opt.step()
    state = [v.numpy().copy() for p in params for v in opt.state[p].values()
             if isinstance(v, disttorch.Tensor) and v.ndim > 0]
    return [p.detach().numpy().copy() for p in params] + state


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_step_of_small_parameters_is_one_split_with_one_threads_bits(name, threads, request):
    threads(1)
    one = _train(OPTIMIZERS[name])
    threads(2)
    splits = request.getfixturevalue("split_parts")  # recorded from here on
    two = _train(OPTIMIZERS[name])
    assert splits == [2, 2, 2]  # one hand-off per step, though no parameter is large enough alone
    for a, b in zip(one, two, strict=True):
        assert np.array_equal(a.view(np.uint8), b.view(np.uint8))


def _pieces(sizes, parts=2):
    updates = [_updates.Update(None, [np.zeros(n, np.float32)], n) for n in sizes]
    old = disttorch.get_num_threads()
    disttorch.set_num_threads(parts)
    try:
        return updates, _updates._ranges(updates)
    finally:
        disttorch.set_num_threads(old)


@pytest.mark.parametrize("sizes", [[401408, 512, 262144, 512, 5120, 10], [1_179_648, 128, 18432, 64],
                                   [300_000, 300_000], [600_000, 20_000], [20_000, 600_000]])
def test_ranges_cover_every_element_once_on_aligned_cuts_of_safe_size(sizes):
    updates, pieces = _pieces(sizes)
    assert pieces is not None and len(pieces) == 2
    covered = {id(u): [] for u in updates}
    for rng in pieces:
        for u, lo, hi in rng:
            covered[id(u)].append((lo, hi))
            assert hi > lo
            if (lo, hi) != (0, u.numel):  # a parameter cut in pieces
                assert lo % _intra_op.ALIGN == 0 and hi - lo >= _updates.MIN_PIECE
    for u in updates:
        spans = sorted(covered[id(u)])
        assert spans[0][0] == 0 and spans[-1][1] == u.numel
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    work = [sum(hi - lo for _, lo, hi in rng) for rng in pieces]
    assert work[0] >= work[1] - _updates.MIN_PIECE  # the caller's range is the (slightly) longer one
    assert abs(work[0] - work[1]) <= 0.1 * sum(work) + _updates.MIN_PIECE


def test_small_steps_and_one_thread_run_one_update_at_a_time():
    assert _pieces([1000, 2000])[1] is None  # below MIN_ELEMENTS in all
    assert _pieces([600_000])[1] is None  # one parameter: split_flat splits it as before
    assert _pieces([400_000, 400_000], parts=1)[1] is None
    strided = np.zeros((1000, 800), np.float32)[:, ::2]
    updates = [_updates.Update(None, [strided], strided.size), _updates.Update(None, [np.zeros(400_000)], 400_000)]
    old = disttorch.get_num_threads()
    disttorch.set_num_threads(2)
    try:
        assert _updates._ranges(updates) is None  # a non-contiguous operand: whole updates only
    finally:
        disttorch.set_num_threads(old)
