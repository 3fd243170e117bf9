"""log(0), x / 0 and friends give inf / nan silently, as in PyTorch; NumPy outside disttorch still warns."""
import subprocess
import sys

import numpy as np
import pytest

CODE = """
import disttorch as t, numpy as np
x = t.tensor([0.0, 1.0, -1.0], requires_grad=True)
y = t.log(x) + x / t.zeros(3) + t.sqrt(x) + t.tensor([1e38]) * 1e38
y.sum().backward()
print((y.tolist(), x.grad.tolist()))
np.log(np.zeros(1))  # the user's own NumPy call keeps its warning
"""


def test_floating_point_edge_cases_are_silent_like_pytorch():
    out = subprocess.run([sys.executable, "-W", "default", "-c", CODE], capture_output=True, text=True, check=True)
    y, grad = eval(out.stdout.strip().replace("nan", "float('nan')").replace("inf", "float('inf')"))
    assert np.isnan(y[0]) and y[1] == np.inf and np.isnan(y[2]) and grad[:2] == [np.inf, np.inf]
    lines = [line for line in out.stderr.splitlines() if "RuntimeWarning" in line]
    assert len(lines) == 1 and "<string>:7" in lines[0], out.stderr


def test_matches_pytorch_values():
    torch = pytest.importorskip("torch", reason="PyTorch not installed: parity half of the check skipped")
    import disttorch
    for name in ("log", "sqrt", "reciprocal", "rsqrt"):
        v = [0.0, -1.0, 2.0]
        got = getattr(disttorch, name)(disttorch.tensor(v)).numpy()
        want = getattr(torch, name)(torch.tensor(v)).numpy()
        np.testing.assert_array_equal(got, want)
