"""After the same manual_seed the samplers, DistributedSampler and a shuffling DataLoader visit the
samples in PyTorch's order (they make PyTorch's draws on PyTorch's stream)."""
import pytest

import disttorch
from disttorch.utils.data import DataLoader, DistributedSampler

torch = pytest.importorskip("torch")
from torch.utils import data as tdata  # noqa: E402


def _both(seed, make):
    torch.manual_seed(seed)
    disttorch.manual_seed(seed)
    return make(tdata), make(disttorch.utils.data)


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("n", [1, 10, 1000])
def test_random_samplers_follow_torch(seed, n):
    def draws(lib):
        return (list(lib.RandomSampler(range(n))) + list(lib.RandomSampler(range(n), num_samples=2 * n + 3))
                + list(lib.RandomSampler(range(n), replacement=True, num_samples=70))
                + list(lib.SubsetRandomSampler(list(range(5, 5 + n)))))
    ours, theirs = _both(seed, draws)
    assert ours == theirs


def test_weighted_sampler_follows_torch():
    w = [0.1, 2.0, 0.0, 3.5, 1.0]
    ours, theirs = _both(5, lambda lib: list(lib.WeightedRandomSampler(w, 12))
                         + list(lib.WeightedRandomSampler(w, 4, replacement=False)))
    assert ours == theirs


@pytest.mark.parametrize("epoch", [0, 1])
def test_distributed_sampler_follows_torch(epoch):
    from torch.utils.data.distributed import DistributedSampler as TorchDistributedSampler
    theirs = TorchDistributedSampler(range(101), num_replicas=3, rank=1, seed=7)
    ours = DistributedSampler(range(101), num_replicas=3, rank=1, seed=7)
    theirs.set_epoch(epoch)
    ours.set_epoch(epoch)
    assert list(ours) == list(theirs)


def test_shuffling_loader_yields_torchs_batches():
    torch.manual_seed(11)
    disttorch.manual_seed(11)
    theirs = [b.tolist() for b in tdata.DataLoader(list(range(50)), batch_size=4, shuffle=True)]
    ours = [b.tolist() for b in DataLoader(list(range(50)), batch_size=4, shuffle=True)]
    assert ours == theirs


