"""examples/quickstart.py runs, and its deterministic sections print what PyTorch prints."""
from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "quickstart.py"


def run(source):
    proc = subprocess.run([sys.executable, "-c", source], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_quickstart_runs_every_section():
    out = run(SCRIPT.read_text())
    assert "decreasing: True" in out  # the training section's loss went down
    assert "MyModel(" in out and "AddmmBackward0" in out


def test_sections_without_randomness_match_pytorch():
    """Sections 01-10 (tensors, autograd) print no random numbers: with ``import torch`` put back
    they must print the same lines, up to the package name in ``torch.Size`` / dtypes."""
    pytest.importorskip("torch")
    sections = re.split(r"(?m)^(?=# ---- \d\d_)", SCRIPT.read_text())
    picked = "".join(s for s in sections if s.startswith("# ---- ") and int(s[7:9]) <= 10)
    assert picked.count("# ---- ") == 10
    as_torch = picked.replace("import disttorch as torch\n", "import torch\n").replace(
        "import disttorch as t\n", "import torch as t\n")
    assert "disttorch" not in as_torch
    ours = run(picked).replace("disttorch.", "torch.").splitlines()
    theirs = run(as_torch).splitlines()
    assert len(ours) == len(theirs) > 50
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a == b, f"line {i}: disttorch printed {a!r}, PyTorch {b!r}"
