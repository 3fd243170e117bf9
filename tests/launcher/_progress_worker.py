"""A worker for the progress-bar relay tests: rank 0 shows a bar, rank 1 prints lines meanwhile."""
import os
import sys
import time

from disttorch.training import progress

rank = int(os.environ["RANK"])
for i in progress(range(12), desc="work"):
    time.sleep(0.25)
    if rank == 1 and i % 4 == 0:
        print(f"rank one says {i}", flush=True)
if rank == 0:
    print("bar finished", flush=True)
sys.exit(0)
