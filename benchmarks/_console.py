"""Finding the console scripts (disttorch-run, torchrun) the launcher benchmarks start."""
from __future__ import annotations

import os
import shutil
import sys


def console_script(name: str) -> str | None:
    """``name`` installed next to this interpreter (the venv running the benchmark), else on PATH."""
    local = os.path.join(os.path.dirname(sys.executable), name)
    return local if os.path.exists(local) else shutil.which(name)
