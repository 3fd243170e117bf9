"""torch.cuda.amp's older spellings: PyTorch's warnings, and on a machine without a GPU the same
full-precision results as no autocast, exactly as PyTorch's CPU build behaves."""
import sys
import warnings

import numpy as np
import pytest

import disttorch
import disttorch.nn as nn


def _messages(record):
    return [(w.category, str(w.message)) for w in record]


def test_cuda_amp_is_not_imported_until_used():
    import subprocess
    code = ("import sys, disttorch, disttorch.cuda; assert 'disttorch.amp' not in sys.modules; "
            "disttorch.cuda.amp.GradScaler; assert 'disttorch.amp' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.skipif(disttorch.cuda.is_available(), reason="checks the no-GPU behaviour")
def test_autocast_and_grad_scaler_disable_themselves_without_a_gpu():
    model = nn.Linear(4, 3)
    x = disttorch.randn(5, 4)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        scaler = disttorch.cuda.amp.GradScaler()
        with disttorch.cuda.amp.autocast():
            y = model(x)
    messages = _messages(record)
    assert (FutureWarning, "`torch.cuda.amp.GradScaler(args...)` is deprecated. Please use "
            "`torch.amp.GradScaler('cuda', args...)` instead.") in messages
    assert (FutureWarning, "`torch.cuda.amp.autocast(args...)` is deprecated. Please use "
            "`torch.amp.autocast('cuda', args...)` instead.") in messages
    assert (UserWarning, "CUDA is not available or torch_xla is imported. Disabling autocast.") in messages
    assert y.dtype == disttorch.float32
    np.testing.assert_array_equal(y.detach().numpy(), model(x).detach().numpy())
    assert not scaler.is_enabled()
    loss = y.sum()
    assert scaler.scale(loss) is loss  # a disabled scaler hands the loss back unscaled


def test_same_warnings_as_pytorch():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available() or disttorch.cuda.is_available():
        pytest.skip("compares the CPU-only behaviour")

    def collect(lib):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            lib.cuda.amp.GradScaler(enabled=True)
            with lib.cuda.amp.autocast(enabled=True):
                pass
        return sorted(str(w.message) for w in record)

    assert collect(disttorch) == collect(torch)


def test_custom_fwd_bwd_run_the_function():
    class Square(disttorch.autograd.Function):
        @staticmethod
        @disttorch.cuda.amp.custom_fwd
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        @disttorch.cuda.amp.custom_bwd
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 2 * x * g

    x = disttorch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    Square.apply(x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, -4.0, 6.0])
