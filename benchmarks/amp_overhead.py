"""What importing disttorch.amp costs ops when autocast is not used, and what autocast costs.

Runs each case in a fresh process (the autocast wrappers are installed on import and stay):
``python benchmarks/amp_overhead.py``. Prints the best of 40 x 2000 calls per op.
"""
import subprocess
import sys

CASE = r"""
import sys, timeit
import disttorch as torch
mode = sys.argv[1]
if mode != "plain":
    import disttorch.amp  # noqa: F401
x = torch.randn(8); a = torch.randn(4, 4)
ops = {"x.exp() (8 elements)": lambda: x.exp(), "torch.matmul (4x4)": lambda: torch.matmul(a, a)}
ctx = torch.autocast("cpu") if mode == "autocast" else None
if ctx is not None:
    ctx.__enter__()
for name, fn in ops.items():
    print(f"{mode:9s} {name:22s} {min(timeit.repeat(fn, number=2000, repeat=40)) / 2000 * 1e6:6.2f} us")
"""

if __name__ == "__main__":
    for mode in ("plain", "amp", "autocast", "plain", "amp", "autocast"):
        subprocess.run([sys.executable, "-c", CASE, mode], check=True)
