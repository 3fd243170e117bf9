"""A job for the cross-host tests: all-reduces a gradient-sized tensor once per step and prints
where it runs. Its final tensor depends on every step, so a resumed job that skipped or repeated
a step would print another value."""
import json
import os
import socket
import sys
import time

import disttorch as torch
import disttorch.distributed as dist

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 40
pause = float(sys.argv[2]) if len(sys.argv) > 2 else 0.05
state_path = sys.argv[3] if len(sys.argv) > 3 else ""

dist.init_process_group("zmq", timeout=__import__("datetime").timedelta(
    seconds=float(os.environ.get("STEPS_TIMEOUT", "10"))))
rank, world = dist.get_rank(), dist.get_world_size()
start, value = 0, torch.zeros(1 << 16)
if state_path and os.path.exists(state_path):  # resume: rank 0's checkpoint of the last step
    with open(state_path) as f:
        saved = json.load(f)
    start, value = saved["step"], torch.full((1 << 16,), saved["value"])
print(f"START rank={rank} host={socket.gethostname()} pid={os.getpid()} from={start}", flush=True)
for step in range(start, steps):
    x = torch.full((1 << 16,), float(rank + 1) * (step + 1))
    dist.all_reduce(x)
    value = value * 0.5 + x
    if rank == 0 and state_path:
        tmp = state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"step": step + 1, "value": float(value[0])}, f)
        os.replace(tmp, state_path)
    time.sleep(pause)
print(f"RESULT rank={rank} value={float(value[0])!r} steps={steps}", flush=True)
dist.destroy_process_group()
