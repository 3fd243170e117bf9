"""The median wall time of a call, the one timing loop the per-op benchmarks share."""
from __future__ import annotations

import statistics
import time


def median_time(fn, reps: int, warmup: int = 3) -> float:
    """Seconds: the median of ``reps`` timed calls of ``fn()`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)
