"""Helpers for training scripts around DDP: process-group setup, seeding, checkpoints, metrics."""
from .setup import cleanup, setup_distributed  # noqa: F401
from .seeding import get_rng_states, rank_seed, seed_everything, set_rng_states  # noqa: F401
from .checkpoint import Checkpointer, ChecksumError, current_run_id, load_checkpoint, save_checkpoint  # noqa: F401
from .metrics import MetricsLogger, all_reduce_mean, progress  # noqa: F401
