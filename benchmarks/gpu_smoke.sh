#!/usr/bin/env bash
# GPU smoke check: on a machine with an NVIDIA GPU, installs the gpu extra, runs the GPU tests,
# times one training step of disttorch (CuPy) against PyTorch CUDA when present, and an NCCL
# all-reduce between two local ranks when there are two GPUs. Prints the figures.
# Usage: bash benchmarks/gpu_smoke.sh   (from the repository root, inside the project venv)
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e ".[gpu,test]"
python - <<'PY'
import disttorch
print("cuda available:", disttorch.cuda.is_available(), "devices:", disttorch.cuda.device_count())
PY
# the device suites on the hardware (they run on a NumPy stand-in for CuPy elsewhere), then the GPU-only tests
status=0
DISTTORCH_GPU_TESTS=cupy python -m pytest -q -p no:cacheprovider tests/gpu tests/test_backend_dispatch.py || status=$?
python - <<'PY'
import time
import disttorch as dt
import disttorch.nn as nn

def step_time(torch_mod, device):
    model = torch_mod.nn.Sequential(torch_mod.nn.Linear(784, 512), torch_mod.nn.ReLU(),
                                    torch_mod.nn.Linear(512, 512), torch_mod.nn.ReLU(),
                                    torch_mod.nn.Linear(512, 10)).to(device)
    opt = torch_mod.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch_mod.randn(256, 784, device=device)
    y = torch_mod.randint(0, 10, (256,), device=device)
    loss_fn = torch_mod.nn.CrossEntropyLoss()
    def step():
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    for _ in range(5):
        step()
    sync = (lambda: torch_mod.cuda.synchronize())
    sync()
    t = time.perf_counter()
    for _ in range(50):
        step()
    sync()
    return (time.perf_counter() - t) / 50 * 1e3

d = step_time(dt, "cuda")
print(f"disttorch CUDA MLP step: {d:.2f} ms")
try:
    import torch
    if torch.cuda.is_available():
        t = step_time(torch, "cuda")
        print(f"PyTorch CUDA MLP step: {t:.2f} ms  ratio {d / t:.2f}x")
except ImportError:
    print("PyTorch not installed: no CUDA reference")
PY
if [ "$(python -c 'import disttorch; print(disttorch.cuda.device_count())')" -ge 2 ]; then
    cat > /tmp/nccl_allreduce.py <<'PY'
import time
import disttorch as dt
import disttorch.distributed as dist
dist.init_process_group("nccl")
if dist.get_rank() == 0:
    print("process group backend:", dist.get_backend())
x = dt.ones(16 * 2 ** 20 // 4, device="cuda")  # the launcher makes each rank's own GPU the default
dist.all_reduce(x)
dt.cuda.synchronize()
t = time.perf_counter()
for _ in range(20):
    dist.all_reduce(x)
dt.cuda.synchronize()
el = (time.perf_counter() - t) / 20
if dist.get_rank() == 0:
    print(f"NCCL all_reduce 16 MiB: {el * 1e3:.2f} ms, bus {2 * (2 - 1) / 2 * 16 * 2 ** 20 / el / 1e9:.1f} GB/s")
dist.destroy_process_group()
PY
    disttorch-run --nproc-per-node 2 /tmp/nccl_allreduce.py
else
    echo "fewer than 2 GPUs: NCCL all-reduce skipped"
fi
exit $status
