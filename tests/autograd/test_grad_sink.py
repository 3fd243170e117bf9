"""Gradient sinks (``AccumulateGrad.sink``, ``ops/_base.grad_destination``): a Linear layer
computes its weight's gradient straight into memory the leaf offers (DDP's shared-memory area),
only in a ``backward()`` that accumulates into ``.grad``, and with the same values."""
import numpy as np
import pytest

import disttorch as dt
import disttorch.nn.functional as F


class RecordingSink:
    """Hands out ``arrays`` one by one (then None) and records every request."""

    def __init__(self, *arrays):
        self.arrays, self.calls = list(arrays), []

    def __call__(self, shape, dtype):
        self.calls.append((tuple(shape), np.dtype(dtype)))
        return self.arrays.pop(0) if self.arrays else None


def _setup(bias, dtype=np.float32):
    rng = np.random.default_rng(3)
    x = dt.from_numpy(rng.standard_normal((6, 5)).astype(dtype))
    w = dt.from_numpy(rng.standard_normal((4, 5)).astype(dtype)).requires_grad_()
    b = dt.from_numpy(rng.standard_normal(4).astype(dtype)).requires_grad_() if bias else None
    return x, w, b


@pytest.mark.parametrize("bias", [True, False], ids=["addmm", "mm"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_computes_its_weight_gradient_in_the_sink_with_the_same_values(bias, dtype):
    x, w, b = _setup(bias, dtype)
    (F.linear(x, w, b).tanh().sum()).backward()
    expected = w.grad._data.copy()
    w.grad = None
    if b is not None:
        b.grad = None
    target = np.full((4, 5), np.nan, dtype)
    sink = w._grad_accumulator().sink = RecordingSink(target)
    (F.linear(x, w, b).tanh().sum()).backward()
    assert sink.calls == [((4, 5), np.dtype(dtype))]
    assert w.grad._data is target  # no copy: .grad is the very array the sink gave
    np.testing.assert_array_equal(target, expected)


def test_a_weight_used_twice_gets_the_sink_once_and_the_sum_of_both_uses():
    x, w, _ = _setup(False)
    (F.linear(F.linear(x[:, :5], w)[:, :4].repeat(1, 2)[:, :5], w).sum()).backward()
    expected = w.grad._data.copy()
    w.grad = None
    target = np.zeros((4, 5), np.float32)
    sink = w._grad_accumulator().sink = RecordingSink(target)
    (F.linear(F.linear(x[:, :5], w)[:, :4].repeat(1, 2)[:, :5], w).sum()).backward()
    assert len(sink.calls) == 2  # the second product found the sink empty and got its own array
    np.testing.assert_allclose(w.grad._data, expected, rtol=1e-6)
    assert w.grad._data is target  # the engine added the second use into the first


def test_autograd_grad_and_create_graph_never_use_the_sink():
    x, w, b = _setup(True)
    sink = w._grad_accumulator().sink = RecordingSink(np.zeros((4, 5), np.float32))
    (gw,) = dt.autograd.grad(F.linear(x, w, b).tanh().sum(), [w])  # handed to the caller, who may keep it
    (F.linear(x, w, b).tanh().sum()).backward(create_graph=True)
    assert sink.calls == []
    np.testing.assert_allclose(w.grad._data, gw._data, rtol=1e-6)


def test_a_sink_that_declines_leaves_the_gradient_where_backward_put_it():
    x, w, b = _setup(True)
    (F.linear(x, w, b).sum()).backward()
    expected = w.grad._data.copy()
    w.grad = None
    sink = w._grad_accumulator().sink = RecordingSink()  # nothing to hand out
    (F.linear(x, w, b).sum()).backward()
    assert len(sink.calls) == 1
    np.testing.assert_array_equal(w.grad._data, expected)
