"""A rank under the Ray engine: reports where it runs and an all-reduce, or fails on request.

    python _ray_probe.py OUT_DIR [--fail-first-attempt] [--kill-actor-rank R] [--hold SECONDS]
"""
import json
import os
import signal
import sys
import time

import disttorch as torch
import disttorch.distributed as dist


def main(out_dir, flags):
    restart = int(os.environ["TORCHELASTIC_RESTART_COUNT"])
    rank = int(os.environ["RANK"])
    if "--fail-first-attempt" in flags and restart == 0 and rank == 0:
        sys.exit(3)
    if "--kill-actor-rank" in flags and rank == int(flags[flags.index("--kill-actor-rank") + 1]):
        os.kill(os.getppid(), signal.SIGKILL)  # the parent is this rank's Ray actor
        time.sleep(60)  # the bootstrap's parent-death signal ends us first
    dist.init_process_group()
    t = torch.tensor([float(rank + 1)])
    dist.all_reduce(t)
    record = {k: os.environ.get(k) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
                                             "NODE_RANK", "MASTER_ADDR", "OMP_NUM_THREADS",
                                             "TORCHELASTIC_RESTART_COUNT")}
    record.update(sum=t.item(), pid=os.getpid(), actor_pid=os.getppid(),
                  secret_in_env=bool(os.environ.get("DISTTORCH_SECRET")),
                  error_file=os.environ.get("DISTTORCH_ERROR_FILE"))
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(record, f)
    if "--hold" in flags:  # stay up (no communication) until the test has done its damage
        time.sleep(float(flags[flags.index("--hold") + 1]))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
