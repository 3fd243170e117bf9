"""Fixtures for the device tests.

``fake_cupy``: the strict NumPy-backed CuPy stand-in (two GPUs), installed for one test.
``gpu``: the device under test: the stand-in, or real CuPy on a real GPU when the environment says
``DISTTORCH_GPU_TESTS=cupy`` (``benchmarks/gpu_smoke.sh`` sets it); then the same suites run on the
hardware, with tolerances for cuBLAS / CUDA math rounding, and skip where no GPU is present.

tests/ is not a package: this directory and the CPU suites' table directories go on sys.path so the
device tests can import the stand-in and reuse the CPU suites' case tables.
"""
from __future__ import annotations

import os
import sys

import pytest

HERE = os.path.dirname(__file__)
for path in (HERE, os.path.join(HERE, "..", "ops"), os.path.join(HERE, "..", "nn"), os.path.join(HERE, "..", "optim")):
    if os.path.abspath(path) not in sys.path:
        sys.path.insert(0, os.path.abspath(path))

import _on_device  # noqa: E402
from _fake_cupy import make_fake_cupy  # noqa: E402

REAL_GPU = os.environ.get("DISTTORCH_GPU_TESTS", "") == "cupy"
NEEDS_GPU = "needs CuPy and a GPU"


def _install(module):
    from disttorch import _backend
    import disttorch.cuda as dcuda
    _backend.set_cupy_for_testing(module)
    dcuda._reset_for_testing()


@pytest.fixture
def fake_cupy():
    """Installs a fresh two-device stand-in as disttorch's CuPy; yields the module."""
    mod = make_fake_cupy(device_count=2)
    _install(mod)
    yield mod
    _install(None)


@pytest.fixture
def gpu():
    """The CuPy module under test (see the module docstring); tolerances widen on real hardware."""
    if not REAL_GPU:
        mod = make_fake_cupy(device_count=2)
        _install(mod)
        yield mod
        _install(None)
        return
    import disttorch
    _install(None)  # forget any stand-in: the next use imports the real CuPy
    if not disttorch.cuda.is_available():
        pytest.skip(NEEDS_GPU)
    from disttorch import _backend
    _on_device.TOLERANCE_SCALE = 20.0
    try:
        yield _backend.cupy_module()
    finally:
        _on_device.TOLERANCE_SCALE = 1.0
