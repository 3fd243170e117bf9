"""The allocator tuning of ``disttorch/_malloc.py``: freed activation memory is reused, not re-faulted."""
import os
import platform
import resource
import subprocess
import sys

import pytest

import disttorch

glibc_only = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="mallopt tuning applies to glibc Linux only")


@glibc_only
def test_applied_on_import():
    from disttorch import _malloc
    assert _malloc.applied is True


@glibc_only
def test_repeated_large_steps_do_not_page_fault():
    # a 16 MB array freed and allocated again each step must come back from the heap, not from
    # fresh kernel pages (glibc alone re-faults it: about 3900 minor faults per array)
    x = disttorch.ones(4_000_000, requires_grad=True)
    w = disttorch.full((4_000_000,), 1.5)

    def step():
        ((x * w).tanh() + w).sum().backward()
        x.grad = None

    step()
    step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        step()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < 500, f"{faults} minor page faults over 5 steps"


def test_opt_out_by_environment():
    code = "import disttorch, disttorch._malloc as m; print(m.applied)"
    env = dict(os.environ, DISTTORCH_MALLOC_TUNING="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
