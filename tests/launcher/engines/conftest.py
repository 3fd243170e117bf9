"""Shared fixtures of the engine tests: disttorch-run's weights for the quick digits run."""
import pytest

from _digits import reference_weights


@pytest.fixture(scope="session")
def digits_reference(tmp_path_factory):
    """Weights of train_digits.py (quick settings) under `disttorch-run --nproc-per-node 2`."""
    return reference_weights(tmp_path_factory.mktemp("digits-reference"), 2)
