"""Metrics across ranks: all-reduced means, rank 0's progress bar, a JSON-lines log per epoch."""
from __future__ import annotations

import json
import os
import time

import numpy as np

from disttorch_launcher import settings

from .setup import is_distributed, rank_and_world


def all_reduce_mean(values: dict, count: float = 1.0) -> dict:
    """The mean of each value over all ranks' samples: ``sum(value * count) / sum(count)``.

    ``values`` holds per-rank means (e.g. loss over this rank's samples) and ``count`` is how many
    samples they cover, so ranks with different shard sizes are weighted correctly.
    """
    keys = sorted(values)
    vec = np.array([float(values[k]) * count for k in keys] + [float(count)], np.float64)
    if is_distributed():
        import disttorch.distributed as dist
        from disttorch.tensor import Tensor
        t = Tensor._wrap(vec)
        dist.all_reduce(t)
        vec = np.asarray(t._data, np.float64)
    total = vec[-1]
    if total <= 0:
        raise ValueError(f"all_reduce_mean: total count across ranks is {total}; nothing to average")
    return {k: float(vec[i] / total) for i, k in enumerate(keys)}


def progress(iterable, desc="", total=None, rank=None):
    """``iterable`` wrapped in a tqdm bar on rank 0 (when tqdm is installed and the output is a
    terminal or ``DISTTORCH_PROGRESS=1``); the bare iterable elsewhere.

    Under ``disttorch-run`` stderr is a pipe to the launcher, which sets ``DISTTORCH_PROGRESS=1``
    and ``COLUMNS`` when its own console is a terminal and shows the bar's redraws live."""
    rank = rank_and_world()[0] if rank is None else rank
    want = settings.get("DISTTORCH_PROGRESS")  # None: unset
    if rank != 0 or want is False:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    import sys
    tty = sys.stderr.isatty()
    if want is not True and not tty:
        return iterable
    if tty:
        return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)
    columns = os.environ.get("COLUMNS", "")
    return tqdm(iterable, desc=desc, total=total, leave=False, ncols=int(columns) if columns.isdigit() else None)


class MetricsLogger:
    """Appends one JSON object per call to ``path`` (rank 0 only); plot with any JSON-lines reader.

    Each record gets ``time`` (seconds since the logger was made) besides the given fields.
    """

    def __init__(self, path, rank=None):
        self.path = os.fspath(path) if path else None
        self.rank = rank_and_world()[0] if rank is None else rank
        self._t0 = time.time()
        if self.path and self.rank == 0:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)

    def log(self, **fields):
        record = {"time": round(time.time() - self._t0, 3), **fields}
        if self.path and self.rank == 0:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
        return record
