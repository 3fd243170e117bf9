"""Random streams against PyTorch CPU: after the same manual_seed, the same calls give the same bits.

PyTorch's CPU kernels take different paths by size (normal: a scalar Box-Muller path below 16
elements, a vectorised one from 16 with the tail redone), so every draw is checked across sizes.
"""
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import disttorch as dt

torch = pytest.importorskip("torch")

SIZES = [1, 7, 15, 16, 17, 1000, 1 << 16]
DTYPES = ["float32", "float64"]


def same_draws(make, seed=7):
    """Runs ``make(torch)`` and ``make(disttorch)`` after the same seed; returns both as arrays."""
    torch.manual_seed(seed)
    expected = make(torch)
    dt.manual_seed(seed)
    got = make(dt)
    return expected.detach().numpy(), np.asarray(got.detach().numpy())


def assert_bitwise(make, seed=7):
    expected, got = same_draws(make, seed)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    mismatched = np.flatnonzero(expected.reshape(-1) != got.reshape(-1))
    assert mismatched.size == 0, f"{mismatched.size} of {expected.size} differ, first at {mismatched[:5]}"


def column(T, n, dtype, low, high):
    return T.tensor(np.linspace(low, high, n), dtype=getattr(T, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_float_draws_match_pytorch(n, dtype):
    assert_bitwise(lambda T: T.rand(n, dtype=getattr(T, dtype)))
    assert_bitwise(lambda T: T.randn(n, dtype=getattr(T, dtype)))
    assert_bitwise(lambda T: T.empty(n, dtype=getattr(T, dtype)).uniform_(-0.37, 1.9))
    assert_bitwise(lambda T: T.empty(n, dtype=getattr(T, dtype)).normal_(0.3, 2.5))
    assert_bitwise(lambda T: T.normal(1.5, 3.0, (n,), dtype=getattr(T, dtype)))
    assert_bitwise(lambda T: T.normal(column(T, n, dtype, 0, 1), 2.0))
    assert_bitwise(lambda T: T.normal(column(T, n, dtype, 0, 1), column(T, n, dtype, 0.5, 2)))
    assert_bitwise(lambda T: T.normal(1.5, column(T, n, dtype, 0.5, 2)))


def test_float16_uniform_draws_match_pytorch():
    assert_bitwise(lambda T: T.rand(1000, dtype=T.float16))
    assert_bitwise(lambda T: T.empty(1000, dtype=T.float16).uniform_(-2.1, 3.3))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_bernoulli_and_dropout_match_pytorch(n, dtype):
    assert_bitwise(lambda T: T.empty(n, dtype=getattr(T, dtype)).bernoulli_(0.3))
    assert_bitwise(lambda T: T.bernoulli(column(T, n, dtype, 0, 1)))
    assert_bitwise(lambda T: T.bernoulli(T.ones(n, dtype=getattr(T, dtype)), p=0.25))
    assert_bitwise(lambda T: T.nn.functional.dropout(column(T, n, dtype, -3, 3), 0.2))


@pytest.mark.parametrize("n", SIZES)
def test_integer_draws_match_pytorch(n):
    assert_bitwise(lambda T: T.randint(-3, 11, (n,)))
    assert_bitwise(lambda T: T.randint(0, 1 << 40, (n,)))  # a range past 2**32 takes 64-bit draws
    assert_bitwise(lambda T: T.randint(5, (n,), dtype=T.int32))
    assert_bitwise(lambda T: T.randperm(n))
    assert_bitwise(lambda T: T.empty(n, dtype=T.int64).random_())
    assert_bitwise(lambda T: T.empty(n, dtype=T.float32).random_())
    assert_bitwise(lambda T: T.empty(n, dtype=T.float64).random_(-4, 9))
    assert_bitwise(lambda T: T.empty(n, dtype=T.int32).random_(100))


@pytest.mark.parametrize("dtype", DTYPES)
def test_multinomial_with_replacement_matches_pytorch(dtype):
    weights = np.random.default_rng(3).random((3, 50))
    weights[1, 10:20] = 0  # empty bins are never drawn
    assert_bitwise(lambda T: T.multinomial(T.tensor(weights, dtype=getattr(T, dtype)), 500, replacement=True))
    assert_bitwise(lambda T: T.multinomial(T.tensor(weights[0], dtype=getattr(T, dtype)), 7, replacement=True))


@pytest.mark.parametrize("dtype", DTYPES)
def test_exponential_and_multinomial_without_replacement_match_pytorch(dtype):
    weights = np.random.default_rng(3).random((3, 50))
    weights[1, 10:20] = 0
    for n, replacement in ((1, True), (1, False), (10, False), (40, False)):  # the exponential race
        assert_bitwise(lambda T: T.multinomial(T.tensor(weights, dtype=getattr(T, dtype)), n, replacement=replacement))
    for n in (7, 1000):
        assert_bitwise(lambda T: T.empty(n, dtype=getattr(T, dtype)).exponential_(2.5))
        assert_bitwise(lambda T: T.empty(n, dtype=getattr(T, dtype)).geometric_(0.3))
    assert_bitwise(lambda T: T.empty(100, dtype=T.int64).geometric_(0.05))


def test_interleaved_calls_share_the_scalar_normal_cache():
    # below 16 elements each normal uses one Box-Muller pair per two draws and caches the other sample
    assert_bitwise(lambda T: T.cat([T.randn(3), T.randn(5, dtype=T.float64).float(), T.randn(20), T.rand(3),
                                    T.randn(1), T.randn(2, 3).reshape(-1), T.randint(0, 9, (4,)).float()]))
    assert_bitwise(lambda T: T.cat([T.randn(15, dtype=T.float64) for _ in range(200)]))


def test_strided_views_fill_in_memory_order():
    assert_bitwise(lambda T: T.empty(20, 30).t().normal_())
    assert_bitwise(lambda T: T.empty(40, 30).t().uniform_(-1, 1))
    assert_bitwise(lambda T: T.nn.functional.dropout2d(T.ones(4, 6, 3, 3), 0.4))


def test_models_start_from_pytorchs_weights_and_loss():
    def build(T):
        model = T.nn.Sequential(T.nn.Conv2d(3, 8, 3), T.nn.ReLU(), T.nn.Flatten(), T.nn.Linear(8 * 6 * 6, 10))
        x = T.randn(4, 3, 8, 8)
        y = T.randint(0, 10, (4,))
        weights = T.cat([p.detach().reshape(-1) for p in model.parameters()])
        return weights, T.nn.functional.cross_entropy(model(x), y).detach()

    torch.manual_seed(0)
    w_expected, loss_expected = build(torch)
    dt.manual_seed(0)
    w_got, loss_got = build(dt)
    np.testing.assert_array_equal(w_got.numpy(), w_expected.numpy())
    assert abs(float(loss_got) - float(loss_expected)) < 1e-6


@pytest.mark.parametrize("init", ["xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_"])
def test_nn_init_matches_pytorch(init):
    assert_bitwise(lambda T: getattr(T.nn.init, init)(T.empty(20, 30)))
    assert_bitwise(lambda T: getattr(T.nn.init, init)(T.empty(3, 5, dtype=T.float64)))


def test_trunc_normal_matches_pytorch_on_both_paths():
    assert_bitwise(lambda T: T.nn.init.trunc_normal_(T.empty(200, 30)))  # mostly inside: normal redraws
    assert_bitwise(lambda T: T.nn.init.trunc_normal_(T.empty(200, 30), mean=1.0, std=3.0, a=-0.5, b=0.5))
    values = dt.nn.init.trunc_normal_(dt.empty(5000), a=-0.5, b=0.25).numpy()
    assert values.min() >= -0.5 and values.max() <= 0.25


def test_orthogonal_uses_pytorchs_draws():
    expected, got = same_draws(lambda T: T.nn.init.orthogonal_(T.empty(20, 30)))
    np.testing.assert_allclose(got, expected, atol=1e-5)  # QR in float64 here, float32 LAPACK there


def test_state_is_pytorchs_layout_both_ways():
    torch.manual_seed(3)
    dt.manual_seed(3)
    assert np.array_equal(dt.get_rng_state().numpy(), torch.get_rng_state().numpy())
    for T in (torch, dt):
        T.rand(5)
        T.randn(3)  # leaves a cached normal sample in the state
    assert np.array_equal(dt.get_rng_state().numpy(), torch.get_rng_state().numpy())
    torch.set_rng_state(torch.from_numpy(dt.get_rng_state().numpy()))
    dt.randn(9)  # move on, then come back from PyTorch's state
    dt.set_rng_state(dt.tensor(torch.get_rng_state().numpy()))
    np.testing.assert_array_equal(dt.randn(7).numpy(), torch.randn(7).numpy())


def test_generators_are_independent_and_picklable():
    g = dt.Generator()
    assert g.initial_seed() == torch.Generator().initial_seed() == 67280421310721
    np.testing.assert_array_equal(dt.rand(6, generator=g).numpy(), torch.rand(6, generator=torch.Generator()).numpy())
    g.manual_seed(11)
    dt.rand(3, generator=g)
    clone = pickle.loads(pickle.dumps(g))
    np.testing.assert_array_equal(dt.randn(20, generator=clone).numpy(), dt.randn(20, generator=g).numpy())
    dt.manual_seed(1)
    before = dt.get_rng_state()
    dt.rand(4, generator=g)
    assert np.array_equal(dt.get_rng_state().numpy(), before.numpy())


def test_dataloader_base_seed_is_drawn_as_pytorch_draws_it():
    from disttorch.utils.data import _arrays
    torch.manual_seed(5)
    dt.manual_seed(5)
    # PyTorch's loader iterator: torch.empty((), dtype=torch.int64).random_(generator=loader.generator)
    assert _arrays.draw_seed() == torch.empty((), dtype=torch.int64).random_().item()
    np.testing.assert_array_equal(dt.rand(3).numpy(), torch.rand(3).numpy())  # both streams moved alike


def test_fork_rng_restores_the_state():
    dt.manual_seed(2)
    with dt.random.fork_rng():
        inside = dt.rand(3)
    np.testing.assert_array_equal(dt.rand(3).numpy(), inside.numpy())


def test_seeds_are_64_bit_and_checked():
    dt.manual_seed(-1)
    assert dt.initial_seed() == 2 ** 64 - 1
    with pytest.raises(ValueError, match="Overflow when unpacking long long"):
        dt.manual_seed(2 ** 64)
    with pytest.raises(RuntimeError, match="size 5056 but found the input RNG state size to be 10"):
        dt.set_rng_state(dt.zeros(10, dtype=dt.uint8))
    with pytest.raises(TypeError, match="RNG state must be a torch.ByteTensor"):
        dt.set_rng_state(dt.zeros(5056))
    s = dt.seed()
    assert 0 <= s < 2 ** 64 and dt.initial_seed() == s


def test_unseeded_processes_draw_different_numbers():
    # two fresh interpreters (as two DDP ranks or two runs): each seeds its default generator from the OS
    code = "import disttorch as t; print(t.initial_seed(), t.rand(4).tolist())"
    outs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ),
                           timeout=120, check=True).stdout for _ in range(2)]
    assert outs[0] != outs[1]
    seeds = [int(out.split()[0]) for out in outs]
    assert all(0 <= s < 2 ** 64 for s in seeds) and 67280421310721 not in seeds


def test_errors_name_the_bad_value():
    with pytest.raises(RuntimeError, match="from=5 >= to=5"):
        dt.randint(5, 5, (2,))
    with pytest.raises(RuntimeError, match="found std -1.0"):
        dt.empty(3).normal_(0, -1.0)
    with pytest.raises(RuntimeError, match="p=1.5"):
        dt.empty(3).bernoulli_(1.5)
